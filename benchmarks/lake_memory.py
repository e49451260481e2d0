"""Peak memory of streaming a CDM export through ``iter_batches``: must not grow with export size.

Writes header-less Customer Insights-style CDM exports of 1M and 5M rows (generated with pyarrow, no
per-row Python), then streams every column of each through ``resolve_export`` + ``iter_batches`` in a
fresh subprocess and reports that process's peak RSS as JSON. Targets: < 500 MB at 5M rows and at most
20 % growth from 1M to 5M rows.

    nice python benchmarks/lake_memory.py [--rows 1000000 5000000] [--out benchmarks/results/lake_memory.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = ("CustomerId", "Email", "FirstName", "LastName", "Phone", "Country", "City", "Consent")
ROWS_PER_PARTITION = 250_000
MAX_PEAK_MB = 500
MAX_GROWTH = 0.20


def make_table(rows: int):
    """A contacts table of ``rows`` rows, built column-wise with pyarrow compute."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pc.cast(pa.array(range(1, rows + 1), pa.int64()), pa.string())
    first = pa.array(["Anna", "Bartek", "Chloé", "Dmitri", "Eve", "Fatima", "Gus"] * (rows // 7 + 1))[:rows]
    last = pa.array(["Nowak", "Smith", "O'Neil", "Müller", 'Quote "Q"', "Lee, Jr."] * (rows // 6 + 1))[:rows]
    countries = pa.array(["PL", "DE", "FR", "US", "GB"] * (rows // 5 + 1))[:rows]
    cities = pa.array(["Kraków", "Berlin", "Paris", "New\nYork", "London"] * (rows // 5 + 1))[:rows]
    consent = pa.array(["true", "false", ""] * (rows // 3 + 1))[:rows]
    return pa.table({
        "CustomerId": ids,
        "Email": pc.binary_join_element_wise("user", ids, "@example.com", ""),
        "FirstName": first,
        "LastName": last,
        "Phone": pc.binary_join_element_wise("+48", pc.utf8_lpad(ids, 9, "0"), ""),
        "Country": countries,
        "City": cities,
        "Consent": consent,
    })


def write_export(root: Path, rows: int) -> Path:
    from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export

    return write_cdm_export(root, entity="Customer", columns=COLUMNS, rows=make_table(rows),
                            partitions=max(1, rows // ROWS_PER_PARTITION))


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM).

    Not ``getrusage().ru_maxrss``: Linux carries that over ``exec`` from the forking parent, which here
    holds the generated table, so it would measure the writer instead of the reader.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status (this benchmark needs Linux)")


def read_child(folder: str) -> None:
    """Runs in the measured subprocess: stream every column, print one JSON line."""
    import pyarrow.compute as pc

    from airflow_provider_omnisend.lake import iter_batches, resolve_export

    baseline = peak_rss_mb()
    started = time.perf_counter()
    export = resolve_export(folder)
    rows = email_chars = batches = 0
    for batch in iter_batches(export, columns=list(COLUMNS)):
        rows += batch.num_rows
        batches += 1
        email_chars += pc.sum(pc.utf8_length(batch.column("Email"))).as_py() or 0
    seconds = time.perf_counter() - started
    print(json.dumps({
        "rows": rows, "batches": batches, "files": len(export.files), "email_chars": email_chars,
        "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds) if seconds else None,
        "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(),
    }))


def measure(rows: int, work: Path) -> dict:
    folder = write_export(work / f"rows_{rows}", rows)
    size = sum(p.stat().st_size for p in folder.rglob("*.csv"))
    out = subprocess.run([sys.executable, __file__, "--child", str(folder)], check=True,
                         capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rows"] != rows:
        raise SystemExit(f"read {result['rows']} rows, wrote {rows}")
    shutil.rmtree(folder.parent.parent)
    return {"rows_written": rows, "csv_mb": round(size / 2**20, 1), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "lake_memory.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        read_child(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="lake-memory-") as tmp:
        runs = [measure(n, Path(tmp)) for n in args.rows]
    small, big = runs[0], runs[-1]
    growth = (big["peak_rss_mb"] - small["peak_rss_mb"]) / small["peak_rss_mb"]
    report = {
        "benchmark": "lake_memory", "columns": len(COLUMNS), "runs": runs,
        "growth": round(growth, 3), "targets": {"peak_rss_mb_max": MAX_PEAK_MB, "growth_max": MAX_GROWTH},
        "ok": big["peak_rss_mb"] < MAX_PEAK_MB and growth <= MAX_GROWTH,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
