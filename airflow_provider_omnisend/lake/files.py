"""Plain file exports (Parquet and CSV) and the per-file streaming readers the CDM reader reuses.

Files are read one at a time, in bounded blocks, projected onto the requested columns: memory does not
grow with the size of the export. A failing file is reported by name.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from airflow_provider_omnisend.lake.batches import as_strings, check_columns
from airflow_provider_omnisend.lake.errors import (
    ColumnNotFound,
    CsvLayoutMismatch,
    ExportNotReady,
    LakeError,
    PartitionUnreadable,
    safe_reason,
)
from airflow_provider_omnisend.lake.export import CsvOptions, ResolvedExport, arrow_property_type
from airflow_provider_omnisend.lake.fs import Location, find_files, modified_time

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".csv.bz2", ".csv.zst")
_CSV_BLOCK_SIZE = 1 << 20
_SNIFF_BYTES = 64 * 1024
_DELIMITER_CANDIDATES = (",", ";", "\t", "|")
_COLUMN_COUNT = re.compile(r"Expected (\d+) columns?, got (\d+)")


def is_hidden(relative_path: str) -> bool:
    """Spark/Hadoop side files (_SUCCESS, _committed_*, .crc, _delta_log) are not data."""
    return any(part.startswith(("_", ".")) for part in relative_path.split("/"))


def data_files(
    root: Location, entry: Mapping[str, Any], suffixes: Sequence[str], *,
    listing: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The data files of a file or folder source: one file, or every visible file with a suffix below it.

    ``listing`` is a recursive listing of ``root`` already made (format detection), to avoid a second.
    """
    if entry.get("type") != "directory":
        return [dict(entry, name=root.path)]
    base = root.path.rstrip("/")
    out = []
    for item in find_files(root) if listing is None else listing:
        rel = item["name"][len(base) + 1:] if item["name"].startswith(base + "/") else item["name"]
        if not is_hidden(rel) and rel.lower().endswith(tuple(suffixes)):
            out.append(dict(item))
    return out


def fingerprint(root: Location, entries: Sequence[Mapping[str, Any]]) -> str:
    """A stable id for a set of files: changes when any file is added, removed, resized or rewritten."""
    digest = hashlib.sha256()
    base = root.path.rstrip("/")
    for item in entries:
        rel = item["name"][len(base):]
        digest.update(f"{rel}\0{item.get('size')}\0{modified_time(item)}\n".encode())
    return digest.hexdigest()[:20]


# --------------------------------------------------------------------------------------------- Parquet


def _arrow_fs(fs: AbstractFileSystem) -> pafs.FileSystem:
    """pyarrow's native local filesystem when possible (faster), else a wrapper around the fsspec one."""
    if isinstance(fs, LocalFileSystem):
        return pafs.LocalFileSystem()
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def hive_keys(relative_paths: Sequence[str]) -> list[str]:
    """Hive partition keys (``key=value`` folder names) in first-seen order."""
    keys: list[str] = []
    for rel in relative_paths:
        for part in rel.split("/")[:-1]:
            key = part.split("=", 1)[0] if "=" in part else None
            if key and key not in keys:
                keys.append(key)
    return keys


def parquet_dataset(fs: AbstractFileSystem, paths: Sequence[str], base: str | None) -> ds.Dataset:
    """A dataset over exactly ``paths``; hive ``key=value`` folders below ``base`` become string columns."""
    partitioning = None
    if base is not None:
        rel = [p[len(base.rstrip("/")) + 1:] for p in paths]
        keys = hive_keys(rel)
        if keys:
            schema = pa.schema([pa.field(k, pa.string()) for k in keys])
            partitioning = ds.partitioning(schema, flavor="hive")
    try:
        return ds.dataset(
            list(paths), filesystem=_arrow_fs(fs), format="parquet", partitioning=partitioning,
            partition_base_dir=base.rstrip("/") if partitioning is not None and base else None,
        )
    except (OSError, pa.ArrowException) as err:
        raise PartitionUnreadable(paths[0] if paths else str(base), reason=safe_reason(err)) from err


