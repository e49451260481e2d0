"""ChunkLedger: the one record of what happened to every batch of an export.

Why one record: the push, the confirmation and the resume after a crash all need the same facts (which
batch holds which rows, whether it was sent, what Omnisend answered). Kept in one place, every figure the
engine reports and every file it writes is *derived* from it, so they cannot disagree: the rows to send
once more, the rejected rows and their reasons, the rows the snapshot may record as accepted, the batch ids
(resumed batches included) and the resumed / re-sent counts.

Each chunk goes ``planned → sending → submitted(batch_id) → confirmed(failed positions)``, or ``sending →
refused`` when Omnisend refuses the whole batch. A chunk is named by ``(round, index)``: round 0 sends the
plan, round 1 sends the rows that failed for a transient reason once more. Chunking is deterministic for a
given staging file, mask and caps, so a later run names the same rows alike.

Every change is an append-only :class:`LedgerEvent`; the persistence layer (``progress``) stores events
and hands them back as the saved state of a later run. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

#: ``(reason, detail, transient)`` of a row Omnisend did not apply.
Failure = tuple[str, str, bool]
#: ``(round, index)``
ChunkId = tuple[int, int]


class Phase(IntEnum):
    """A chunk's phase; a higher value is later (a saved state keeps the latest)."""

    PLANNED = 0
    SENDING = 1
    SUBMITTED = 2
    CONFIRMED = 3
    REFUSED = 4

    @property
    def terminal(self) -> bool:
        return self >= Phase.CONFIRMED


@dataclass(frozen=True)
class LedgerEvent:
    """One append-only record: ``chunk`` reached ``phase`` (with its batch id, or its failed rows)."""

    chunk: ChunkId
    phase: Phase
    batch_id: str | None = None
    failed: dict[int, Failure] = field(default_factory=dict)


@dataclass
class ChunkRecord:
    """The latest state of one chunk. ``positions`` (staging rows) are known once the chunk is planned."""

    chunk: ChunkId
    phase: Phase = Phase.PLANNED
    batch_id: str | None = None
    failed: dict[int, Failure] = field(default_factory=dict)
    positions: np.ndarray | None = None
    #: keyed e-mail hashes of ``positions``, to map Omnisend's echoed items back to rows
    keys: np.ndarray | None = None

    def apply(self, event: LedgerEvent) -> None:
        self.phase = event.phase
        if event.batch_id is not None:
            self.batch_id = event.batch_id
        if event.phase.terminal:
            self.failed = dict(event.failed)


#: Allowed moves; a chunk found ``sending`` in the saved state is planned again (sent once more).
_NEXT = {
    Phase.PLANNED: {Phase.SENDING},
    Phase.SENDING: {Phase.SUBMITTED, Phase.REFUSED},
    Phase.SUBMITTED: {Phase.CONFIRMED},
}


def replay(events: Iterable[LedgerEvent]) -> dict[ChunkId, ChunkRecord]:
    """The latest record of each chunk in saved events (in any order: the latest phase wins)."""
    records: dict[ChunkId, ChunkRecord] = {}
    for event in sorted(events, key=lambda e: e.phase):
        records.setdefault(event.chunk, ChunkRecord(event.chunk)).apply(event)
    return records


