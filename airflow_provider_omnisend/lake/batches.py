"""Shape record batches the same way whatever the source: requested columns, all strings, bounded size.

The export engine downstream only ever sees ``pa.string()`` columns in the order it asked for, so a lake
that stores a phone number as a double or an e-mail as an int64 does not crash it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

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


def column_as_string(arr: pa.Array | pa.ChunkedArray, *, name: str, where: str) -> pa.Array:
    """Cast one column to ``pa.string()`` (vectorised); unsupported nested types raise a LakeError."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    typ = arr.type
    if typ == pa.string():
        return arr
    if pa.types.is_dictionary(typ):
        return column_as_string(arr.dictionary_decode(), name=name, where=where)
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


def as_strings(batch: pa.RecordBatch, columns: Sequence[str], *, where: str) -> pa.RecordBatch:
    """Project ``batch`` onto ``columns`` (in that order) with every column as ``pa.string()``."""
    arrays = [column_as_string(batch.column(name), name=name, where=where) for name in columns]
    return pa.RecordBatch.from_arrays(arrays, schema=string_schema(columns))


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
        merged = pending[0] if len(pending) == 1 else pa.concat_batches(pending)
        offset = 0
        while merged.num_rows - offset >= batch_size:
            yield merged.slice(offset, batch_size)
            offset += batch_size
        rest = merged.slice(offset)
        pending = [rest] if rest.num_rows else []
        pending_rows = rest.num_rows
    if pending_rows:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)
