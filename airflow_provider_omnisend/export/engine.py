"""ExportEngine: one segment export, from lake batches to confirmed Omnisend contacts.

The flow (no Airflow here; the operator only translates):

1. **prepare**: stream the lake's batches through map → validate → de-duplicate → payload JSON into a
   local staging Parquet; invalid rows and duplicates go to the rejects file.
2. **limit**: more valid profiles than ``max_profiles`` fails here, before anything is sent.
3. **diff**: compare with the last snapshot (keyed hashes, no PII): only new and changed contacts are sent.
   Staged keys are spilled to the work dir by key range and the key-sorted snapshot is streamed alongside
   (``keyspill``), so memory does not grow with the number of contacts.
4. **push**: chunks within the version's item cap and 1 MB go to ``POST /batches`` from a bounded pool of
   senders, inside the client's rate budget. Submitted batch ids are checkpointed in the progress store.
5. **confirm**: batches are confirmed in bulk (``GET /batches`` pages), per-item errors read only for
   batches that report some; transient item failures are sent once more, the rest rejected with
   Omnisend's message. Confirmed chunks are journaled under ``state_dir`` so a retry skips them.
6. **mirror** (optional): contacts that left the segment lose the segment tag, and nothing else: by
   e-mail from the last snapshot's sealed e-mails, or by listing the tag (see ``mirror``).
7. **snapshot**: written atomically, only after every batch was confirmed, without rejected rows (merged
   range by range and streamed to the state dir), with the members' e-mails sealed beside it when the
   engine has a ``state_secret`` (see ``sealed``).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import fsspec
import numpy as np
import orjson
import pyarrow as pa

from airflow_provider_omnisend.api.errors import OmnisendApiError, OmnisendValidationError
from airflow_provider_omnisend.api.versions import MAX_BATCH_BODY_BYTES
from airflow_provider_omnisend.export.confirm import BatchConfirmer, BatchOutcome
from airflow_provider_omnisend.export.files import open_private
from airflow_provider_omnisend.export.hashing import hash_strings, key_check, state_key
from airflow_provider_omnisend.export.keyspill import KeyPartitions, spill_keys, stream_parquet
from airflow_provider_omnisend.export.ledger import ChunkId, ChunkLedger, ChunkRecord, Failure, Phase
from airflow_provider_omnisend.export.mapping import MappingSpec
from airflow_provider_omnisend.export.mirror import (
    MIRROR_SCOPES,
    Mirrored,
    TagMirror,
    in_sorted,
    not_in_sorted,
)
from airflow_provider_omnisend.export.payload import (
    batch_bodies,
    batch_body,
    item_byte_lengths,
    oversized_items,
    plan_chunks,
)
from airflow_provider_omnisend.export.prepare import PrepareResult, prepare_export
from airflow_provider_omnisend.export.progress import Checkpoint, Journal, ProgressStore, local_journal_path
from airflow_provider_omnisend.export.rejects import RejectsWriter
from airflow_provider_omnisend.export.sealed import SealedFile, SealError, open_sealed, seal_key, write_sealed
from airflow_provider_omnisend.export.snapshot import (
    SNAPSHOT_SCHEMA,
    Diff,
    SnapshotState,
    diff_partitioned,
    fetch_snapshot,
    load_state,
    merge_partitioned,
    write_snapshot,
    write_snapshot_batches,
)
from airflow_provider_omnisend.export.wal import LocalJournal

log = logging.getLogger(__name__)

#: Staging rows read at a time while sending: a block's item JSON and its joined bodies are alive together
#: (about 16 MB for 32k rows). Chunks span blocks, so the size changes memory, not the batches.
STAGING_READ_ROWS = 32_768
#: Up to this many batch ids travel in the summary (XCom); more go to a file.
INLINE_BATCH_IDS = 50
#: Under the work dir: staged keys spilled by key range, and a copy of a remote previous snapshot.
KEYS_DIR = "keys"
PREVIOUS_DIR = "previous"


class ExportLimitError(ValueError):
    """The export holds more profiles than ``max_profiles`` allows; nothing was sent."""


class RejectRatioExceeded(RuntimeError):
    """More rows were rejected than ``max_reject_ratio`` tolerates (the summary is attached)."""

    def __init__(self, message: str, summary: ExportSummary) -> None:
        super().__init__(message)
        self.summary = summary


class ContactApi(Protocol):
    """What the engine needs of :class:`~airflow_provider_omnisend.api.client.OmnisendClient`."""

    def create_batch(self, items: Any = None, endpoint: str = ..., method: str = ..., *,
                     body: bytes | None = None) -> dict[str, Any]: ...
    def get_batch(self, batch_id: str) -> dict[str, Any]: ...
    def get_batch_items(self, batch_id: str) -> dict[str, Any]: ...
    def list_batches(self, *, endpoint: str = ..., offset: int = ..., limit: int = ...,
                     status: str | None = ...) -> dict[str, Any]: ...
    def list_contacts(self, *, page_size: int = ..., **filters: Any) -> Iterator[dict[str, Any]]: ...
    def remove_tags(self, tags: Any, emails: Any = (), *, contact_ids: Any = ()) -> int: ...


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    segment: str
    #: The tag marking segment members (``mode="mirror"`` removes it from those who left); None = off.
    segment_tag: str | None = None
    #: mirror: ``"snapshot"`` untags who left since the last snapshot, by e-mail (⌈leavers / 250⌉ calls);
    #: ``"tag"`` lists every holder of the tag and untags who is not in this export (also contacts
    #: tagged outside this product; ⌈holders / 250⌉ GETs)
    mirror_scope: str = "snapshot"
    max_profiles: int | None = 1_000_000
    max_reject_ratio: float = 0.05
    incremental: bool = True
    full_refresh: bool = False
    mode: str = "upsert"
    dry_run: bool = False
    batch_item_cap: int = 100
    max_body_bytes: int = MAX_BATCH_BODY_BYTES
    max_in_flight: int = 8
    #: Confirm pending batches in bulk once this many are unconfirmed.
    confirm_every: int = 200
    poll_interval: float = 2.0
    confirm_timeout: float = 3600.0
    progress_interval: float = 5.0
    #: the task state store and the shared journal are written at most this often (seconds), and at every
    #: phase boundary; the local journal at every batch (see ``progress.Checkpoint``)
    checkpoint_interval: float = 1.0
    dry_run_sample: int = 20

    def __post_init__(self) -> None:
        if self.mode not in ("upsert", "mirror"):
            raise ValueError(f"mode must be 'upsert' or 'mirror', got {self.mode!r}")
        if not 0 <= self.max_reject_ratio <= 1:
            raise ValueError(f"max_reject_ratio must be between 0 and 1, got {self.max_reject_ratio}")
        if self.mirror_scope not in MIRROR_SCOPES:
            raise ValueError(f"mirror_scope must be 'snapshot' or 'tag', got {self.mirror_scope!r}")
        if self.mode == "mirror" and not self.segment_tag:
            raise ValueError("mode='mirror' removes the segment tag from who left, so it needs a segment tag")


@dataclass
class ExportSummary:
    segment: str
    rows_read: int = 0
    valid: int = 0
    rejected: int = 0
    duplicates: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    #: contacts Omnisend accepted in this run (sent and not rejected: rows_read = sent + rejected + unchanged)
    sent: int = 0
    #: dry run: how many contacts a real run would send
    would_send: int = 0
    batches: int = 0
    #: batches submitted before a crash and confirmed after it, without sending them again
    resumed_batches: int = 0
    #: batches a crash left mid-send, sent again (at most ``max_in_flight``; an upper bound of duplicates
    #: when the local journal is there; a resume from the state folder's journal alone also sends again,
    #: uncounted, the batches submitted since its last checkpoint)
    resent_batches: int = 0
    retried_items: int = 0
    api_rejected: int = 0
    untagged: int = 0
    #: mirror: how the leavers were found ("sealed": opened e-mails; "listing": the tag's holders listed)
    mirror_via: str | None = None
    #: mirror: tag holders listed (0 when the sealed e-mails were used)
    mirror_listed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    #: invalid optional fields left out of contacts that were sent (``on_invalid_field="drop_field"``);
    #: listed in the rejects file (kind ``field_dropped``), not counted in ``rejected``
    field_warnings: int = 0
    #: ``{field: {reason: count}}`` of those warnings
    field_warning_reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    rejects_path: str | None = None
    sample_path: str | None = None
    batch_ids: list[str] = field(default_factory=list)
    batch_ids_path: str | None = None
    dry_run: bool = False
    resumed: bool = False
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Chunk:
    """One batch: its number (the same for a given staging file, mask and caps), rows and body."""

    number: int
    positions: np.ndarray  # staging row positions
    keys: np.ndarray       # keyed e-mail hashes, to map Omnisend's echoed items back to rows
    body: bytes


@dataclass(frozen=True)
class StagedBlock:
    """Rows of one staging block picked by a mask: positions, e-mail keys, item JSON and its byte sizes."""

    positions: np.ndarray
    keys: np.ndarray
    items: pa.StringArray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)


def staged_rows(
    staging_path: str,
    send: np.ndarray,
    *,
    max_body_bytes: int = MAX_BATCH_BODY_BYTES,
    read_rows: int | None = None,
    on_oversized: Callable[[np.ndarray], None] | None = None,
) -> Iterator[StagedBlock]:
    """The staging rows where ``send`` is True, block by block (``read_rows`` rows read at a time,
    ``STAGING_READ_ROWS`` by default). An item too large for any batch is left out and its staging
    position handed to ``on_oversized``."""
    offset = 0
    for read in stream_parquet(staging_path, columns=["key", "item"],
                               batch_size=read_rows or STAGING_READ_ROWS):
        n = read.num_rows
        mask = send[offset:offset + n]
        picked = int(np.count_nonzero(mask))
        offset += n
        if not picked:
            continue
        if picked == n:  # a first run sends every row: no copy
            positions = np.arange(offset - n, offset, dtype=np.int64)
            batch = read
        else:
            positions = np.flatnonzero(mask) + (offset - n)
            batch = read.filter(pa.array(mask))
        keys = batch.column(0).to_numpy()
        items = batch.column(1)
        lengths = item_byte_lengths(items)
        oversized = oversized_items(lengths, max_body_bytes=max_body_bytes)
        if len(oversized):
            if on_oversized is not None:
                on_oversized(positions[oversized])
            keep = np.ones(len(positions), dtype=bool)
            keep[oversized] = False
            positions, keys, lengths = positions[keep], keys[keep], lengths[keep]
            items = items.filter(pa.array(keep))
            if not len(positions):
                continue
        yield StagedBlock(positions, keys, items, lengths)


def iter_chunks(
    staging_path: str,
    send: np.ndarray,
    *,
    max_items: int,
    max_body_bytes: int = MAX_BATCH_BODY_BYTES,
    first_number: int = 0,
    read_rows: int | None = None,
    on_oversized: Callable[[np.ndarray], None] | None = None,
) -> Iterator[Chunk]:
    """The batches of the staging rows in ``send``, numbered from ``first_number``, as the engine sends
    them: deterministic for a given staging file, mask and caps, so a retry after a crash numbers them
    alike. A chunk may span two staging blocks (the tail of one block waits for the next), so only the
    last batch is partial (or one the next item would push over the byte cap). Each block's bodies come
    from one Arrow join (:func:`~airflow_provider_omnisend.export.payload.batch_bodies`)."""
    number = first_number
    tail: StagedBlock | None = None
    for block in staged_rows(staging_path, send, max_body_bytes=max_body_bytes, read_rows=read_rows,
                             on_oversized=on_oversized):
        carried = 0 if tail is None else len(tail)
        if tail is None:
            positions, keys, lengths = block.positions, block.keys, block.lengths
        else:
            positions = np.concatenate([tail.positions, block.positions])
            keys = np.concatenate([tail.keys, block.keys])
            lengths = np.concatenate([tail.lengths, block.lengths])
        plan = plan_chunks(lengths, max_items=max_items, max_body_bytes=max_body_bytes)
        *ready, (last_start, last_stop) = plan
        # The few chunks that hold carried items are joined from a small copy; the others straight
        # from this block's items.
        spanning = [(a, b) for a, b in ready if a < carried]
        inside = [(a, b) for a, b in ready if a >= carried]
        bodies = [batch_body(_virtual_slice(tail, block.items, carried, a, b)) for a, b in spanning]
        if inside:
            bounds = np.array([a for a, _ in inside] + [inside[-1][1]], dtype=np.int64) - carried
            bodies_inside: Iterable[bytes] = batch_bodies(block.items, bounds)
        else:
            bodies_inside = ()
        for (start, stop), body in zip(spanning + inside, [*bodies, *bodies_inside], strict=True):
            yield Chunk(number, positions[start:stop], keys[start:stop], body)
            number += 1
        tail = StagedBlock(positions[last_start:last_stop], keys[last_start:last_stop],
                           _virtual_slice(tail, block.items, carried, last_start, last_stop),
                           lengths[last_start:last_stop])
    if tail is not None:
        yield Chunk(number, tail.positions, tail.keys, batch_body(tail.items))


def _virtual_slice(tail: StagedBlock | None, items: pa.StringArray, carried: int, start: int,
                   stop: int) -> pa.StringArray:
    """Items ``[start, stop)`` of the carried tail followed by ``items``, copying only when it spans both."""
    if start >= carried:
        return items.slice(start - carried, stop - start)
    assert tail is not None
    head = tail.items.slice(start, min(stop, carried) - start)
    if stop <= carried:
        return head
    return pa.concat_arrays([head, items.slice(0, stop - carried)])


class ExportEngine:
    """Runs one export. Build a new engine per run."""

    def __init__(
        self,
        *,
        client: ContactApi,
        spec: MappingSpec,
        options: ExportOptions,
        state_dir: str,
        work_dir: str | Path,
        artifacts_dir: str | Path,
        rejects: RejectsWriter,
        progress: ProgressStore,
        export_id: str = "",
        storage_options: dict | None = None,
        state_secret: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.spec = spec
        self.options = options
        self.state_dir = state_dir
        self.work_dir = Path(work_dir)
        self.artifacts_dir = Path(artifacts_dir)
        self.rejects = rejects
        self.progress = progress
        self.export_id = export_id
        self.storage_options = storage_options
        #: binds the state's stored hash key to a secret kept outside the state folder (see state_key)
        self.state_secret = state_secret
        self.clock = clock
        self.confirmer = BatchConfirmer(client, poll_interval=options.poll_interval,
                                        timeout=options.confirm_timeout,
                                        cancel=getattr(client, "cancel", None))
        #: the one record of every chunk's fate; a new one per plan (see ``_push``)
        self.ledger = ChunkLedger(0)

    # ------------------------------------------------------------------ the whole run
    def run(self, batches: Iterable[pa.RecordBatch]) -> ExportSummary:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            return self._run(batches)
        finally:  # the spilled keys and the snapshot copy; the staging file stays for inspection
            shutil.rmtree(self.work_dir / KEYS_DIR, ignore_errors=True)
            shutil.rmtree(self.work_dir / PREVIOUS_DIR, ignore_errors=True)

    def _run(self, batches: Iterable[pa.RecordBatch]) -> ExportSummary:
        started = self.clock()
        opts = self.options
        summary = ExportSummary(segment=opts.segment, dry_run=opts.dry_run)
        state = load_state(self.state_dir, storage_options=self.storage_options, read_table=False)
        self.hash_key = state_key(state.hash_key, self.state_secret)
        check = key_check(self.hash_key)
        keyed_alike = state.snapshot_name is None or state.key_check == check
        if not keyed_alike:
            log.warning("Segment %r: the last snapshot was hashed under another secret (the Omnisend "
                        "connection's API key or state_secret changed), so it cannot be compared: this run "
                        "sends every contact once and starts a new snapshot.", opts.segment)
        prep = prepare_export(batches, self.spec, staging_dir=str(self.work_dir), rejects=self.rejects,
                              hash_key=self.hash_key)
        self.staging_path = prep.staging_path
        self._count_prepared(summary, prep)
        if opts.max_profiles is not None and prep.valid > opts.max_profiles:
            raise ExportLimitError(
                f"Segment {opts.segment!r} has {prep.valid:,} valid profiles ({prep.rows_read:,} rows read), "
                f"more than max_profiles={opts.max_profiles:,}. Nothing was sent. Raise max_profiles if "
                "this size is expected, or check the export for a broken filter.")
        use_snapshot = opts.incremental and not opts.full_refresh and keyed_alike
        # The diff and the merge go key range by key range (spilled to the work dir) against the previous
        # snapshot streamed from a local copy: no per-contact state of the whole export in memory.
        parts = spill_keys(prep.staging_path, str(self.work_dir / KEYS_DIR))
        previous = None
        if use_snapshot and state.snapshot_name is not None:
            previous = fetch_snapshot(self.state_dir, state.snapshot_name, str(self.work_dir / PREVIOUS_DIR),
                                      storage_options=self.storage_options)
        delta = diff_partitioned(parts, previous)
        summary.new, summary.changed = delta.new, delta.changed
        summary.unchanged, summary.removed = delta.unchanged, delta.removed
        send = np.asarray(delta.send, dtype=bool)
        log.info("Segment %r: %d rows read, %d valid, %d rejected (%d duplicates), %d field warnings; "
                 "%d new, %d changed, %d unchanged, %d removed", opts.segment, prep.rows_read, prep.valid,
                 prep.rejected, prep.duplicates, prep.field_warnings, delta.new, delta.changed,
                 delta.unchanged, delta.removed)
        if opts.dry_run:
            summary.sample_path = self._write_sample(send)
            summary.would_send = int(send.sum())
            summary.duration_s = round(self.clock() - started, 3)
            return summary

        if state.snapshot_name is None:
            # First run: persist the hash key now, so a retry after a crash hashes alike and resumes.
            write_snapshot(self.state_dir, SNAPSHOT_SCHEMA.empty_table(), hash_key=state.hash_key,
                           key_check=check, config_digest=self.spec.config_digest,
                           storage_options=self.storage_options)
        plan = self._plan_digest(send)
        checkpoint = Checkpoint(Journal(self.state_dir, plan, storage_options=self.storage_options),
                                self.progress, plan,
                                local=LocalJournal(local_journal_path(self.state_dir, plan)),
                                interval=opts.checkpoint_interval, clock=self.clock)
        self.checkpoint = checkpoint
        self._push(send, plan, checkpoint, summary)
        if opts.mode == "mirror":
            self._record_mirror(summary, self._mirror(state, delta, parts, compared=previous is not None,
                                                      keyed_alike=keyed_alike))
        accepted = self.ledger.accepted_mask(send)
        # Unchanged rows keep their entry; failed ones are left to be sent again next run.
        write_snapshot_batches(self.state_dir, merge_partitioned(parts, previous, accepted),
                               hash_key=state.hash_key, key_check=check,
                               config_digest=self.spec.config_digest, storage_options=self.storage_options,
                               emails=self._seal_emails(state))
        checkpoint.finish()
        self._record_batch_ids(summary, plan)
        summary.duration_s = round(self.clock() - started, 3)
        total = summary.rows_read
        summary.rejected = prep.rejected + summary.api_rejected
        if total and summary.rejected / total > opts.max_reject_ratio:
            raise RejectRatioExceeded(
                f"Segment {opts.segment!r}: {summary.rejected:,} of {total:,} rows were rejected "
                f"({summary.rejected / total:.1%}), above max_reject_ratio={opts.max_reject_ratio:.1%}. "
                f"Accepted rows are in Omnisend; see the reasons in {summary.rejects_path}.", summary)
        return summary

    # ------------------------------------------------------------------ steps
    def _count_prepared(self, summary: ExportSummary, prep: PrepareResult) -> None:
        summary.rows_read, summary.valid = prep.rows_read, prep.valid
        summary.rejected, summary.duplicates = prep.rejected, prep.duplicates
        summary.reasons = dict(prep.reasons)
        summary.field_warnings = prep.field_warnings
        summary.field_warning_reasons = {k: dict(v) for k, v in prep.field_warning_reasons.items()}
        summary.rejects_path = self.rejects.path

    def _plan_digest(self, send: np.ndarray) -> str:
        digest = hashlib.sha256()
        digest.update(self.spec.config_digest.encode())
        digest.update(self.export_id.encode())
        offset = 0
        for batch in stream_parquet(self.staging_path, columns=["fp"], batch_size=STAGING_READ_ROWS):
            fps = batch.column(0).to_numpy()
            digest.update(np.ascontiguousarray(fps[send[offset:offset + len(fps)]]).tobytes())
            offset += len(fps)
        digest.update(str(self.options.batch_item_cap).encode())
        return digest.hexdigest()[:32]

    def _iter_chunks(self, send: np.ndarray) -> Iterator[Chunk]:
        """Chunks of the rows in ``send`` (see :func:`iter_chunks`); oversized items are excluded."""
        return iter_chunks(self.staging_path, send, max_items=self.options.batch_item_cap,
                           max_body_bytes=self.options.max_body_bytes, on_oversized=self._too_large)

    def _staged_rows(self, send: np.ndarray) -> Iterator[StagedBlock]:
        return staged_rows(self.staging_path, send, max_body_bytes=self.options.max_body_bytes,
                           on_oversized=self._too_large)

    def _too_large(self, positions: np.ndarray) -> None:
        limit = self.options.max_body_bytes
        self.ledger.exclude(positions, (
            "item_too_large", f"the contact's JSON does not fit a {limit}-byte batch, so it was not "
            "exported; later rows with the same e-mail are in this file as its duplicates", False))

    def _push(self, send: np.ndarray, plan: str, checkpoint: Checkpoint, summary: ExportSummary) -> None:
        """Send the plan (round 0), then once more the rows that failed for a transient reason (round 1)."""
        ledger = self.ledger = ChunkLedger(len(send), checkpoint.load())
        summary.resumed = ledger.resumed
        summary.resumed_batches = ledger.resumed_batches
        summary.resent_batches = ledger.resent_batches
        if ledger.resumed:
            log.info("Resuming: %d chunks already confirmed, %d submitted batches to confirm, %d in flight "
                     "at the crash to send again",
                     sum(1 for r in ledger.saved.values() if r.phase.terminal), ledger.resumed_batches,
                     ledger.resent_batches)
        total = int(send.sum())
        tracker = _Progress(total, self.options.progress_interval, self.clock)
        self._send_round(0, send, checkpoint, tracker)
        retry = ledger.retry_mask()
        if retry.any():
            summary.retried_items = int(retry.sum())
            log.info("Retrying %d items that failed for a transient reason", summary.retried_items)
            self._send_round(1, retry, checkpoint,
                             _Progress(summary.retried_items, self.options.progress_interval, self.clock))
        summary.batches = len(ledger.batch_ids())
        self._reject_failures(summary)
        summary.sent = total - summary.api_rejected
        tracker.log(final=True)

    def _send_round(self, round_: int, mask: np.ndarray, checkpoint: Checkpoint, tracker: _Progress) -> None:
        """One round over the chunks of ``mask``, as a state machine over the ledger: a chunk confirmed or
        refused before is replayed, one submitted before is confirmed, any other is sent from a bounded
        pool; submitted batches are confirmed in bulk."""
        ledger = self.ledger
        in_flight: dict[Future, Chunk] = {}
        workers = self.options.max_in_flight
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omnisend-push") as pool:
            try:
                self._send_chunks(round_, mask, pool=pool, in_flight=in_flight, checkpoint=checkpoint,
                                  tracker=tracker)
            except BaseException:
                # Cancelled (on_kill), or an error no retry fixes: record what the sends still in flight
                # got back (they stop promptly once the client's cancel event is set), then checkpoint.
                self._settle(round_, in_flight)
                checkpoint.write(ledger, force=True)
                raise
        try:
            self._confirm(checkpoint, tracker, block=True)
        finally:
            checkpoint.write(ledger, force=True)  # a phase boundary

    def _send_chunks(self, round_: int, mask: np.ndarray, *, pool: ThreadPoolExecutor,
                     in_flight: dict[Future, Chunk], checkpoint: Checkpoint, tracker: _Progress) -> None:
        opts, ledger = self.options, self.ledger
        last_poll = float("-inf")
        for chunk in self._iter_chunks(mask):
            record = ledger.plan((round_, chunk.number), chunk.positions, chunk.keys)
            if record.phase.terminal:
                tracker.advance(len(chunk.positions))
                continue
            if record.phase == Phase.SUBMITTED:  # submitted before the crash: confirm, do not send again
                continue
            while len(in_flight) >= opts.max_in_flight:
                self._collect(round_, in_flight)
                checkpoint.write(ledger)
            ledger.sending(record.chunk)
            checkpoint.write(ledger)
            in_flight[pool.submit(self._send_chunk, chunk)] = chunk
            if (ledger.count(Phase.SUBMITTED) >= opts.confirm_every
                    and self.clock() - last_poll >= opts.poll_interval):
                last_poll = self.clock()
                self._confirm(checkpoint, tracker, block=False)
            tracker.maybe_log()
        while in_flight:
            self._collect(round_, in_flight)
            checkpoint.write(ledger)

    def _settle(self, round_: int, in_flight: dict[Future, Chunk]) -> None:
        """Wait for the sends still in flight and record those that were submitted or refused."""
        for future, chunk in list(in_flight.items()):
            try:
                result = future.result()
            except Exception:  # it stays "sending": a later run sends it again
                continue
            finally:
                in_flight.pop(future)
            self._record_send((round_, chunk.number), result)

    def _confirm(self, checkpoint: Checkpoint, tracker: _Progress, *, block: bool) -> None:
        """Confirm the submitted batches (all of them when ``block``, else those finished now)."""
        pending = {r.batch_id: r for r in self.ledger.in_phase(Phase.SUBMITTED)}
        if not pending:
            return
        outcomes = self.confirmer.wait(list(pending)) if block else self.confirmer.poll(list(pending))
        for bid, outcome in outcomes.items():
            record = pending[bid]
            self.ledger.confirmed(record.chunk, self._failed_rows(record, outcome))
            assert record.positions is not None
            tracker.advance(len(record.positions))
        if outcomes:
            checkpoint.write(self.ledger)

    def _send_chunk(self, chunk: Chunk) -> str | OmnisendValidationError:
        try:
            response = self.client.create_batch(body=chunk.body)
        except OmnisendValidationError as err:
            return err  # the whole batch was refused: its rows are rejected with Omnisend's message
        batch_id = response.get("batchID")
        if not batch_id:
            raise OmnisendApiError(f"Omnisend accepted a batch but returned no batchID: {response!r:.300}")
        return str(batch_id)

    def _collect(self, round_: int, in_flight: dict[Future, Chunk]) -> None:
        """Wait for at least one send to finish; record it as submitted, or refused whole."""
        finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in finished:
            chunk = in_flight.pop(future)
            chunk.body = b""  # sent: keep memory bounded (a retry rebuilds its body from staging)
            # Auth, version and exhausted network errors propagate: the progress is saved.
            self._record_send((round_, chunk.number), future.result())

    def _record_send(self, chunk: ChunkId, result: str | OmnisendValidationError) -> None:
        if isinstance(result, OmnisendValidationError):
            self.ledger.refused(chunk, str(result))
        else:
            self.ledger.submitted(chunk, result)

    def _failed_rows(self, record: ChunkRecord, outcome: BatchOutcome) -> dict[int, Failure]:
        """A confirmed batch's rows that Omnisend did not apply; never processed ones are transient."""
        if outcome.clean:
            return {}
        assert record.positions is not None and record.keys is not None
        by_key = dict(zip(record.keys.tolist(), record.positions.tolist(), strict=True))
        ok = self._positions(by_key, outcome.succeeded)
        failed: dict[int, Failure] = {}
        for failure in outcome.failures:
            for pos in self._positions(by_key, [failure.email] if failure.email else []):
                reason = "omnisend_transient_error" if failure.transient else "omnisend_rejected"
                failed[pos] = (reason, failure.message, failure.transient)
        for pos in record.positions.tolist():
            if pos not in failed and pos not in ok:  # never processed (stopped batch): worth one more try
                failed[pos] = ("omnisend_not_processed",
                               f"batch {outcome.batch_id} ended {outcome.status} before this item", True)
        return failed

    def _positions(self, by_key: dict[int, int], emails: list[str]) -> set[int]:
        if not emails:
            return set()
        return {by_key[k] for k in self._email_keys(emails).tolist() if k in by_key}

    def _email_keys(self, emails: list[str]) -> np.ndarray:
        """Keys of e-mails as Omnisend returns them, hashed as staging hashed ours (trimmed, lower-cased;
        staged e-mails are ASCII, so Python's lower-casing agrees with the staging's)."""
        return hash_strings(pa.array([e.strip().lower() for e in emails], pa.string()), key=self.hash_key)

    def _reject_failures(self, summary: ExportSummary) -> None:
        failures = self.ledger.failures()
        if not failures:
            return
        by_reason: dict[str, tuple[list[int], list[str]]] = {}
        for pos, (reason, detail, _) in sorted(failures.items()):
            rows, details = by_reason.setdefault(reason, ([], []))
            rows.append(pos)
            details.append(detail)
        failed = np.fromiter(failures.keys(), dtype=np.int64, count=len(failures))
        failed.sort()
        input_row = dict(zip(failed.tolist(), self._input_rows(failed).tolist(), strict=True))
        for reason, (positions, details) in by_reason.items():
            self.rejects.add(np.array([input_row[p] for p in positions], dtype=np.int64), reason, details)
            summary.reasons[reason] = summary.reasons.get(reason, 0) + len(positions)
        summary.api_rejected = len(failures)

    def _input_rows(self, positions: np.ndarray) -> np.ndarray:
        """The input row numbers of sorted staging ``positions``, reading the staging file block by block."""
        out = np.empty(positions.size, dtype=np.int64)
        offset = done = 0
        for batch in stream_parquet(self.staging_path, columns=["row"], batch_size=STAGING_READ_ROWS):
            stop = int(np.searchsorted(positions, offset + batch.num_rows))
            if stop > done:
                out[done:stop] = batch.column(0).to_numpy()[positions[done:stop] - offset]
                done = stop
            offset += batch.num_rows
        return out

    def _mirror(self, state: SnapshotState, delta: Diff, parts: KeyPartitions, *, compared: bool,
                keyed_alike: bool) -> Mirrored:
        """Remove the segment tag from who left (see ``export.mirror`` for the two scopes)."""
        opts = self.options
        assert opts.segment_tag
        mirror = TagMirror(client=self.client, tag=opts.segment_tag, email_keys=self._email_keys)
        if opts.mirror_scope == "tag":
            return mirror.by_listing(not_in_sorted(parts.sorted_keys()))
        if not compared:
            if state.snapshot_name is None:
                return Mirrored(0, "none")  # a first run: nobody this product tagged has left
            why = ("the last snapshot was hashed under another secret (state_secret or API key changed), "
                   "so who left is unknown" if not keyed_alike else
                   "the last snapshot was not compared (full_refresh or incremental=False)")
            log.warning("Mirror: %s; listing every holder of tag %r instead and untagging those not in this "
                        "export", why, opts.segment_tag)
            return mirror.by_listing(not_in_sorted(parts.sorted_keys()))
        removed = delta.removed_table
        if not removed.num_rows:
            return Mirrored(0, "none")
        keys = removed.column("key").to_numpy().astype(np.uint64, copy=False)
        why = self._sealed_unavailable(state, removed)
        if why is not None:  # expected (an older snapshot, no secret): said once, at info
            log.info("Mirror: %s, so the %d leavers are found by listing the holders of tag %r.", why,
                     len(keys), opts.segment_tag)
        else:
            outcome = self._untag_sealed(mirror, state, removed, keys)
            if isinstance(outcome, Mirrored):
                return outcome
            log.warning("Mirror: %s; listing the holders of tag %r instead.", outcome, opts.segment_tag)
        return mirror.by_listing(in_sorted(np.sort(keys)))

    def _untag_sealed(self, mirror: TagMirror, state: SnapshotState, removed: pa.Table,
                      keys: np.ndarray) -> Mirrored | str:
        """Untag the leavers by their sealed e-mails; or say why those cannot be trusted (nothing done)."""
        try:
            emails = open_sealed(self.state_dir, SealedFile.from_pointer(state.emails),
                                 removed.column("seal").to_numpy(),
                                 key=seal_key(self.state_secret or b"", state.hash_key),
                                 storage_options=self.storage_options)
        except SealError as error:
            return f"the sealed e-mails cannot be opened: {error}"
        done = mirror.by_email(emails, keys)
        if done.how == "mismatch":
            return "an opened e-mail does not hash to its contact's key (another secret?)"
        return done

    def _sealed_unavailable(self, state: SnapshotState, removed: pa.Table) -> str | None:
        """Why the leavers' e-mails cannot come from the sealed e-mails (None: they can)."""
        if not self.state_secret:
            return "no state_secret is set to open sealed e-mails"
        if state.emails is None or removed.column("seal").null_count:
            return ("the last snapshot was written before e-mails were sealed (the snapshot this run "
                    "writes carries them)")
        return None

    def _seal_emails(self, state: SnapshotState) -> SealedFile | None:
        """Seal this run's staged e-mails beside the snapshot (row ``i`` = staging row ``i``), when there is
        a secret kept outside the state folder to seal them with."""
        if not self.state_secret:
            return None
        emails = (batch.column(0) for batch in
                  stream_parquet(self.staging_path, columns=["email"], batch_size=STAGING_READ_ROWS))
        return write_sealed(self.state_dir, emails, key=seal_key(self.state_secret, state.hash_key),
                            storage_options=self.storage_options)

    def _record_mirror(self, summary: ExportSummary, done: Mirrored) -> None:
        if done.how != "none":
            log.info("Mirror: removed tag %r from %d contacts (%d left the segment), %s: %d holders listed, "
                     "%d untag calls", self.options.segment_tag, done.untagged, summary.removed,
                     "by their sealed e-mails" if done.how == "sealed" else "found by listing the tag",
                     done.listed, done.untag_calls)
        summary.untagged = done.untagged
        summary.mirror_via = None if done.how == "none" else done.how
        summary.mirror_listed = done.listed

    def _write_sample(self, send: np.ndarray) -> str:
        """The first few items a real run would send, read block by block (never the whole column)."""
        sample: list[dict[str, Any]] = []
        for block in self._staged_rows(send):
            wanted = self.options.dry_run_sample - len(sample)
            sample += [orjson.loads(s) for s in block.items.slice(0, wanted).to_pylist()]
            if len(sample) >= self.options.dry_run_sample:
                break
        body = {"method": "POST", "endpoint": "contacts", "items": sample}
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        path = self.artifacts_dir / "payload-sample.json"
        path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
        path.chmod(0o600)
        return str(path)

    def _record_batch_ids(self, summary: ExportSummary, plan: str) -> None:
        """Few batch ids go into the summary itself; many go to a file under ``state_dir``, which any
        worker can read (the confirmation task may run elsewhere)."""
        batch_ids = self.ledger.batch_ids()
        if len(batch_ids) <= INLINE_BATCH_IDS:
            summary.batch_ids = batch_ids
            return
        fs, root = fsspec.core.url_to_fs(self.state_dir, **(self.storage_options or {}))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = posixpath.join(root, "batches", f"{stamp}-{plan[:12]}.txt")
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with open_private(fs, path) as fh:
            fh.write(("\n".join(batch_ids) + "\n").encode())
        summary.batch_ids_path = fs.unstrip_protocol(path)


class _Progress:
    """Logs rows done of the total, the rate and an ETA every few seconds."""

    def __init__(self, total: int, interval: float, clock: Callable[[], float]) -> None:
        self.total = total
        self.interval = interval
        self.clock = clock
        self.done = 0
        self.started = clock()
        self.last = self.started

    def advance(self, n: int) -> None:
        self.done += n
        self.maybe_log()

    def maybe_log(self) -> None:
        if self.clock() - self.last >= self.interval:
            self.log()

    def log(self, final: bool = False) -> None:
        now = self.clock()
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        log.info("%s %d/%d contacts confirmed (%.1f%%), %.0f contacts/min, ETA %s",
                 "Done:" if final else "Progress:", self.done, self.total, pct, rate * 60,
                 "0s" if final else (f"{eta:.0f}s" if eta != float("inf") else "unknown"))
