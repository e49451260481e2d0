"""Batch shaping: every column becomes text, batches are re-cut to the requested size."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from airflow_provider_omnisend.lake.batches import as_strings, rebatch


def _batch(n: int, start: int = 0) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"i": list(range(start, start + n))})


def test_rebatch_coalesces_small_and_slices_large_batches():
    parts = [_batch(2), _batch(5, 2), _batch(0), _batch(1, 7), _batch(10, 8)]
    out = list(rebatch(parts, 4))
    assert [b.num_rows for b in out] == [4, 4, 4, 4, 2]
    assert [v for b in out for v in b.column("i").to_pylist()] == list(range(18))


def test_rebatch_rejects_nonpositive_sizes():
    with pytest.raises(ValueError, match="at least 1"):
        list(rebatch([_batch(1)], 0))


def test_as_strings_converts_every_type_and_keeps_nulls():
    batch = pa.RecordBatch.from_pydict({
        "f": pa.array([48123456789.0, 1.25, None, float("nan")]),
        "b": pa.array([True, False, None, True]),
        "t": pa.array([dt.datetime(2026, 1, 2, 3, 4, 5)] * 4, pa.timestamp("s")),
        "d": pa.array(["x", "y", None, "x"]).dictionary_encode(),
        "l": pa.array(["a", "b", "c", None], pa.large_string()),
        "n": pa.nulls(4),
    })
    out = as_strings(batch, ["n", "l", "d", "t", "b", "f"], where="test")
    assert out.schema == pa.schema([(c, pa.string()) for c in ("n", "l", "d", "t", "b", "f")])
    assert out.column("f").to_pylist() == ["48123456789", "1.25", None, "nan"]
    assert out.column("b").to_pylist() == ["true", "false", None, "true"]
    assert out.column("t").to_pylist()[0] == "2026-01-02 03:04:05"
    assert out.column("d").to_pylist() == ["x", "y", None, "x"]
    assert out.column("l").to_pylist() == ["a", "b", "c", None]
    assert out.column("n").to_pylist() == [None] * 4
