"""OmnisendSegmentExportSensor and OmnisendExportReadyTrigger against real local CDM exports."""

from __future__ import annotations

import asyncio
import importlib
import json
import uuid
from pathlib import Path

import fsspec
import pytest
from airflow.sdk.exceptions import (
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)

from airflow_provider_omnisend.lake import ResolvedExport, iter_batches, watermark_key, write_watermark
from airflow_provider_omnisend.sensors.export_ready import ExportWaitError, OmnisendSegmentExportSensor
from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export
from airflow_provider_omnisend.triggers.export_ready import OmnisendExportReadyTrigger

COLUMNS = ("CustomerId", "Email")
ROWS = [("1", "ann@example.com"), ("2", "bob@example.com"), ("3", "cid@example.com")]
FIRST, SECOND = "2026-01-14T03:00:00Z", "2026-01-15T03:00:00Z"
CONN = "omnisend_test"
SEGMENT = "Customer"


def _export(root: Path, refreshes, *, incomplete_last: bool = False) -> Path:
    return write_cdm_export(root, entity="Customer", columns=COLUMNS, rows=ROWS, refresh_times=refreshes,
                            incomplete_last=incomplete_last)


def _sensor(source: Path | str, state: Path, **kwargs) -> OmnisendSegmentExportSensor:
    return OmnisendSegmentExportSensor(
        task_id="wait_for_export", source=str(source), segment=SEGMENT, omnisend_conn_id=CONN,
        state_path=str(state), **kwargs,
    )


def _run(trigger: OmnisendExportReadyTrigger, *, complete_after=None, timeout: float = 20.0):
    """Drive trigger.run() in an event loop until its first event (optionally completing the export
    while it waits); return the event payload."""

    async def main():
        events = trigger.run()
        first = asyncio.ensure_future(events.__anext__())
        if complete_after is not None:
            await asyncio.sleep(0.3)
            assert not first.done(), "the trigger fired before the export was complete"
            complete_after()
        event = await asyncio.wait_for(first, timeout)
        await events.aclose()
        return event.payload

    return asyncio.run(main())


def test_poke_waits_for_a_complete_new_export(tmp_path):
    lake, state = tmp_path / "lake", tmp_path / "state"
    folder = _export(lake, [FIRST], incomplete_last=True)
    sensor = _sensor(folder, state)
    assert sensor.poke({}).is_done is False  # the only refresh misses a partition

    _export(lake, [FIRST])
    result = sensor.poke({})
    assert result.is_done is True
    export = ResolvedExport.from_dict(result.xcom_value)
    assert export.export_id == "cdm:Customer:2026/01/14/0300"
    json.dumps(result.xcom_value)  # XCom-serialisable
    rows = [r for b in iter_batches(export, columns=["Email"]) for r in b.column("Email").to_pylist()]
    assert rows == [r[1] for r in ROWS]

    write_watermark(state, watermark_key(CONN, SEGMENT), export.export_id)  # the operator's job
    assert sensor.poke({}).is_done is False  # already exported

    _export(lake, [FIRST, SECOND])
    again = sensor.poke({})
    assert again.is_done is True
    assert again.xcom_value["export_id"] == "cdm:Customer:2026/01/15/0300"


def test_missing_source_folder_keeps_waiting(tmp_path):
    assert _sensor(tmp_path / "not-there-yet", tmp_path / "state").poke({}).is_done is False


def test_errors_waiting_cannot_fix_fail_the_poke(tmp_path):
    folder = _export(tmp_path / "lake", [FIRST])
    with pytest.raises(Exception, match="Entity 'Orders' is not in the manifest"):
        _sensor(folder, tmp_path / "state", entity="Orders").poke({})


def test_timeout_message_says_what_was_expected_and_where(tmp_path):
    folder = _export(tmp_path / "lake", [FIRST])
    state = tmp_path / "state"
    write_watermark(state, watermark_key(CONN, SEGMENT), "cdm:Customer:2026/01/14/0300")
    sensor = _sensor(folder, state, timeout=0, poke_interval=0, source_format="cdm", soft_fail=False)
    with pytest.raises(AirflowSensorTimeout) as err:
        sensor.execute({})
    message = str(err.value)
    assert str(folder) in message
    assert "'cdm'" in message and "'Customer'" in message
    assert "cdm:Customer:2026/01/14/0300" in message
    assert str(state) in message


def test_reschedule_mode_reschedules_without_instance_state(tmp_path):
    class _TaskInstance:  # only what BaseSensorOperator asks of a TI in reschedule mode
        @staticmethod
        def get_first_reschedule_date(context):
            return None

    folder = _export(tmp_path / "lake", [FIRST], incomplete_last=True)
    sensor = _sensor(folder, tmp_path / "state", mode="reschedule", timeout=3600)
    with pytest.raises(AirflowRescheduleException):
        sensor.execute({"ti": _TaskInstance()})
    _export(tmp_path / "lake", [FIRST])
    assert sensor.execute({"ti": _TaskInstance()})["export_id"] == "cdm:Customer:2026/01/14/0300"


def test_deferrable_returns_at_once_when_ready(tmp_path):
    folder = _export(tmp_path / "lake", [FIRST])
    result = _sensor(folder, tmp_path / "state", deferrable=True).execute({})
    assert result["export_id"] == "cdm:Customer:2026/01/14/0300"


