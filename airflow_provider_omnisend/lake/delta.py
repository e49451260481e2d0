"""Delta tables (optional extra ``delta``): the export is one table version, read as of that version.

Pinning the version means the operator reads exactly what the sensor saw even if the table is written
again in between. The Delta log is read by ``deltalake`` itself (Rust object_store), so remote tables
need ``storage_options`` in deltalake's form (e.g. ``account_name``/``account_key`` for Azure).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_omnisend.lake.batches import as_strings, check_columns
from airflow_provider_omnisend.lake.errors import (
    ExportNotReady,
    LakeError,
    MissingExtra,
    PartitionUnreadable,
    safe_reason,
)
from airflow_provider_omnisend.lake.export import ResolvedExport, arrow_property_type
from airflow_provider_omnisend.lake.fs import Location

if TYPE_CHECKING:
    from deltalake import DeltaTable

DELTA_LOG = "_delta_log"


def _table_uri(loc: Location) -> str:
    return loc.path if loc.is_local else loc.url


def open_table(uri: str, *, version: int | None = None,
               storage_options: Mapping[str, Any] | None = None) -> DeltaTable:
    """Open a Delta table, turning deltalake's errors into lake errors."""
    try:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError
    except ImportError as err:
        raise MissingExtra(extra="delta", needed_for="Delta tables", module="deltalake") from err
    options = {str(k): str(v) for k, v in (storage_options or {}).items()}
    try:
        return DeltaTable(uri, version=version, storage_options=options or None)
    except TableNotFoundError as err:
        raise ExportNotReady(uri, reason="the _delta_log has no committed version yet") from err
    except Exception as err:
        what = f"version {version} of Delta table" if version is not None else "Delta table"
        raise LakeError(
            f"Could not open {what} {uri!r}: {safe_reason(err)}. Check storage_options (deltalake's "
            "names, e.g. account_name/account_key) and, for an old version, that it was not vacuumed."
        ) from err


def resolve_delta(source: str, loc: Location, *,
                  storage_options: Mapping[str, Any] | None = None) -> ResolvedExport:
    uri = _table_uri(loc)
    table = open_table(uri, storage_options=storage_options)
    version = int(table.version())
    schema = pa.schema(table.schema())  # the Arrow C schema deltalake exports
    return ResolvedExport(
        source=source, format="delta", export_id=f"delta:{version}", files=(), columns=tuple(schema.names),
        delta_version=version, refresh_time=_commit_time(table),
        column_types=tuple((f.name, kind) for f in schema if (kind := arrow_property_type(f.type))),
    )


def _commit_time(table: DeltaTable) -> str | None:
    try:
        history = table.history(limit=1)
    except Exception:  # history is informative only; a table without readable history still exports
        return None
    stamp = history[0].get("timestamp") if history else None
    if not isinstance(stamp, int):
        return None
    return pa.scalar(stamp, pa.timestamp("ms", tz="UTC")).as_py().isoformat().replace("+00:00", "Z")


def iter_delta(uri: str, *, version: int | None, columns: Sequence[str], batch_size: int,
               storage_options: Mapping[str, Any] | None = None) -> Iterator[pa.RecordBatch]:
    table = open_table(uri, version=version, storage_options=storage_options)
    where = f"Delta table {uri!r} (version {version})"
    try:
        dataset = table.to_pyarrow_dataset()
    except Exception as err:
        raise LakeError(
            f"{where} cannot be read through pyarrow: {safe_reason(err)}. Tables using deletion vectors "
            "or column mapping need those features disabled (or an export to Parquet)."
        ) from err
    cols = check_columns(columns, dataset.schema.names, where=where)
    try:
        scanner = dataset.scanner(columns=cols, batch_size=batch_size, batch_readahead=2,
                                  fragment_readahead=1)
        for batch in scanner.to_batches():
            yield as_strings(batch, cols, where=where)
    except LakeError:
        raise
    except (OSError, pa.ArrowException) as err:
        raise PartitionUnreadable(where, reason=safe_reason(err)) from err


def count_delta_rows(uri: str, *, version: int | None,
                     storage_options: Mapping[str, Any] | None = None) -> int | None:
    """Rows from the add actions' statistics; None when a file has no ``num_records``."""
    table = open_table(uri, version=version, storage_options=storage_options)
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return 0
    if "num_records" not in actions.column_names or actions.column("num_records").null_count:
        return None
    return int(pc.sum(actions.column("num_records")).as_py())
