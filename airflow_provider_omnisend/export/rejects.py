"""The rejects file: every input row that does not reach Omnisend, with a reason and its source values.

Why a file and not a log: a user fixes rejected rows in the lake. They need the row number, a machine
readable reason code (to count and filter), a human detail, and the values exactly as read.

The file holds personal data (the source values), so a local file is created with mode 0o600 before
any byte is written: only the account running the export can read it. Remote stores (abfs://, s3://)
rely on their own access control. Details never contain the e-mail address itself.

Columns: ``row`` (int64, 0-based position in the input stream), ``kind``, ``reason``, ``field``,
``detail``, then the mapped source columns as strings. A source column named like one of the first five
gets a ``source_`` prefix.

``kind`` tells the two sorts of records apart:

- ``row_rejected``: the row did not reach Omnisend (``field`` names the field at fault, if one is).
- ``field_dropped``: with ``on_invalid_field="drop_field"`` the contact WAS sent, without the optional
  field named in ``field`` (e.g. ``countryCode``, ``customProperties.ltv``) whose value was invalid.
  A row can have several such records. They are warnings and never count toward ``max_reject_ratio``.
Mapping both ``row`` and ``source_row`` (or any such pair) is refused: the file would have two
columns of the same name.

A CSV rejects file is opened in spreadsheets: a cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR
(a source value or Omnisend's own message) would run as a formula, so it gets a leading ``'``. Parquet
keeps the values exactly as read.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from airflow_provider_omnisend.export.files import open_private
from airflow_provider_omnisend.export.lists import is_list, json_arrays
from airflow_provider_omnisend.export.text import as_utf8

BASE_FIELDS = (
    pa.field("row", pa.int64()),
    pa.field("kind", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("field", pa.string()),
    pa.field("detail", pa.string()),
)
ROW_REJECTED = "row_rejected"
FIELD_DROPPED = "field_dropped"
FORMATS = ("parquet", "csv")
_RESERVED = {field.name for field in BASE_FIELDS}


def rejects_schema(source_columns: Sequence[str]) -> pa.Schema:
    """Schema of the rejects file for these mapped source columns."""
    names = [f"source_{c}" if c in _RESERVED else c for c in source_columns]
    clashes = sorted({n for n in names if names.count(n) > 1} & {f"source_{c}" for c in _RESERVED})
    if clashes:
        raise ValueError(
            f"The mapping uses source columns that both become {', '.join(clashes)} in the rejects file "
            f"(a source column named {', '.join(sorted(_RESERVED))} gets a source_ prefix). Rename one of "
            "them in the lake, or map only one.")
    return pa.schema([*BASE_FIELDS, *(pa.field(name, pa.string()) for name in names)])


def make_rejects_table(
    rows: np.ndarray | Sequence[int],
    reasons: pa.Array | Sequence[str] | str,
    details: pa.Array | Sequence[str],
    values: pa.Table | None,
    source_columns: Sequence[str],
    *,
    kind: str = ROW_REJECTED,
    field: pa.Array | Sequence[str | None] | str | None = None,
) -> pa.Table:
    """A rejects table; ``values`` holds the source columns for these rows (missing columns become null).

    ``kind`` is ``row_rejected`` or ``field_dropped``; ``field`` the Omnisend field concerned (one for
    all rows, one per row, or None).
    """
    schema = rejects_schema(source_columns)
    n = len(rows)
    columns: list[pa.Array] = [
        pa.array(np.asarray(rows, dtype=np.int64), pa.int64()),
        _strings(kind, n),
        _strings(reasons, n),
        _strings(field, n),
        _strings(details, n),
    ]
    for source in source_columns:
        if values is not None and source in values.column_names:
            columns.append(as_utf8(values.column(source)))
        else:
            columns.append(pa.nulls(n, pa.string()))
    if any(len(column) != n for column in columns):
        raise ValueError(f"rejects: every column must have {n} values (one per rejected row)")
    return pa.Table.from_arrays(columns, schema=schema)


def _strings(values: pa.Array | Sequence[str | None] | str | None, n: int) -> pa.StringArray:
    """``n`` strings from one constant (or None) or a sequence/array of them."""
    if values is None or isinstance(values, str):
        return pa.repeat(pa.scalar(values, pa.string()), n)
    return as_utf8(values if isinstance(values, pa.Array) else pa.array(values, pa.string()))


def source_values(
    batch: pa.RecordBatch | pa.Table, source_columns: Sequence[str], positions: np.ndarray
) -> pa.Table:
    """The raw (as read) source values of ``batch`` at ``positions``, as strings, for a rejects table (a
    list as its JSON array, items as read)."""
    at = pa.array(np.asarray(positions, dtype=np.int64))
    return pa.table({column: _as_text(batch.column(column).take(at)) for column in source_columns})


def _as_text(values: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    return json_arrays(values) if is_list(values) else as_utf8(values)


_FORMULA_START = r"^[=+\-@\t\r]"


def neutralise_formulas(table: pa.Table) -> pa.Table:
    """``table`` with a ``'`` before every string cell a spreadsheet would read as a formula."""
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type):
            risky = pc.match_substring_regex(column, _FORMULA_START)
            columns.append(pc.if_else(risky, pc.utf8_replace_slice(column, 0, 0, "'"), column))
        else:
            columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema)


