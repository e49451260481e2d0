"""Write Customer Insights-style CDM exports to a local folder (tests, the demo, benchmarks).

The layout mirrors what Dynamics 365 Customer Insights writes to ADLS Gen2:
``<root>/CustomerInsights_<instance>/<ExportName>/model.json`` with header-less CSV partitions under
``<ExportName>/<Table>/<YYYY>/<MM>/<DD>/<HHMM>/<Table>_<n>.csv`` and absolute https:// locations, so the
reader's location mapping is exercised exactly as against the real service. Data is written with
pyarrow in slices (vectorised), so millions of rows are fine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

DEFAULT_REFRESH = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)


def _as_table(columns: Sequence[str], rows: Iterable[Sequence[Any]] | pa.Table) -> pa.Table:
    if isinstance(rows, pa.Table):
        if rows.column_names != list(columns):
            rows = rows.select(list(columns))
        return rows
    data = list(rows)
    arrays = [
        pa.array([None if r[i] is None else str(r[i]) for r in data], pa.string())
        for i in range(len(columns))
    ]
    return pa.Table.from_arrays(arrays, names=list(columns))


def _when(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _write_refreshes(
    export_dir: Path,
    *,
    entity: str,
    table: pa.Table,
    partitions: int,
    refresh_times: Sequence[datetime | str],
    header: bool,
    delimiter: str,
    incomplete_last: bool,
) -> list[tuple[str, str]]:
    """Write every refresh's partitions; return (refreshTime, path relative to the export) per partition."""
    listed = []
    per_part = -(-table.num_rows // partitions) if table.num_rows else 0
    for r_index, refresh in enumerate(refresh_times):
        when = _when(refresh)
        folder = f"{entity}/{when:%Y/%m/%d/%H%M}"
        (export_dir / folder).mkdir(parents=True, exist_ok=True)
        for p in range(partitions):
            rel = f"{folder}/{entity}_{p + 1}.csv"
            listed.append((_iso(when), rel))
            if incomplete_last and r_index == len(refresh_times) - 1 and p == partitions - 1:
                continue  # listed in the manifest, not written yet: the refresh is still in progress
            part = table.slice(p * per_part, per_part) if per_part else table.slice(0, 0)
            options = pacsv.WriteOptions(include_header=header, delimiter=delimiter)
            pacsv.write_csv(part, str(export_dir / rel), write_options=options)
    return listed


def write_cdm_export(
    root: str | Path,
    *,
    entity: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]] | pa.Table,
    partitions: int = 2,
    refresh_times: Sequence[datetime | str] = (DEFAULT_REFRESH,),
    header: bool = False,
    delimiter: str = ",",
    incomplete_last: bool = False,
    instance_id: str = "00000000-0000-0000-0000-000000000001",
    export_name: str = "OmnisendExport",
    account: str = "contosolake",
    container: str = "customerinsights",
    extra_entities: Sequence[str] = (),
    settings_on: str = "partition",
    layout: str = "model.json",
    more_entities: Mapping[str, Iterable[Sequence[Any]] | pa.Table] | None = None,
) -> Path:
    """Write a CDM export below ``root`` (the container); return the export folder.

    Every refresh in ``refresh_times`` gets the same ``rows`` split into ``partitions`` files.
    ``incomplete_last`` leaves the newest refresh's last partition unwritten (listed, not yet there).
    ``layout``: "model.json" (absolute https:// locations; ``extra_entities`` adds entities with the
    same columns and no partitions; ``settings_on`` puts fileFormatSettings on the "partition", "entity"
    or "model") or "manifest" (see :func:`write_manifest_export`). ``more_entities`` writes further
    entities (segments) with their own rows into the same model.json, as one export of several segments.
    """
    table = _as_table(columns, rows)
    export_dir = Path(root) / f"CustomerInsights_{instance_id}" / export_name
    export_dir.mkdir(parents=True, exist_ok=True)
    listed = _write_refreshes(export_dir, entity=entity, table=table, partitions=partitions,
                              refresh_times=refresh_times, header=header, delimiter=delimiter,
                              incomplete_last=incomplete_last)
    if layout == "manifest":
        _write_manifest(export_dir, entity=entity, columns=columns, listed=listed, header=header,
                        delimiter=delimiter, export_name=export_name)
        return export_dir
    base_url = f"https://{account}.dfs.core.windows.net/{container}/CustomerInsights_{instance_id}/{export_name}"
    settings = {
        "$type": "CsvFormatSettings", "columnHeaders": header, "delimiter": delimiter,
        "quoteStyle": "QuoteStyle.Csv", "csvStyle": "CsvStyle.QuoteAlways", "encoding": "UTF-8",
    }
    attributes = [{"name": c, "dataType": "string"} for c in columns]

    def entity_json(name: str, listed: Sequence[tuple[str, str]]) -> dict[str, Any]:
        partitions_json = []
        for refresh_time, rel in listed:
            part: dict[str, Any] = {
                "name": rel.rsplit("/", 1)[1].removesuffix(".csv"),
                "refreshTime": refresh_time,
                "location": f"{base_url}/{rel}",
            }
            if settings_on == "partition":
                part["fileFormatSettings"] = settings
            partitions_json.append(part)
        doc: dict[str, Any] = {"$type": "LocalEntity", "name": name, "attributes": attributes,
                               "partitions": partitions_json}
        if settings_on == "entity":
            doc["fileFormatSettings"] = settings
        return doc

    entities = [entity_json(entity, listed)]
    for name, more_rows in (more_entities or {}).items():
        more_listed = _write_refreshes(export_dir, entity=name, table=_as_table(columns, more_rows),
                                       partitions=partitions, refresh_times=refresh_times, header=header,
                                       delimiter=delimiter, incomplete_last=incomplete_last)
        entities.append(entity_json(name, more_listed))
    entities += [entity_json(name, []) for name in extra_entities]
    model: dict[str, Any] = {
        "name": export_name, "description": "Customer Insights export", "version": "1.0",
        "entities": entities,
    }
    if settings_on == "model":
        model["fileFormatSettings"] = settings
    (export_dir / "model.json").write_text(json.dumps(model, indent=2), encoding="utf-8")
    return export_dir