def resolve_parquet(source: str, root: Location, entry: Mapping[str, Any], *,
                    listing: Sequence[Mapping[str, Any]] | None = None) -> ResolvedExport:
    entries = data_files(root, entry, PARQUET_SUFFIXES, listing=listing)
    if not entries:
        raise ExportNotReady(source, reason="the folder has no *.parquet files yet")
    base = root.path if entry.get("type") == "directory" else None
    dataset = parquet_dataset(root.fs, [e["name"] for e in entries], base)
    return ResolvedExport(
        source=source, format="parquet", export_id=f"parquet:{fingerprint(root, entries)}",
        files=tuple(root.url_for(e["name"]) for e in entries), columns=tuple(dataset.schema.names),
        column_types=tuple((f.name, kind) for f in dataset.schema if (kind := arrow_property_type(f.type))),
    )


def iter_parquet_files(
    files: Sequence[tuple[str, str]],
    fs: AbstractFileSystem,
    *,
    base: str | None,
    columns: Sequence[str],
    batch_size: int,
) -> Iterator[pa.RecordBatch]:
    """Stream ``columns`` of each ``(url, native path)`` file, one file and one batch at a time.

    Each file is read with its own physical schema (plus hive keys as strings), so files that store a
    column with different types (int in one, string in another) still read.
    """
    if not files:
        return
    dataset = parquet_dataset(fs, [path for _, path in files], base)
    urls = {path: url for url, path in files}
    for fragment in dataset.get_fragments():
        url = urls.get(fragment.path, fragment.path)
        where = f"Parquet file {url!r}"
        try:
            schema = fragment.physical_schema
            for name in ds.get_partition_keys(fragment.partition_expression):
                schema = schema.append(pa.field(name, pa.string()))
            check_columns(columns, schema.names, where=where)
            for batch in fragment.to_batches(schema=schema, columns=list(columns), batch_size=batch_size,
                                             batch_readahead=2, fragment_readahead=1):
                yield as_strings(batch, columns, where=where)
        except LakeError:
            raise
        except (OSError, pa.ArrowException) as err:
            raise PartitionUnreadable(url, reason=safe_reason(err)) from err


def count_parquet_rows(files: Sequence[tuple[str, str]], fs: AbstractFileSystem) -> int:
    """Total rows from the Parquet footers (no data pages are read)."""
    dataset = parquet_dataset(fs, [path for _, path in files], None)
    try:
        return int(dataset.count_rows())
    except (OSError, pa.ArrowException) as err:
        raise PartitionUnreadable(files[0][0], reason=safe_reason(err)) from err


# ------------------------------------------------------------------------------------------------- CSV


def _arrow_encoding(encoding: str) -> str:
    enc = encoding.strip().lower().replace("_", "-")
    # pyarrow decodes UTF-8 natively and skips a BOM itself; other encodings are transcoded in Python.
    return "utf8" if enc in ("utf-8", "utf8", "utf-8-sig") else enc


def sniff_csv(
    fs: AbstractFileSystem, path: str, *, url: str, encoding: str = "utf-8"
) -> tuple[list[str], str]:
    """The header names and the delimiter of a CSV file with a header, from its first bytes."""
    try:
        with fs.open(path, "rb", compression="infer") as fh:
            head = fh.read(_SNIFF_BYTES)
    except (OSError, ValueError) as err:
        raise PartitionUnreadable(url, reason=safe_reason(err)) from err
    py_enc = "utf-8-sig" if _arrow_encoding(encoding) == "utf8" else encoding
    text = head.decode(py_enc, errors="replace")
    first_line = text.splitlines()[0] if text else ""
    if not first_line.strip():
        raise PartitionUnreadable(url, reason="the file is empty or its first line is blank",
                                  hint="A CSV source needs a header row naming the columns.")
    delimiter = max(_DELIMITER_CANDIDATES, key=first_line.count)
    header = [h.strip() for h in next(csv.reader(io.StringIO(text), delimiter=delimiter))]
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        names = ", ".join(map(repr, twice))
        raise PartitionUnreadable(url, reason=f"the header names {names} more than once",
                                  hint="Which column is meant is ambiguous: rename or drop the duplicates.")
    return header, delimiter


