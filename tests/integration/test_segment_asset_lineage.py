"""The export operator's outputs for downstream DAGs (#16 item 5), run against the emulator: the segment
Asset's event through an AssetAlias outlet (Airflow's own outlet-event accessors), the counts on an
outlet that is the Asset itself, and OpenLineage facets with row counts (the provider installed).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors

from airflow_provider_omnisend.assets import omnisend_segment_asset
from airflow_provider_omnisend.operators.export import OmnisendExportSegmentOperator
from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

COLUMNS = ("CustomerId", "Email", "FirstName")
ROWS = [("1", "ann@example.com", "Ann"), ("2", "bob@example.com", "Bob"), ("3", "not-an-email", "X")]
ALIAS = AssetAlias("omnisend_segment_exports")
BRAND = "contoso-shop"


def _run(conn_id: str, tmp_path: Path,
         **kwargs: Any) -> tuple[OmnisendExportSegmentOperator, OutletEventAccessors]:
    folder = write_cdm_export(tmp_path / "lake", entity="VIP", columns=COLUMNS, rows=ROWS)
    outlets = [ALIAS, omnisend_segment_asset(BRAND, "VIP")]
    op = OmnisendExportSegmentOperator(
        task_id="export", source=str(folder), segment="VIP", omnisend_conn_id=conn_id, outlets=outlets,
        mapping={"email": "Email", "firstName": "FirstName"}, state_path=str(tmp_path / "state"),
        rejects_path=str(tmp_path / "rejects.parquet"), poll_interval=0.05, max_reject_ratio=0.5, **kwargs)
    events = OutletEventAccessors()
    ti = SimpleNamespace(task_id="export", map_index=-1, xcom_push=lambda key, value: None)
    op.execute({"dag": SimpleNamespace(dag_id="omnisend_lineage"), "ti": ti, "run_id": "manual__1",
                "outlet_events": events})
    return op, events


def test_a_successful_export_emits_the_segment_asset_with_its_counts(emulator, omnisend_conn, tmp_path):
    conn_id = omnisend_conn(brand=BRAND)
    op, events = _run(conn_id, tmp_path)

    (event,) = events[ALIAS].asset_alias_events
    assert event.dest_asset_key.uri == f"omnisend://{BRAND}/VIP"
    assert event.extra["rows_read"] == 3 and event.extra["rejected"] == 1 and event.extra["sent"] == 2
    assert event.extra["export_id"].startswith("cdm:VIP:") and event.extra["segment"] == "VIP"
    assert "ann@example.com" not in str(event.extra)
    assert events[omnisend_segment_asset(BRAND, "VIP")].extra == event.extra  # a declared Asset outlet

    lineage = op.get_openlineage_facets_on_complete(None)
    (source,) = lineage.inputs
    assert source.namespace == "file" and source.name.endswith("/OmnisendExport/VIP")
    assert source.inputFacets["inputStatistics"].rowCount == 3
    assert source.inputFacets["inputStatistics"].fileCount == 2
    (segment,) = lineage.outputs
    assert (segment.namespace, segment.name) == (f"omnisend://{BRAND}", "VIP")
    assert segment.outputFacets["outputStatistics"].rowCount == 2
    # the same names as the Asset's own OpenLineage conversion (the provider's registered converter)
    from airflow_provider_omnisend.assets import convert_asset_to_openlineage
    dataset = convert_asset_to_openlineage(omnisend_segment_asset(BRAND, "VIP"))
    assert (dataset.namespace, dataset.name) == (segment.namespace, segment.name)


def test_a_dry_run_emits_no_segment_event_and_no_lineage_output(emulator, omnisend_conn, tmp_path):
    op, events = _run(omnisend_conn(brand=BRAND), tmp_path, dry_run=True)
    assert events[ALIAS].asset_alias_events == []
    assert events[omnisend_segment_asset(BRAND, "VIP")].extra["dry_run"] is True
    lineage = op.get_openlineage_facets_on_complete(None)
    assert lineage.outputs == [] and lineage.inputs[0].inputFacets["inputStatistics"].rowCount == 3


def test_the_brand_defaults_to_the_connection_id(emulator, omnisend_conn, tmp_path):
    _, events = _run(omnisend_conn(), tmp_path)
    (event,) = events[ALIAS].asset_alias_events
    assert event.dest_asset_key.uri == "omnisend://omnisend_test/VIP"
