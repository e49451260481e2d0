"""Public entry points: find the newest complete export, then stream it as text record batches.

``resolve_export`` is cheap (listings and a manifest read) and is what the sensor polls;
``iter_batches`` streams only the requested columns in bounded batches for the export operator.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from airflow_provider_omnisend.lake import cdm, delta, files
from airflow_provider_omnisend.lake.batches import check_columns, rebatch
from airflow_provider_omnisend.lake.errors import ExportNotReady, ManifestNotFound, UnsupportedFormat
from airflow_provider_omnisend.lake.export import FORMATS, CsvOptions, ResolvedExport
from airflow_provider_omnisend.lake.fs import (
    Location,
    file_location,
    find_files,
    info,
    list_dir,
    resolve_location,
)

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 65_536
Options = Mapping[str, Any] | None


def resolve_export(
    source: Any,
    *,
    format: str = "auto",
    entity: str | None = None,
    segment: str | None = None,
    storage_options: Options = None,
    filesystem: AbstractFileSystem | None = None,
    csv_options: CsvOptions | None = None,
) -> ResolvedExport:
    """Find the newest complete export at ``source``.

    ``source``: a folder or file URL (local, file://, abfs://, az://, s3://, gs://) or an object with
    ``.fs``/``.path`` (``airflow.sdk.ObjectStoragePath``). ``format``: "auto" detects model.json /
    *.manifest.cdm.json (cdm), ``_delta_log`` (delta), *.parquet, *.csv. For CDM, ``entity`` names the
    entity; else the one named like ``segment``; else the only one. ``csv_options`` overrides the sniffed
    header/delimiter of plain CSV sources. Raises ExportNotReady when no complete export exists yet.
    """
    loc = resolve_location(source, storage_options=storage_options, filesystem=filesystem)
    given = source if isinstance(source, str) else loc.url
    fmt = (format or "auto").strip().lower()
    if fmt not in ("auto", *FORMATS):
        raise UnsupportedFormat(
            f"Unknown source format {format!r} for {given!r}; use one of auto, {', '.join(FORMATS)}."
        )
    entry = info(loc)
    is_dir = entry.get("type") == "directory"
    listing: list[dict[str, Any]] | None = None
    if fmt == "auto":
        fmt, listing = _detect(given, loc, is_dir=is_dir)
    if fmt == "cdm":
        manifests = [loc] if not is_dir else cdm.find_manifests(loc)
        return cdm.resolve_cdm(given, manifests, entity=entity, segment=segment)
    if fmt == "delta":
        return delta.resolve_delta(given, loc, storage_options=storage_options)
    if fmt == "parquet":
        return files.resolve_parquet(given, loc, entry, listing=listing)
    return files.resolve_csv(given, loc, entry, csv_options, listing=listing)


#: ``<Table>/<YYYY>/<MM>/<DD>/<HHMM>/<file>.csv``: where Customer Insights writes CDM partitions.
_CDM_PARTITION = re.compile(r"^[^/]+/\d{4}/\d{2}/\d{2}/\d{4}/[^/]+\.csv$")


def _detect(given: str, loc: Location, *, is_dir: bool) -> tuple[str, list[dict[str, Any]] | None]:
    """Guess the format from the names at ``loc`` (and the recursive listing it had to make, if any)."""
    if not is_dir:
        name = loc.name.lower()
        if cdm.is_manifest_name(name):
            return "cdm", None
        if name.endswith(files.PARQUET_SUFFIXES):
            return "parquet", None
        if name.endswith(files.CSV_SUFFIXES):
            return "csv", None
        raise UnsupportedFormat(
            f"Cannot tell the format of {given!r} from its name; pass source_format= one of "
            f"{', '.join(FORMATS)}."
        )
    names = {posixpath.basename(e["name"].rstrip("/")) for e in list_dir(loc)}
    if any(cdm.is_manifest_name(n) for n in names):
        return "cdm", None
    if delta.DELTA_LOG in names:
        return "delta", None
    listing = find_files(loc)
    base = loc.path.rstrip("/") + "/"
    visible = [e["name"][len(base):].lower() for e in listing if not files.is_hidden(e["name"][len(base):])]
    has_parquet = any(n.endswith(files.PARQUET_SUFFIXES) for n in visible)
    has_csv = any(n.endswith(files.CSV_SUFFIXES) for n in visible)
    if has_parquet and has_csv:
        raise UnsupportedFormat(
            f"{given!r} holds both Parquet and CSV files; pass source_format='parquet' or 'csv'."
        )
    if has_parquet:
        return "parquet", listing
    if has_csv and any(_CDM_PARTITION.match(n) for n in visible):
        # Header-less CDM partitions without their manifest: reading them as CSV would take the first
        # customer row for a header.
        raise ManifestNotFound(given, found=sorted(names))
    if has_csv:
        return "csv", listing
    raise ExportNotReady(
        given,
        reason=(
            "the folder has no model.json, *.manifest.cdm.json, _delta_log, *.parquet or *.csv yet "
            f"(it holds {len(visible)} other file(s))"
        ),
    )


def _describe(export: ResolvedExport) -> str:
    entity = f"entity {export.entity!r} of " if export.entity else ""
    return f"{entity}the {export.format} export {export.source!r}"


def iter_batches(
    export: ResolvedExport,
    *,
    columns: Sequence[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    storage_options: Options = None,
    filesystem: AbstractFileSystem | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream ``columns`` of ``export`` as batches of at most ``batch_size`` rows, all ``pa.string()``
    (a list column ``list<string>``, see batches.py).

    Columns are checked now (ColumnNotFound lists the available ones); data is read lazily, one file
    and one block at a time. ``filesystem`` is the authenticated fsspec filesystem of an Airflow
    connection (Delta tables use ``storage_options`` instead).
    """
    cols = check_columns(columns, export.columns, where=_describe(export))
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    stream = _stream(export, cols, batch_size=batch_size, storage_options=storage_options,
                     filesystem=filesystem)
    return _counted(rebatch(stream, batch_size), export)


def _counted(batches: Iterator[pa.RecordBatch], export: ResolvedExport) -> Iterator[pa.RecordBatch]:
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        yield batch
    parts = f" from {len(export.files)} file(s)" if export.files else ""
    if rows == 0:
        log.info("Read 0 rows%s of %s (export %s): the export is empty.", parts, _describe(export),
                 export.export_id)
    else:
        log.info("Read %d rows%s of %s (export %s).", rows, parts, _describe(export), export.export_id)


def _stream(
    export: ResolvedExport,
    cols: Sequence[str],
    *,
    batch_size: int,
    storage_options: Options,
    filesystem: AbstractFileSystem | None,
) -> Iterator[pa.RecordBatch]:
    if export.format == "delta":
        yield from delta.iter_delta(
            _delta_uri(export, storage_options=storage_options, filesystem=filesystem),
            version=export.delta_version, columns=cols, batch_size=batch_size,
            storage_options=storage_options,
        )
        return
    opened = [(url, *file_location(url, storage_options=storage_options, filesystem=filesystem))
              for url in export.files]
    if not opened:
        return
    if export.csv is None:  # Parquet files, or a CDM entity with Parquet partitions
        base = None
        if export.format == "parquet":
            base = file_location(export.source, storage_options=storage_options, filesystem=filesystem)[1]
        yield from files.iter_parquet_files([(url, path) for url, _, path in opened], opened[0][1],
                                            base=base, columns=cols, batch_size=batch_size)
        return
    manifest = f"the manifest of entity {export.entity!r}" if export.format == "cdm" else "the source"
    names = export.columns if export.format == "cdm" else None
    for url, fs, path in opened:
        yield from files.iter_csv_file(url, fs, path, options=export.csv, columns=cols, names=names,
                                       manifest=manifest)


def _delta_uri(
    export: ResolvedExport, *, storage_options: Options, filesystem: AbstractFileSystem | None
) -> str:
    fs, path = file_location(export.source, storage_options=storage_options, filesystem=filesystem)
    return path if isinstance(fs, LocalFileSystem) else export.source


def count_rows(
    export: ResolvedExport,
    *,
    storage_options: Options = None,
    filesystem: AbstractFileSystem | None = None,
) -> int | None:
    """The export's row count when metadata has it (Parquet footers, Delta statistics), else None."""
    if export.format == "delta":
        return delta.count_delta_rows(
            _delta_uri(export, storage_options=storage_options, filesystem=filesystem),
            version=export.delta_version, storage_options=storage_options,
        )
    if export.csv is not None:
        return None
    if not export.files:
        return 0
    opened = [(url, *file_location(url, storage_options=storage_options, filesystem=filesystem))
              for url in export.files]
    return files.count_parquet_rows([(url, path) for url, _, path in opened], opened[0][1])