class RejectsWriter:
    """Streams reject tables into one Parquet or CSV file at any fsspec URL.

    The file is created (with its header) on construction, so an empty run still leaves a valid file,
    and a bad path fails before anything is sent. Rows are buffered and written in row groups of
    ``buffer_rows`` so memory stays bounded.
    """

    def __init__(
        self,
        path: str,
        *,
        format: str = "parquet",
        source_columns: Sequence[str],
        storage_options: dict[str, Any] | None = None,
        buffer_rows: int = 65_536,
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"rejects format {format!r} is not supported; use one of {', '.join(FORMATS)}")
        self.path = path
        self.format = format
        self.source_columns = tuple(source_columns)
        self.schema = rejects_schema(self.source_columns)
        self._buffer_rows = buffer_rows
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._count = 0
        self._closed = False
        fs, fs_path = fsspec.core.url_to_fs(path, **(storage_options or {}))
        parent = posixpath.dirname(fs_path.rstrip("/"))
        if parent:
            fs.makedirs(parent, exist_ok=True)
        self._file = open_private(fs, fs_path)
        try:
            if format == "parquet":
                self._writer: pq.ParquetWriter | pa_csv.CSVWriter = pq.ParquetWriter(
                    self._file, self.schema, compression="zstd"
                )
            else:
                self._writer = pa_csv.CSVWriter(self._file, self.schema)
        except BaseException:
            self._file.close()
            raise

    @property
    def count(self) -> int:
        """Records written so far (rejected rows and field warnings; buffered ones included)."""
        return self._count

    def write(self, table: pa.Table) -> None:
        """Append a table built by :func:`make_rejects_table` for the same source columns."""
        if self._closed:
            raise ValueError(f"rejects file {self.path} is already closed")
        if table.num_rows == 0:
            return
        if not table.schema.equals(self.schema):
            raise ValueError(
                f"rejects table schema {table.schema.names} does not match the file's {self.schema.names}"
            )
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._count += table.num_rows
        if self._pending_rows >= self._buffer_rows:
            self._flush()

    def add(
        self,
        rows: Sequence[int] | np.ndarray,
        reason: str,
        details: Sequence[str] | pa.Array,
        values: pa.Table | None = None,
    ) -> None:
        """Record rows rejected later (e.g. by Omnisend); source values may be unknown (null) by then."""
        self.write(make_rejects_table(rows, reason, details, values, self.source_columns))

    def close(self) -> int:
        """Flush, finish the file (footer/header) and return the number of rejected rows. Idempotent."""
        if not self._closed:
            self._closed = True
            try:
                self._flush()
                self._writer.close()
            finally:
                self._file.close()
        return self._count

    def _flush(self) -> None:
        if self._pending:
            table = pa.concat_tables(self._pending)
            self._writer.write_table(neutralise_formulas(table) if self.format == "csv" else table)
            self._pending.clear()
            self._pending_rows = 0

    def __enter__(self) -> RejectsWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
