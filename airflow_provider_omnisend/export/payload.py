"""ContactRequest JSON for every row, built column-wise with Arrow, plus batch chunking and bodies.

Why strings and not dicts: a million ``orjson.dumps(dict)`` calls cost a million Python dicts. Here each
value column is JSON-escaped once (backslash, quote, control characters; everything else is valid
JSON as UTF-8, including RTL text, emoji and combining marks), then ``"field":"value"`` pieces are
concatenated per row, a null value contributing nothing. The result is also what gets fingerprinted,
so "changed" means "Omnisend would receive different bytes".

Item shape (keys in this order; absent values are left out, never sent as ""):
``{"identifiers":[{"type":"email","id":...,"sendWelcomeMessage":false[,"channels":{"email":{...}}]
[,"consent":{...}]}[,{"type":"phone","id":...,"sendWelcomeMessage":false[,"channels":{"sms":{...}}]}]],
<fields>, "customProperties":{...}, "tags":[...]}``, a channel being ``{"status":...[,"statusChangedAt":
...]}``. A channel status is only sent when the user mapped one: sending "nonSubscribed" by default
could overwrite a real subscription. Custom properties typed number, boolean or list are JSON literals
(a list arrives here as its JSON array text, see lists.py).
``sendWelcomeMessage`` is always explicit because the API defaults it to true and a bulk export must
not mail everyone a welcome.

Note: ``binary_join_element_wise(null_handling="skip")`` in pyarrow 26 drops rows whose inputs are all
null (the output gets shorter), so rows are assembled with "replace" and per-row optional pieces.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_omnisend.export.mapping import (
    EMAIL_STATUS_SLOT,
    SMS_STATUS_SLOT,
    STATUS_CHANGED_AT_SLOT,
    ChannelStatus,
    MappingSpec,
    consent_slot,
    custom_property_slot,
)
from airflow_provider_omnisend.export.text import (
    as_utf8,
    choose_text,
    json_escape,
    present,
    with_validity,
)
from airflow_provider_omnisend.export.typed import UNQUOTED_TYPES, base_type

_METHODS = ("POST", "PUT")
_ENDPOINTS = ("contacts", "products", "events", "categories")
_ITEMS_SUFFIX = b"]}"


def _body_prefix(endpoint: str, method: str) -> bytes:
    return orjson.dumps({"method": method, "endpoint": endpoint})[:-1] + b',"items":['


#: Bytes a batch body adds around its items (the largest over every method/endpoint, so plans are safe).
BODY_OVERHEAD_BYTES = max(len(_body_prefix(e, m)) for e in _ENDPOINTS for m in _METHODS) + len(_ITEMS_SUFFIX)


def json_literal(value: str) -> str:
    """One Python string as a JSON string literal (for names and constants known at build time)."""
    return orjson.dumps(value).decode("utf-8")


def build_items(table: pa.Table, spec: MappingSpec) -> pa.StringArray:
    """One ContactRequest JSON string per row of a normalised table (see normalize.NormalizedBatch)."""
    welcome = "true" if spec.send_welcome_message else "false"
    email = _column(table, "email")
    if email.null_count:
        raise ValueError("every row must have an e-mail before building items")
    row = _RowBuilder(table.num_rows)
    row.text('{"identifiers":[{"type":"email","id":"')
    row.value(json_escape(email))
    row.text(f'","sendWelcomeMessage":{welcome}')
    changed_at = _optional_column(table, STATUS_CHANGED_AT_SLOT)
    row.channel(spec.email_status, "email", _optional_column(table, EMAIL_STATUS_SLOT), changed_at=changed_at)
    if spec.consent:
        row.object(',"consent":{', [(json_literal(name), _column(table, consent_slot(name)), True)
                                    for name, _ in spec.consent])
    row.text("}")
    if "phone" in table.column_names:
        phone = _column(table, "phone")
        has_phone = present(phone)
        row.text(',{"type":"phone","id":"', has_phone)
        row.value(json_escape(phone))
        row.text(f'","sendWelcomeMessage":{welcome}', has_phone)
        row.channel(spec.sms_status, "sms", _optional_column(table, SMS_STATUS_SLOT), where=has_phone,
                    changed_at=changed_at)
        row.text("}", has_phone)
    row.text("]")
    for name, _source in spec.fields:
        if name not in ("email", "phone"):
            row.member([f",{json_literal(name)}:"], _column(table, name))
    if spec.custom_properties:
        row.object(',"customProperties":{', [
            (json_literal(name), _column(table, custom_property_slot(name)),
             base_type(spec.property_type(name)) not in UNQUOTED_TYPES)
            for name, _ in spec.custom_properties
        ])
    if spec.tags:
        row.text(',"tags":' + orjson.dumps(list(spec.tags)).decode("utf-8"))
    row.text("}")
    return row.build()


class _RowBuilder:
    """Collects the pieces of one JSON object per row, then concatenates them in one Arrow pass.

    A piece is a constant (merged with neighbouring constants), a column (a null contributes nothing)
    or a constant present only in some rows (built once in numpy by ``choose_text``).
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.pieces: list[str | pa.Array] = []

    def text(self, text: str, where: np.ndarray | None = None) -> None:
        if where is None or where.all():
            if self.pieces and isinstance(self.pieces[-1], str):
                self.pieces[-1] += text
            else:
                self.pieces.append(text)
        elif where.any():
            self.pieces.append(choose_text([text], np.where(where, 0, -1)))

    def value(self, values: pa.Array) -> None:
        self.pieces.append(values)

    def member(
        self, keys: list[str], values: pa.StringArray, *, choice: np.ndarray | None = None,
        quoted: bool = True,
    ) -> None:
        """``<key>"value"`` where the value is present; ``choice`` picks one of ``keys`` per row.
        ``quoted=False`` writes the value as is: it must already be a JSON literal (number, boolean)."""
        mask = present(values)
        if not mask.any():
            return
        quote = '"' if quoted else ""
        if len(keys) == 1:
            self.text(keys[0] + quote, mask)
        else:
            self.pieces.append(choose_text([k + quote for k in keys], np.where(mask, choice, -1)))
        self.value(json_escape(values) if quoted else values)
        if quoted:
            self.text('"', mask)

    def object(self, opening: str, members: list[tuple[str, pa.StringArray, bool]]) -> None:
        """``<opening>"key":value,...}`` in the rows where at least one member is present; members are
        (JSON key, values, quoted)."""
        masks = [present(values) for _, values, _ in members]
        anything = np.logical_or.reduce(masks)
        self.text(opening, anything)
        seen = np.zeros(self.rows, dtype=bool)
        for (key, values, quoted), mask in zip(members, masks, strict=True):
            # no comma before the first member present in a row
            self.member([f"{key}:", f",{key}:"], values, choice=np.where(seen, 1, 0), quoted=quoted)
            seen |= mask
        self.text("}", anything)

    def channel(
        self,
        status: ChannelStatus | None,
        channel: str,
        values: pa.StringArray | None,
        *,
        where: np.ndarray | None = None,
        changed_at: pa.StringArray | None = None,
    ) -> None:
        """``,"channels":{"<channel>":{"status":"..."[,"statusChangedAt":"..."]}}`` only where a status
        is mapped (and ``where``)."""
        if status is None:
            return
        prefix = f',"channels":{{"{channel}":{{"status":'
        if values is not None:  # a column, or a constant left out of some rows (see normalize.py)
            masked = values if where is None else with_validity(values, where)
            self.member([prefix], masked)
            mask = present(masked)
        elif status.constant is not None:
            self.text(f'{prefix}"{status.constant}"', where)
            mask = np.ones(self.rows, dtype=bool) if where is None else where
        else:
            return
        if changed_at is not None:
            self.member([',"statusChangedAt":'], with_validity(changed_at, mask))
        self.text("}}", mask)

    def build(self) -> pa.StringArray:
        if len(self.pieces) == 1 and isinstance(self.pieces[0], str):
            return pa.array([self.pieces[0]] * self.rows, pa.string())
        return pc.binary_join_element_wise(*self.pieces, "", null_handling="replace", null_replacement="")


