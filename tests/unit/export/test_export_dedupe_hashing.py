"""Deduplicator (first occurrence wins, across batches) and keyed hashing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from airflow_provider_omnisend.export.dedupe import Deduplicator
from airflow_provider_omnisend.export.hashing import derive_key, hash_strings, new_hash_key

KEY = bytes(range(16))


def test_hash_is_keyed_deterministic_and_aligned() -> None:
    values = pa.array(["a@example.com", "b@example.com", "a@example.com", "ü@example.com"])
    first = hash_strings(values, key=KEY)
    assert first.dtype == np.uint64 and first.shape == (4,)
    assert first[0] == first[2] and len({int(v) for v in first}) == 3
    assert np.array_equal(first, hash_strings(values, key=KEY))
    assert np.array_equal(first, hash_strings(pa.chunked_array([values[:1], values[1:]]), key=KEY))
    assert np.array_equal(first, hash_strings(values.cast(pa.large_string()), key=KEY))
    other = hash_strings(values, key=bytes(range(1, 17)))
    assert not np.any(first == other)


def test_full_128_bit_key_is_used() -> None:
    # keys differing only in high-bit bytes (not ASCII) must give different hashes
    a = bytes([0x80] * 16)
    b = bytes([0x81] + [0x80] * 15)
    values = pa.array(["x@example.com"])
    assert hash_strings(values, key=a)[0] != hash_strings(values, key=b)[0]


def test_hash_refuses_nulls_and_bad_keys() -> None:
    with pytest.raises(ValueError, match="null"):
        hash_strings(pa.array(["a", None]), key=KEY)
    with pytest.raises(ValueError, match="16 bytes"):
        hash_strings(pa.array(["a"]), key=b"short")
    assert hash_strings(pa.array([], pa.string()), key=KEY).size == 0


def test_derived_keys_differ_by_purpose() -> None:
    assert derive_key(KEY, purpose="a") != derive_key(KEY, purpose="b")
    assert derive_key(KEY, purpose="a") == derive_key(KEY, purpose="a")
    assert len(new_hash_key()) == 16 and new_hash_key() != new_hash_key()


def test_first_occurrence_wins_within_and_across_batches() -> None:
    dedupe = Deduplicator()
    first = dedupe.add(np.array([5, 7, 5, 9], dtype=np.uint64), np.array([0, 1, 2, 3]))
    assert first.keep.tolist() == [True, True, False, True]
    assert first.winner_rows.tolist() == [-1, -1, 0, -1]
    second = dedupe.add(np.array([9, 11, 11, 7, 12], dtype=np.uint64), np.array([4, 5, 6, 7, 8]))
    assert second.keep.tolist() == [False, True, False, False, True]
    assert second.winner_rows.tolist() == [3, -1, 5, 1, -1]
    assert dedupe.distinct == 5


def test_many_batches_match_a_reference() -> None:
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 5_000, 40_000).astype(np.uint64)
    dedupe = Deduplicator()
    keep_parts, winner_parts = [], []
    for start in range(0, keys.size, 997):  # odd size: runs of many lengths get merged
        chunk = keys[start : start + 997]
        result = dedupe.add(chunk, np.arange(start, start + chunk.size))
        keep_parts.append(result.keep)
        winner_parts.append(result.winner_rows)
    seen: dict[int, int] = {}
    expected_keep, expected_winner = [], []
    for row, key in enumerate(keys.tolist()):
        expected_keep.append(key not in seen)
        expected_winner.append(seen.get(key, -1))
        seen.setdefault(key, row)
    assert np.concatenate(keep_parts).tolist() == expected_keep
    assert np.concatenate(winner_parts).tolist() == expected_winner
    assert dedupe.distinct == len(seen)
