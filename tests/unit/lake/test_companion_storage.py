"""Which credentials the export uses for its state and rejects: the lake connection's only on the
lake's own kind of store."""

from __future__ import annotations

import json

import pytest

from airflow_provider_omnisend.hooks.lake import companion_storage_options

ACCOUNT = {"account_name": "contosolake", "account_key": "a2V5"}


@pytest.fixture
def lake_conn(monkeypatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_LAKE_ADLS", json.dumps({"conn_type": "generic", "extra": ACCOUNT}))
    return "lake_adls"


@pytest.mark.parametrize("state", ["abfs://ci/omnisend-state", "az://ci/omnisend-state",
                                   "abfss://ci@contosolake.dfs.core.windows.net/omnisend-state"])
def test_state_on_the_lakes_store_uses_the_lake_connection(lake_conn, state):
    options = companion_storage_options(state, lake_source="abfs://ci/CustomerInsights/OmnisendExport",
                                        lake_conn_id=lake_conn)
    assert options is not None
    assert {k: options[k] for k in ACCOUNT} == ACCOUNT


@pytest.mark.parametrize("state", ["/var/lib/airflow/omnisend_state", "file:///tmp/state",
                                   "s3://bucket/omnisend-state", "gs://bucket/state"])
def test_local_or_other_stores_get_no_lake_credentials(lake_conn, state):
    assert companion_storage_options(state, lake_source="abfs://ci/Export", lake_conn_id=lake_conn) is None


def test_no_connection_no_options():
    options = companion_storage_options("abfs://ci/state", lake_source="abfs://ci/Export", lake_conn_id=None)
    assert options is None
