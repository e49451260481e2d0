"""Incremental export state per connection + segment: what Omnisend already holds, without PII.

Layout under ``state_dir`` (any fsspec URL):

* ``snapshot-<UTC timestamp>-<short uuid>.parquet``: ``key`` (uint64, keyed hash of the e-mail),
  ``fp`` (uint64, keyed hash of the item JSON last accepted), ``contact_id`` (Omnisend's id, nullable;
  not filled today), ``seal`` (int64, the contact's row in the sealed e-mails file; null in snapshots
  written before e-mails were sealed, which still load). Sorted by ``key``.
* ``emails-<UTC timestamp>-<short uuid>.parquet``: the members' e-mails, encrypted under a key derived
  from a secret kept outside the folder (:mod:`~airflow_provider_omnisend.export.sealed`), so mirror
  mode can untag who left by e-mail. Only written when the engine has that secret.
* ``CURRENT.json``: ``{"snapshot", "hash_key", "key_check", "config_digest", "rows", "written_at"}``,
  plus ``"emails"`` naming the sealed file when there is one.

Atomicity: the versioned file is written completely first, then the pointer is written under a
temporary name and moved onto ``CURRENT.json`` (a rename locally, a single object PUT on object stores).
A reader follows the pointer, so it sees the old state or the new one, never half of one. The three
newest versions are kept for inspection and rollback.

The random hash key lives in the pointer so hashes stay comparable across runs; the engine binds it
to a secret kept outside the folder (:func:`~airflow_provider_omnisend.export.hashing.state_key`: the
Omnisend connection's), so reading the folder is not enough to test guesses of an e-mail against it.
``key_check`` (one-way) tells the next run whether it still hashes the same way. The folder never
holds an e-mail in clear, a name or a payload.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fsspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from airflow_provider_omnisend.export.files import open_private
from airflow_provider_omnisend.export.hashing import HASH_KEY_BYTES, new_hash_key
from airflow_provider_omnisend.export.keyspill import KeyPartitions, SortedSnapshotReader, stream_parquet
from airflow_provider_omnisend.export.sealed import PREFIX as SEALED_PREFIX
from airflow_provider_omnisend.export.sealed import SealedFile

POINTER = "CURRENT.json"
KEEP_VERSIONS = 3
SNAPSHOT_SCHEMA = pa.schema(
    [
        pa.field("key", pa.uint64(), nullable=False),
        pa.field("fp", pa.uint64(), nullable=False),
        pa.field("contact_id", pa.string()),
        pa.field("seal", pa.int64()),
    ]
)
#: Columns every snapshot has; ``seal`` came later (an older snapshot reads as all-null seals).
REQUIRED_COLUMNS = ("key", "fp", "contact_id")
REMOVED_SCHEMA = pa.schema(
    [pa.field("key", pa.uint64()), pa.field("contact_id", pa.string()), pa.field("seal", pa.int64())]
)
SNAPSHOT_PREFIX = "snapshot-"
#: Row groups of this many rows keep a streamed read of the snapshot small.
SNAPSHOT_ROW_GROUP_ROWS = 131_072


class SnapshotError(RuntimeError):
    """The incremental state cannot be read or written; the message says how to recover."""


@dataclass(frozen=True, slots=True)
class SnapshotState:
    """What the last run left: its hash key (new if there was no state) and its snapshot (or None)."""

    hash_key: bytes
    table: pa.Table | None
    config_digest: str | None = None
    snapshot_name: str | None = None
    #: :func:`~airflow_provider_omnisend.export.hashing.key_check` of the key the snapshot was hashed with
    key_check: str | None = None
    #: the pointer's ``emails`` entry as written (None: no sealed e-mails; see ``SealedFile.from_pointer``)
    emails: Any = None


@dataclass(frozen=True, slots=True)
class Diff:
    """Staging vs snapshot. ``send`` is aligned with staging rows: True for new or changed contacts."""

    send: np.ndarray
    new: int
    changed: int
    unchanged: int
    removed: int
    removed_table: pa.Table


def load_state(
    state_dir: str, *, storage_options: dict[str, Any] | None = None, read_table: bool = True
) -> SnapshotState:
    """Follow ``CURRENT.json``; without one (first run) return a fresh random hash key and no snapshot.

    ``read_table=False`` checks that the snapshot exists but leaves ``table`` None: the engine streams it
    (:func:`fetch_snapshot`, :func:`diff_partitioned`) instead of holding it in memory.
    """
    fs, root = fsspec.core.url_to_fs(state_dir, **(storage_options or {}))
    pointer_path = posixpath.join(root, POINTER)
    if not fs.exists(pointer_path):
        return SnapshotState(hash_key=new_hash_key(), table=None)
    try:
        with fs.open(pointer_path, "rb") as handle:
            pointer = orjson.loads(handle.read())
        hash_key = bytes.fromhex(pointer["hash_key"])
        name = pointer["snapshot"]
    except (ValueError, KeyError, TypeError) as error:
        raise SnapshotError(
            f"{state_dir}/{POINTER} is not a valid snapshot pointer ({error}). Restore it from a backup, "
            f"or delete the folder's {POINTER} to start over (the next run then sends every contact)."
        ) from error
    if len(hash_key) != HASH_KEY_BYTES:
        raise SnapshotError(f"{state_dir}/{POINTER} holds a hash key of {len(hash_key)} bytes, expected 16")
    snapshot_path = posixpath.join(root, name)
    if not fs.exists(snapshot_path):
        raise SnapshotError(
            f"{state_dir}/{POINTER} points at {name}, which does not exist. Point it at one of the "
            f"remaining snapshot-*.parquet files, or delete {POINTER} to start over (every contact is sent)."
        )
    table = None
    if read_table:
        with fs.open(snapshot_path, "rb") as handle:
            table = pq.read_table(handle)
        _check_schema(table, f"{state_dir}/{name}")
    return SnapshotState(
        hash_key=hash_key, table=table, config_digest=pointer.get("config_digest"), snapshot_name=name,
        key_check=pointer.get("key_check"), emails=pointer.get("emails"),
    )


def fetch_snapshot(
    state_dir: str, name: str, local_dir: str, *, storage_options: dict[str, Any] | None = None
) -> str:
    """A local, key-sorted copy of snapshot ``name`` to stream (read twice: by the diff and the merge).

    A snapshot on the local file system is used in place; a remote one is copied once into
    ``local_dir``. Its schema is checked, and so is its order: a snapshot this provider wrote is sorted
    by key; any other is sorted into ``local_dir`` (in memory, once).
    """
    fs, root = fsspec.core.url_to_fs(state_dir, **(storage_options or {}))
    source = posixpath.join(root, name)
    os.makedirs(local_dir, exist_ok=True)
    if isinstance(fs, LocalFileSystem):
        path = source
    else:
        path = os.path.join(local_dir, "previous-snapshot.parquet")
        fs.get_file(source, path)
    schema = pq.read_schema(path)
    _check_schema(schema.empty_table(), f"{state_dir}/{name}")
    if not _file_is_sorted(path):
        table = pq.read_table(path)
        order = np.argsort(_u64(table.column("key")), kind="stable")
        path = os.path.join(local_dir, "previous-snapshot-sorted.parquet")
        with open_private(LocalFileSystem(), path) as handle:
            pq.write_table(table.take(pa.array(order)), handle, compression="zstd")
    return path


def _file_is_sorted(path: str) -> bool:
    last: int | None = None
    for batch in stream_parquet(path, columns=["key"], batch_size=262_144):
        keys = batch.column(0).to_numpy().astype(np.uint64, copy=False)
        if not keys.size:
            continue
        if (last is not None and keys[0] < last) or not _is_sorted(keys):
            return False
        last = int(keys[-1])
    return True


def diff_partitioned(parts: KeyPartitions, snapshot_path: str | None) -> Diff:
    """Compare staged (key, fp) with the previous snapshot, key range by key range: staging's keys
    spilled by :func:`~airflow_provider_omnisend.export.keyspill.spill_keys` against a key-sorted
    snapshot file streamed alongside (see :func:`fetch_snapshot`). ``send`` stays aligned with staging
    order; memory is one key range, not every key; no Python per row."""
    send = np.ones(parts.rows, dtype=bool)
    if snapshot_path is None or pq.read_metadata(snapshot_path).num_rows == 0:
        return Diff(send=send, new=parts.rows, changed=0, unchanged=0, removed=0,
                    removed_table=REMOVED_SCHEMA.empty_table())
    reader = SortedSnapshotReader(snapshot_path)
    found_total = unchanged = 0
    removed: list[pa.RecordBatch] = []
    for staged, upper in parts.ranges():
        snap_keys, snap_fps, snap_ids, snap_seals = reader.take_below(upper)
        if not snap_keys.size:
            continue
        found, at = _lookup(snap_keys, staged["key"])
        same = found & (snap_fps[at] == staged["fp"])
        send[staged["pos"][same]] = False
        found_total += int(np.count_nonzero(found))
        unchanged += int(np.count_nonzero(same))
        present = np.zeros(snap_keys.size, dtype=bool)
        present[at[found]] = True
        gone = np.flatnonzero(~present)
        if gone.size:
            removed.append(pa.RecordBatch.from_arrays(
                [pa.array(snap_keys[gone], pa.uint64()), snap_ids.take(pa.array(gone)),
                 snap_seals.take(pa.array(gone))],
                schema=REMOVED_SCHEMA))
    new = parts.rows - found_total
    removed_table = pa.Table.from_batches(removed, schema=REMOVED_SCHEMA)
    return Diff(send=send, new=new, changed=parts.rows - new - unchanged, unchanged=unchanged,
                removed=removed_table.num_rows, removed_table=removed_table)


def merge_partitioned(
    parts: KeyPartitions,
    snapshot_path: str | None,
    accepted: np.ndarray,
    contact_ids: pa.Array | None = None,
) -> Iterator[pa.RecordBatch]:
    """The snapshot to write after a run, key range by key range: ``SNAPSHOT_SCHEMA`` batches already in
    key order, for :func:`write_snapshot_batches`.

    Kept: staged rows Omnisend accepted this run (their new fp; ``contact_ids`` where given, else the old
    id) and staged rows that were unchanged (old fp and id). A staged row that failed this run keeps its
    previous entry if it had one (so its contact id is not forgotten and its differing fp makes it
    "changed", hence retried, next run); a failed new row is left out (so it is "new" next run).
    Contacts no longer staged (left the segment) are dropped. Every row kept is staged, so its ``seal``
    is its staging position: its row in the e-mails sealed from this run's staging file.
    """
    accepted = np.asarray(accepted, dtype=bool)
    if accepted.shape != (parts.rows,):
        raise ValueError(f"accepted has {accepted.size} flags; staging has {parts.rows} rows")
    if contact_ids is not None and len(contact_ids) != parts.rows:
        raise ValueError(f"contact_ids has {len(contact_ids)} values; staging has {parts.rows} rows")
    reader = SortedSnapshotReader(snapshot_path)
    for staged, upper in parts.ranges():
        snap_keys, snap_fps, snap_ids, _ = reader.take_below(upper)
        pos = staged["pos"]
        ids = pa.nulls(pos.size, pa.string()) if contact_ids is None else contact_ids.take(pa.array(pos))
        use_new = accepted[pos]
        if not snap_keys.size:
            keep = np.flatnonzero(use_new)
            fp_out, id_out = staged["fp"], ids
        else:
            found, at = _lookup(snap_keys, staged["key"])
            at_or_0 = np.where(found, at, 0)
            old_id = pc.if_else(pa.array(found), snap_ids.take(pa.array(at_or_0)),
                                pa.scalar(None, pa.string()))
            keep = np.flatnonzero(use_new | found)
            fp_out = np.where(use_new, staged["fp"], snap_fps[at_or_0])
            id_out = pc.if_else(pa.array(use_new), pc.coalesce(ids, old_id), old_id)
        if keep.size:
            yield pa.RecordBatch.from_arrays(
                [pa.array(staged["key"][keep], pa.uint64()), pa.array(fp_out[keep], pa.uint64()),
                 id_out.take(pa.array(keep)), pa.array(pos[keep], pa.int64())],
                schema=SNAPSHOT_SCHEMA)


def write_snapshot(
    state_dir: str,
    table: pa.Table,
    *,
    hash_key: bytes,
    config_digest: str,
    key_check: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Write a new snapshot version and switch ``CURRENT.json`` to it; returns the version's file name."""
    _check_schema(table, "the snapshot to write")
    table = _with_seal(table).select(SNAPSHOT_SCHEMA.names).cast(SNAPSHOT_SCHEMA)
    return write_snapshot_batches(state_dir, table.to_batches(), hash_key=hash_key, key_check=key_check,
                                  config_digest=config_digest, storage_options=storage_options)