def resolve_csv(source: str, root: Location, entry: Mapping[str, Any], options: CsvOptions | None, *,
                listing: Sequence[Mapping[str, Any]] | None = None) -> ResolvedExport:
    entries = data_files(root, entry, CSV_SUFFIXES, listing=listing)
    if not entries:
        raise ExportNotReady(source, reason="the folder has no *.csv files yet")
    first = entries[0]["name"]
    header, delimiter = sniff_csv(root.fs, first, url=root.url_for(first),
                                  encoding=options.encoding if options else "utf-8")
    if options is None:
        options = CsvOptions(header=True, delimiter=delimiter)
    return ResolvedExport(
        source=source, format="csv", export_id=f"csv:{fingerprint(root, entries)}",
        files=tuple(root.url_for(e["name"]) for e in entries), columns=tuple(header), csv=options,
    )


def iter_csv_file(
    url: str,
    fs: AbstractFileSystem,
    path: str,
    *,
    options: CsvOptions,
    columns: Sequence[str],
    names: Sequence[str] | None = None,
    manifest: str = "the manifest",
) -> Iterator[pa.RecordBatch]:
    """Stream ``columns`` of one CSV file as strings.

    ``names`` are the column names of a header-less file (CDM attributes, in order). Empty fields are
    nulls. Quoted fields may hold delimiters, doubled quotes and newlines.
    """
    if names is None and not options.header:
        raise ValueError("a header-less CSV needs `names`")
    all_names = list(names) if names is not None and not options.header else None
    if all_names is not None:
        check_columns(columns, all_names, where=f"{manifest} (partition {url!r})")
    read_options = pacsv.ReadOptions(
        column_names=all_names, block_size=_CSV_BLOCK_SIZE, encoding=_arrow_encoding(options.encoding)
    )
    parse_options = pacsv.ParseOptions(
        delimiter=options.delimiter,
        quote_char=options.quotechar if options.quotechar else False,
        double_quote=True,
        newlines_in_values=options.quotechar is not None,
    )
    convert_options = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in columns},
        include_columns=list(columns),
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        null_values=[""],
    )
    where = f"CSV partition {url!r}"
    try:
        with fs.open(path, "rb", compression="infer") as fh:
            try:
                reader = pacsv.open_csv(fh, read_options=read_options, parse_options=parse_options,
                                        convert_options=convert_options)
            except pa.ArrowInvalid as err:
                if "Empty CSV file" in str(err):
                    return
                raise
            except pa.ArrowKeyError as err:
                raise _missing_header_columns(fs, path, url=url, read_options=read_options,
                                              parse_options=parse_options, columns=columns) from err
            for batch in reader:
                yield as_strings(batch, columns, where=where)
    except LakeError:
        raise
    except pa.ArrowInvalid as err:
        match = _COLUMN_COUNT.search(str(err))
        if match and all_names is not None:
            raise CsvLayoutMismatch(url, expected=int(match.group(1)), got=int(match.group(2)),
                                    manifest=manifest) from err
        raise PartitionUnreadable(url, reason=safe_reason(err)) from err
    except (OSError, pa.ArrowException, UnicodeDecodeError, LookupError, ValueError) as err:
        raise PartitionUnreadable(url, reason=safe_reason(err)) from err


def _missing_header_columns(
    fs: AbstractFileSystem, path: str, *, url: str, read_options: pacsv.ReadOptions,
    parse_options: pacsv.ParseOptions, columns: Sequence[str],
) -> LakeError:
    """The ColumnNotFound for a CSV whose header lacks requested columns, listing the header it has."""
    with fs.open(path, "rb", compression="infer") as fh:
        available = pacsv.open_csv(fh, read_options=read_options, parse_options=parse_options).schema.names
    missing = [c for c in columns if c not in available]
    return ColumnNotFound(missing=missing, available=available, where=f"the header of CSV file {url!r}")
