"""The omnisend://<brand>/<segment> Asset: URI scheme registered with Airflow, brand, event extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk import Asset

from airflow_provider_omnisend.api.errors import OmnisendConfigError
from airflow_provider_omnisend.assets import (
    EVENT_FIELDS,
    check_brand,
    convert_asset_to_openlineage,
    event_extra,
    omnisend_segment_asset,
    sanitize_uri,
    segment_asset_uri,
    segment_of,
)
from airflow_provider_omnisend.export.engine import ExportSummary
from airflow_provider_omnisend.hooks.omnisend import OmnisendConnSettings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_segment_uri_is_one_encoded_path_component_under_the_brand():
    uri = segment_asset_uri("Contoso-Shop", "VIP customers/EU")
    assert uri == "omnisend://contoso-shop/VIP%20customers%2FEU"
    assert segment_of(uri) == ("contoso-shop", "VIP customers/EU")
    asset = omnisend_segment_asset("contoso-shop", "VIP customers/EU")
    assert asset.uri == uri and asset.name == uri  # what a downstream DAG writes is the same Asset


def test_airflow_checks_omnisend_uris_with_the_provider_handler():
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    runtime = ProvidersManagerTaskRuntime()
    assert runtime.asset_uri_handlers["omnisend"] is sanitize_uri
    assert runtime.asset_to_openlineage_converters["omnisend"] is convert_asset_to_openlineage
    assert Asset("omnisend://Contoso-Shop/VIP").uri == "omnisend://contoso-shop/VIP"
    for bad in ("omnisend://contoso-shop", "omnisend://contoso-shop/a/b", "omnisend://shop/a?x=1",
                "omnisend://-shop/a", "omnisend://shop:80/a"):
        with pytest.raises(ValueError, match="omnisend"):
            Asset(bad)


@pytest.mark.parametrize("brand", ["", "  ", "-shop", "shop!", "key:abc", "a" * 101, None])
def test_brand_must_be_a_plain_name(brand):
    with pytest.raises(ValueError, match="never put a key or secret there"):
        check_brand(brand)


def _settings(conn_id: str, **extra) -> OmnisendConnSettings:
    conn = SimpleNamespace(conn_id=conn_id, host="https://api.omnisend.com/api", extra_dejson=extra)
    return OmnisendConnSettings.from_connection(conn)


def test_brand_comes_from_the_connection_extra_else_its_id():
    assert _settings("omnisend_default", brand="Contoso-Shop").brand == "contoso-shop"
    assert _settings("Omnisend Default").brand == "omnisend-default"
    with pytest.raises(OmnisendConfigError, match="Omnisend connection 'x': brand"):
        _settings("x", brand="not a name")


def test_event_extra_holds_counts_and_ids_only():
    summary = ExportSummary(segment="VIP", rows_read=5, valid=4, rejected=1, sent=4, batches=1,
                            rejects_path="/runs/r/rejects.parquet", sample_path="/runs/r/sample.json",
                            batch_ids=["b1"], reasons={"invalid_email": 1}).to_dict()
    extra = event_extra({**summary, "export_id": "cdm:VIP:2026/01/14/0300"})
    assert set(extra) <= set(EVENT_FIELDS)
    assert extra["rows_read"] == 5 and extra["sent"] == 4 and extra["export_id"] == "cdm:VIP:2026/01/14/0300"
    assert not {"rejects_path", "sample_path", "batch_ids", "reasons"} & set(extra)


def test_without_openlineage_nothing_breaks():
    """Import the operator and the lineage module and parse the example DAG with OpenLineage's client
    and the provider's extractor API made unimportable (as when the provider is not installed)."""
    code = """
import importlib.abc, runpy, sys
BLOCKED = ("openlineage", "airflow.providers.openlineage.extractors",
           "airflow.providers.common.compat.openlineage")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(BLOCKED):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
import airflow_provider_omnisend.operators.export, airflow_provider_omnisend.lineage
runpy.run_path("dags/omnisend_segment_export.py")
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