def test_deferrable_defers_then_trigger_fires_when_the_refresh_completes(tmp_path):
    lake, state = tmp_path / "lake", tmp_path / "state"
    folder = _export(lake, [FIRST])
    write_watermark(state, watermark_key(CONN, SEGMENT), "cdm:Customer:2026/01/14/0300")
    _export(lake, [FIRST, SECOND], incomplete_last=True)  # the next refresh is being written
    sensor = _sensor(folder, state, deferrable=True, poll_interval=0.05, timeout=600)

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, OmnisendExportReadyTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert trigger.last_export_id == "cdm:Customer:2026/01/14/0300"

    payload = _run(trigger, complete_after=lambda: _export(lake, [FIRST, SECOND]))
    assert payload["status"] == "success"
    assert payload["export"]["export_id"] == "cdm:Customer:2026/01/15/0300"
    assert sensor.execute_complete({}, payload) == payload["export"]


def test_trigger_reports_lake_errors_as_error_events(tmp_path):
    folder = _export(tmp_path / "lake", [FIRST])
    trigger = OmnisendExportReadyTrigger(
        source=str(folder), segment=SEGMENT, entity="Orders", state_path=str(tmp_path / "state"),
        watermark_key=watermark_key(CONN, SEGMENT), poll_interval=0.05,
    )
    payload = _run(trigger)
    assert payload["status"] == "error"
    assert "'Orders'" in payload["message"] and "'Customer'" in payload["message"]
    sensor = _sensor(folder, tmp_path / "state")
    with pytest.raises(ExportWaitError, match="'Orders'"):  # not an AirflowException: soft_fail
        sensor.execute_complete({}, payload)                # must not turn it into a skip


def test_trigger_serialises_small_secret_free_kwargs(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_LAKE_SECRET", json.dumps(
        {"conn_type": "generic", "extra": {"account_key": "TOP-SECRET-KEY-123"}}))
    trigger = OmnisendExportReadyTrigger(
        source="abfs://lake/CustomerInsights_1/Export", source_format="cdm", segment=SEGMENT, entity=None,
        lake_conn_id="lake_secret", state_path=str(tmp_path), watermark_key=watermark_key(CONN, SEGMENT),
        last_export_id="cdm:Customer:2026/01/14/0300", poll_interval=30,
    )
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    clone = getattr(importlib.import_module(module), name)(**kwargs)
    assert clone.serialize() == (path, kwargs)
    text = json.dumps(kwargs)
    assert "TOP-SECRET-KEY-123" not in text
    assert set(kwargs) == {"source", "source_format", "segment", "entity", "lake_conn_id", "state_path",
                           "watermark_key", "last_export_id", "poll_interval", "force"}


def test_lake_connection_extra_becomes_storage_options(tmp_path, monkeypatch):
    """With no Airflow filesystem registered for the scheme, the connection's extra configures fsspec."""
    monkeypatch.setenv("AIRFLOW_CONN_LAKE_MEMORY", json.dumps({"conn_type": "generic", "extra": {}}))
    local = _export(tmp_path / "lake", [FIRST])
    root = f"memory://lake-{uuid.uuid4().hex}"
    memory = fsspec.filesystem("memory")
    memory.put(str(local), f"{root}/Export", recursive=True)
    try:
        sensor = _sensor(f"{root}/Export", tmp_path / "state", lake_conn_id="lake_memory")
        result = sensor.poke({})
        assert result.is_done is True
        export = ResolvedExport.from_dict(result.xcom_value)
        assert all(f.startswith(f"{root}/Export/Customer/") for f in export.files)
        emails = [e for b in iter_batches(export, columns=["Email"], filesystem=memory)
                  for e in b.column("Email").to_pylist()]
        assert emails == [r[1] for r in ROWS]
    finally:
        memory.rm(root, recursive=True)


def test_template_fields_cover_the_lake_coordinates():
    assert {"source", "segment", "entity", "source_format", "state_path"} <= set(
        OmnisendSegmentExportSensor.template_fields)


def test_a_day_without_a_new_export_is_a_skip_that_says_why(tmp_path):
    folder = _export(tmp_path / "lake", [FIRST])
    state = tmp_path / "state"
    write_watermark(state, watermark_key(CONN, SEGMENT), "cdm:Customer:2026/01/14/0300")
    with pytest.raises(AirflowSkipException) as err:  # soft_fail by default
        _sensor(folder, state, timeout=0, poke_interval=0).execute({})
    assert "No new complete export appeared in time" in str(err.value)
    assert "force=true" in str(err.value) and str(folder) in str(err.value)


def test_force_returns_the_latest_export_even_when_already_exported(tmp_path):
    folder = _export(tmp_path / "lake", [FIRST])
    state = tmp_path / "state"
    write_watermark(state, watermark_key(CONN, SEGMENT), "cdm:Customer:2026/01/14/0300")
    assert _sensor(folder, state).poke({}).is_done is False
    for force in (True, "True", "true"):  # a real flag or a rendered template
        result = _sensor(folder, state, force=force, deferrable=True).execute({})
        assert result["export_id"] == "cdm:Customer:2026/01/14/0300"
    assert "force" in OmnisendSegmentExportSensor.template_fields
