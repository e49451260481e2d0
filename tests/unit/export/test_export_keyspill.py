"""Out-of-core diff and merge (staged keys spilled by key range, snapshot streamed): the same results as
the in-memory ``diff`` and ``merge_snapshot``, whatever the number of ranges, ties and duplicates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_omnisend.export.keyspill import (
    MAX_BITS,
    RECORD,
    SortedSnapshotReader,
    UnsortedSnapshot,
    partition_bits,
    spill_keys,
)
from airflow_provider_omnisend.export.prepare import STAGING_SCHEMA
from airflow_provider_omnisend.export.snapshot import (
    POINTER,
    SNAPSHOT_SCHEMA,
    SnapshotError,
    diff_partitioned,
    fetch_snapshot,
    load_state,
    merge_partitioned,
    write_snapshot,
    write_snapshot_batches,
)
from tests.unit.export._snapshot_reference import diff, merge_snapshot

KEY = bytes(range(16))
TOP = 2**64 - 1


def write_staging(path: Path, keys: np.ndarray, fps: np.ndarray) -> str:
    table = pa.Table.from_arrays(
        [pa.array(np.arange(keys.size), pa.int64()), pa.array(keys, pa.uint64()), pa.array(fps, pa.uint64()),
         pa.array(["{}"] * keys.size, pa.string()), pa.array(["e@example.com"] * keys.size, pa.string())],
        schema=STAGING_SCHEMA,
    )
    pq.write_table(table, path, row_group_size=97)  # odd row groups: reads cross them
    return str(path)


def snapshot_table(keys: np.ndarray, fps: np.ndarray, ids: list[str | None] | None = None) -> pa.Table:
    order = np.argsort(keys, kind="stable")
    ids_array = pa.array(ids if ids is not None else [None] * keys.size, pa.string())
    columns = [pa.array(keys[order], pa.uint64()), pa.array(fps[order], pa.uint64()),
               ids_array.take(pa.array(order)), pa.array(order, pa.int64())]
    return pa.Table.from_arrays(columns, schema=SNAPSHOT_SCHEMA)


def write_snapshot_file(path: Path, table: pa.Table | None) -> str | None:
    if table is None:
        return None
    pq.write_table(table, path, row_group_size=53)
    return str(path)


def scenario(rng: np.random.Generator, n_staged: int, n_snap: int, *, domain: int) -> tuple[np.ndarray, ...]:
    """Keys from a small domain (so staging and snapshot share keys, with ties) spread over 64 bits, plus
    the extremes of the key space."""
    spread = np.uint64(TOP // max(domain, 1))
    universe = np.concatenate([np.arange(domain, dtype=np.uint64) * spread,
                               np.array([0, TOP, TOP - 1, 1 << 63], dtype=np.uint64)])
    keys = rng.choice(universe, n_staged).astype(np.uint64)
    fps = rng.integers(0, 3, n_staged).astype(np.uint64)
    snap_keys = rng.choice(universe, n_snap).astype(np.uint64)
    snap_fps = rng.integers(0, 3, n_snap).astype(np.uint64)
    return keys, fps, snap_keys, snap_fps


def test_partition_bits() -> None:
    assert partition_bits(0) == 0 and partition_bits(1) == 0
    assert partition_bits(100, target_rows=100) == 0
    assert partition_bits(101, target_rows=100) == 1
    assert partition_bits(800, target_rows=100) == 3
    assert partition_bits(801, target_rows=100) == 4
    assert partition_bits(10**12, target_rows=1) == MAX_BITS
    with pytest.raises(ValueError):
        partition_bits(5, target_rows=0)


@pytest.mark.parametrize("target_rows", [1_000_000, 64, 7, 1])
def test_spill_keeps_every_triple_in_its_range_sorted_with_ties_in_staging_order(
    tmp_path: Path, target_rows: int
) -> None:
    rng = np.random.default_rng(1)
    keys, fps, _, _ = scenario(rng, 500, 0, domain=60)
    parts = spill_keys(write_staging(tmp_path / "s.parquet", keys, fps), str(tmp_path / "keys"),
                       target_rows=target_rows, read_rows=61)
    assert parts.rows == 500 and parts.count == 1 << partition_bits(500, target_rows=target_rows)
    seen = []
    lower = 0
    for records, upper in parts.ranges():
        assert records.dtype == RECORD
        assert (records["key"] >= np.uint64(lower)).all()
        if upper is not None:
            assert (records["key"] < np.uint64(upper)).all()
            lower = upper
        order = np.lexsort((records["pos"], records["key"]))
        assert np.array_equal(order, np.arange(records.size))  # (key, pos) order
        seen.append(records)
    assert upper is None
    every = np.concatenate(seen)
    every = every[np.argsort(every["pos"])]
    assert np.array_equal(every["pos"], np.arange(500))
    assert np.array_equal(every["key"], keys) and np.array_equal(every["fp"], fps)
    parts.remove()
    assert not (tmp_path / "keys").exists()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target_rows", [1_000_000, 16, 3])
def test_partitioned_diff_and_merge_equal_the_in_memory_ones(
    tmp_path: Path, seed: int, target_rows: int
) -> None:
    rng = np.random.default_rng(seed)
    sizes = [(0, 0), (0, 40), (40, 0), (300, 200), (200, 300), (1, 1)][seed]
    keys, fps, snap_keys, snap_fps = scenario(rng, *sizes, domain=[5, 50, 400][seed % 3])
    ids = [None if rng.random() < 0.3 else f"c{i}" for i in range(snap_keys.size)]
    staging = write_staging(tmp_path / "staging.parquet", keys, fps)
    parts = spill_keys(staging, str(tmp_path / "keys"), target_rows=target_rows)
    for previous in (None, snapshot_table(snap_keys, snap_fps, ids)):
        snapshot = write_snapshot_file(tmp_path / "snap.parquet", previous)
        expected, got = diff(staging, previous), diff_partitioned(parts, snapshot)
        assert np.array_equal(got.send, expected.send)
        assert (got.new, got.changed, got.unchanged, got.removed) == (
            expected.new, expected.changed, expected.unchanged, expected.removed)
        assert got.removed_table.equals(expected.removed_table)
        new_ids = pa.array([f"n{i}" if i % 3 else None for i in range(keys.size)], pa.string())
        for accepted in (expected.send, np.ones(keys.size, bool), rng.random(keys.size) < 0.5):
            for contact_ids in (None, new_ids):
                merged = merge_snapshot(previous, staging, accepted, contact_ids)
                streamed = pa.Table.from_batches(
                    list(merge_partitioned(parts, snapshot, accepted, contact_ids)), schema=SNAPSHOT_SCHEMA)
                assert streamed.equals(merged)


def test_partitioned_functions_check_their_inputs(tmp_path: Path) -> None:
    keys = np.array([3, 1, 2], dtype=np.uint64)
    parts = spill_keys(write_staging(tmp_path / "s.parquet", keys, keys), str(tmp_path / "keys"))
    with pytest.raises(ValueError, match="accepted has 2 flags"):
        list(merge_partitioned(parts, None, np.ones(2, bool)))
    with pytest.raises(ValueError, match="contact_ids has 1 values"):
        list(merge_partitioned(parts, None, np.ones(3, bool), pa.array(["x"])))


def test_reader_streams_ranges_and_refuses_an_unsorted_snapshot(tmp_path: Path) -> None:
    keys = np.array([1, 5, 5, 9, 12, 40], dtype=np.uint64)
    path = write_snapshot_file(tmp_path / "s.parquet", snapshot_table(keys, keys))
    reader = SortedSnapshotReader(path, read_rows=2)
    assert reader.take_below(5)[0].tolist() == [1]
    assert reader.take_below(6)[0].tolist() == [5, 5]
    assert reader.take_below(6)[0].tolist() == []
    assert reader.take_below(None)[0].tolist() == [9, 12, 40]
    assert SortedSnapshotReader(None).take_below(None)[0].size == 0
    unsorted = pa.Table.from_arrays([pa.array([1, 9, 5], pa.uint64()), pa.array([0, 0, 0], pa.uint64()),
                                     pa.nulls(3, pa.string()), pa.nulls(3, pa.int64())],
                                    schema=SNAPSHOT_SCHEMA)
    pq.write_table(unsorted, tmp_path / "u.parquet", row_group_size=1)
    with pytest.raises(UnsortedSnapshot):
        SortedSnapshotReader(str(tmp_path / "u.parquet"), read_rows=1).take_below(None)


def test_fetch_uses_a_local_snapshot_in_place_and_sorts_a_foreign_one(tmp_path: Path) -> None:
    state_dir = str(tmp_path / "state")
    keys = np.array([7, 3, 5], dtype=np.uint64)
    name = write_snapshot(state_dir, snapshot_table(keys, keys), hash_key=KEY, config_digest="d")
    assert fetch_snapshot(state_dir, name, str(tmp_path / "local")) == str(tmp_path / "state" / name)
    foreign = pa.Table.from_arrays([pa.array(keys, pa.uint64()), pa.array(keys, pa.uint64()),
                                    pa.array(["a", None, "c"]), pa.array([0, 1, 2], pa.int64())],
                                   schema=SNAPSHOT_SCHEMA)
    pq.write_table(foreign, tmp_path / "state" / name)  # not sorted: not written by this provider
    path = fetch_snapshot(state_dir, name, str(tmp_path / "local"))
    assert path.startswith(str(tmp_path / "local"))
    assert pq.read_table(path).column("key").to_pylist() == [3, 5, 7]
    assert pq.read_table(path).column("contact_id").to_pylist() == [None, "c", "a"]
    pq.write_table(pa.table({"key": pa.array([1], pa.uint64())}), tmp_path / "state" / name)
    with pytest.raises(SnapshotError, match="snapshot columns"):
        fetch_snapshot(state_dir, name, str(tmp_path / "local"))


def test_fetch_copies_a_remote_snapshot(tmp_path: Path) -> None:
    state_dir = f"memory://omnisend-keyspill-{tmp_path.name}"
    keys = np.array([2, 1], dtype=np.uint64)
    name = write_snapshot(state_dir, snapshot_table(keys, keys), hash_key=KEY, config_digest="d")
    path = fetch_snapshot(state_dir, name, str(tmp_path / "local"))
    assert path == str(tmp_path / "local" / "previous-snapshot.parquet")
    assert pq.read_table(path).column("key").to_pylist() == [1, 2]


def test_streamed_snapshot_write_round_trips_and_counts_rows(tmp_path: Path) -> None:
    state_dir = str(tmp_path / "state")
    table = snapshot_table(np.arange(10, dtype=np.uint64), np.arange(10, dtype=np.uint64))
    name = write_snapshot_batches(state_dir, iter(table.to_batches(max_chunksize=3)), hash_key=KEY,
                                  config_digest="cfg")
    state = load_state(state_dir)
    assert state.snapshot_name == name and state.table is not None and state.table.equals(table)
    assert '"rows": 10' in (tmp_path / "state" / POINTER).read_text()
    lazy = load_state(state_dir, read_table=False)
    assert lazy.table is None and lazy.snapshot_name == name and lazy.hash_key == KEY
    with pytest.raises(SnapshotError, match="snapshot schema"):
        write_snapshot_batches(state_dir, [pa.record_batch({"key": pa.array([1], pa.uint64())})],
                               hash_key=KEY, config_digest="cfg")
    empty = write_snapshot_batches(state_dir, [], hash_key=KEY, config_digest="cfg")
    assert load_state(state_dir).snapshot_name == empty and load_state(state_dir).table.num_rows == 0
