"""Phase 1 of an export: lake batches → validated, de-duplicated ContactRequest items on local disk.

Why a staging file: the push phase (rate limited, retried, resumable) must not depend on re-reading the
lake, and the diff against the last snapshot needs every key first. Staging keeps one row per contact
to send: ``row`` (input row number), ``key`` (keyed hash of the e-mail), ``fp`` (keyed hash of the item
JSON under a sub-key derived from the mapping digest), ``item`` (the JSON itself) and ``email`` (as sent:
sealed into the state by the engine, so that mirror mode can untag a contact after it left).

Memory stays bounded: input batches are cut into slices of at most ``SLICE_ROWS`` rows, each slice is
normalised, de-duplicated against everything before it, serialised and written, with one slice queued
per worker. The de-duplication state spills its sorted runs to the staging dir and keeps about one byte
per e-mail in memory (a Bloom filter; see dedupe.py).

Accounting: ``rows_read == valid + rejected``. ``rejected`` counts every row rejected (kind
``row_rejected`` in the rejects file) by this phase, duplicates included; ``duplicates`` is the part
of ``rejected`` with reason ``duplicate`` (also in ``reasons``). Field warnings (a sent contact
without one of its invalid optional fields, see normalize.py) are also written to the rejects file,
but counted apart: ``field_warnings`` and ``field_warning_reasons`` (``{field: {reason: count}}``);
they are not rejected rows.

Row order in staging is input order, and the same input, mapping and hash key give the same staging
content.

The staging file contains e-mail addresses; it is created with mode 0o600 in a local directory.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from airflow_provider_omnisend.export.dedupe import Deduplicator
from airflow_provider_omnisend.export.files import create_private
from airflow_provider_omnisend.export.hashing import derive_key, hash_strings
from airflow_provider_omnisend.export.mapping import MappingSpec
from airflow_provider_omnisend.export.normalize import NormalizedBatch, normalize_batch
from airflow_provider_omnisend.export.payload import build_items
from airflow_provider_omnisend.export.rejects import RejectsWriter, make_rejects_table, source_values

log = logging.getLogger(__name__)
T = TypeVar("T")

STAGING_FILE = "staging.parquet"
#: Spilled de-duplication runs, under the staging dir while ``prepare_export`` runs.
DEDUPE_DIR = "dedupe-runs"
STAGING_SCHEMA = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),
        pa.field("key", pa.uint64(), nullable=False),
        pa.field("fp", pa.uint64(), nullable=False),
        pa.field("item", pa.string(), nullable=False),
        pa.field("email", pa.string(), nullable=False),
    ]
)
#: Rows prepared together. Smaller slices keep fewer bytes in flight (each holds its raw values, the
#: normalised columns and about 250 bytes of JSON per row); 32k rows cost no more CPU than 64k.
SLICE_ROWS = 32_768
#: Staging is written in row groups of at least this many rows.
STAGING_GROUP_ROWS = 65_536
DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class PrepareResult:
    """Counts of phase 1 and where the staging file is. ``rows_read == valid + rejected``."""

    rows_read: int
    valid: int
    rejected: int
    duplicates: int
    reasons: dict[str, int] = field(default_factory=dict)
    staging_path: str = ""
    field_warnings: int = 0
    field_warning_reasons: dict[str, dict[str, int]] = field(default_factory=dict)


def fingerprint_key(hash_key: bytes, spec: MappingSpec) -> bytes:
    """Sub-key for item fingerprints: a different mapping gives different fingerprints for every item."""
    return derive_key(hash_key, purpose=f"fingerprint:{spec.config_digest}")


def prepare_export(
    batches: Iterable[pa.RecordBatch],
    spec: MappingSpec,
    *,
    staging_dir: str,
    rejects: RejectsWriter,
    hash_key: bytes,
    workers: int | None = None,
) -> PrepareResult:
    """Normalise, validate, de-duplicate and serialise every row; write ``staging_dir/staging.parquet``.

    Rejected rows go to ``rejects`` (which the caller closes). Raises ``MappingError`` if a batch lacks
    a mapped column. ``workers`` threads (default: up to 2) prepare slices ahead; de-duplication, the
    rejects file and staging are then fed strictly in input order, so the result does not depend on it.
    """
    if tuple(rejects.source_columns) != spec.source_columns:
        raise ValueError(
            f"the rejects writer was opened for columns {list(rejects.source_columns)}, but the mapping "
            f"reads {list(spec.source_columns)}; open it with source_columns=spec.source_columns"
        )
    workers = workers or min(2, os.cpu_count() or 1)
    os.makedirs(staging_dir, exist_ok=True)
    path = os.path.join(staging_dir, STAGING_FILE)
    create_private(LocalFileSystem(), path)
    fp_key = fingerprint_key(hash_key, spec)
    # Full de-duplication runs go to the staging dir: memory stays flat however many e-mails there are.
    tally = _Tally(dedupe=Deduplicator(spill_dir=os.path.join(staging_dir, DEDUPE_DIR)), rejects=rejects,
                   spec=spec)
    # Two stages on the same worker threads, strictly in input order in between: workers normalise a
    # slice and hash its e-mails; here, it is de-duplicated against everything before it (rejects
    # written); then workers build the JSON items and fingerprints of the survivors only; here, staging
    # is written. Items are never built for a duplicate, nor copied to drop one.
    with (
        tally.dedupe,
        pq.ParquetWriter(
            path, STAGING_SCHEMA, compression="lz4", use_dictionary=False, write_statistics=False
        ) as writer,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omnisend-prepare") as pool,
    ):
        checks = (
            partial(_check_slice, piece, spec, row_offset=offset, hash_key=hash_key)
            for piece, offset in _slices(batches)
        )
        survivors = (
            partial(_stage_slice, *tally.add(checked), spec=spec, fp_key=fp_key)
            for checked in _in_order(pool, checks, ahead=workers)
        )
        pending: list[pa.Table] = []
        pending_rows = 0
        # One slice per worker queued in each stage: enough to keep the workers busy while the tally and
        # the writes run here, without holding more slices than that.
        for staged in _in_order(pool, survivors, ahead=workers):
            if staged.num_rows:
                pending.append(staged)
                pending_rows += staged.num_rows
            if pending_rows >= STAGING_GROUP_ROWS:
                writer.write_table(pa.concat_tables(pending))
                pending, pending_rows = [], 0
        if pending:
            writer.write_table(pa.concat_tables(pending))
    result = PrepareResult(
        rows_read=tally.rows_read,
        valid=tally.valid,
        rejected=tally.rejected,
        duplicates=tally.duplicates,
        reasons=dict(sorted(tally.reasons.items())),
        staging_path=path,
        field_warnings=tally.field_warnings,
        field_warning_reasons={k: dict(sorted(v.items())) for k, v in sorted(tally.warning_reasons.items())},
    )
    log.info(
        "Prepared export: %d rows read, %d valid contacts, %d rejected (%d duplicates); reasons %s; "
        "%d invalid optional fields left out: %s",
        result.rows_read,
        result.valid,
        result.rejected,
        result.duplicates,
        result.reasons,
        result.field_warnings,
        result.field_warning_reasons,
    )
    return result


@dataclass(frozen=True, slots=True)
class _CheckedSlice:
    """Everything about one slice that does not depend on other slices (computed in a worker)."""

    piece: pa.RecordBatch | pa.Table
    normalized: NormalizedBatch
    keys: np.ndarray  # keyed hashes of the valid rows' e-mails


def _check_slice(
    piece: pa.RecordBatch | pa.Table, spec: MappingSpec, *, row_offset: int, hash_key: bytes
) -> _CheckedSlice:
    normalized = normalize_batch(piece, spec, row_offset=row_offset)
    keys = hash_strings(normalized.valid.column("email"), key=hash_key)
    return _CheckedSlice(piece=piece, normalized=normalized, keys=keys)


def _stage_slice(valid: pa.Table, keys: np.ndarray, *, spec: MappingSpec, fp_key: bytes) -> pa.Table:
    """STAGING_SCHEMA rows for the survivors of one slice: their JSON items and fingerprints."""
    items = build_items(valid, spec) if valid.num_rows else pa.array([], pa.string())
    return pa.Table.from_arrays(
        [
            valid.column("row"),
            pa.array(keys, pa.uint64()),
            pa.array(hash_strings(items, key=fp_key), pa.uint64()),
            items,
            valid.column("email"),
        ],
        schema=STAGING_SCHEMA,
    )


@dataclass
class _Tally:
    """The in-order part: de-duplication across slices, rejects and the counts."""

    dedupe: Deduplicator
    rejects: RejectsWriter
    spec: MappingSpec
    rows_read: int = 0
    valid: int = 0
    rejected: int = 0
    duplicates: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    field_warnings: int = 0
    warning_reasons: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, checked: _CheckedSlice) -> tuple[pa.Table, np.ndarray]:
        """Account for one slice; return its valid rows that survive de-duplication, and their keys."""
        normalized, keys = checked.normalized, checked.keys
        self.rows_read += checked.piece.num_rows
        self.rejects.write(normalized.rejects)
        self._count(normalized.reasons)
        if normalized.warnings is not None:
            self.rejects.write(normalized.warnings)
            self.field_warnings += normalized.warnings.num_rows
            for slot, counts in (normalized.warning_reasons or {}).items():
                per_slot = self.warning_reasons.setdefault(slot, {})
                for code, count in counts.items():
                    per_slot[code] = per_slot.get(code, 0) + count
        valid = normalized.valid
        rows = valid.column("row").to_numpy()
        verdict = self.dedupe.add(keys, rows)
        losers = ~verdict.keep
        dropped = int(np.count_nonzero(losers))
        if dropped:
            self.rejects.write(
                _duplicates_table(
                    checked.piece,
                    self.spec,
                    normalized.valid_positions[losers],
                    rows[losers],
                    verdict.winner_rows[losers],
                )
            )
            valid, keys = valid.filter(pa.array(verdict.keep)), keys[verdict.keep]
            self.duplicates += dropped
            self._count({DUPLICATE: dropped})
        self.valid += valid.num_rows
        return valid, keys

    def _count(self, reasons: dict[str, int]) -> None:
        for code, count in reasons.items():
            self.reasons[code] = self.reasons.get(code, 0) + count
            self.rejected += count


def _in_order(pool: ThreadPoolExecutor, tasks: Iterable[Callable[[], T]], *, ahead: int) -> Iterator[T]:
    """Run ``tasks`` on ``pool`` with at most ``ahead`` in flight; yield results in submission order."""
    queue: deque[Future[T]] = deque()
    try:
        for task in tasks:
            queue.append(pool.submit(task))
            if len(queue) > ahead:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        for future in queue:
            future.cancel()


def _slices(batches: Iterable[pa.RecordBatch | pa.Table]) -> Iterator[tuple[pa.RecordBatch | pa.Table, int]]:
    """Input cut into slices of at most ``SLICE_ROWS`` rows, with the input row number of their first row."""
    offset = 0
    for batch in batches:
        for start in range(0, batch.num_rows, SLICE_ROWS):
            piece = batch.slice(start, SLICE_ROWS)
            yield piece, offset
            offset += piece.num_rows


def _duplicates_table(
    piece: pa.RecordBatch | pa.Table,
    spec: MappingSpec,
    positions: np.ndarray,
    rows: np.ndarray,
    winners: np.ndarray,
) -> pa.Table:
    details = pc.binary_join_element_wise(
        "same e-mail as row ",
        pa.array(winners).cast(pa.string()),
        ", which is exported instead (the first valid occurrence wins)",
        "",
    )
    return make_rejects_table(
        rows, DUPLICATE, details, source_values(piece, spec.source_columns, positions), spec.source_columns
    )
