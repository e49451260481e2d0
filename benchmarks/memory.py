"""3. Memory: peak RSS (VmHWM) of a streamed export, each step in a fresh subprocess.

For each size a CDM export (header-less CSV partitions) is written, then measured in separate processes:

* ``read``: stream the mapped columns through ``resolve_export`` + ``iter_batches`` (the lake reader alone).
* ``first``: a first ``ExportEngine.run`` (read, prepare, diff without a snapshot, chunk and push every
  contact, confirm, write the snapshot). The API is an in-process stub that accepts and finishes every
  batch at once (``InstantApi``), so memory is the engine's own, not an HTTP server's.
* ``again``: the next run over the same export: read, prepare, diff against the full snapshot, nothing to
  push, snapshot rewritten. The engine's figure is the larger of ``first`` and ``again``.
* ``dry_run``: ``ExportEngine`` with ``dry_run=True`` (what the DAG's dry-run parameter does).
* ``naive`` (one size): the baseline of ``benchmarks.naive`` loading the whole export with pandas first.

Run a child alone: ``python -m benchmarks.memory --child read --lake DIR --work DIR``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from airflow_provider_omnisend.lake import iter_batches
from airflow_provider_omnisend.testing.instant_api import InstantApi

from . import naive
from .common import (
    BATCH_ITEMS,
    Context,
    Figure,
    Section,
    at_most,
    demo_spec,
    emit,
    peak_rss_mb,
    quiet_logs,
    run_child,
    run_engine,
)
from .data import lake, profiles, write_cdm

MAX_PEAK_MB = 500
MAX_GROWTH = 0.20
#: the growth target's base size (1M → 5M rows); --quick sizes report growth without a verdict
GROWTH_FROM_ROWS = 1_000_000
MODES = ("read", "first", "again", "dry_run", "naive")


def child(mode: str, folder: str, work: str) -> dict[str, Any]:
    """Runs in the measured subprocess."""
    baseline = peak_rss_mb()
    started = time.perf_counter()
    export = lake(folder)
    columns = demo_spec(export.columns).source_columns
    result: dict[str, Any] = {}
    if mode == "read":
        rows = 0
        for batch in iter_batches(export, columns=columns):
            rows += batch.num_rows
        result["rows"] = rows
    elif mode == "naive":
        frame = pd.concat(
            [
                pd.read_csv(path, header=None, names=list(export.columns), dtype=str, keep_default_na=False)
                for path in export.files
            ],
            ignore_index=True,
        )
        contacts = list(naive.contacts(frame.to_dict("records")))
        bodies = [
            json.dumps({"method": "POST", "endpoint": "contacts", "items": contacts[i : i + BATCH_ITEMS]})
            for i in range(0, len(contacts), BATCH_ITEMS)
        ]
        result.update(rows=len(frame), contacts=len(contacts), bodies=len(bodies))
    else:
        run = run_engine(
            client=InstantApi(),
            batches=iter_batches(export, columns=columns),
            columns=export.columns,
            work=Path(work),
            poll_interval=0.0,
            dry_run=mode == "dry_run",
        )
        s = run.summary
        result.update(
            rows=s.rows_read,
            valid=s.valid,
            sent=s.sent,
            batches=s.batches,
            unchanged=s.unchanged,
            phases=run.phases,
            peaks=run.peaks,
        )
    gc.collect()
    result.update(
        mode=mode,
        seconds=round(time.perf_counter() - started, 2),
        baseline_rss_mb=baseline,
        peak_rss_mb=peak_rss_mb(),
    )
    return result


def measure(ctx: Context) -> Section:
    sizes: list[int] = ctx.sizes["rows"]
    section = Section(
        "memory", f"3. Memory: peak RSS of a streamed export ({', '.join(f'{n:,}' for n in sizes)} rows)"
    )
    runs: dict[int, dict[str, Any]] = {}
    for rows in sizes:
        table = profiles(rows)
        folder = write_cdm(table, ctx.work / f"lake-{rows}")
        del table
        work = ctx.work / f"engine-{rows}"
        modes = [m for m in MODES if m != "naive" or rows == ctx.sizes["naive_rows"]]
        runs[rows] = {
            m: run_child("benchmarks.memory", "--child", m, "--lake", str(folder), "--work", str(work))
            for m in modes
        }
        print(
            f"  {rows:,} rows: " + ", ".join(f"{m} {r['peak_rss_mb']} MB" for m, r in runs[rows].items()),
            flush=True,
        )
    section.details = {str(k): v for k, v in runs.items()}
    small, big = sizes[0], sizes[-1]

    def engine_peak(rows: int) -> float:
        return max(runs[rows]["first"]["peak_rss_mb"], runs[rows]["again"]["peak_rss_mb"])

    for rows in sizes:
        r = runs[rows]
        peak = engine_peak(rows)
        section.add(
            Figure(
                f"{rows:,} rows: export (read + prepare + diff + push to a stub + snapshot)",
                peak,
                "MB",
                ratio=round(peak / r["read"]["peak_rss_mb"], 2),
                ratio_of="the lake reader alone",
                target=f"≤ {MAX_PEAK_MB}" if rows == small else "",
                ok=at_most(peak, MAX_PEAK_MB) if rows == small else None,
            ),
            Figure(
                f"{rows:,} rows: first run / next run (diff against {rows:,} snapshot rows)",
                f"{r['first']['peak_rss_mb']} / {r['again']['peak_rss_mb']}",
                "MB",
            ),
            Figure(f"{rows:,} rows: lake reader alone", r["read"]["peak_rss_mb"], "MB"),
            Figure(
                f"{rows:,} rows: dry run",
                r["dry_run"]["peak_rss_mb"],
                "MB",
                ratio=round(r["dry_run"]["peak_rss_mb"] / peak, 2),
                ratio_of="the export",
            ),
        )
        if "naive" in r:
            section.add(
                Figure(
                    f"{rows:,} rows: naive baseline (pandas read_csv + dicts + json.dumps)",
                    r["naive"]["peak_rss_mb"],
                    "MB",
                    ratio=round(r["naive"]["peak_rss_mb"] / peak, 2),
                    ratio_of="the export",
                )
            )
    if big != small:
        growth = (engine_peak(big) - engine_peak(small)) / engine_peak(small)
        read_growth = (runs[big]["read"]["peak_rss_mb"] - runs[small]["read"]["peak_rss_mb"]) / runs[small][
            "read"
        ]["peak_rss_mb"]
        section.add(
            Figure(
                f"export growth {small:,} → {big:,} rows",
                round(growth, 3),
                "",
                ratio=round(engine_peak(big) / engine_peak(small), 2),
                ratio_of=f"peak at {small:,}",
                # The target is for 1M → 5M rows; below 1M the peak still grows with the arena warm-up.
                target=f"≤ {MAX_GROWTH}" if small >= GROWTH_FROM_ROWS else "",
                ok=at_most(growth, MAX_GROWTH) if small >= GROWTH_FROM_ROWS else None,
            ),
            Figure(f"lake reader growth {small:,} → {big:,} rows", round(read_growth, 3), ""),
        )
    section.notes.append(
        "Peak RSS is VmHWM of a fresh Python process that imports the provider "
        f"(about {runs[small]['read']['baseline_rss_mb']} MB before reading)."
    )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=MODES, required=True)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    quiet_logs()
    emit(child(args.child, args.lake, args.work))


if __name__ == "__main__":
    main()
