"""Shared sample data for the lake reader tests (exposed as fixtures: test modules do not import it)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export

COLUMNS = ("CustomerId", "Email", "FirstName", "Phone")
ROWS = [
    ("1", "ann@example.com", "Ann", "+48123456789"),
    ("2", "bob@example.com", 'Bob "the builder"', None),
    ("3", "cid@example.com", "Cid, Jr.", "+4915112345678"),
    ("4", "dee@example.com", "Dee\nSecond line", ""),
    ("5", "eve@example.com", "Ève", "+33612345678"),
]
REFRESHES = ("2026-01-14T03:00:00Z", "2026-01-15T03:00:00Z")


def _expected(column: str, rows=ROWS) -> list[str | None]:
    """The values the reader should yield for ``column`` (empty fields read as null)."""
    i = COLUMNS.index(column)
    return [r[i] if r[i] else None for r in rows]


@pytest.fixture
def sample() -> SimpleNamespace:
    return SimpleNamespace(columns=COLUMNS, rows=ROWS, refreshes=REFRESHES, expected=_expected)


@pytest.fixture
def cdm_export(tmp_path: Path) -> Path:
    """A complete two-refresh model.json export (header-less CSV, 2 partitions per refresh)."""
    return write_cdm_export(tmp_path / "lake", entity="Customer", columns=COLUMNS, rows=ROWS,
                            refresh_times=REFRESHES)


def read_all(batches) -> dict[str, list]:
    """Concatenate streamed batches into one column dict."""
    out: dict[str, list] = {}
    for batch in batches:
        for name, values in batch.to_pydict().items():
            out.setdefault(name, []).extend(values)
    return out


@pytest.fixture
def collect():
    return read_all
