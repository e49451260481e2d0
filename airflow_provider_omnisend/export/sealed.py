"""The members' e-mails, sealed beside the snapshot, so that mirror mode can untag who left by e-mail.

Why: the snapshot knows its members only by keyed hash (no PII in the state folder). To find the e-mails
of those who left, mirror mode used to list every holder of the segment tag (250 per ``GET /contacts``:
about 4,000 requests for a 1M segment) and match their hashed e-mails, even when three people left. With
the e-mails sealed here, a run opens only the leavers' blocks and removes the tag by e-mail:
⌈leavers / 250⌉ ``DELETE /contacts/tags`` calls (docs/omnisend-api.md, section 6) and no listing.

Layout: ``emails-<UTC timestamp>-<short uuid>.parquet`` in the state folder, named in ``CURRENT.json``
(``"emails": {"file", "rows", "block_rows", "scheme"}``) and written before it. One row per block of
``BLOCK_ROWS`` consecutive staging rows: ``block``, ``rows``, ``nonce`` (12 random bytes) and ``sealed``,
the AES-256-GCM encryption of the block's e-mails (``rows + 1`` little-endian int32 offsets, then the
UTF-8 bytes: Arrow's own string layout, so packing and unpacking are two buffer copies, no per-row
Python). The associated data binds the scheme, the file name, the block number and its row count, so a
block cannot be moved to another place or file unnoticed. A snapshot row's ``seal`` column is its row
in this file: block ``seal // block_rows``, row ``seal % block_rows``.

The key is HKDF-SHA256 of the Omnisend connection's ``state_secret`` (kept outside the state folder),
salted with the state's random key, so the folder alone reveals no e-mail. A rotated secret, a missing
or damaged file all raise :class:`SealError`; the engine then falls back to listing the tag, and it
re-hashes every opened e-mail against the leaver's key before use, so nobody is untagged by mistake.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from airflow_provider_omnisend.export.files import open_private

SCHEME = "aes-256-gcm+hkdf-sha256/v1"
PREFIX = "emails-"
#: E-mails per sealed block: a leaver costs the decryption of its block (about 100 kB).
BLOCK_ROWS = 4096
#: Blocks per Parquet row group: a streamed read holds about this many sealed blocks.
GROUP_BLOCKS = 16
NONCE_BYTES = 12
SEALED_SCHEMA = pa.schema(
    [
        pa.field("block", pa.int64(), nullable=False),
        pa.field("rows", pa.int32(), nullable=False),
        pa.field("nonce", pa.binary(), nullable=False),
        pa.field("sealed", pa.binary(), nullable=False),
    ]
)
_INFO = b"airflow-provider-omnisend/sealed-emails/v1"


class SealError(RuntimeError):
    """The sealed e-mails cannot be used (missing, damaged, or sealed under another secret)."""


@dataclass(frozen=True, kw_only=True)
class SealedFile:
    """What ``CURRENT.json`` records of a sealed e-mails file."""

    file: str
    rows: int
    block_rows: int = BLOCK_ROWS
    scheme: str = SCHEME

    def to_pointer(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_pointer(cls, value: Any) -> SealedFile:
        """The pointer's ``emails`` entry; anything unexpected (a hostile or newer pointer) is a SealError."""
        try:
            sealed = cls(file=str(value["file"]), rows=int(value["rows"]),
                         block_rows=int(value["block_rows"]), scheme=str(value["scheme"]))
        except (KeyError, TypeError, ValueError) as error:
            raise SealError(f"the pointer's e-mails entry is not readable ({error!r:.120})") from error
        if sealed.scheme != SCHEME:
            raise SealError(f"the e-mails were sealed with scheme {sealed.scheme!r:.60}, this version reads "
                            f"{SCHEME!r}")
        if (not sealed.file.startswith(PREFIX) or "/" in sealed.file or sealed.block_rows < 1
                or sealed.rows < 0):
            raise SealError("the pointer's e-mails entry is malformed")
        return sealed


def seal_key(secret: bytes, salt: bytes) -> bytes:
    """The 256-bit AES key: HKDF-SHA256 of ``secret`` (kept outside the state folder), salted with the
    state's random key so that two states never share a key."""
    if not secret:
        raise ValueError("sealing e-mails needs a secret kept outside the state folder")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes(salt), info=_INFO).derive(bytes(secret))


def write_sealed(
    state_dir: str,
    emails: Iterable[pa.Array],
    *,
    key: bytes,
    storage_options: dict[str, Any] | None = None,
    block_rows: int = BLOCK_ROWS,
) -> SealedFile:
    """Seal a stream of e-mail string arrays (staging order: row ``i`` is seal ``i``) into a new file."""
    fs, root = fsspec.core.url_to_fs(state_dir, **(storage_options or {}))
    fs.makedirs(root, exist_ok=True)
    name = f"{PREFIX}{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.parquet"
    aead = AESGCM(key)
    rows = 0
    with open_private(fs, posixpath.join(root, name)) as handle, pq.ParquetWriter(
        handle, SEALED_SCHEMA, compression="none"  # ciphertext does not compress
    ) as writer:
        group: list[tuple[int, int, bytes, bytes]] = []
        for number, block in enumerate(_fixed_blocks(emails, block_rows)):
            nonce = os.urandom(NONCE_BYTES)
            sealed = aead.encrypt(nonce, _pack(block), _aad(name, number, len(block)))
            group.append((number, len(block), nonce, sealed))
            rows += len(block)
            if len(group) >= GROUP_BLOCKS:
                _write_group(writer, group)
        _write_group(writer, group)
    return SealedFile(file=name, rows=rows, block_rows=block_rows)


