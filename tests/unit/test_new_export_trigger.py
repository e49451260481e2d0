"""OmnisendNewExportTrigger (the lake Asset's watcher) against real local CDM exports.

The asset state store is Airflow's in the triggerer (tests/e2e/test_assets.py runs it there); here a
dict with the same async ``aget``/``aset`` stands in for it, to check what a restarted trigger remembers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Asset, AssetWatcher
from airflow.triggers.base import BaseEventTrigger

from airflow_provider_omnisend.lake import watermark_key, write_watermark
from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export
from airflow_provider_omnisend.triggers.new_export import (
    ANNOUNCED_PREFIX,
    OmnisendNewExportTrigger,
    segments_of_event_extras,
)

COLUMNS = ("CustomerId", "Email")
ROWS = [("1", "ann@example.com"), ("2", "bob@example.com")]
FIRST, SECOND = "2026-01-14T03:00:00Z", "2026-01-15T03:00:00Z"
CONN = "omnisend_test"
POLL = 0.05


def _export(root: Path, refreshes, *, incomplete_last: bool = False) -> Path:
    return write_cdm_export(root, entity="Customer", columns=COLUMNS, rows=ROWS, refresh_times=refreshes,
                            incomplete_last=incomplete_last, more_entities={"Newsletter": ROWS})


def _folder(root: Path) -> Path:
    return root / "CustomerInsights_00000000-0000-0000-0000-000000000001" / "OmnisendExport"


def _trigger(root: Path, state: Path, segments=("Customer", "Newsletter")) -> OmnisendNewExportTrigger:
    return OmnisendNewExportTrigger(source=str(_folder(root)), segments=list(segments), omnisend_conn_id=CONN,
                                    state_path=str(state), poll_interval=POLL)


class DictStore:
    """The async part of Airflow's asset state store accessor, on a dict."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.data[key] = value


def _events(trigger: OmnisendNewExportTrigger, steps: list, *, wait: float = 10 * POLL) -> list[dict]:
    """Run the trigger; before each step (a callable changing the lake, or None) collect everything it
    yielded within ``wait`` seconds, merged into one payload (the trigger checks the lake in a thread, so
    it may see one entity of a two-entity export complete before the other: two events, each announcing
    its own segment once). Returns the merged payloads per step ({} when nothing was yielded)."""

    async def main() -> list[dict]:
        stream = trigger.run()
        out: list[dict] = []
        pending = asyncio.ensure_future(stream.__anext__())
        loop = asyncio.get_running_loop()
        for step in steps:
            if step is not None:
                step()
            merged: dict = {}
            deadline = loop.time() + wait
            while (left := deadline - loop.time()) > 0:
                done, _ = await asyncio.wait({pending}, timeout=left)
                if not done:
                    break
                payload = pending.result().payload
                merged = {**payload, "exports": merged.get("exports", []) + payload.get("exports", [])}
                pending = asyncio.ensure_future(stream.__anext__())
            out.append(merged)
        await asyncio.sleep(2 * POLL)  # let it go past its last yield (the triggerer resumes it at once)
        pending.cancel()  # the trigger is stopped as the triggerer stops it: cancelled in its sleep
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await pending
        return out

    return asyncio.run(main())


def _announced(payload: dict) -> dict[str, str]:
    segments = [e["segment"] for e in payload.get("exports", [])]
    assert len(segments) == len(set(segments)), f"a segment was announced twice: {segments}"
    return {e["segment"]: e["export_id"] for e in payload.get("exports", [])}


def test_fires_once_per_new_export_not_again_while_it_is_exported(tmp_path):
    lake, state = tmp_path / "lake", tmp_path / "state"
    trigger = _trigger(lake, state)
    got = _events(trigger, [
        None,                                   # no lake folder yet: keep waiting
        lambda: _export(lake, [FIRST], incomplete_last=True),  # being written: not complete
        lambda: _export(lake, [FIRST]),         # complete
        None,                                   # same export, watermark not written yet: no event
        lambda: _export(lake, [FIRST, SECOND]),  # the next refresh
        None,
    ])
    assert got[0] == {} and got[1] == {}
    assert got[2]["status"] == "new_export" and got[2]["source"] == str(_folder(lake))
    assert _announced(got[2]) == {"Customer": "cdm:Customer:2026/01/14/0300",
                                  "Newsletter": "cdm:Newsletter:2026/01/14/0300"}
    assert got[3] == {}
    assert _announced(got[4]) == {"Customer": "cdm:Customer:2026/01/15/0300",
                                  "Newsletter": "cdm:Newsletter:2026/01/15/0300"}
    assert got[5] == {}
    json.dumps(got[2])  # stored as the asset event's extra


