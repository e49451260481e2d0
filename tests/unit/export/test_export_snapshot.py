"""Snapshot state: atomic versioned writes behind a pointer, diff and merge (the key-range functions
the engine uses, on small hand-made cases)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_omnisend.export.keyspill import spill_keys
from airflow_provider_omnisend.export.mapping import MappingSpec
from airflow_provider_omnisend.export.prepare import STAGING_SCHEMA, prepare_export
from airflow_provider_omnisend.export.rejects import RejectsWriter
from airflow_provider_omnisend.export.snapshot import (
    KEEP_VERSIONS,
    POINTER,
    SNAPSHOT_SCHEMA,
    Diff,
    SnapshotError,
    diff_partitioned,
    fetch_snapshot,
    load_state,
    merge_partitioned,
    write_snapshot,
)

KEY = bytes(range(16))


def staging(tmp_path: Path, keys: list[int], fps: list[int], name: str = "staging.parquet") -> str:
    path = tmp_path / name
    table = pa.Table.from_arrays(
        [
            pa.array(range(len(keys)), pa.int64()),
            pa.array(keys, pa.uint64()),
            pa.array(fps, pa.uint64()),
            pa.array(["{}"] * len(keys), pa.string()),
            pa.array([f"p{k}@example.com" for k in keys], pa.string()),
        ],
        schema=STAGING_SCHEMA,
    )
    pq.write_table(table, path)
    return str(path)


def snapshot(keys: list[int], fps: list[int], ids: list[str | None] | None = None) -> pa.Table:
    ids = ids if ids is not None else [None] * len(keys)
    return pa.Table.from_arrays(
        [pa.array(keys, pa.uint64()), pa.array(fps, pa.uint64()), pa.array(ids, pa.string()),
         pa.array(range(len(keys)), pa.int64())],
        schema=SNAPSHOT_SCHEMA,
    )


def _previous_file(previous: pa.Table | None, work: Path) -> str | None:
    """``previous`` as the engine reads it: a snapshot file fetched (and sorted if need be) locally."""
    if previous is None:
        return None
    name = f"snapshot-{uuid.uuid4().hex}.parquet"
    (work / "state").mkdir(parents=True, exist_ok=True)
    pq.write_table(previous, work / "state" / name)
    return fetch_snapshot(str(work / "state"), name, str(work / "local"))


def diff(staging_path: str, previous: pa.Table | None) -> Diff:
    work = Path(staging_path).parent / f"diff-{uuid.uuid4().hex}"
    parts = spill_keys(staging_path, str(work / "keys"))
    return diff_partitioned(parts, _previous_file(previous, work))


def merge_snapshot(previous: pa.Table | None, staging_path: str, accepted: np.ndarray,
                   contact_ids: pa.Array | None) -> pa.Table:
    work = Path(staging_path).parent / f"merge-{uuid.uuid4().hex}"
    parts = spill_keys(staging_path, str(work / "keys"))
    batches = merge_partitioned(parts, _previous_file(previous, work), accepted, contact_ids)
    return pa.Table.from_batches(list(batches), schema=SNAPSHOT_SCHEMA)


def test_first_run_has_a_fresh_key_and_no_snapshot(tmp_path: Path) -> None:
    state = load_state(str(tmp_path / "state"))
    assert state.table is None and len(state.hash_key) == 16
    assert load_state(str(tmp_path / "state")).hash_key != state.hash_key  # nothing persisted yet


def test_write_then_load_round_trip_with_pointer(tmp_path: Path) -> None:
    state_dir = str(tmp_path / "state")
    table = snapshot([3, 1, 2], [30, 10, 20], ["c3", None, "c2"])
    name = write_snapshot(state_dir, table, hash_key=KEY, config_digest="abc")
    pointer = json.loads((tmp_path / "state" / POINTER).read_text())
    assert pointer["snapshot"] == name and name.startswith("snapshot-") and name.endswith(".parquet")
    assert pointer["hash_key"] == KEY.hex() and pointer["config_digest"] == "abc" and pointer["rows"] == 3
    assert pointer["written_at"].endswith("Z")
    state = load_state(state_dir)
    assert state.hash_key == KEY and state.config_digest == "abc" and state.snapshot_name == name
    assert state.table is not None and state.table.schema.equals(SNAPSHOT_SCHEMA)
    assert sorted(state.table.to_pylist(), key=lambda r: r["key"]) == sorted(
        table.to_pylist(), key=lambda r: r["key"]
    )
    assert [p.name for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")] == []


def test_only_the_last_versions_are_kept_and_pointer_follows_the_newest(tmp_path: Path) -> None:
    state_dir = str(tmp_path / "state")
    names = [write_snapshot(state_dir, snapshot([i], [i]), hash_key=KEY, config_digest="d") for i in range(5)]
    files = sorted(p.name for p in (tmp_path / "state").glob("snapshot-*.parquet"))
    assert files == sorted(names[-KEEP_VERSIONS:])
    state = load_state(state_dir)
    assert state.snapshot_name == names[-1]
    assert state.table is not None and state.table.column("key").to_pylist() == [4]


def test_broken_state_explains_how_to_recover(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    name = write_snapshot(str(state_dir), snapshot([1], [1]), hash_key=KEY, config_digest="d")
    (state_dir / name).unlink()
    with pytest.raises(SnapshotError, match=f"points at {name}, which does not exist.*delete {POINTER}"):
        load_state(str(state_dir))
    (state_dir / POINTER).write_text("{not json")
    with pytest.raises(SnapshotError, match="not a valid snapshot pointer"):
        load_state(str(state_dir))


def test_snapshot_holds_no_plaintext(tmp_path: Path) -> None:
    spec = MappingSpec.build({"email": "E", "firstName": "F"}, segment="VIP")
    email, name = "secret.person@example.com", "Veronika"
    rejects = RejectsWriter(str(tmp_path / "rejects.parquet"), source_columns=spec.source_columns)
    result = prepare_export(
        [pa.record_batch({"E": [email], "F": [name]})],
        spec,
        staging_dir=str(tmp_path / "work"),
        rejects=rejects,
        hash_key=KEY,
    )
    rejects.close()
    table = merge_snapshot(None, result.staging_path, np.array([True]), pa.array(["cid-1"]))
    write_snapshot(str(tmp_path / "state"), table, hash_key=KEY, config_digest=spec.config_digest)
    for path in (tmp_path / "state").iterdir():
        content = path.read_bytes()
        for secret in (email, name, "secret.person", "example.com"):
            assert secret.encode() not in content


def test_diff_counts_and_alignment(tmp_path: Path) -> None:
    path = staging(tmp_path, keys=[10, 20, 30, 40, 50], fps=[1, 2, 3, 4, 5])
    previous = snapshot([50, 30, 20, 99, 98], [5, 33, 2, 9, 8], ["c50", "c30", "c20", "c99", None])
    result = diff(path, previous)
    # 10 new, 20 unchanged, 30 changed, 40 new, 50 unchanged; 99 and 98 removed
    assert result.send.tolist() == [True, False, True, True, False]
    assert (result.new, result.changed, result.unchanged, result.removed) == (2, 1, 2, 2)
    assert sorted(result.removed_table.to_pylist(), key=lambda r: r["key"]) == [
        {"key": 98, "contact_id": None, "seal": 4},
        {"key": 99, "contact_id": "c99", "seal": 3},
    ]


def test_diff_without_snapshot_sends_everything(tmp_path: Path) -> None:
    result = diff(staging(tmp_path, [1, 2], [1, 2]), None)
    assert result.send.tolist() == [True, True] and (result.new, result.removed) == (2, 0)
    assert result.removed_table.num_rows == 0


def test_diff_with_empty_staging(tmp_path: Path) -> None:
    result = diff(staging(tmp_path, [], []), snapshot([1], [1], ["c1"]))
    assert result.send.size == 0 and result.removed == 1


def test_merge_keeps_accepted_and_unchanged_drops_failed_new_and_removed(tmp_path: Path) -> None:
    # staging: 10 new+accepted, 20 unchanged, 30 changed+accepted, 40 new+failed, 50 changed+failed
    path = staging(tmp_path, keys=[10, 20, 30, 40, 50], fps=[1, 2, 3, 4, 5])
    previous = snapshot([20, 30, 50, 99], [2, 33, 55, 9], ["c20", "c30", "c50", "c99"])
    accepted = np.array([True, True, True, False, False])  # the engine marks unchanged rows accepted
    ids = pa.array(["new10", None, None, None, None])
    merged = merge_snapshot(previous, path, accepted, ids)
    assert merged.schema.equals(SNAPSHOT_SCHEMA)
    assert merged.column("key").to_pylist() == sorted(merged.column("key").to_pylist())
    rows = {r["key"]: (r["fp"], r["contact_id"]) for r in merged.to_pylist()}
    assert rows == {
        10: (1, "new10"),  # accepted with the id Omnisend returned
        20: (2, "c20"),  # unchanged keeps its id
        30: (3, "c30"),  # changed and accepted: new fp, old id kept
        50: (55, "c50"),  # changed but failed: old entry, so it differs again next run
    }  # 40 (failed, new) is left out so it is new next run; 99 left the segment


def test_merge_without_previous(tmp_path: Path) -> None:
    path = staging(tmp_path, keys=[1, 2, 3], fps=[1, 2, 3])
    merged = merge_snapshot(None, path, np.array([True, False, True]), None)
    assert merged.column("key").to_pylist() == [1, 3] and merged.column("contact_id").null_count == 2
    with pytest.raises(ValueError, match="accepted has 2 flags; staging has 3 rows"):
        merge_snapshot(None, path, np.array([True, False]), None)


def test_a_failed_row_is_sent_again_next_run(tmp_path: Path) -> None:
    path = staging(tmp_path, keys=[1, 2], fps=[10, 20])
    first = merge_snapshot(None, path, np.array([True, False]), None)
    again = diff(path, first)
    assert again.send.tolist() == [False, True] and again.new == 1


def test_mapping_change_makes_every_contact_changed(tmp_path: Path) -> None:
    batch = pa.record_batch({"E": [f"user{i}@example.com" for i in range(50)], "F": ["Ann"] * 50})
    results = []
    for name, welcome in (("a", False), ("b", True)):
        spec = MappingSpec.build({"email": "E", "firstName": "F"}, send_welcome_message=welcome)
        rejects = RejectsWriter(str(tmp_path / name / "r.parquet"), source_columns=spec.source_columns)
        results.append(
            prepare_export([batch], spec, staging_dir=str(tmp_path / name), rejects=rejects, hash_key=KEY)
        )
        rejects.close()
    previous = merge_snapshot(None, results[0].staging_path, np.ones(50, dtype=bool), None)
    assert diff(results[0].staging_path, previous).unchanged == 50
    changed = diff(results[1].staging_path, previous)
    assert (changed.new, changed.changed, changed.unchanged, changed.removed) == (0, 50, 0, 0)


def test_state_on_an_fsspec_url() -> None:
    state_dir = f"memory://state-{uuid.uuid4().hex}/conn/segment"
    write_snapshot(state_dir, snapshot([7], [70], ["c7"]), hash_key=KEY, config_digest="d")
    state = load_state(state_dir)
    assert state.hash_key == KEY and state.table is not None and state.table.num_rows == 1
    fs, root = fsspec.core.url_to_fs(state_dir)
    assert fs.exists(f"{root}/{POINTER}")
