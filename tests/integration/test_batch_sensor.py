"""OmnisendBatchSensor and its trigger against the emulator: poke, defer, and the trigger's event."""

from __future__ import annotations

import asyncio
import json

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_omnisend.hooks.omnisend import OmnisendHook
from airflow_provider_omnisend.sensors.batches import OmnisendBatchSensor, load_batch_ids
from airflow_provider_omnisend.triggers.batches import OmnisendBatchTrigger
from tests.support import TEST_API_KEY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def make_batches(conn_id: str, count: int) -> list[str]:
    hook = OmnisendHook(conn_id)

    def contact(email: str) -> dict:
        return {"identifiers": [{"type": "email", "id": email, "sendWelcomeMessage": False}]}

    return [hook.create_batch([contact(f"b{b}-{i}@example.com") for i in range(50)])["batchID"]
            for b in range(count)]


def test_poke_waits_until_batches_are_terminal_and_returns_counts(emulator, omnisend_conn):
    conn_id = omnisend_conn()
    emulator.configure(processing_items_per_s=0.5)  # 50 items take 100 emulated s = 1 s each
    ids = make_batches(conn_id, 3)
    sensor = OmnisendBatchSensor(task_id="confirm", batch_ids=ids, omnisend_conn_id=conn_id)
    first = sensor.poke({})
    assert not first.is_done
    emulator.wait_batches_done(timeout=30)
    done = sensor.poke({})
    assert done.is_done
    assert set(done.xcom_value) == set(ids)
    assert all(c["status"] == "finished" and c["totalCount"] == 50 and c["finishedCount"] == 50
               for c in done.xcom_value.values())


def test_deferrable_sensor_defers_only_when_not_ready(emulator, omnisend_conn):
    conn_id = omnisend_conn()
    emulator.configure(processing_items_per_s=0.2)  # 2.5 s per batch: still processing at the first look
    ids = make_batches(conn_id, 2)
    sensor = OmnisendBatchSensor(task_id="confirm", batch_ids={"batch_ids": ids}, omnisend_conn_id=conn_id,
                                 deferrable=True, poll_interval=0.05, rate_share=4)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, OmnisendBatchTrigger)
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_omnisend.triggers.batches.OmnisendBatchTrigger"
    assert kwargs["batch_ids"] == ids and TEST_API_KEY not in json.dumps(kwargs)
    assert kwargs["rate_share"] == 4  # the triggerer's polls keep to the task's share of the budget
    emulator.configure(processing_items_per_s=0)

    async def first_event():
        async for event in OmnisendBatchTrigger(**kwargs).run():
            return event.payload
        return None

    payload = asyncio.run(asyncio.wait_for(first_event(), timeout=30))
    assert payload["status"] == "success" and set(payload["counts"]) == set(ids)
    assert sensor.execute_complete({}, payload) == payload["counts"]
    # Already done at the first look: no deferral at all.
    assert set(sensor.execute({})) == set(ids)


def test_trigger_reports_errors_as_an_event(emulator, omnisend_conn):
    conn_id = omnisend_conn("omnisend_badkey", api_key="wrong-key-000000")

    async def first_event():
        async for event in OmnisendBatchTrigger(omnisend_conn_id=conn_id, batch_ids=["x" * 24],
                                                poll_interval=0.05).run():
            return event.payload
        return None

    payload = asyncio.run(asyncio.wait_for(first_event(), timeout=30))
    assert payload["status"] == "error" and "401" in payload["message"]
    sensor = OmnisendBatchSensor(task_id="confirm", batch_ids=["x"], omnisend_conn_id=conn_id)
    with pytest.raises(Exception, match="401"):
        sensor.execute_complete({}, payload)


def test_load_batch_ids_forms(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("a1\nb2\n\n")
    assert load_batch_ids(["a1"]) == ["a1"]
    assert load_batch_ids("a1, b2") == ["a1", "b2"]
    assert load_batch_ids(f"file://{path}") == ["a1", "b2"]
    assert load_batch_ids({"batch_ids": [], "batch_ids_path": str(path)}) == ["a1", "b2"]
    assert load_batch_ids({"batch_ids": ["z"], "batch_ids_path": None}) == ["z"]
    assert load_batch_ids(None) == []
