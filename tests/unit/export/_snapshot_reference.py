"""The incremental diff and snapshot merge done in memory, the simple way: the reference the key-range
(out-of-core) functions in ``export.snapshot`` are checked against. Not used by the provider.

Self-contained on purpose: it takes only the data types (schemas, ``Diff``) from the module it checks,
never its helpers, so that a bug in a shared helper cannot make both sides agree."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_provider_omnisend.export.snapshot import REMOVED_SCHEMA, SNAPSHOT_SCHEMA, Diff  # types only


def _u64(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(column, dtype=np.uint64)


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found?, position in ``sorted_keys``) of each key; positions of keys not found are meaningless."""
    at = np.searchsorted(sorted_keys, keys)
    inside = at < sorted_keys.size
    at = np.where(inside, at, 0)
    return inside & (sorted_keys[at] == keys), at


def diff(staging_path: str, snapshot_table: pa.Table | None) -> Diff:
    """Compare staged (key, fp) with the snapshot, vectorised with sorted numpy arrays.

    Sorting + binary search keeps the result aligned with staging order (a hash join would not) and
    costs O(n log n) with no Python per row.
    """
    staged = pq.read_table(staging_path, columns=["key", "fp"])
    keys = _u64(staged.column("key"))
    fps = _u64(staged.column("fp"))
    if snapshot_table is None or snapshot_table.num_rows == 0:
        return Diff(
            send=np.ones(keys.size, dtype=bool),
            new=int(keys.size),
            changed=0,
            unchanged=0,
            removed=0,
            removed_table=REMOVED_SCHEMA.empty_table(),
        )
    snap_keys, snap_fps, order = _sorted_snapshot(snapshot_table)
    found, at = _lookup(snap_keys, keys)
    same = np.zeros(keys.size, dtype=bool)
    same[found] = snap_fps[at[found]] == fps[found]
    present = np.zeros(snap_keys.size, dtype=bool)
    present[at[found]] = True
    removed_positions = order[~present]
    removed_table = pa.table(
        {
            "key": pa.array(_u64(snapshot_table.column("key"))[removed_positions], pa.uint64()),
            "contact_id": snapshot_table.column("contact_id").take(pa.array(removed_positions)),
            "seal": _seals(snapshot_table).take(pa.array(removed_positions)),
        },
        schema=REMOVED_SCHEMA,
    )
    new = int(keys.size - np.count_nonzero(found))
    unchanged = int(np.count_nonzero(same))
    return Diff(
        send=~same,
        new=new,
        changed=int(keys.size) - new - unchanged,
        unchanged=unchanged,
        removed=int(removed_positions.size),
        removed_table=removed_table,
    )


def merge_snapshot(
    previous: pa.Table | None,
    staging_path: str,
    accepted: np.ndarray,
    contact_ids: pa.Array | None,
) -> pa.Table:
    """The snapshot to write after a run.

    Kept: staged rows Omnisend accepted this run (their new fp; ``contact_ids`` where given, else the old
    id) and staged rows that were unchanged (old fp and id). A staged row that failed this run keeps its
    previous entry if it had one (so its contact id is not forgotten and its differing fp makes it
    "changed", hence retried, next run); a failed new row is left out (so it is "new" next run).
    Contacts no longer staged (left the segment) are dropped.
    """
    staged = pq.read_table(staging_path, columns=["key", "fp"])
    keys = _u64(staged.column("key"))
    fps = _u64(staged.column("fp"))
    accepted = np.asarray(accepted, dtype=bool)
    if accepted.shape != keys.shape:
        raise ValueError(f"accepted has {accepted.size} flags; staging has {keys.size} rows")
    ids = pa.nulls(keys.size, pa.string()) if contact_ids is None else contact_ids
    if len(ids) != keys.size:
        raise ValueError(f"contact_ids has {len(ids)} values; staging has {keys.size} rows")
    if previous is None or previous.num_rows == 0:
        keep = np.flatnonzero(accepted)
        return _snapshot(keys[keep], fps[keep], ids.take(pa.array(keep)), keep)

    snap_keys, snap_fps, order = _sorted_snapshot(previous)
    snap_ids = previous.column("contact_id").take(pa.array(order))
    found, at = _lookup(snap_keys, keys)
    old_id = snap_ids.take(pa.array(np.where(found, at, 0))).combine_chunks()
    old_id = pc.if_else(pa.array(found), old_id, pa.scalar(None, pa.string()))
    # accepted now → new fp; unchanged or failed-but-known → old fp; failed and new → dropped
    use_new = accepted
    keep = accepted | found
    fp_out = np.where(use_new, fps, snap_fps[np.where(found, at, 0)])
    id_out = pc.if_else(pa.array(use_new), pc.coalesce(ids, old_id), old_id)
    positions = np.flatnonzero(keep)
    return _snapshot(keys[positions], fp_out[positions], id_out.take(pa.array(positions)), positions)




def _snapshot(keys: np.ndarray, fps: np.ndarray, ids: pa.Array, staged_at: np.ndarray) -> pa.Table:
    """Sorted by key; each row's seal is its staging position (its row in the e-mails sealed from it)."""
    order = np.argsort(keys, kind="stable")
    return pa.Table.from_arrays(
        [pa.array(keys[order], pa.uint64()), pa.array(fps[order], pa.uint64()), ids.take(pa.array(order)),
         pa.array(np.asarray(staged_at, dtype=np.int64)[order], pa.int64())],
        schema=SNAPSHOT_SCHEMA,
    )


def _seals(table: pa.Table) -> pa.ChunkedArray | pa.Array:
    """The snapshot's seal column; a snapshot from before sealing has none (all null)."""
    if "seal" in table.column_names:
        return table.column("seal")
    return pa.nulls(table.num_rows, pa.int64())


def _sorted_snapshot(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keys = _u64(table.column("key"))
    order = np.argsort(keys, kind="stable")
    return keys[order], _u64(table.column("fp"))[order], order

