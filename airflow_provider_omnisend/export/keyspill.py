"""Staged keys spilled to local disk in key ranges, so the incremental diff never holds every key at once.

Why: the diff and the snapshot merge need, for every staged contact, its e-mail key, its fingerprint and
its staging position; held in memory that is 24 bytes per row, and sorting them doubles it. Instead the
staging file's ``(key, fp, position)`` triples are written into ``2**bits`` files by key range (the top
``bits`` bits of the key). Keys are keyed SipHash values, uniform over 64 bits, so every range holds
about the same number of rows: ``bits`` is chosen so that a range holds at most about ``PARTITION_ROWS``
rows. The previous snapshot is sorted by key, so it can be streamed alongside the ranges in ascending
order (:class:`SortedSnapshotReader`): memory is one range and its slice of the snapshot, whatever the
size of the export.

Within a range, triples are kept in staging order, so a stable sort by key gives (key, position) order:
the same order the in-memory code gets from a stable sort of the whole staging file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

#: Aim for at most this many staged rows per key range (24 bytes each on disk and in memory).
PARTITION_ROWS = 131_072
#: Staging rows read at a time while spilling.
SPILL_READ_ROWS = 262_144
#: At most ``2**MAX_BITS`` range files (open at once while spilling); beyond 33M rows ranges grow.
MAX_BITS = 8
RECORD = np.dtype([("key", "<u8"), ("fp", "<u8"), ("pos", "<i8")])
KEY_BITS = 64


def partition_bits(rows: int, *, target_rows: int = PARTITION_ROWS) -> int:
    """How many top key bits split ``rows`` uniform keys into ranges of at most ``target_rows`` (about)."""
    if target_rows < 1:
        raise ValueError(f"target_rows must be at least 1, got {target_rows}")
    ranges = max(1, -(-rows // target_rows))
    return min(MAX_BITS, max(0, int(ranges - 1).bit_length()))


@dataclass(frozen=True)
class KeyPartitions:
    """Staging's ``(key, fp, pos)`` triples in ``2**bits`` local files, one per key range."""

    directory: str
    bits: int
    rows: int

    @property
    def count(self) -> int:
        return 1 << self.bits

    def upper(self, part: int) -> int | None:
        """The first key above range ``part`` (None for the last range: the rest of the key space)."""
        if part + 1 >= self.count:
            return None
        return (part + 1) << (KEY_BITS - self.bits)

    def path(self, part: int) -> str:
        return os.path.join(self.directory, f"keys-{part:05d}.bin")

    def load(self, part: int) -> np.ndarray:
        """Range ``part`` as ``RECORD`` rows sorted by key, ties in staging order."""
        path = self.path(part)
        records = np.fromfile(path, dtype=RECORD) if os.path.getsize(path) else np.empty(0, RECORD)
        return records[np.argsort(records["key"], kind="stable")]

    def ranges(self) -> Iterator[tuple[np.ndarray, int | None]]:
        """Every range in ascending key order, with its upper bound."""
        for part in range(self.count):
            yield self.load(part), self.upper(part)

    def sorted_keys(self) -> np.ndarray:
        """Every staged key, ascending (8 bytes a row: for matching listed tag holders against it)."""
        return np.concatenate([self.load(part)["key"] for part in range(self.count)])

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def spill_keys(
    staging_path: str,
    directory: str,
    *,
    target_rows: int = PARTITION_ROWS,
    read_rows: int = SPILL_READ_ROWS,
) -> KeyPartitions:
    """Write the staging file's ``(key, fp, pos)`` into key-range files under ``directory`` (emptied
    first), reading ``read_rows`` staging rows at a time."""
    rows = pq.ParquetFile(staging_path, pre_buffer=False).metadata.num_rows
    bits = partition_bits(rows, target_rows=target_rows)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, mode=0o700)
    parts = KeyPartitions(directory=directory, bits=bits, rows=rows)
    handles = [open(parts.path(part), "wb") for part in range(parts.count)]  # noqa: SIM115 - closed below
    try:
        offset = 0
        for batch in stream_parquet(staging_path, columns=["key", "fp"], batch_size=read_rows):
            n = batch.num_rows
            records = np.empty(n, dtype=RECORD)
            records["key"] = batch.column(0).to_numpy()
            records["fp"] = batch.column(1).to_numpy()
            records["pos"] = np.arange(offset, offset + n, dtype=np.int64)
            offset += n
            if bits == 0:
                records.tofile(handles[0])
                continue
            part_of = (records["key"] >> np.uint64(KEY_BITS - bits)).astype(np.int64)
            order = np.argsort(part_of, kind="stable")  # keeps staging order within a range
            bounds = np.searchsorted(part_of[order], np.arange(parts.count + 1))
            grouped = records[order]
            for part in np.flatnonzero(np.diff(bounds)).tolist():
                grouped[bounds[part] : bounds[part + 1]].tofile(handles[part])
    finally:
        for handle in handles:
            handle.close()
    return parts


