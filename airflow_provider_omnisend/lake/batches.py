"""Shape record batches the same way whatever the source: requested columns, all text, bounded size.

The export engine downstream only ever sees ``pa.string()`` columns in the order it asked for, so a lake
that stores a phone number as a double or an e-mail as an int64 does not crash it. A list column
(Parquet/Delta ``list``, ``large_list``, ``fixed_size_list``, list views) becomes ``list<string>``, its
items read as text the same way: it can only feed an array custom property (export/lists.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_omnisend.lake.errors import ColumnNotFound, LakeError

# Floats below this magnitude are exactly integral in float64; they print as integers ("48123456789").
_EXACT_FLOAT_INT = float(2**53)


def check_columns(requested: Sequence[str], available: Sequence[str], *, where: str) -> list[str]:
    """Validate the requested projection; raise ColumnNotFound listing what exists."""
    cols = list(requested)
    if not cols:
        raise ValueError("iter_batches needs at least one column name in `columns`.")
    if len(set(cols)) != len(cols):
        dupes = sorted({c for c in cols if cols.count(c) > 1})
        raise ValueError(f"`columns` lists {dupes} more than once; list each column once.")
    have = set(available)
    missing = [c for c in cols if c not in have]
    if missing:
        raise ColumnNotFound(missing=missing, available=available, where=where)
    return cols


def _float_to_string(arr: pa.Array) -> pa.Array:
    """Integral floats as integers (phone numbers stored as doubles), the rest as pyarrow prints them."""
    as_double = pc.cast(arr, pa.float64())
    integral = pc.and_(
        pc.equal(as_double, pc.floor(as_double)), pc.less(pc.abs(as_double), _EXACT_FLOAT_INT)
    )
    integral = pc.fill_null(integral, False)
    as_int = pc.cast(pc.if_else(integral, as_double, 0.0), pa.int64(), safe=False)
    return pc.if_else(integral, pc.cast(as_int, pa.string()), pc.cast(as_double, pa.string()))


def is_list_type(typ: pa.DataType) -> bool:
    """Any Arrow list layout (what Parquet and Delta arrays arrive as)."""
    return (pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)
            or pa.types.is_list_view(typ) or pa.types.is_large_list_view(typ))


def column_as_string(
    arr: pa.Array | pa.ChunkedArray, *, name: str, where: str, lists: bool = True
) -> pa.Array:
    """Cast one column to ``pa.string()`` (vectorised), a list column to ``list<string>`` (``lists``);
    other nested types (structs, maps, lists of lists) raise a LakeError."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    typ = arr.type
    if typ == pa.string():
        return arr
    if pa.types.is_dictionary(typ):
        return column_as_string(arr.dictionary_decode(), name=name, where=where, lists=lists)
    if lists and is_list_type(typ):
        return _list_as_strings(arr, name=name, where=where)
    if pa.types.is_floating(typ):
        return _float_to_string(arr)
    if pa.types.is_null(typ):
        return pa.nulls(len(arr), pa.string())
    try:
        return pc.cast(arr, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as err:
        raise LakeError(
            f"Column {name!r} in {where} has type {typ}, which cannot be read as text ({err}). Export a "
            "flat text/number column instead, or leave this column out of the mapping."
        ) from err


def _list_as_strings(arr: pa.Array, *, name: str, where: str) -> pa.ListArray:
    """A list column as ``list<string>``: the items cast like a flat column, a null list kept null."""
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False)
    items = column_as_string(arr.flatten(), name=f"{name} (its items)", where=where, lists=False)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32())
    return pa.ListArray.from_arrays(offsets, items, mask=pc.is_null(arr))


def as_strings(batch: pa.RecordBatch, columns: Sequence[str], *, where: str) -> pa.RecordBatch:
    """Project ``batch`` onto ``columns`` (in that order): every column ``pa.string()``, a list column
    ``list<string>``."""
    arrays = [column_as_string(batch.column(name), name=name, where=where) for name in columns]
    return pa.RecordBatch.from_arrays(arrays, names=list(columns))


def string_schema(columns: Sequence[str]) -> pa.Schema:
    return pa.schema([pa.field(c, pa.string()) for c in columns])


def rebatch(batches: Iterable[pa.RecordBatch], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of batches into batches of exactly ``batch_size`` rows (the last may be smaller).

    Small batches (many tiny partitions) are coalesced and large ones sliced, so at most about two
    batches' worth of rows is buffered at any time.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows < batch_size:
            continue
        merged = pending[0] if len(pending) == 1 else _concat(pending)
        offset = 0
        while merged.num_rows - offset >= batch_size:
            yield merged.slice(offset, batch_size)
            offset += batch_size
        rest = merged.slice(offset)
        pending = [rest] if rest.num_rows else []
        pending_rows = rest.num_rows
    if pending_rows:
        yield pending[0] if len(pending) == 1 else _concat(pending)


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    try:
        return pa.concat_batches(batches)
    except pa.ArrowInvalid as err:
        first = batches[0].schema
        mixed = sorted({f.name for b in batches for f in b.schema if f.type != first.field(f.name).type})
        raise LakeError(
            f"Column(s) {mixed} are lists in some files of the export and text in others; write them with "
            "one type in every file (or leave them out of the mapping)."
        ) from err
