"""Keyed 64-bit hashing of string columns, vectorised.

Why keyed: the incremental state (snapshot) must let the next run recognise a contact without storing
its e-mail. A plain hash of an e-mail is reversible by a dictionary attack; SipHash-2-4 under a random
128-bit key is a pseudo-random function, so the stored values say nothing without the key.

Why pandas: ``pandas.util.hash_array`` runs SipHash-2-4 in C over a whole object array. Values are
passed as ``bytes`` (UTF-8 from Arrow) and the key is decoded as latin-1, which pandas encodes back to
exactly the original 16 bytes, so the full 128-bit key is used (a text key would be limited to ASCII).

Collisions: for n distinct values the chance of any 64-bit collision is about n²/2⁶⁵ (≈3·10⁻⁶ for ten
million e-mails). A collision can only make two people look like one, and the loser then lands in the
rejects file as a ``duplicate``; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
import pandas as pd
import pyarrow as pa

HASH_KEY_BYTES = 16


def new_hash_key() -> bytes:
    """A fresh random 16-byte key, created once per connection+segment state and then kept."""
    return secrets.token_bytes(HASH_KEY_BYTES)


def derive_key(key: bytes, *, purpose: str) -> bytes:
    """A 16-byte sub-key bound to ``purpose`` (e.g. a mapping digest).

    Item fingerprints use ``derive_key(hash_key, purpose=config_digest)``, so changing the mapping changes
    every fingerprint, without concatenating a salt onto a million strings.
    """
    _check_key(key)
    return hashlib.blake2b(purpose.encode("utf-8"), key=key, digest_size=HASH_KEY_BYTES).digest()


def state_key(stored: bytes, secret: bytes | None) -> bytes:
    """The key the incremental state's hashes are made with: the random key stored beside them, bound to
    a secret kept elsewhere (the Omnisend connection's). Without the secret, the state folder alone
    does not let anyone test guesses of an e-mail against it."""
    if not secret:
        return stored
    return derive_key(stored, purpose="state-secret:" + hashlib.sha256(secret).hexdigest())


def key_check(key: bytes) -> str:
    """A short, one-way check value of ``key``: tells a later run whether it hashes the same way."""
    return derive_key(key, purpose="key-check").hex()[:16]


def hash_strings(values: pa.Array | pa.ChunkedArray, *, key: bytes) -> np.ndarray:
    """SipHash-2-4 of each UTF-8 value under ``key``, as a ``uint64`` numpy array aligned with ``values``.

    Nulls are refused: a null would hash to the hash of the text "None" and silently collide.
    """
    _check_key(key)
    if values.null_count:
        raise ValueError(f"cannot hash {values.null_count} null value(s); filter nulls out first")
    if len(values) == 0:
        return np.empty(0, dtype=np.uint64)
    raw = (
        values.cast(pa.large_binary()) if pa.types.is_large_string(values.type) else values.cast(pa.binary())
    )
    objects = raw.to_numpy(zero_copy_only=False)
    return pd.util.hash_array(objects, encoding="latin-1", hash_key=key.decode("latin-1"), categorize=False)


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != HASH_KEY_BYTES:
        raise ValueError(f"hash key must be {HASH_KEY_BYTES} bytes, got {type(key).__name__}")
