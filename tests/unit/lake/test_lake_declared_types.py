"""Declared column types (CDM dataType/dataFormat, Parquet schema) reach ResolvedExport.column_types."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_omnisend.lake import resolve_export
from airflow_provider_omnisend.lake.export import ResolvedExport, arrow_property_type, cdm_property_type
from airflow_provider_omnisend.testing.lake_fixtures import write_manifest_export


def test_cdm_and_arrow_type_names() -> None:
    assert [cdm_property_type(t) for t in ("int64", "Double", "decimal", "Boolean", "dateTime",
                                           "DateTimeOffset", "string", "Unicode", None)] == [
        "number", "number", "number", "boolean", "date", "date", None, None, None]
    assert [arrow_property_type(t) for t in (pa.int32(), pa.float64(), pa.decimal128(10, 2), pa.bool_(),
                                             pa.date32(), pa.timestamp("us"), pa.string())] == [
        "number", "number", "number", "boolean", "date", "date", None]


def test_parquet_schema_types(tmp_path: Path) -> None:
    pq.write_table(pa.table({"E": ["a@example.com"], "LTV": [12.5], "VIP": [True]}), tmp_path / "p.parquet")
    export = resolve_export(str(tmp_path), format="parquet")
    assert export.column_types == (("LTV", "number"), ("VIP", "boolean"))
    assert ResolvedExport.from_dict(json.loads(json.dumps(export.to_dict()))) == export


def test_manifest_data_format(tmp_path: Path) -> None:
    folder = write_manifest_export(tmp_path, entity="Customers", columns=["E", "Orders"],
                                   rows=[["a@example.com", "3"]])
    definition = next(folder.rglob("Customers.cdm.json"))
    doc = json.loads(definition.read_text())
    doc["definitions"][0]["hasAttributes"][1]["dataFormat"] = "Int64"
    definition.write_text(json.dumps(doc))
    export = resolve_export(str(folder), segment="Customers")
    assert export.column_types == (("Orders", "number"),)