def open_sealed(
    state_dir: str,
    sealed: SealedFile,
    seals: np.ndarray,
    *,
    key: bytes,
    storage_options: dict[str, Any] | None = None,
) -> pa.StringArray:
    """The e-mails at rows ``seals`` of the sealed file, aligned with ``seals``; only their blocks are
    decrypted. Raises :class:`SealError` if the file is missing or damaged, or the key is not the one
    it was sealed with."""
    seals = np.asarray(seals, dtype=np.int64)
    if not seals.size:
        return pa.array([], pa.string())
    if seals.min() < 0 or seals.max() >= sealed.rows:
        raise SealError(f"a snapshot row points outside the {sealed.rows:,} sealed e-mails")
    order = np.argsort(seals, kind="stable")
    ordered = seals[order]
    block_of = ordered // sealed.block_rows
    wanted = np.unique(block_of)
    pieces: dict[int, pa.Array] = {}
    aead = AESGCM(key)
    fs, root = fsspec.core.url_to_fs(state_dir, **(storage_options or {}))
    try:
        with fs.open(posixpath.join(root, sealed.file), "rb") as handle:
            for batch in pq.ParquetFile(handle, pre_buffer=False).iter_batches(batch_size=GROUP_BLOCKS):
                blocks = batch.column("block").to_numpy()
                for i in np.flatnonzero(np.isin(blocks, wanted)).tolist():  # per block, not per row
                    number, rows = int(blocks[i]), int(batch.column("rows")[i].as_py())
                    plain = aead.decrypt(batch.column("nonce")[i].as_py(), batch.column("sealed")[i].as_py(),
                                         _aad(sealed.file, number, rows))
                    lo, hi = np.searchsorted(block_of, [number, number + 1])
                    at = ordered[lo:hi] - number * sealed.block_rows
                    if at.max() >= rows:
                        raise SealError(f"sealed block {number} holds {rows} e-mails, fewer than expected")
                    pieces[number] = _unpack(plain, rows).take(pa.array(at))
    except InvalidTag as error:
        raise SealError("the e-mails were sealed under another secret (state_secret or API key changed), "
                        "or the file was altered") from error
    except (OSError, ValueError, KeyError, pa.ArrowException) as error:
        raise SealError(f"{sealed.file} cannot be read ({type(error).__name__})") from error
    missing = [int(b) for b in wanted if int(b) not in pieces]
    if missing:
        raise SealError(f"{sealed.file} lacks {len(missing)} of the sealed blocks needed")
    in_order = pa.concat_arrays([pieces[int(b)] for b in wanted])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return in_order.take(pa.array(inverse))


def _fixed_blocks(arrays: Iterable[pa.Array], size: int) -> Iterator[pa.Array]:
    """The concatenated ``arrays`` cut into blocks of exactly ``size`` rows (the last one shorter)."""
    pending: list[pa.Array] = []
    count = 0
    for array in arrays:
        rest = array
        while len(rest):
            take = min(size - count, len(rest))
            pending.append(rest.slice(0, take))
            count += take
            rest = rest.slice(take)
            if count == size:
                yield pa.concat_arrays(pending)
                pending, count = [], 0
    if count:
        yield pa.concat_arrays(pending)


def _pack(emails: pa.Array) -> bytes:
    """Arrow's string layout of ``emails``: ``n + 1`` int32 offsets from 0, then the UTF-8 bytes."""
    emails = emails.cast(pa.string())
    if emails.null_count:
        raise ValueError("cannot seal a null e-mail")
    n = len(emails)
    _, offsets_buffer, data_buffer = emails.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[emails.offset:emails.offset + n + 1]
    start, stop = int(offsets[0]), int(offsets[-1])
    data = bytes(memoryview(data_buffer)[start:stop]) if data_buffer is not None else b""
    return (offsets - start).astype("<i4").tobytes() + data


def _unpack(payload: bytes, rows: int) -> pa.StringArray:
    head = 4 * (rows + 1)
    if len(payload) < head:
        raise SealError("a sealed block is shorter than its offsets")
    array = pa.StringArray.from_buffers(rows, pa.py_buffer(payload[:head]), pa.py_buffer(payload[head:]))
    try:
        array.validate(full=True)
    except pa.ArrowInvalid as error:
        raise SealError("a sealed block's offsets are inconsistent") from error
    return array


def _aad(name: str, block: int, rows: int) -> bytes:
    return f"{SCHEME}|{name}|{block}|{rows}".encode()


def _write_group(writer: pq.ParquetWriter, group: list[tuple[int, int, bytes, bytes]]) -> None:
    if not group:
        return
    number, rows, nonce, sealed = zip(*group, strict=True)
    writer.write_table(pa.Table.from_arrays(
        [pa.array(number, pa.int64()), pa.array(rows, pa.int32()), pa.array(nonce, pa.binary()),
         pa.array(sealed, pa.binary())], schema=SEALED_SCHEMA))
    group.clear()