def write_snapshot_batches(
    state_dir: str,
    batches: Iterable[pa.RecordBatch],
    *,
    hash_key: bytes,
    config_digest: str,
    key_check: str | None = None,
    storage_options: dict[str, Any] | None = None,
    emails: SealedFile | None = None,
) -> str:
    """:func:`write_snapshot` from a stream of ``SNAPSHOT_SCHEMA`` batches (in key order), one at a time.
    ``emails`` names the sealed e-mails file (already written) that the batches' ``seal`` values point
    into."""
    if len(hash_key) != HASH_KEY_BYTES:
        raise ValueError(f"hash key must be {HASH_KEY_BYTES} bytes")
    fs, root = fsspec.core.url_to_fs(state_dir, **(storage_options or {}))
    fs.makedirs(root, exist_ok=True)
    now = datetime.now(UTC)
    name = f"{SNAPSHOT_PREFIX}{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.parquet"
    rows = 0
    with open_private(fs, posixpath.join(root, name)) as handle, pq.ParquetWriter(
        handle, SNAPSHOT_SCHEMA, compression="zstd"
    ) as writer:
        for batch in batches:
            if not batch.schema.equals(SNAPSHOT_SCHEMA):
                raise SnapshotError(f"snapshot batches must have the snapshot schema, got {batch.schema}")
            if batch.num_rows:
                writer.write_batch(batch, row_group_size=SNAPSHOT_ROW_GROUP_ROWS)
                rows += batch.num_rows
    pointer = {
        "snapshot": name,
        "hash_key": bytes(hash_key).hex(),
        "key_check": key_check,
        "config_digest": config_digest,
        "rows": rows,
        "written_at": now.isoformat().replace("+00:00", "Z"),
    }
    if emails is not None:
        pointer["emails"] = emails.to_pointer()
    temporary = posixpath.join(root, f".{POINTER}.{uuid.uuid4().hex[:8]}.tmp")
    with open_private(fs, temporary) as handle:
        handle.write(orjson.dumps(pointer, option=orjson.OPT_INDENT_2))
    fs.mv(temporary, posixpath.join(root, POINTER))
    _prune(fs, root, SNAPSHOT_PREFIX, keep=name)
    _prune(fs, root, SEALED_PREFIX, keep=emails.file if emails is not None else None)
    return name


