"""The sealed e-mails: what is sealed opens only under the same secret and state, block by block, and the
file reveals no e-mail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_omnisend.export.sealed import (
    SCHEME,
    SealedFile,
    SealError,
    open_sealed,
    seal_key,
    write_sealed,
)

SALT = bytes(range(16))
KEY = seal_key(b"connection-secret", SALT)


def emails(n: int) -> list[str]:
    return [f"person.{i}@example.com" if i % 5 else f"zoë.{i}@exämple.org" for i in range(n)]


def pieces(values: list[str], sizes: list[int]) -> list[pa.Array]:
    """``values`` as the uneven string arrays a staging read yields."""
    out, start = [], 0
    for size in sizes:
        out.append(pa.array(values[start:start + size], pa.string()))
        start += size
    return out


def test_round_trip_opens_any_rows_in_the_order_asked(tmp_path: Path) -> None:
    values = emails(1_000)
    sealed = write_sealed(str(tmp_path), pieces(values, [1, 333, 0, 400, 266]), key=KEY, block_rows=64)
    assert (sealed.rows, sealed.block_rows, sealed.scheme) == (1_000, 64, SCHEME)
    assert pq.read_metadata(tmp_path / sealed.file).num_rows == 16  # ⌈1000 / 64⌉ blocks
    at = np.array([999, 0, 64, 63, 500, 0, 777], dtype=np.int64)
    assert open_sealed(str(tmp_path), sealed, at, key=KEY).to_pylist() == [values[i] for i in at]
    every = np.random.default_rng(1).permutation(1_000)
    assert open_sealed(str(tmp_path), sealed, every, key=KEY).to_pylist() == [values[i] for i in every]
    assert open_sealed(str(tmp_path), sealed, np.array([], np.int64), key=KEY).to_pylist() == []


def test_the_file_holds_no_email_and_is_owner_only(tmp_path: Path) -> None:
    values = emails(300)
    sealed = write_sealed(str(tmp_path), [pa.array(values)], key=KEY, block_rows=50)
    raw = (tmp_path / sealed.file).read_bytes()
    assert b"example" not in raw and b"person" not in raw and "zoë".encode() not in raw
    rows = pq.read_table(tmp_path / sealed.file).to_pylist()
    assert all(b"example" not in row["sealed"] for row in rows)
    assert len({row["nonce"] for row in rows}) == len(rows) == 6  # a fresh 12-byte nonce per block
    assert {len(row["nonce"]) for row in rows} == {12}
    assert oct((tmp_path / sealed.file).stat().st_mode & 0o777) == "0o600"


def test_another_secret_or_state_cannot_open(tmp_path: Path) -> None:
    sealed = write_sealed(str(tmp_path), [pa.array(emails(10))], key=KEY)
    for other in (seal_key(b"rotated-secret", SALT), seal_key(b"connection-secret", bytes(16))):
        with pytest.raises(SealError, match="another secret"):
            open_sealed(str(tmp_path), sealed, np.array([3]), key=other)
    with pytest.raises(ValueError, match="secret"):
        seal_key(b"", SALT)


def test_moved_blocks_a_missing_file_and_bad_rows_are_refused(tmp_path: Path) -> None:
    sealed = write_sealed(str(tmp_path), [pa.array(emails(100))], key=KEY, block_rows=10)
    table = pq.read_table(tmp_path / sealed.file)
    swapped = table.set_column(0, "block", pa.array(table.column("block").to_numpy()[::-1], pa.int64()))
    pq.write_table(swapped, tmp_path / sealed.file)
    with pytest.raises(SealError, match="altered"):
        open_sealed(str(tmp_path), sealed, np.array([5]), key=KEY)
    pq.write_table(table.slice(0, 3), tmp_path / sealed.file)  # blocks 3.. are gone
    with pytest.raises(SealError, match="lacks 1 of the sealed blocks"):
        open_sealed(str(tmp_path), sealed, np.array([5, 55]), key=KEY)
    with pytest.raises(SealError, match="outside the 100 sealed"):
        open_sealed(str(tmp_path), sealed, np.array([100]), key=KEY)
    (tmp_path / sealed.file).unlink()
    with pytest.raises(SealError, match="cannot be read"):
        open_sealed(str(tmp_path), sealed, np.array([5]), key=KEY)


def test_pointer_entry_is_checked(tmp_path: Path) -> None:
    sealed = write_sealed(str(tmp_path), [pa.array(emails(3))], key=KEY)
    assert SealedFile.from_pointer(sealed.to_pointer()) == sealed
    for bad in (None, {}, {**sealed.to_pointer(), "rows": "many"}, {**sealed.to_pointer(), "file": "../x"},
                {**sealed.to_pointer(), "block_rows": 0}):
        with pytest.raises(SealError, match=r"not readable|malformed"):
            SealedFile.from_pointer(bad)
    with pytest.raises(SealError, match="scheme"):
        SealedFile.from_pointer({**sealed.to_pointer(), "scheme": "rot13"})


def test_nothing_to_seal_makes_an_empty_file(tmp_path: Path) -> None:
    sealed = write_sealed(str(tmp_path), [pa.array([], pa.string())], key=KEY)
    assert sealed.rows == 0 and pq.read_metadata(tmp_path / sealed.file).num_rows == 0
    with pytest.raises(ValueError, match="null"):
        write_sealed(str(tmp_path), [pa.array(["a@b.c", None])], key=KEY)


def test_a_remote_state_folder_works_alike() -> None:
    """Object stores (abfs://, s3://...) go through fsspec: the in-memory file system stands in."""
    import uuid

    state = f"memory://sealed-{uuid.uuid4().hex}/state"
    values = emails(200)
    sealed = write_sealed(state, [pa.array(values)], key=KEY, block_rows=32)
    at = np.array([199, 3, 100])
    assert open_sealed(state, sealed, at, key=KEY).to_pylist() == [values[i] for i in at]
