"""The journal of ledger events survives a crash in the middle of writing a part, and a later run gets
back each chunk's latest state."""

from __future__ import annotations

import numpy as np

from airflow_provider_omnisend.export.ledger import ChunkLedger, LedgerEvent, Phase
from airflow_provider_omnisend.export.progress import (
    Checkpoint,
    Journal,
    MemoryProgressStore,
    local_journal_path,
)
from airflow_provider_omnisend.export.wal import LocalJournal


def test_torn_part_is_ignored_and_complete_parts_are_read(tmp_path):
    journal = Journal(str(tmp_path), "plan1")
    journal.append([LedgerEvent((0, 0), Phase.CONFIRMED, batch_id="b0"),
                    LedgerEvent((0, 1), Phase.CONFIRMED, batch_id="b1",
                                failed={5: ("omnisend_rejected", "bad", False)})])
    (tmp_path / "runs" / "plan1" / "part-999999-deadbeef.parquet").write_bytes(b"")  # a crash mid-write
    ledger = ChunkLedger(10, Journal(str(tmp_path), "plan1").load())
    assert {c: r.phase for c, r in ledger.saved.items()} == {(0, 0): Phase.CONFIRMED, (0, 1): Phase.CONFIRMED}
    assert ledger.saved[(0, 1)].failed == {5: ("omnisend_rejected", "bad", False)}
    assert not [p for p in (tmp_path / "runs" / "plan1").iterdir() if p.name.endswith(".tmp")]


def test_a_later_run_resumes_each_chunk_from_its_latest_phase(tmp_path):
    store = MemoryProgressStore()
    checkpoint = Checkpoint(Journal(str(tmp_path), "p"), store, "p")
    ledger = _three_chunks_two_submitted()
    ledger.confirmed((0, 0), {7: ("omnisend_transient_error", "503", True)})
    checkpoint.write(ledger)

    later = ChunkLedger(300, Checkpoint(Journal(str(tmp_path), "p"), store, "p").load())
    assert later.resumed and later.resumed_batches == 1 and later.resent_batches == 1
    for i in range(3):
        later.plan((0, i), np.arange(i * 100, i * 100 + 100))
    assert later.batch_ids() == ["b0", "b1"]  # resumed batches count too
    assert later.records[(0, 2)].phase == Phase.PLANNED  # no batch id came back: sent again
    assert np.flatnonzero(later.retry_mask()).tolist() == [7]
    # another plan never resumes this one's open chunks
    assert not ChunkLedger(300, Checkpoint(Journal(str(tmp_path), "q"), store, "q").load()).resumed


def _three_chunks_two_submitted() -> ChunkLedger:
    ledger = ChunkLedger(300)
    for i in range(3):
        ledger.plan((0, i), np.arange(i * 100, i * 100 + 100))
        ledger.sending((0, i))
    ledger.submitted((0, 0), "b0")
    ledger.submitted((0, 1), "b1")
    return ledger


def test_remote_writes_at_most_once_per_interval_local_every_event(tmp_path):
    now = [0.0]
    store = MemoryProgressStore()
    checkpoint = Checkpoint(Journal(str(tmp_path), "p"), store, "p", interval=1.0, clock=lambda: now[0],
                            local=LocalJournal(local_journal_path(str(tmp_path), "p")))
    ledger = ChunkLedger(300)
    for i in range(3):  # three batches within one second: one remote checkpoint, three local commits
        ledger.plan((0, i), np.arange(i * 100, i * 100 + 100))
        ledger.sending((0, i))
        checkpoint.write(ledger)
        ledger.submitted((0, i), f"b{i}")
        checkpoint.write(ledger)
    assert checkpoint.writes == {"task_state": 1, "journal_parts": 1, "local_commits": 6}
    now[0] = 1.5
    checkpoint.write(ledger)
    checkpoint.write(ledger, force=True)  # a phase boundary
    assert checkpoint.writes["task_state"] == 3
    # a new DAG run (an empty task state store) on this machine: every batch id is known
    fresh = Checkpoint(Journal(str(tmp_path), "p"), MemoryProgressStore(), "p",
                       local=LocalJournal(local_journal_path(str(tmp_path), "p")))
    assert ChunkLedger(300, fresh.load()).resumed_batches == 3
    fresh.finish()
    assert not (tmp_path / "runs" / "p").exists()


def test_a_new_run_elsewhere_resumes_from_the_shared_journal(tmp_path):
    """No local journal, no task state (another worker, a new DAG run): the shared journal's last
    checkpoint has the batch ids, so only what came after it would be sent again."""
    checkpoint = Checkpoint(Journal(str(tmp_path), "p"), MemoryProgressStore(), "p", interval=3600)
    ledger = _three_chunks_two_submitted()
    checkpoint.write(ledger, force=True)
    later = ChunkLedger(300, Checkpoint(Journal(str(tmp_path), "p"), MemoryProgressStore(), "p").load())
    assert later.resumed_batches == 2 and later.resent_batches == 1