def stream_parquet(path: str, *, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    """``columns`` of a local Parquet file, ``batch_size`` rows at a time, holding one row group at most.

    Why not ``ParquetFile(path).iter_batches`` as is: pyarrow pre-buffers the file's column chunks by
    default, which for a 5M-row staging file kept about 200 MB alive during a streamed read.
    """
    return pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=batch_size, columns=columns)


class SortedSnapshotReader:
    """Streams a key-sorted snapshot file in ascending key ranges: ``take_below(bound)`` returns every
    row not returned yet whose key is below ``bound`` (all remaining rows for ``None``).

    Raises :class:`UnsortedSnapshot` if the file turns out not to be sorted by key. A snapshot written
    before e-mails were sealed has no ``seal`` column: its seals read as nulls.
    """

    def __init__(self, path: str | None, *, read_rows: int = 65_536) -> None:
        columns = ["key", "fp", "contact_id"]
        self._sealed = path is not None and "seal" in pq.read_schema(path).names
        self._batches = (
            iter(()) if path is None
            else stream_parquet(path, columns=columns + ["seal"] * self._sealed, batch_size=read_rows)
        )
        self._keys = np.empty(0, np.uint64)
        self._fps = np.empty(0, np.uint64)
        self._ids: pa.Array = pa.array([], pa.string())
        self._seals: pa.Array = pa.array([], pa.int64())
        self._last: int | None = None
        self._done = path is None

    def take_below(self, bound: int | None) -> tuple[np.ndarray, np.ndarray, pa.Array, pa.Array]:
        """``(keys, fps, contact_ids, seals)`` of the next rows with key < ``bound``, in file order."""
        while not self._done and (bound is None or not self._keys.size or self._keys[-1] < bound):
            try:
                batch = next(self._batches)
            except StopIteration:
                self._done = True
                break
            self._append(batch)
        cut = self._keys.size if bound is None else int(np.searchsorted(self._keys, np.uint64(bound)))
        out = (self._keys[:cut], self._fps[:cut], self._ids.slice(0, cut), self._seals.slice(0, cut))
        self._keys, self._fps = self._keys[cut:], self._fps[cut:]
        self._ids, self._seals = self._ids.slice(cut), self._seals.slice(cut)
        return out

    def _append(self, batch: pa.RecordBatch) -> None:
        keys = batch.column(0).to_numpy().astype(np.uint64, copy=False)
        if keys.size:
            if (keys[1:] < keys[:-1]).any() or (self._last is not None and keys[0] < self._last):
                raise UnsortedSnapshot("the snapshot is not sorted by key")
            self._last = int(keys[-1])
        ids = batch.column(2)
        seals = batch.column(3) if self._sealed else pa.nulls(batch.num_rows, pa.int64())
        if self._keys.size:
            self._keys = np.concatenate([self._keys, keys])
            self._fps = np.concatenate([self._fps, batch.column(1).to_numpy().astype(np.uint64, copy=False)])
            self._ids = pa.concat_arrays([self._ids, ids])
            self._seals = pa.concat_arrays([self._seals, seals])
        else:
            self._keys = keys
            self._fps = batch.column(1).to_numpy().astype(np.uint64, copy=False)
            self._ids = ids
            self._seals = seals


class UnsortedSnapshot(ValueError):
    """A snapshot file whose keys are not in ascending order (not written by this provider)."""
