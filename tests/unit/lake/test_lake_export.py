"""ResolvedExport travels through XCom and trigger events as plain JSON."""

from __future__ import annotations

import json

import pytest

from airflow_provider_omnisend.lake import CsvOptions, ResolvedExport


def test_round_trips_through_json():
    export = ResolvedExport(
        source="abfs://lake/CustomerInsights_1/Export", format="cdm",
        export_id="cdm:Customer:2026/01/15/0300",
        files=("abfs://lake/a.csv", "abfs://lake/b.csv"), columns=("Email", "Name"), entity="Customer",
        csv=CsvOptions(header=False, delimiter=";", quotechar=None), refresh_time="2026-01-15T03:00:00Z",
    )
    restored = ResolvedExport.from_dict(json.loads(json.dumps(export.to_dict())))
    assert restored == export
    delta = ResolvedExport(source="/t", format="delta", export_id="delta:3", files=(), columns=("e",),
                           delta_version=3)
    assert ResolvedExport.from_dict(json.loads(json.dumps(delta.to_dict()))) == delta


def test_from_dict_explains_what_is_missing():
    with pytest.raises(ValueError, match=r"keys \['export_id', 'files', 'columns'\] are missing"):
        ResolvedExport.from_dict({"source": "x", "format": "csv"})


def test_invalid_values_are_rejected():
    with pytest.raises(ValueError, match="format must be one of"):
        ResolvedExport(source="x", format="xlsx", export_id="1", files=(), columns=())
    with pytest.raises(ValueError, match="one character"):
        CsvOptions(header=True, delimiter=";;")
