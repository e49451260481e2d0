"""Synthetic segment exports written as a lake: Parquet files, or a Customer Insights CDM folder with
header-less CSV partitions. Generated column-wise (``synthetic_profiles``: ~2% invalid e-mails, ~1%
duplicates differing in case and spaces, half the countries as names), never row by row."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_omnisend.lake import resolve_export
from airflow_provider_omnisend.lake.export import ResolvedExport
from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export
from airflow_provider_omnisend.testing.sample_data import COLUMNS, synthetic_profiles

from .common import SEGMENT

T = TypeVar("T")
ROWS_PER_FILE = 250_000
_GENERATE_ROWS = 1_000_000


def profiles(rows: int, *, start: int = 0) -> pa.Table:
    """``rows`` profiles with e-mails ``customer<start + i>@example.com`` (generated 1M at a time)."""
    parts = [
        synthetic_profiles(
            min(_GENERATE_ROWS, rows - done), seed=7 + done // _GENERATE_ROWS, start=start + done
        )
        for done in range(0, rows, _GENERATE_ROWS)
    ]
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def write_parquet(table: pa.Table, folder: Path) -> Path:
    """A folder of Parquet files of ``ROWS_PER_FILE`` rows, as a Spark or Synapse export writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, start in enumerate(range(0, table.num_rows, ROWS_PER_FILE)):
        pq.write_table(table.slice(start, ROWS_PER_FILE), folder / f"part-{n:05d}.parquet")
    return folder


def write_cdm(table: pa.Table, root: Path) -> Path:
    """A CDM export (model.json + header-less CSV partitions of ``ROWS_PER_FILE`` rows); its folder."""
    return write_cdm_export(
        root,
        entity=SEGMENT,
        columns=COLUMNS,
        rows=table,
        partitions=max(1, -(-table.num_rows // ROWS_PER_FILE)),
    )


def lake(folder: Path | str) -> ResolvedExport:
    return resolve_export(str(folder), segment=SEGMENT)


def lakes_before_after(
    rows: int, work: Path, change: Callable[[pa.Table], tuple[pa.Table, T]]
) -> tuple[ResolvedExport, ResolvedExport, T]:
    """A Parquet lake of ``rows`` profiles, a second one of what ``change`` makes of them, and what
    ``change`` reported (the tables are not kept in memory)."""
    table = profiles(rows)
    before = lake(write_parquet(table, work / "lake-1"))
    changed, info = change(table)
    return before, lake(write_parquet(changed, work / "lake-2")), info


def change_first_names(table: pa.Table, fraction: float, *, seed: int = 11) -> tuple[pa.Table, int]:
    """A copy with ``FirstName`` changed on ``fraction`` of the rows (chosen at random); rows changed."""
    rng = np.random.default_rng(seed)
    changed = np.zeros(table.num_rows, dtype=bool)
    changed[rng.choice(table.num_rows, int(table.num_rows * fraction), replace=False)] = True
    index = table.schema.get_field_index("FirstName")
    column = pa.array(np.where(changed, "Changed", table.column(index).to_numpy(zero_copy_only=False)))
    return table.set_column(index, "FirstName", column), int(changed.sum())