def _prune(fs: fsspec.AbstractFileSystem, root: str, prefix: str, *, keep: str | None) -> None:
    """Keep the ``KEEP_VERSIONS`` newest ``<prefix>*.parquet`` files (names sort by time) and ``keep``."""
    versions = sorted(
        posixpath.basename(path)
        for path in fs.ls(root, detail=False)
        if posixpath.basename(path).startswith(prefix) and path.endswith(".parquet")
    )
    for old in versions[:-KEEP_VERSIONS]:
        if old != keep:
            fs.rm(posixpath.join(root, old))


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    at = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[at] == keys, at


def _is_sorted(values: np.ndarray) -> bool:
    return bool(values.size < 2 or (values[1:] >= values[:-1]).all())


def _u64(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return column.to_numpy().astype(np.uint64, copy=False)


def _with_seal(table: pa.Table) -> pa.Table:
    """``table`` with a ``seal`` column (all null for a snapshot written before e-mails were sealed)."""
    if "seal" in table.column_names:
        return table
    return table.append_column(SNAPSHOT_SCHEMA.field("seal"), pa.nulls(table.num_rows, pa.int64()))


def _check_schema(table: pa.Table, what: str) -> None:
    for expected in SNAPSHOT_SCHEMA:
        present = expected.name in table.column_names
        if (not present and expected.name in REQUIRED_COLUMNS) or (
                present and table.schema.field(expected.name).type != expected.type):
            raise SnapshotError(
                f"{what} does not have the snapshot columns key uint64, fp uint64, contact_id string "
                f"(and seal int64 if any; it has {table.schema}); it was not written by this provider"
            )
