"""A 100,000-row export (30,000 rows for each fault kind alone) through OmnisendHook's client while
the emulator injects faults, one kind at a time and all together (seeded): 10% 5xx, 429 bursts that
our limiter cannot foresee, timeouts, dropped connections (half of the dropped writes applied: lost
responses), one batch that ends ``stopped``.

The export must complete, and then: the emulator holds exactly the independently expected contacts
(trimmed, lower-cased e-mails, first occurrence wins, invalid ones rejected) with the right fields;
every other row is in the rejects file with a reason; no row is in both or in neither; batches created
twice are bounded by the client's ``write_retries``; retried items match the stopped batch's leftovers.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from airflow_provider_omnisend.export.progress import MemoryProgressStore
from airflow_provider_omnisend.hooks.omnisend import OmnisendHook
from airflow_provider_omnisend.testing.sample_data import synthetic_profiles
from tests.reliability.helpers import (
    api_requests,
    batches_created,
    expected_state,
    read_rejects,
    run_engine,
    slow_batches,
    verify_export,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SEED = 20260315
#: All faults together hit the full 100,000-row export; each kind alone a 30,000-row one (time budget).
TABLES = {rows: synthetic_profiles(rows, seed=11) for rows in (30_000, 100_000)}
EXPECTED = {rows: expected_state(table) for rows, table in TABLES.items()}
BURSTS = 5          # bursts of 429s, BURST_SIZE each, one every BURST_EVERY seconds while the export runs
BURST_SIZE = 10
BURST_EVERY = 1.5
CLIENT_TIMEOUT = 1.0

SCENARIOS = {
    "5xx": {"error_rate": 0.10},
    "429_bursts": {},
    "timeouts": {"timeout_rate": 0.03, "timeout_s": 2.0},
    "drops": {"drop_rate": 0.03},
    "stopped_batch": {"stop_next_batches": 1},
    "all_together": {"error_rate": 0.10, "timeout_rate": 0.02, "timeout_s": 2.0, "drop_rate": 0.03,
                     "stop_next_batches": 1},
}
WITH_BURSTS = {"429_bursts", "all_together"}


class _Bursts(threading.Thread):
    """Injects BURSTS bursts of 429s (``burst_429``) during the export, through the control API."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.stop = threading.Event()

    def run(self) -> None:
        for burst in range(BURSTS):
            # The first burst is armed at once (it hits the export's next requests, however fast the
            # export is); later ones follow every BURST_EVERY seconds while it runs.
            if burst and self.stop.wait(BURST_EVERY):
                return
            requests.post(f"{self.base_url}/_emulator/config", json={"burst_429": BURST_SIZE}, timeout=10)