def test_an_export_already_exported_is_not_announced(tmp_path):
    lake, state = tmp_path / "lake", tmp_path / "state"
    _export(lake, [FIRST])
    write_watermark(state, watermark_key(CONN, "Customer"), "cdm:Customer:2026/01/14/0300")
    got = _events(_trigger(lake, state), [None])
    assert _announced(got[0]) == {"Newsletter": "cdm:Newsletter:2026/01/14/0300"}


def test_a_restarted_trigger_remembers_what_it_announced_in_the_asset_state_store(tmp_path):
    lake, state = tmp_path / "lake", tmp_path / "state"
    _export(lake, [FIRST])
    store = DictStore()
    first = _trigger(lake, state)
    first.asset_state_store = store
    assert _announced(_events(first, [None])[0])["Customer"] == "cdm:Customer:2026/01/14/0300"
    assert store.data[ANNOUNCED_PREFIX + watermark_key(CONN, "Customer")] == "cdm:Customer:2026/01/14/0300"

    restarted = _trigger(lake, state)  # the triggerer restarted: a new instance, the same store
    restarted.asset_state_store = store
    got = _events(restarted, [None, lambda: _export(lake, [FIRST, SECOND])])
    assert got[0] == {}, "a restarted trigger announced the same export again"
    assert set(_announced(got[1]).values()) == {"cdm:Customer:2026/01/15/0300",
                                                "cdm:Newsletter:2026/01/15/0300"}

    without_store = _trigger(lake, state)  # memory only: the same export is announced again
    assert _events(without_store, [None])[0] != {}


def test_a_lake_error_is_logged_once_and_the_trigger_keeps_watching(tmp_path, capsys):
    lake, state = tmp_path / "lake", tmp_path / "state"
    _export(lake, [FIRST])
    trigger = _trigger(lake, state, segments=("Orders", "Customer"))  # Orders is no entity of the export
    got = _events(trigger, [None, None])
    assert _announced(got[0]) == {"Customer": "cdm:Customer:2026/01/14/0300"} and got[1] == {}
    errors = [line for line in capsys.readouterr().out.splitlines() if "Entity 'Orders'" in line]
    assert len(errors) == 1 and "error" in errors[0], errors  # at every poll, but at ERROR only once


def test_kwargs_are_configuration_only_so_the_trigger_hash_is_stable(tmp_path):
    lake, state = tmp_path / "lake", tmp_path / "state"
    _export(lake, [FIRST])
    trigger = _trigger(lake, state)
    before = BaseEventTrigger.hash(*trigger.serialize())
    _events(trigger, [None])  # it announced an export: its kwargs must not change
    classpath, kwargs = trigger.serialize()
    assert BaseEventTrigger.hash(classpath, kwargs) == before
    assert classpath == "airflow_provider_omnisend.triggers.new_export.OmnisendNewExportTrigger"
    rebuilt = OmnisendNewExportTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    # Airflow accepts it as an asset watcher
    Asset(str(_folder(lake)), watchers=[AssetWatcher(name="omnisend_new_export", trigger=rebuilt)])


def test_segments_must_be_a_list():
    with pytest.raises(ValueError, match="non-empty list"):
        OmnisendNewExportTrigger(source="file:///lake", segments="Customer")


def test_segments_of_event_extras_reads_what_airflow_stored():
    extras = [
        {"from_trigger": True, "payload": {"exports": [{"segment": "B"}, {"segment": "A"}]}},
        {"from_trigger": True, "payload": {"exports": [{"segment": "A"}, {"segment": "C"}]}},
        {"something": "else"}, None, {"payload": {"exports": "not a list"}},
    ]
    assert segments_of_event_extras(extras) == ["B", "A", "C"]
