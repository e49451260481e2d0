"""De-duplication across the whole export stream on the (lower-cased, trimmed) e-mail.

Rule: the FIRST occurrence in export order wins; it is deterministic and easy to explain ("row 17 was
kept, row 912 had the same e-mail"). Later occurrences are rejected with reason ``duplicate`` and a
detail naming the winning row, so nothing disappears silently.

State: the keyed 64-bit hashes of the e-mails seen so far with their winning row numbers, as a few
sorted numpy runs (16 bytes per distinct e-mail, no Python strings). Runs are merged when a new one
is at least half the size of the previous one, so each key is copied O(log n) times and a lookup
costs one binary search per run (at most log2(n) runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class DedupeResult:
    """``keep`` marks the rows to keep; for the others ``winner_rows`` holds the winning row number."""

    keep: np.ndarray
    winner_rows: np.ndarray


class Deduplicator:
    """Stateful first-wins de-duplication over a stream of batches of ``uint64`` keys."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted keys, rows aligned)

    @property
    def distinct(self) -> int:
        """How many distinct keys have been kept so far."""
        return sum(keys.size for keys, _ in self._runs)

    def add(self, keys: np.ndarray, rows: np.ndarray) -> DedupeResult:
        """Check one batch (``rows`` ascending, after every earlier batch's rows) and remember its winners.

        Returns ``keep`` aligned with ``keys``; ``winner_rows`` (same length) holds, for rows not kept,
        the row number of the first occurrence, and -1 for kept rows.
        """
        keys = np.asarray(keys, dtype=np.uint64)
        rows = np.asarray(rows, dtype=np.int64)
        # One sort per batch; the run lookups then probe sorted keys, which is cache friendly.
        unique_keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        earlier = np.full(unique_keys.size, -1, dtype=np.int64)  # winning row from an earlier batch
        for run_keys, run_rows in self._runs:
            at = np.minimum(np.searchsorted(run_keys, unique_keys), run_keys.size - 1)
            hit = run_keys[at] == unique_keys
            earlier[hit] = run_rows[at[hit]]
        winner_of_key = np.where(earlier >= 0, earlier, rows[first])
        winner_rows = winner_of_key[inverse]
        keep = np.zeros(keys.size, dtype=bool)
        fresh = earlier < 0
        keep[first[fresh]] = True
        winner_rows[keep] = -1
        self._remember(unique_keys[fresh], rows[first[fresh]])
        return DedupeResult(keep=keep, winner_rows=winner_rows)

    def _remember(self, keys: np.ndarray, rows: np.ndarray) -> None:
        if keys.size == 0:
            return
        self._runs.append((keys, rows))
        while len(self._runs) > 1 and self._runs[-2][0].size <= 2 * self._runs[-1][0].size:
            (keys_a, rows_a), (keys_b, rows_b) = self._runs[-2], self._runs[-1]
            merged_keys = np.concatenate([keys_a, keys_b])
            order = np.argsort(merged_keys, kind="stable")
            self._runs[-2:] = [(merged_keys[order], np.concatenate([rows_a, rows_b])[order])]
