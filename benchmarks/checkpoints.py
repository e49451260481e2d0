"""Checkpoint writes of one export: task state store writes, shared journal parts and local journal
commits, against what a write per batch would cost (#17 item 2).

``python -m benchmarks.checkpoints --rows 1000000`` runs ``ExportEngine`` over synthetic profiles against
the in-process ``InstantApi`` (no HTTP: the push is as fast as it gets, so the figure is the floor of the
time-based writes plus the phase boundaries) and prints the counts as JSON.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from airflow_provider_omnisend.export import engine as engine_module
from airflow_provider_omnisend.export.engine import ExportEngine, ExportOptions
from airflow_provider_omnisend.export.progress import MemoryProgressStore
from airflow_provider_omnisend.export.rejects import RejectsWriter
from airflow_provider_omnisend.testing.instant_api import InstantApi
from airflow_provider_omnisend.testing.sample_data import synthetic_profiles

from .common import SEGMENT, demo_spec, emit, quiet_logs


class CountingStore(MemoryProgressStore):
    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self, key: str, value: Any) -> None:
        self.sets += 1
        super().set(key, value)


def measure(rows: int, work: Path) -> dict[str, Any]:
    table = synthetic_profiles(rows)
    spec = demo_spec(table.column_names)
    store = CountingStore()
    rejects = RejectsWriter(str(work / "rejects.parquet"), source_columns=spec.source_columns)
    engine = ExportEngine(client=InstantApi(), spec=spec,
                          options=ExportOptions(segment=SEGMENT, max_profiles=None, poll_interval=0.0),
                          state_dir=str(work / "state"), work_dir=work / "staging", artifacts_dir=work,
                          rejects=rejects, progress=store)
    started = time.perf_counter()
    try:
        summary = engine.run(table.to_batches(max_chunksize=50_000))
    finally:
        rejects.close()
    writes = engine.checkpoint.writes
    return {"rows": rows, "batches": summary.batches, "seconds": round(time.perf_counter() - started, 1),
            "task_state_writes": store.sets, "journal_parts": writes["journal_parts"],
            "local_commits": writes["local_commits"],
            "task_state_writes_if_per_batch": 2 * summary.batches,
            "checkpoint_interval_s": engine.options.checkpoint_interval}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    quiet_logs()
    assert engine_module  # the engine as the operator runs it
    with tempfile.TemporaryDirectory() as tmp:
        emit(measure(args.rows, Path(tmp)))


if __name__ == "__main__":
    main()