def _stopped_leftovers(emulator) -> int:
    """Items that stopped batches never processed (Omnisend's own view, through the API)."""
    page = requests.get(f"{emulator.api_url}/batches",
                        params={"endpoint": "contacts", "status": "stopped", "limit": 250},
                        headers=emulator.headers(), timeout=10).json()
    return sum(b["totalCount"] - b["finishedCount"] for b in page.get("batches", []))


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_export_survives_faults(scenario, emulator, omnisend_conn, tmp_path, figures):
    rows = 100_000 if scenario == "all_together" else 30_000
    table, expected = TABLES[rows], EXPECTED[rows]
    conn_id = omnisend_conn(timeout=CLIENT_TIMEOUT, max_attempts=10)
    hook = OmnisendHook(conn_id, dag_id="omnisend_reliability")
    client = hook.get_client()
    emulator.configure(seed=SEED, **SCENARIOS[scenario])
    bursts = _Bursts(emulator.base_url) if scenario in WITH_BURSTS else None
    started = time.monotonic()
    if bursts:
        bursts.start()
    try:
        summary = run_engine(client=client, batches=slow_batches(table, rows_per_batch=20_000),
                             columns=table.column_names, state_dir=tmp_path / "state",
                             work_dir=tmp_path / "work", rejects_path=tmp_path / "rejects.parquet",
                             progress=MemoryProgressStore(), max_in_flight=hook.settings.max_in_flight)
    finally:
        if bursts:
            bursts.stop.set()
            bursts.join()
    duration = time.monotonic() - started
    emulator.configure(error_rate=0.0, timeout_rate=0.0, drop_rate=0.0, burst_429=0)
    state = emulator.wait_batches_done(timeout=60)
    faults = state["faults"]
    stats = dict(client.stats)
    verdict = verify_export(emulator.contacts(), read_rejects(tmp_path / "rejects.parquet"), expected)
    extra_batches = batches_created(state) - summary.batches
    leftovers = _stopped_leftovers(emulator)
    figures(scenario=scenario, rows=rows, duration_s=round(duration, 1),
            faults={k: v for k, v in faults.items() if v},
            batches=summary.batches, extra_batches=extra_batches, write_retries=stats.get("write_retries", 0),
            retries=stats.get("retries", 0), timeouts=stats.get("timeouts", 0),
            connection_errors=stats.get("connection_errors", 0), rate_limited=stats.get("rate_limited", 0),
            retried_items=summary.retried_items, stopped_leftovers=leftovers, rows_lost=verdict.rows_lost,
            max_in_window=state["max_in_window"]["default"])

    # the faults really happened
    cfg = SCENARIOS[scenario]
    if "error_rate" in cfg:
        assert faults["error"] >= 0.05 * api_requests(state)  # about 10% of the requests
    if "timeout_rate" in cfg:
        assert faults["timeout"] >= 3 and stats["timeouts"] >= faults["timeout"]
    if "drop_rate" in cfg:
        assert faults["drop"] >= 3 and faults["drop_applied"] > 0
    if "stop_next_batches" in cfg:
        assert faults["stopped_batch"] == 1 and leftovers > 0
    if scenario in WITH_BURSTS:
        assert faults["burst_429"] >= BURST_SIZE and stats["rate_limited"] >= BURST_SIZE

    # nothing lost, nothing wrong, nothing counted twice
    assert not verdict.problems(), verdict.problems()
    assert verdict.rows_lost == 0
    assert summary.rows_read == rows
    assert summary.valid == len(expected.contacts) and summary.api_rejected == 0
    assert summary.reasons == {"invalid_email": len(expected.invalid), "duplicate": len(expected.duplicates)}
    assert summary.rejected == len(expected.invalid) + len(expected.duplicates)
    assert state["welcome_messages"] == 0
    # duplicate sends: batches Omnisend created that the engine does not know of are lost responses
    # (dropped after being applied), each answered by one write retry; items retried are exactly those a
    # stopped batch left unprocessed
    assert faults["drop_applied"] <= extra_batches <= stats.get("write_retries", 0)
    first_round = -(-len(expected.contacts) // 100)  # full batches of 100; only the last is partial
    assert summary.batches == first_round + (1 if summary.retried_items else 0)
    with open(summary.batch_ids_path.removeprefix("file://")) as fh:
        batch_ids = fh.read().split()
    assert len(batch_ids) == len(set(batch_ids)) == summary.batches
    assert summary.retried_items <= leftovers
    if scenario == "stopped_batch":
        assert summary.retried_items == leftovers
    if "stop_next_batches" not in cfg:
        assert summary.retried_items == 0
    # within our budget even while retrying (the 429 bursts are injected outside the window count)
    assert state["max_in_window"]["default"] <= hook.settings.requests_per_minute


def test_item_errors_are_retried_once_then_rejected_and_sent_by_the_next_run(
        emulator, omnisend_conn, tmp_path, figures):
    """Omnisend failing single items (500 inside a finished batch): each is sent once more; one that
    fails twice is rejected with a reason, left out of the snapshot, and sent by the next run."""
    table, expected = TABLES[30_000], EXPECTED[30_000]
    client = OmnisendHook(omnisend_conn(timeout=CLIENT_TIMEOUT), dag_id="omnisend_reliability").get_client()
    emulator.configure(seed=SEED, item_error_rate=0.05)

    def export(tag: str):
        return run_engine(client=client, batches=slow_batches(table, rows_per_batch=20_000),
                          columns=table.column_names, state_dir=tmp_path / "state", work_dir=tmp_path / tag,
                          rejects_path=tmp_path / f"rejects-{tag}.parquet", progress=MemoryProgressStore())

    first = export("first")
    state = emulator.wait_batches_done(timeout=60)
    verdict = verify_export(emulator.contacts(), read_rejects(tmp_path / "rejects-first.parquet"), expected)
    refused = [r for r in read_rejects(tmp_path / "rejects-first.parquet").to_pylist()
               if r["reason"].startswith("omnisend_")]
    emulator.configure(item_error_rate=0.0)
    second = export("second")
    emulator.wait_batches_done(timeout=60)
    final = verify_export(emulator.contacts(), read_rejects(tmp_path / "rejects-second.parquet"), expected)
    figures(scenario="item_errors", rows=30_000, item_errors=state["faults"]["item_error"],
            retried_items=first.retried_items, rejected_after_retry=first.api_rejected,
            second_run_sent=second.sent, rows_lost=final.rows_lost)

    assert state["faults"]["item_error"] > 100
    assert first.retried_items > 0 and 0 < first.api_rejected < first.retried_items
    assert not verdict.problems() and verdict.rows_lost == 0  # refused rows are in the rejects file
    assert len(refused) == first.api_rejected == first.reasons["omnisend_transient_error"]
    assert all(r["detail"] for r in refused)
    assert second.new == first.api_rejected and second.sent == first.api_rejected and second.changed == 0
    assert not final.problems() and final.rows_lost == 0 and second.api_rejected == 0