def item_byte_lengths(items: pa.StringArray) -> np.ndarray:
    """UTF-8 size of each item in bytes (what counts toward the body cap)."""
    return pc.binary_length(items).to_numpy(zero_copy_only=False).astype(np.int64)


def plan_chunks(
    item_byte_lengths: np.ndarray | Sequence[int], *, max_items: int, max_body_bytes: int = 1_000_000
) -> list[tuple[int, int]]:
    """Split items into consecutive ``[start, stop)`` batches of at most ``max_items`` items whose body
    (see :func:`batch_body`) stays within ``max_body_bytes``.

    An item that cannot fit even alone gets a chunk of its own: :func:`oversized_items` lists those so
    the engine can reject them instead of sending.
    """
    if max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    lengths = np.asarray(item_byte_lengths, dtype=np.int64)
    # cost of items [i, j) = ends[j] - ends[i] - 1 (one comma between neighbours)
    ends = np.concatenate([[0], np.cumsum(lengths + 1)])
    budget = max_body_bytes - BODY_OVERHEAD_BYTES + 1
    chunks: list[tuple[int, int]] = []
    start, n = 0, lengths.size
    # Usually every run of ``max_items`` items fits the byte cap: the greedy plan is then fixed strides
    # up to the first stride that does not fit, found at once instead of chunk by chunk.
    strides = np.arange(0, n, max_items)
    fits = ends[np.minimum(strides + max_items, n)] - ends[strides] <= budget
    too_big = np.flatnonzero(~fits)
    stop_at = int(strides[too_big[0]]) if too_big.size else n
    chunks.extend((a, min(a + max_items, n)) for a in range(0, stop_at, max_items))
    start = stop_at
    while start < n:
        stop = int(np.searchsorted(ends, ends[start] + budget, side="right")) - 1
        stop = max(start + 1, min(stop, start + max_items, n))
        chunks.append((start, stop))
        start = stop
    return chunks


