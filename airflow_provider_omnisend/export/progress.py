"""Progress that survives a crash: the :class:`~airflow_provider_omnisend.export.ledger.ChunkLedger`'s
events, stored so that a later run of the same plan resumes instead of sending again.

Two layers, because XCom is cleared before a retry and a worker's local disk may be gone:

* a small key/value ``ProgressStore`` (Airflow 3.3's task state store in production): the chunks being
  sent and the batch ids submitted but not yet confirmed, so a retry polls them instead of sending again;
* a ``Journal`` of terminal events (confirmed chunks and their failed rows, refused chunks, with their
  batch ids), as small Parquet parts under the durable ``state_dir`` (any fsspec URL), so a retry on
  another worker skips what Omnisend already accepted.

Both are keyed by the run's *plan* digest: a different input or mapping never resumes a stale plan.
"""

from __future__ import annotations

import posixpath
import uuid
from typing import Any, Protocol

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_omnisend.export.files import open_private
from airflow_provider_omnisend.export.ledger import ChunkId, ChunkLedger, Failure, LedgerEvent, Phase

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


class Checkpoint:
    """Persists a :class:`ChunkLedger` of one plan and gives a later run its saved events.

    Terminal events (confirmed, refused) go to the :class:`Journal` under ``state_dir``; the chunks still
    open (being sent, submitted) go to the task state store under :data:`PROGRESS_KEY`, as
    ``{plan, sending: [[round, index]], submitted: {"round:index": batch_id}}``.
    """

    def __init__(self, journal: Journal, progress: ProgressStore, plan: str) -> None:
        self.journal = journal
        self.progress = progress
        self.plan = plan

    def load(self) -> list[LedgerEvent]:
        saved = self.progress.get(PROGRESS_KEY) or {}
        events = self.journal.load()
        if saved.get("plan") != self.plan:
            return events
        events += [LedgerEvent((int(r), int(i)), Phase.SENDING) for r, i in saved.get("sending", [])]
        for name, batch_id in (saved.get("submitted") or {}).items():
            r, i = name.split(":")
            events.append(LedgerEvent((int(r), int(i)), Phase.SUBMITTED, batch_id=str(batch_id)))
        return events

    def write(self, ledger: ChunkLedger) -> None:
        """Store the ledger's new terminal events, and its open chunks."""
        self.journal.append([e for e in ledger.drain() if e.phase.terminal])
        self.progress.set(PROGRESS_KEY, {
            "plan": self.plan,
            "sending": [list(r.chunk) for r in ledger.in_phase(Phase.SENDING)],
            "submitted": {f"{r.chunk[0]}:{r.chunk[1]}": r.batch_id
                          for r in ledger.in_phase(Phase.SUBMITTED)}})

    def finish(self) -> None:
        """The plan is done (its snapshot written): forget its progress."""
        self.journal.clear()
        self.progress.delete(PROGRESS_KEY)
