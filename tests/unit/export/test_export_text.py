"""Byte-level string helpers, checked against plain Python on sliced arrays with nulls."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from airflow_provider_omnisend.export.text import (
    TRIM_CHARACTERS,
    choose_text,
    empty_to_null,
    has_control_chars,
    remove_ascii,
    trim,
    with_validity,
)

PIECES = ["", " ", "a", "(", "-", ".", "é", "\u00a0", "\u3000", "\ufeff", "李", "👍", "\u2003", "x y", "\t"]


def sample(seed: int, size: int = 400) -> pa.StringArray:
    """Random strings (some null), sliced so the array has a non-zero offset."""
    rng = np.random.default_rng(seed)
    values = [
        None if rng.random() < 0.1 else "".join(rng.choice(PIECES, size=rng.integers(0, 6)))
        for _ in range(size)
    ]
    return pa.array(values, pa.string()).slice(17, size - 40)


@pytest.mark.parametrize("seed", range(5))
def test_trim_matches_python_strip(seed: int) -> None:
    values = sample(seed)
    expected = [None if v is None else v.strip(TRIM_CHARACTERS) for v in values.to_pylist()]
    assert trim(values).to_pylist() == expected


def test_trim_skips_work_when_nothing_to_trim() -> None:
    values = pa.array(["Ann", "Zoë", None, "李"])
    assert trim(values) is values


@pytest.mark.parametrize("seed", range(5))
def test_remove_ascii_and_empty_to_null(seed: int) -> None:
    values = sample(seed)
    removed = remove_ascii(values, " -.()")
    removed.validate(full=True)
    expected = [None if v is None else "".join(c for c in v if c not in " -.()") for v in values.to_pylist()]
    assert removed.to_pylist() == expected
    assert empty_to_null(removed).to_pylist() == [None if v == "" else v for v in expected]


def test_with_validity_on_a_slice() -> None:
    values = pa.array(["a", None, "c", "d", "e"]).slice(1)
    result = with_validity(values, np.array([True, True, False, True]))
    result.validate(full=True)
    assert result.to_pylist() == [None, "c", None, "e"]


def test_choose_text() -> None:
    assert choose_text(["ab", "ü"], np.array([0, -1, 1, 1, 0])).to_pylist() == ["ab", None, "ü", "ü", "ab"]
    assert choose_text(["x"], np.array([-1, 0])).to_pylist() == [None, "x"]
    assert choose_text(["x"], np.array([], dtype=np.int64)).to_pylist() == []


def test_has_control_chars() -> None:
    assert not has_control_chars(pa.array(["plain", "é", "李", None]))
    for bad in ["a\x00", "tab\t", "del\x7f", "c1\u0085", "c1\u009f"]:
        assert has_control_chars(pa.array(["ok", bad]))
    # a control character outside the slice does not count
    assert not has_control_chars(pa.array(["\x01", "ok"]).slice(1))
    assert pc.all(pc.equal(trim(pa.array([" a "])), "a")).as_py()
