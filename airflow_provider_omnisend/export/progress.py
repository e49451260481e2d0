"""Progress that survives a crash: the :class:`~airflow_provider_omnisend.export.ledger.ChunkLedger`'s
events, stored so that a later run of the same plan resumes instead of sending again.

Three layers, because XCom is cleared before a retry, a worker's local disk may be gone, and remote writes
are dear (see :class:`Checkpoint` for what is written when, and the re-send bound):

* a small key/value ``ProgressStore`` (Airflow 3.3's task state store in production): the chunks being
  sent and the batch ids submitted but not yet confirmed, so a retry polls them instead of sending again;
* a ``LocalJournal`` (``wal``): every event as it happens, in a local SQLite file;
* a ``Journal`` of the events (confirmed chunks and their failed rows, refused chunks, with their
  batch ids), as small Parquet parts under the durable ``state_dir`` (any fsspec URL), so a retry on
  another worker skips what Omnisend already accepted.

Both are keyed by the run's *plan* digest: a different input or mapping never resumes a stale plan.
"""

from __future__ import annotations

import hashlib
import posixpath
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_omnisend.export.files import open_private
from airflow_provider_omnisend.export.ledger import ChunkId, ChunkLedger, Failure, LedgerEvent, Phase
from airflow_provider_omnisend.export.wal import LocalJournal

PROGRESS_KEY = "omnisend_export_progress"