def oversized_items(
    item_byte_lengths: np.ndarray | Sequence[int], *, max_body_bytes: int = 1_000_000
) -> np.ndarray:
    """Positions of items whose body alone would exceed ``max_body_bytes``."""
    lengths = np.asarray(item_byte_lengths, dtype=np.int64)
    return np.flatnonzero(lengths + BODY_OVERHEAD_BYTES > max_body_bytes)


def batch_body(
    items: pa.StringArray | Sequence[str], *, endpoint: str = "contacts", method: str = "POST"
) -> bytes:
    """The exact bytes of a ``POST /batches`` body for these (already JSON) items."""
    if method not in _METHODS or endpoint not in _ENDPOINTS:
        raise ValueError(f"batch method/endpoint must be one of {_METHODS} / {_ENDPOINTS}")
    if isinstance(items, pa.ChunkedArray):
        items = items.combine_chunks()
    if not isinstance(items, pa.Array):
        items = pa.array(list(items), pa.string())
    if not len(items) or items.null_count:
        raise ValueError("a batch needs at least one item and no null items")
    # Join in Arrow (one list of all items, joined with ","): no Python string per item on the hot path.
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(items)], pa.int32()), items), ",")
    return _body_prefix(endpoint, method) + joined[0].as_buffer().to_pybytes() + _ITEMS_SUFFIX


def batch_bodies(
    items: pa.StringArray,
    bounds: np.ndarray | Sequence[int],
    *,
    endpoint: str = "contacts",
    method: str = "POST",
) -> Iterator[bytes]:
    """The bodies of consecutive batches ``items[bounds[i]:bounds[i + 1]]``, byte for byte what
    :func:`batch_body` gives for each, with one Arrow join for all of them (no Python object per item).

    The joined text of every batch is built at once; each body then costs one copy of its bytes.
    """
    if method not in _METHODS or endpoint not in _ENDPOINTS:
        raise ValueError(f"batch method/endpoint must be one of {_METHODS} / {_ENDPOINTS}")
    if isinstance(items, pa.ChunkedArray):
        items = items.combine_chunks()
    bounds = np.asarray(bounds, dtype=np.int64)
    if bounds.size < 2:
        return
    if (np.diff(bounds) < 1).any() or bounds[0] < 0 or bounds[-1] > len(items):
        raise ValueError("batch bounds must be increasing positions within the items (no empty batch)")
    used = items.slice(int(bounds[0]), int(bounds[-1] - bounds[0]))
    if used.null_count:
        raise ValueError("a batch needs at least one item and no null items")
    offsets = pa.array(bounds - bounds[0], pa.int32())
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, used), ",")
    ends = np.frombuffer(joined.buffers()[1], dtype=np.int32, count=joined.offset + len(joined) + 1)
    ends = ends[joined.offset :].tolist()
    data = memoryview(joined.buffers()[2] or b"")
    prefix = _body_prefix(endpoint, method)
    for start, stop in itertools.pairwise(ends):
        yield b"".join((prefix, data[start:stop], _ITEMS_SUFFIX))


def _column(table: pa.Table, name: str) -> pa.StringArray:
    return as_utf8(table.column(name))


def _optional_column(table: pa.Table, name: str) -> pa.StringArray | None:
    return _column(table, name) if name in table.column_names else None