class ChunkLedger:
    """The chunks of one export plan, in memory, with the views the engine derives from them.

    :param size: rows in the staging file (the length of every mask derived here).
    :param saved: events a previous run of the same plan recorded (see ``progress``).
    """

    def __init__(self, size: int, saved: Iterable[LedgerEvent] = ()) -> None:
        self.size = size
        self.saved = replay(saved)
        self.records: dict[ChunkId, ChunkRecord] = {}
        self._by_phase: dict[Phase, dict[ChunkId, ChunkRecord]] = {phase: {} for phase in Phase}
        #: rows that never made a chunk (an item too large for any batch)
        self.unsendable: dict[int, Failure] = {}
        #: events since the last :meth:`drain` (what the persistence layer has not stored yet)
        self.new_events: list[LedgerEvent] = []
        self._submitted_order: list[ChunkId] = []
        #: batches a previous run submitted and did not confirm: confirmed now, not sent again
        self.resumed_batches = sum(1 for r in self.saved.values() if r.phase == Phase.SUBMITTED)
        #: batches a previous run was sending with no batch id back: sent again (an upper bound of duplicates)
        self.resent_batches = sum(1 for r in self.saved.values() if r.phase == Phase.SENDING)
        self.resumed = bool(self.saved)

    # ------------------------------------------------------------------ transitions
    def plan(self, chunk: ChunkId, positions: np.ndarray, keys: np.ndarray | None = None) -> ChunkRecord:
        """Register a chunk as the engine meets it; its saved state (if any) comes with it."""
        record = self.saved.pop(chunk, None) or ChunkRecord(chunk)
        record.keys = keys
        if record.phase == Phase.SENDING:  # no batch id came back before the crash: send it again
            record.phase = Phase.PLANNED
        record.positions = positions
        self.records[chunk] = record
        self._by_phase[record.phase][chunk] = record
        if record.batch_id is not None:
            self._submitted_order.append(chunk)
        return record

    def sending(self, chunk: ChunkId) -> None:
        self._move(LedgerEvent(chunk, Phase.SENDING))

    def submitted(self, chunk: ChunkId, batch_id: str) -> None:
        self._move(LedgerEvent(chunk, Phase.SUBMITTED, batch_id=batch_id))
        self._submitted_order.append(chunk)

    def confirmed(self, chunk: ChunkId, failed: dict[int, Failure]) -> None:
        # The batch id travels with the terminal event: a later run lists it without the submitted event.
        self._move(LedgerEvent(chunk, Phase.CONFIRMED, batch_id=self.records[chunk].batch_id, failed=failed))

    def refused(self, chunk: ChunkId, detail: str) -> None:
        positions = self.records[chunk].positions
        assert positions is not None
        failure: Failure = ("omnisend_rejected_batch", detail[:500], False)
        self._move(LedgerEvent(chunk, Phase.REFUSED, failed=dict.fromkeys(positions.tolist(), failure)))

    def exclude(self, positions: np.ndarray, failure: Failure) -> None:
        """Rows that cannot be sent at all (never part of a chunk)."""
        self.unsendable.update(dict.fromkeys(positions.tolist(), failure))

    def _move(self, event: LedgerEvent) -> None:
        record = self.records[event.chunk]
        if event.phase not in _NEXT.get(record.phase, ()):
            raise RuntimeError(f"chunk {event.chunk} cannot go from {record.phase.name} "
                               f"to {event.phase.name}")
        del self._by_phase[record.phase][event.chunk]
        record.apply(event)
        self._by_phase[record.phase][event.chunk] = record
        self.new_events.append(event)

    def drain(self) -> list[LedgerEvent]:
        """The events not stored yet; the caller stores them."""
        events, self.new_events = self.new_events, []
        return events

    # ------------------------------------------------------------------ derived views
    def in_phase(self, phase: Phase) -> list[ChunkRecord]:
        return list(self._by_phase[phase].values())

    def count(self, phase: Phase) -> int:
        return len(self._by_phase[phase])

    def failures(self) -> dict[int, Failure]:
        """Each failed row's last failure: a later round's answer replaces an earlier one."""
        out = dict(self.unsendable)
        rounds = sorted({c[0] for c in self.records})
        for round_ in rounds:
            records = [r for r in self.records.values() if r.chunk[0] == round_]
            if round_ > 0:  # rows sent once more: their earlier failure no longer stands
                for record in records:
                    if record.phase.terminal and record.positions is not None:
                        for pos in record.positions.tolist():
                            out.pop(pos, None)
            for record in records:
                if record.phase.terminal:
                    out.update(record.failed)
        return out

    def retry_mask(self) -> np.ndarray:
        """Rows whose last failure is transient: worth sending once more."""
        mask = np.zeros(self.size, dtype=bool)
        retry = [pos for pos, (_, _, transient) in self.failures().items() if transient]
        mask[np.asarray(retry, dtype=np.int64)] = True
        return mask

    def accepted_mask(self, send: np.ndarray) -> np.ndarray:
        """Rows sent and applied (what the snapshot records); failed rows are sent again next run."""
        accepted = np.asarray(send, dtype=bool).copy()
        failed = self.failures()
        if failed:
            accepted[np.fromiter(failed.keys(), dtype=np.int64, count=len(failed))] = False
        return accepted

    def batch_ids(self) -> list[str]:
        """Every batch id of this plan, in submission order, including those submitted before a crash."""
        return [bid for c in self._submitted_order if (bid := self.records[c].batch_id) is not None]