JOURNAL_SCHEMA = pa.schema([
    ("round", pa.int64()),
    ("chunk", pa.int64()),
    ("phase", pa.int8()),
    ("batch_id", pa.string()),
    ("pos", pa.int64()),        # staging position of a failed row; -1 marks the chunk's own record
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


class Journal:
    """Append-only ledger events of one plan, as Parquet parts under ``state_dir`` (any fsspec URL)."""

    def __init__(self, state_dir: str, plan: str, *, storage_options: dict | None = None) -> None:
        self.fs, root = fsspec.core.url_to_fs(state_dir, **(storage_options or {}))
        self.dir = posixpath.join(root, "runs", plan)
        self._parts_written = 0

    def load(self) -> list[LedgerEvent]:
        if not self.fs.exists(self.dir):
            return []
        tables = []
        for path in sorted(p for p in self.fs.ls(self.dir, detail=False) if p.endswith(".parquet")):
            try:
                with self.fs.open(path, "rb") as fh:
                    tables.append(pq.read_table(fh, schema=JOURNAL_SCHEMA))
            except (OSError, pa.ArrowInvalid):  # torn by a crash: its chunks are simply confirmed again
                continue
        return events_from_table(pa.concat_tables(tables)) if tables else []

    def append(self, events: list[LedgerEvent]) -> None:
        """Store ``events`` in one new part (one write per call; nothing when there are none)."""
        if not events:
            return
        self.fs.makedirs(self.dir, exist_ok=True)
        name = f"part-{self._parts_written:06d}-{uuid.uuid4().hex[:8]}.parquet"
        # Written under a temporary name, then renamed: a crash mid-write never leaves a torn part.
        temporary = posixpath.join(self.dir, f".{name}.tmp")
        with open_private(self.fs, temporary) as fh:
            pq.write_table(events_to_table(events), fh)
        self.fs.mv(temporary, posixpath.join(self.dir, name))
        self._parts_written += 1

    def clear(self) -> None:
        if self.fs.exists(self.dir):
            self.fs.rm(self.dir, recursive=True)


def events_to_table(events: list[LedgerEvent]) -> pa.Table:
    """One row per event, plus one per failed row of a terminal event (``pos`` >= 0)."""
    cols: dict[str, list[Any]] = {name: [] for name in JOURNAL_SCHEMA.names}

    def row(event: LedgerEvent, pos: int, failure: Failure | None) -> None:
        for name, value in zip(cols, (event.chunk[0], event.chunk[1], int(event.phase), event.batch_id, pos,
                                      *(failure or (None, None, False))), strict=True):
            cols[name].append(value)

    for event in events:
        row(event, -1, None)
        for pos, failure in event.failed.items():
            row(event, pos, failure)
    return pa.table(cols, schema=JOURNAL_SCHEMA)


def events_from_table(table: pa.Table) -> list[LedgerEvent]:
    data = table.to_pydict()
    events: dict[tuple[ChunkId, int], LedgerEvent] = {}
    order: list[tuple[ChunkId, int]] = []
    failed: dict[tuple[ChunkId, int], dict[int, Failure]] = {}
    for r, c, phase, bid, pos, reason, detail, transient in zip(*data.values(), strict=True):
        key = ((r, c), phase)
        if pos < 0:
            if key not in events:
                order.append(key)
            events[key] = LedgerEvent((r, c), Phase(phase), batch_id=bid)
        else:
            failed.setdefault(key, {})[pos] = (reason, detail, transient)
    return [LedgerEvent(k[0], events[k].phase, batch_id=events[k].batch_id, failed=failed.get(k, {}))
            for k in order]


def local_journal_path(state_dir: str, plan: str) -> Path:
    """Where the per-batch :class:`LocalJournal` of a plan lives: beside the Parquet journal when
    ``state_dir`` is local, else in the machine's temp folder, keyed by ``state_dir`` and the plan."""
    if fsspec.utils.get_protocol(state_dir) in ("file", "local"):
        _, root = fsspec.core.url_to_fs(state_dir)
        return Path(root, "runs", plan, "ledger.sqlite")
    key = hashlib.sha256(state_dir.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir(), "omnisend-ledger", key, f"{plan}.sqlite")


class Checkpoint:
    """Persists a :class:`ChunkLedger` of one plan and gives a later run its saved events.

    * every event, as it happens, to the :class:`LocalJournal` (a local SQLite commit: cheap);
    * at most once per ``interval`` seconds, and whenever ``force`` is given (the engine forces one at
      every phase boundary: the end of each round, a cancel, an error), the events since the last time as
      one Parquet part of the :class:`Journal` under ``state_dir``, and the chunks still open to the task
      state store under :data:`PROGRESS_KEY` as ``{plan, sending: [[round, index]], submitted:
      {"round:index": batch_id}}``.

    Re-sends after a kill are bounded by the batches in flight when the local journal is there (the same
    machine), else by those plus the batches submitted since the last checkpoint (``interval`` of sends).
    ``writes`` counts the writes of each kind (the checkpoint benchmark reports them).
    """

    def __init__(self, journal: Journal, progress: ProgressStore, plan: str, *,
                 local: LocalJournal | None = None, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.journal = journal
        self.progress = progress
        self.plan = plan
        self.local = local
        self.interval = interval
        self.clock = clock
        self.writes = {"task_state": 0, "journal_parts": 0, "local_commits": 0}
        self._unshared: list[LedgerEvent] = []
        self._last = float("-inf")

    def load(self) -> list[LedgerEvent]:
        events = self.journal.load()
        if self.local is not None:
            events += self.local.load()
        saved = self.progress.get(PROGRESS_KEY) or {}
        if saved.get("plan") != self.plan:
            return events
        events += [LedgerEvent((int(r), int(i)), Phase.SENDING) for r, i in saved.get("sending", [])]
        for name, batch_id in (saved.get("submitted") or {}).items():
            r, i = name.split(":")
            events.append(LedgerEvent((int(r), int(i)), Phase.SUBMITTED, batch_id=str(batch_id)))
        return events

    def write(self, ledger: ChunkLedger, *, force: bool = False) -> None:
        """Store the ledger's new events locally; share them and its open chunks when it is time."""
        events = ledger.drain()
        if self.local is not None and events:
            self.local.append(events)
            self.writes["local_commits"] += 1
        self._unshared += events
        now = self.clock()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self._unshared:
            self.journal.append(self._unshared)
            self.writes["journal_parts"] += 1
            self._unshared = []
        self.progress.set(PROGRESS_KEY, {
            "plan": self.plan,
            "sending": [list(r.chunk) for r in ledger.in_phase(Phase.SENDING)],
            "submitted": {f"{r.chunk[0]}:{r.chunk[1]}": r.batch_id
                          for r in ledger.in_phase(Phase.SUBMITTED)}})
        self.writes["task_state"] += 1

    def finish(self) -> None:
        """The plan is done (its snapshot written): forget its progress."""
        if self.local is not None:
            self.local.clear()
        self.journal.clear()
        self.progress.delete(PROGRESS_KEY)
