"""Progress that survives a crash: which batches were submitted, which were confirmed.

Two layers, because XCom is cleared before a retry and a worker's local disk may be gone:

* a small key/value ``ProgressStore`` (Airflow 3.3's task state store in production): the batch ids
  submitted but not yet confirmed, so a retry polls them instead of sending them again;
* a ``Journal`` of confirmed chunks and their failed rows, as small Parquet parts under the durable
  ``state_dir`` (any fsspec URL), so a retry on another worker skips what Omnisend already accepted.

Both are keyed by the run's *plan* digest: a different input or mapping never resumes a stale plan.
"""

from __future__ import annotations

import posixpath
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_omnisend.export.files import open_private

PROGRESS_KEY = "omnisend_export_progress"

JOURNAL_SCHEMA = pa.schema([
    ("chunk", pa.int64()),
    ("pos", pa.int64()),        # staging position of a failed row; -1 marks "chunk confirmed"
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("transient", pa.bool_()),
])


class ProgressStore(Protocol):
    """What the engine needs of Airflow's ``context["task_state_store"]``."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...


class MemoryProgressStore:
    """A ProgressStore for runs outside Airflow (demo, benchmarks) and for tests."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


@dataclass
class JournalState:
    """Chunks Omnisend confirmed, and per chunk its failed rows: ``{chunk: {pos: (reason, detail,
    transient)}}``. A confirmed chunk's rows without a failure record were accepted."""

    confirmed_chunks: set[int] = field(default_factory=set)
    failures: dict[int, dict[int, tuple[str, str, bool]]] = field(default_factory=dict)


class Journal:
    """Append-only record of confirmed chunks for one plan, as Parquet parts under ``state_dir``."""

    def __init__(self, state_dir: str, plan: str, *, storage_options: dict | None = None) -> None:
        self.fs, root = fsspec.core.url_to_fs(state_dir, **(storage_options or {}))
        self.dir = posixpath.join(root, "runs", plan)
        self._parts_written = 0

    def load(self) -> JournalState:
        state = JournalState()
        if not self.fs.exists(self.dir):
            return state
        paths = sorted(p for p in self.fs.ls(self.dir, detail=False) if p.endswith(".parquet"))
        if not paths:
            return state
        tables = []
        for path in paths:
            try:
                with self.fs.open(path, "rb") as fh:
                    tables.append(pq.read_table(fh))
            except (OSError, pa.ArrowInvalid):  # torn by a crash: its chunks are simply confirmed again
                continue
        if not tables:
            return state
        table = pa.concat_tables(tables)
        chunks = table["chunk"].to_numpy()
        pos = table["pos"].to_numpy()
        state.confirmed_chunks = set(np.unique(chunks[pos < 0]).tolist())
        failed = table.filter(pa.compute.greater_equal(table["pos"], 0)).to_pydict()
        for chunk, pos, reason, detail, transient in zip(failed["chunk"], failed["pos"], failed["reason"],
                                                         failed["detail"], failed["transient"], strict=True):
            state.failures.setdefault(chunk, {})[pos] = (reason, detail, transient)
        return state

    def append(self, chunks: list[int], *, failed_pos: list[int], reasons: list[str], details: list[str],
               transient: list[bool], failed_chunk: list[int]) -> None:
        """Record confirmed ``chunks`` and their failed rows in one new part (one write per round)."""
        if not chunks and not failed_pos:
            return
        table = pa.table({
            "chunk": pa.array(list(chunks) + list(failed_chunk), pa.int64()),
            "pos": pa.array([-1] * len(chunks) + list(failed_pos), pa.int64()),
            "reason": pa.array([None] * len(chunks) + list(reasons), pa.string()),
            "detail": pa.array([None] * len(chunks) + list(details), pa.string()),
            "transient": pa.array([False] * len(chunks) + list(transient), pa.bool_()),
        }, schema=JOURNAL_SCHEMA)
        self.fs.makedirs(self.dir, exist_ok=True)
        name = f"part-{self._parts_written:06d}-{uuid.uuid4().hex[:8]}.parquet"
        # Written under a temporary name, then renamed: a crash mid-write never leaves a torn part.
        temporary = posixpath.join(self.dir, f".{name}.tmp")
        with open_private(self.fs, temporary) as fh:
            pq.write_table(table, fh)
        self.fs.mv(temporary, posixpath.join(self.dir, name))
        self._parts_written += 1

    def clear(self) -> None:
        if self.fs.exists(self.dir):
            self.fs.rm(self.dir, recursive=True)
