"""De-duplication across the whole export stream on the (lower-cased, trimmed) e-mail.

Rule: the FIRST occurrence in export order wins; it is deterministic and easy to explain ("row 17 was
kept, row 912 had the same e-mail"). Later occurrences are rejected with reason ``duplicate`` and a
detail naming the winning row, so nothing disappears silently.

State: the keyed 64-bit hashes of the e-mails kept so far with their winning row numbers, as sorted runs
of about ``RUN_KEYS`` keys (8 bytes per key, plus 4 per row number while they fit in 32 bits), and a
blocked Bloom filter of the same keys (1 byte per key). The filter answers "certainly new" for almost
every key of a batch, so only the few others (real duplicates and a few percent of false alarms) are
searched in the runs, and runs are never merged beyond ``RUN_KEYS`` keys: no merge copies the whole state.

With a ``spill_dir`` (what ``prepare_export`` uses), full runs are written there and read back, one at a
time into one reused buffer, only to look up a batch's few candidates: memory is the filter plus at most
two runs' worth, whatever the number of e-mails. The price is reading the runs from the page cache once
per batch (about 2 MB per 256k e-mails seen).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import numpy as np

#: Small per-batch runs are merged into one sorted run of at least this many keys, then left alone.
RUN_KEYS = 262_144
#: Filter bits per key (its size doubles with each new filter) and bits set per key.
BLOOM_BITS_PER_KEY = 8
BLOOM_FIRST_KEYS = 1 << 20
_BLOOM_HASHES = 4
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True, slots=True)
class DedupeResult:
    """``keep`` marks the rows to keep; for the others ``winner_rows`` holds the winning row number."""

    keep: np.ndarray
    winner_rows: np.ndarray


class Deduplicator:
    """Stateful first-wins de-duplication over a stream of batches of ``uint64`` keys.

    ``spill_dir``: where full runs go (created; removed by :meth:`close`); None keeps them in memory.
    """

    def __init__(self, spill_dir: str | None = None) -> None:
        self._runs: list[_Run] = []  # frozen, sorted by key
        self._recent: list[tuple[np.ndarray, np.ndarray]] = []  # per-batch runs not merged yet
        self._recent_keys = 0
        self._filter = _ScalableBloom()
        self._spill_dir = spill_dir
        self._buffer = np.empty(0, dtype=np.uint8)
        if spill_dir is not None:
            os.makedirs(spill_dir, mode=0o700, exist_ok=True)

    @property
    def distinct(self) -> int:
        """How many distinct keys have been kept so far."""
        return sum(run.size for run in self._runs) + self._recent_keys

    @property
    def nbytes(self) -> int:
        """Memory held by the state (spilled runs not counted)."""
        held = sum(run.nbytes for run in self._runs) + sum(k.nbytes + r.nbytes for k, r in self._recent)
        return held + self._filter.nbytes + self._buffer.nbytes

    def add(self, keys: np.ndarray, rows: np.ndarray) -> DedupeResult:
        """Check one batch (``rows`` ascending, after every earlier batch's rows) and remember its winners.

        Returns ``keep`` aligned with ``keys``; ``winner_rows`` (same length) holds, for rows not kept,
        the row number of the first occurrence, and -1 for kept rows.
        """
        keys = np.asarray(keys, dtype=np.uint64)
        rows = np.asarray(rows, dtype=np.int64)
        unique_keys, first, inverse = _unique(keys)
        earlier = np.full(unique_keys.size, -1, dtype=np.int64)  # winning row from an earlier batch
        suspects = np.flatnonzero(self._filter.may_contain(unique_keys))
        if suspects.size:
            probe = unique_keys[suspects]
            found = np.full(suspects.size, -1, dtype=np.int64)
            for run in self._runs:
                self._lookup(probe, found, *run.keys(self))
            for run_keys, run_rows in self._recent:
                self._lookup(probe, found, run_keys, lambda at, run_rows=run_rows: run_rows[at])
            earlier[suspects] = found
        winner_of_key = np.where(earlier >= 0, earlier, rows[first])
        winner_rows = winner_of_key[inverse]
        keep = np.zeros(keys.size, dtype=bool)
        fresh = earlier < 0
        keep[first[fresh]] = True
        winner_rows[keep] = -1
        self._remember(unique_keys[fresh], rows[first[fresh]])
        return DedupeResult(keep=keep, winner_rows=winner_rows)

    def close(self) -> None:
        """Drop the state and the spilled runs."""
        self._runs, self._recent, self._recent_keys = [], [], 0
        self._buffer = np.empty(0, dtype=np.uint8)
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)

    def __enter__(self) -> Deduplicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _lookup(probe: np.ndarray, found: np.ndarray, run_keys: np.ndarray, rows_at: object) -> None:
        if not run_keys.size:
            return
        at = np.minimum(np.searchsorted(run_keys, probe), run_keys.size - 1)
        hit = np.flatnonzero(run_keys[at] == probe)
        if hit.size:
            found[hit] = rows_at(at[hit])  # type: ignore[operator]

    def _read(self, path: str, nbytes: int) -> memoryview:
        """The first ``nbytes`` of ``path`` in the reused buffer."""
        if self._buffer.size < nbytes:
            self._buffer = np.empty(nbytes, dtype=np.uint8)
        view = memoryview(self._buffer)[:nbytes]
        with open(path, "rb", buffering=0) as handle:
            if handle.readinto(view) != nbytes:
                raise OSError(f"{path} is shorter than the {nbytes} bytes written to it")
        return view

    def _remember(self, keys: np.ndarray, rows: np.ndarray) -> None:
        if keys.size == 0:
            return
        self._filter.add(keys)
        fits = rows.min() >= 0 and rows.max() <= np.iinfo(np.uint32).max
        self._recent.append((keys, rows.astype(np.uint32) if fits else rows))
        self._recent_keys += keys.size
        if self._recent_keys >= RUN_KEYS:
            merged_keys = np.concatenate([k for k, _ in self._recent])
            merged_rows = np.concatenate([r for _, r in self._recent])
            self._recent, self._recent_keys = [], 0
            order = np.argsort(merged_keys)
            run = _Run(merged_keys[order], merged_rows[order])
            del merged_keys, merged_rows, order
            if self._spill_dir is not None:
                run.spill(os.path.join(self._spill_dir, f"run-{len(self._runs):05d}"))
            self._runs.append(run)


class _Run:
    """One frozen run: sorted keys and their rows, in memory or in two files (keys, then rows)."""

    def __init__(self, keys: np.ndarray, rows: np.ndarray) -> None:
        self.size = keys.size
        self.rows_dtype = rows.dtype
        self._keys: np.ndarray | None = keys
        self._rows: np.ndarray | None = rows
        self.path: str | None = None

    @property
    def nbytes(self) -> int:
        return 0 if self._keys is None or self._rows is None else self._keys.nbytes + self._rows.nbytes

    def spill(self, path: str) -> None:
        assert self._keys is not None and self._rows is not None
        with open(path, "wb") as handle:
            handle.write(memoryview(self._keys).cast("B"))
            handle.write(memoryview(np.ascontiguousarray(self._rows)).cast("B"))
        self.path, self._keys, self._rows = path, None, None

    def keys(self, owner: Deduplicator) -> tuple[np.ndarray, object]:
        """The sorted keys and a function from positions to rows (reading the rows only when asked)."""
        if self.path is None:
            assert self._keys is not None and self._rows is not None
            rows = self._rows
            return self._keys, lambda at: rows[at]
        key_bytes = self.size * 8
        keys = np.frombuffer(owner._read(self.path, key_bytes), dtype=np.uint64)
        path, dtype = self.path, self.rows_dtype

        def rows_at(at: np.ndarray) -> np.ndarray:
            rows = np.fromfile(path, dtype=dtype, count=self.size, offset=key_bytes)
            return rows[at]

        return keys, rows_at


def _unique(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(keys, return_index=True, return_inverse=True)`` with a faster, unstable sort: the first
    index of each key is the smallest position among its occurrences."""
    if keys.size == 0:
        return keys, np.empty(0, np.int64), np.empty(0, np.int64)
    ordered = np.sort(keys)  # a plain sort is several times faster than an argsort
    if not (ordered[1:] == ordered[:-1]).any():  # the usual case: no key twice in the batch
        inverse = np.searchsorted(ordered, keys)
        first = np.empty(keys.size, dtype=np.int64)
        first[inverse] = np.arange(keys.size)
        return ordered, first, inverse
    order = np.argsort(keys)
    ordered = keys[order]
    starts_here = np.empty(keys.size, dtype=bool)
    starts_here[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts_here[1:])
    starts = np.flatnonzero(starts_here)
    inverse = np.empty(keys.size, dtype=np.int64)
    inverse[order] = np.cumsum(starts_here) - 1
    return ordered[starts], np.minimum.reduceat(order, starts).astype(np.int64), inverse


class _BlockedBloom:
    """A Bloom filter whose bits for one key all sit in one 64-bit word: the word is picked by the key's
    top bits and its ``_BLOOM_HASHES`` bits by its low bits (keys are uniform keyed hashes, so their bits
    are independent). ``may_contain`` is False only for keys never added."""

    def __init__(self, capacity: int) -> None:
        words = max(1, 1 << int(np.ceil(np.log2(max(capacity * BLOOM_BITS_PER_KEY / 64, 1)))))
        self.words = np.zeros(words, dtype=np.uint64)
        self.shift = np.uint64(64 - int(np.log2(words))) if words > 1 else None
        self.capacity = capacity
        self.count = 0

    @property
    def nbytes(self) -> int:
        return self.words.nbytes

    def _locate(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.shift is None:
            word = np.zeros(keys.size, dtype=np.int64)
        else:  # Fibonacci hashing: the top bits of the product depend on every bit of the key
            word = ((keys * _GOLDEN) >> self.shift).astype(np.int64)
        bits = np.zeros(keys.size, dtype=np.uint64)
        for n in range(_BLOOM_HASHES):
            bits |= np.left_shift(np.uint64(1), (keys >> np.uint64(6 * n)) & np.uint64(63))
        return word, bits

    def may_contain(self, keys: np.ndarray) -> np.ndarray:
        word, bits = self._locate(keys)
        return (self.words[word] & bits) == bits

    def add(self, keys: np.ndarray) -> None:
        word, bits = self._locate(keys)
        # ``words[word] |= bits`` keeps one write per repeated word; the others are redone (a few rounds,
        # far cheaper than ``np.bitwise_or.at``).
        while word.size:
            self.words[word] |= bits
            lost = (self.words[word] & bits) != bits
            word, bits = word[lost], bits[lost]
        self.count += keys.size


class _ScalableBloom:
    """Bloom filters of doubling capacity: a new one starts when the newest is full."""

    def __init__(self) -> None:
        self.filters = [_BlockedBloom(BLOOM_FIRST_KEYS)]

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self.filters)

    def may_contain(self, keys: np.ndarray) -> np.ndarray:
        hit = self.filters[0].may_contain(keys)
        for bloom in self.filters[1:]:
            hit |= bloom.may_contain(keys)
        return hit

    def add(self, keys: np.ndarray) -> None:
        newest = self.filters[-1]
        room = newest.capacity - newest.count
        if keys.size > room:
            newest.add(keys[:room])
            keys = keys[room:]
            newest = _BlockedBloom(2 * newest.capacity)
            self.filters.append(newest)
        newest.add(keys)
