"""The de-duplication state: Bloom-screened sorted runs give exactly the first-wins reference result, also
when runs are frozen, filters chained and row numbers leave 32 bits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from airflow_provider_omnisend.export import dedupe as dedupe_module
from airflow_provider_omnisend.export.dedupe import Deduplicator, _BlockedBloom, _ScalableBloom, _unique


def reference(keys: np.ndarray, rows: np.ndarray) -> tuple[list[bool], list[int]]:
    seen: dict[int, int] = {}
    keep, winners = [], []
    for key, row in zip(keys.tolist(), rows.tolist(), strict=True):
        keep.append(key not in seen)
        winners.append(seen.get(key, -1))
        seen.setdefault(key, row)
    return keep, winners


@pytest.mark.parametrize("n,domain", [(0, 1), (1, 1), (7, 3), (1_000, 100), (5_000, 2**64 - 1), (30, 2**40)])
def test_unique_matches_numpy(n: int, domain: int) -> None:
    keys = np.random.default_rng(n).integers(0, domain, n, dtype=np.uint64)
    expected = np.unique(keys, return_index=True, return_inverse=True)
    for got, want in zip(_unique(keys), expected, strict=True):
        assert np.array_equal(got, want)


def test_bloom_never_forgets_a_key_and_rarely_cries_wolf() -> None:
    rng = np.random.default_rng(5)
    bloom = _ScalableBloom()
    bloom.filters = [_BlockedBloom(1_000)]  # small, so that it chains
    added = rng.integers(0, 2**64 - 1, 20_000, dtype=np.uint64)
    for part in np.array_split(added, 13):
        bloom.add(part)
    assert len(bloom.filters) >= 4 and bloom.filters[-1].capacity == 2 * bloom.filters[-2].capacity
    assert bloom.may_contain(added).all()
    repeated = np.repeat(added[:50], 40)  # the same word many times in one batch
    single = _BlockedBloom(10)
    single.add(repeated)
    assert single.may_contain(added[:50]).all()
    others = rng.integers(0, 2**64 - 1, 50_000, dtype=np.uint64)
    assert bloom.may_contain(others).mean() < 0.25  # several chained filters, each full: alarms add up
    full = _BlockedBloom(20_000)
    full.add(added)
    assert full.may_contain(others).mean() < 0.06  # one full filter at 8 bits per key: about 3%


@pytest.mark.parametrize("spill", [False, True])
@pytest.mark.parametrize("batch", [1, 97, 4_096])
def test_first_occurrence_wins_across_frozen_runs_and_chained_filters(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, batch: int, spill: bool
) -> None:
    monkeypatch.setattr(dedupe_module, "RUN_KEYS", 300)
    monkeypatch.setattr(dedupe_module, "BLOOM_FIRST_KEYS", 500)
    rng = np.random.default_rng(batch)
    n = 20_000 if batch > 1 else 4_000
    keys = rng.integers(0, 3 * n // 10, n).astype(np.uint64) * np.uint64(2**50 + 7)
    rows = np.arange(n, dtype=np.int64) * 3 + (2**32 - 3 * n // 2)  # crosses 2**32 half-way
    spill_dir = tmp_path / "runs"
    dedupe = Deduplicator(spill_dir=str(spill_dir) if spill else None)
    keep, winners = [], []
    for start in range(0, keys.size, batch):
        result = dedupe.add(keys[start:start + batch], rows[start:start + batch])
        keep.append(result.keep)
        winners.append(result.winner_rows)
    expected_keep, expected_winners = reference(keys, rows)
    assert np.concatenate(keep).tolist() == expected_keep
    assert np.concatenate(winners).tolist() == expected_winners
    assert dedupe.distinct == len(set(keys.tolist()))
    assert len(dedupe._runs) >= 3 and len(dedupe._filter.filters) >= 2
    dtypes = {run.rows_dtype for run in dedupe._runs} | {r.dtype for _, r in dedupe._recent}
    assert dtypes == {np.dtype(np.uint32), np.dtype(np.int64)}
    if spill:  # frozen runs live in files: memory is the filter, the recent keys and one read buffer
        assert all(run.path is not None and run.nbytes == 0 for run in dedupe._runs)
        assert len(list(spill_dir.iterdir())) == len(dedupe._runs)
        held = sum(k.nbytes + r.nbytes for k, r in dedupe._recent)
        assert dedupe.nbytes <= dedupe._filter.nbytes + held + 16 * (300 + batch)
    else:
        assert 0 < dedupe.nbytes < 20 * dedupe.distinct + 2 * 2**20
    dedupe.close()
    assert not spill_dir.exists() and dedupe.distinct == 0


def test_empty_batches_change_nothing() -> None:
    dedupe = Deduplicator()
    result = dedupe.add(np.array([], dtype=np.uint64), np.array([], dtype=np.int64))
    assert result.keep.size == 0 and result.winner_rows.size == 0 and dedupe.distinct == 0
    assert dedupe.add(np.array([4], dtype=np.uint64), np.array([9])).keep.tolist() == [True]
    assert dedupe.add(np.array([4, 4], dtype=np.uint64), np.array([10, 11])).winner_rows.tolist() == [9, 9]


def test_a_truncated_spilled_run_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(dedupe_module, "RUN_KEYS", 4)
    with Deduplicator(spill_dir=str(tmp_path / "runs")) as dedupe:
        dedupe.add(np.arange(1, 9, dtype=np.uint64), np.arange(8))
        run_file = next((tmp_path / "runs").iterdir())
        run_file.write_bytes(run_file.read_bytes()[:10])
        with pytest.raises(OSError, match="shorter"):
            dedupe.add(np.arange(1, 9, dtype=np.uint64), np.arange(8, 16))
    assert not (tmp_path / "runs").exists()
