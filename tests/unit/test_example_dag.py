"""The example DAG file: parsing it reads no Variable and touches no database; its tasks read their
settings when they run; its exports need no pool that someone has to create first."""

from __future__ import annotations

import logging
import os
import runpy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy.engine
from airflow.sdk import Variable
from airflow.sdk.execution_time import task_runner

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "omnisend_segment_export.py"


def parse(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """Run the DAG file as the dag-processor does (a fresh module each time), with only ``env`` set."""
    for name in [n for n in os.environ if n.startswith("OMNISEND_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(DAG_FILE))


@pytest.fixture
def touches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Variable read, message to the API server and database connection, recorded and refused."""
    seen: list[str] = []

    def refuse(what: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen.append(f"{what}{args[:2]}")
            raise RuntimeError(f"{what} at parse time")
        return call

    monkeypatch.setattr(Variable, "get", staticmethod(refuse("Variable.get")))
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", SimpleNamespace(send=refuse("comms.send")),
                        raising=False)
    monkeypatch.setattr(sqlalchemy.engine.Engine, "connect", refuse("db.connect"))
    monkeypatch.setattr(sqlalchemy.engine.Engine, "raw_connection", refuse("db.raw_connection"))
    return seen


def test_parsing_reads_no_variable_and_touches_no_database(monkeypatch, touches) -> None:
    module = parse(monkeypatch, OMNISEND_SEGMENTS='["A", "B"]', OMNISEND_STATE_PATH="/env/state")
    assert touches == []
    dag = module["dag"]
    assert {"segment.wait_for_export", "segment.export", "summarize"} <= set(dag.task_dict)
    assert dag.params["segments"] == ["A", "B"]  # parse-time settings come from the environment


def test_the_asset_schedule_is_built_from_the_environment_alone(monkeypatch, touches) -> None:
    dag = parse(monkeypatch, OMNISEND_EXPORT_SCHEDULE="asset", OMNISEND_LAKE_CONN_ID="lake")["dag"]
    assert touches == []
    trigger = dag.schedule[0].watchers[0].trigger
    assert (trigger.state_path, trigger.lake_conn_id, trigger.omnisend_conn_id) == (
        None, "lake", "omnisend_default")  # no state path set: the trigger's own default


def test_a_variable_set_after_parsing_applies_when_the_task_renders(monkeypatch) -> None:
    module = parse(monkeypatch, OMNISEND_STATE_PATH="/env/state", OMNISEND_CONN_ID="from_env")
    export = module["dag"].task_dict["segment.export"]
    variables = {
        "OMNISEND_STATE_PATH": "/var/state",
        "OMNISEND_REJECTS_PATH": "/var/rejects/{{ run_id }}/{{ ti.map_index }}.parquet",
        "OMNISEND_MAPPING": '{"email": "Mail", "firstName": null}',
    }
    monkeypatch.setattr(Variable, "get", staticmethod(lambda key, default=None: variables.get(key, default)))
    context = {"run_id": "manual__1", "ti": SimpleNamespace(map_index=3), "params": {}}

    def rendered(field: str) -> Any:
        return export.render_template(getattr(export, field), context)

    assert rendered("state_path") == "/var/state"  # the Variable wins over the environment
    assert rendered("rejects_path") == "/var/rejects/manual__1/3.parquet"  # a template, rendered per task
    assert rendered("mapping") == {"email": "Mail", "firstName": None}  # JSON, whatever its literals
    assert rendered("omnisend_conn_id") == "from_env"  # no Variable: the environment
    assert rendered("lake_conn_id") is None  # neither: the default (none)
    assert rendered("allow_local_state") == "false"
    assert rendered("runs_path") == "/var/state/runs"  # the default rejects: in the state store
    assert rendered("retention_days") == 30
    variables["OMNISEND_STATE_PATH"] = "/changed"  # changed again: no re-parse needed
    assert rendered("state_path") == "/changed"
    sensor = module["dag"].task_dict["segment.wait_for_export"]
    assert sensor.render_template(sensor.state_path, context) == "/changed"


def test_exports_need_no_pool_unless_one_is_named(monkeypatch) -> None:
    export = parse(monkeypatch, OMNISEND_POOL_SLOTS="3")["dag"].task_dict["segment.export"]
    assert (export.pool, export.max_active_tis_per_dag, export.rate_share) == ("default_pool", 3, 3)
    export = parse(monkeypatch, OMNISEND_POOL="omnisend_api")["dag"].task_dict["segment.export"]
    assert (export.pool, export.max_active_tis_per_dag) == ("omnisend_api", 2)


def test_the_state_store_defaults_to_the_workers_airflow_home(monkeypatch, tmp_path) -> None:
    export = parse(monkeypatch)["dag"].task_dict["segment.export"]
    monkeypatch.setattr(Variable, "get", staticmethod(lambda key, default=None: default))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))  # read when the task renders, on the worker
    context = {"run_id": "r", "ti": SimpleNamespace(map_index=0), "params": {}}
    assert export.render_template(export.state_path, context) == str(tmp_path / "omnisend_state")
    assert export.render_template(export.runs_path, context) == str(tmp_path / "omnisend_state" / "runs")
    assert export.render_template(export.rejects_path, context) is None  # the operator's default


def test_the_summary_logs_reasons_per_segment_and_no_personal_data(monkeypatch, caplog) -> None:
    summarize = parse(monkeypatch)["dag"].task_dict["summarize"].python_callable
    caplog.set_level(logging.INFO)
    base = dict.fromkeys(("rows_read", "valid", "duplicates", "new", "changed", "unchanged", "removed",
                          "sent", "batches", "duration_s"), 1)
    result = summarize([
        {**base, "segment": "VIP", "rejected": 3, "rejects_path": "/s/runs/VIP.parquet",
         "reasons": {"invalid_email": 2, "missing_email": 1}},
        {**base, "segment": "Fans", "rejected": 0, "rejects_path": "/s/runs/Fans.parquet", "reasons": {}},
    ])
    out = caplog.text
    assert "Rejects for VIP: /s/runs/VIP.parquet (3 rows; invalid_email=2, missing_email=1)" in out
    assert "Rejects for Fans" not in out and "@" not in out
    assert result == {"segments": 2, "sent": 2}