def write_manifest_export(root: str | Path, **kwargs: Any) -> Path:
    """Write a ``default.manifest.cdm.json`` export (newer CI setups); same arguments as
    :func:`write_cdm_export`.

    Attributes go to ``<entity>.cdm.json`` (``definitions[].hasAttributes``); partitions are listed with
    locations relative to the manifest and ``is.partition.format.CSV`` trait arguments.
    """
    return write_cdm_export(root, layout="manifest", **kwargs)


def _write_manifest(
    export_dir: Path, *, entity: str, columns: Sequence[str], listed: Sequence[tuple[str, str]],
    header: bool, delimiter: str, export_name: str,
) -> None:
    definition = {
        "jsonSchemaSemanticVersion": "1.0.0",
        "imports": [{"corpusPath": "cdm:/foundations.cdm.json"}],
        "definitions": [{
            "entityName": entity,
            "hasAttributes": [{"name": c, "dataFormat": "Unicode"} for c in columns],
        }],
    }
    (export_dir / f"{entity}.cdm.json").write_text(json.dumps(definition, indent=2), encoding="utf-8")
    trait = {
        "traitReference": "is.partition.format.CSV",
        "arguments": [
            {"name": "columnHeaders", "value": "true" if header else "false"},
            {"name": "delimiter", "value": delimiter},
            {"name": "encoding", "value": "UTF-8"},
        ],
    }
    manifest = {
        "jsonSchemaSemanticVersion": "1.0.0",
        "manifestName": export_name,
        "entities": [{
            "type": "LocalEntity",
            "entityName": entity,
            "entityPath": f"{entity}.cdm.json/{entity}",
            "lastFileModifiedTime": listed[-1][0] if listed else None,
            "dataPartitions": [
                {"location": rel, "refreshTime": refresh_time, "exhibitsTraits": [trait]}
                for refresh_time, rel in listed
            ],
        }],
    }
    (export_dir / "default.manifest.cdm.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def write_manifest_of_manifests(path: str | Path, definitions: Sequence[str]) -> Path:
    """Write a ``*.manifest.cdm.json`` at ``path`` that declares no entities itself and lists
    ``definitions`` (paths relative to its folder, or absolute URLs) as its ``subManifests``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "jsonSchemaSemanticVersion": "1.0.0",
        "manifestName": path.name.removesuffix(".manifest.cdm.json"),
        "entities": [],
        "subManifests": [
            {"manifestName": d.rsplit("/", 1)[-1].removesuffix(".manifest.cdm.json"), "definition": d}
            for d in definitions
        ],
    }
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path
