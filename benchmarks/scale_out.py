"""5. Scale-out: several segments exported at once, sharing one brand's budget.

Four processes each run ``ExportEngine`` over their own segment with a quarter of the brand's 400
requests per minute, against one emulator and one API key. This mirrors the example DAG's four mapped
export tasks under LocalExecutor (one process per task instance, the budget divided by the
``omnisend_api`` pool's slots); a DAG-level run is the e2e suite's job. The whole export should take
little more than the brand's rate floor (every contact at 400 × 100 per minute), and the brand must
never see more than 400 requests in a window.

A child alone: ``python -m benchmarks.scale_out --child '<json>'``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from airflow_provider_omnisend.lake import iter_batches

from .common import (
    BATCH_ITEMS,
    BRAND_RPM,
    PROJECT_ROOT,
    Context,
    Figure,
    Scale,
    Section,
    at_most,
    demo_spec,
    emit,
    emulator,
    make_client,
    quiet_logs,
    run_engine,
)
from .data import lake, profiles, write_parquet

MAX_OVER_FLOOR = 1.1
READY = "ready"


def child(job: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    scale = Scale(job["time_scale"])
    export = lake(job["lake"])
    client = make_client(job["api_url"], scale, job["budget"])
    run = run_engine(
        client=client,
        batches=iter_batches(export, columns=demo_spec(export.columns).source_columns),
        columns=export.columns,
        work=Path(job["work"]),
        scale=scale,
    )
    s = run.summary
    return {
        "segment": job["segment"],
        "started": started,
        "ended": time.time(),
        "first_request": client.first_start,
        "last_response": client.last_end,
        "rows": s.rows_read,
        "contacts": s.sent - s.api_rejected,
        "batches": s.batches,
        "requests": dict(client.routes),
        "requests_total": client.total,
        "phases": run.phases,
        "seconds": run.seconds,
    }


def measure(ctx: Context) -> Section:
    segments, rows = ctx.sizes["segments"], ctx.sizes["rows"]
    scale = ctx.scale
    budget = BRAND_RPM // segments
    section = Section(
        "scale_out", f"5. Scale-out: {segments} segments × {rows:,} in parallel, {budget}/min each"
    )
    lakes = [write_parquet(profiles(rows, start=n * rows), ctx.work / f"lake-{n}") for n in range(segments)]
    with emulator(scale, log_dir=ctx.work) as emu:
        jobs = [
            {
                "segment": n,
                "lake": str(folder),
                "work": str(ctx.work / f"engine-{n}"),
                "api_url": emu.api_url,
                "budget": budget,
                "time_scale": scale.time_scale,
            }
            for n, folder in enumerate(lakes)
        ]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.scale_out", "--child", json.dumps(job)],
                cwd=PROJECT_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for job in jobs
        ]
        spawned = time.time()
        for proc in procs:  # every process has imported Python, pyarrow, Airflow and the provider
            if proc.stdout is None or proc.stdout.readline().strip() != READY:
                raise RuntimeError(f"a scale-out child did not start:\n{proc.communicate()[1][-3000:]}")
        started = time.time()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [p.communicate() for p in procs]
        ended = time.time()
        state = emu.state()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        if proc.returncode:
            raise RuntimeError(f"a scale-out child failed ({proc.returncode}):\n{err[-3000:]}")
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    contacts = sum(r["contacts"] for r in results)
    requests = sum(r["requests_total"] for r in results)
    wall = ended - started
    api_wall = max(r["last_response"] for r in results) - min(r["first_request"] for r in results)
    floor_s = contacts / (BRAND_RPM * BATCH_ITEMS) * scale.window_s
    section.details = {
        "children": results,
        "wall_s": round(wall, 2),
        "api_wall_s": round(api_wall, 2),
        "floor_s": round(floor_s, 2),
        "start_up_s": round(started - spawned, 2),
        "emulator": {k: state[k] for k in ("requests", "responses_429", "max_in_window")},
    }
    section.add(
        Figure(
            f"wall time, {segments} processes from a common start to the last exit",
            round(wall, 1),
            "s",
            ratio=round(wall / floor_s, 3),
            ratio_of=f"the brand's rate floor ({contacts:,} contacts at {BRAND_RPM}×{BATCH_ITEMS}/min = "
            f"{floor_s:.1f} s)",
            target=f"≤ {MAX_OVER_FLOOR} × floor",
            ok=at_most(wall, MAX_OVER_FLOOR * floor_s),
        ),
        Figure(
            "API phase (first request to last response)",
            round(api_wall, 1),
            "s",
            ratio=round(api_wall / floor_s, 3),
            ratio_of="the rate floor",
        ),
        Figure(
            "max requests in one window (whole brand)",
            state["max_in_window"]["default"],
            "",
            ratio=round(state["max_in_window"]["default"] / BRAND_RPM, 3),
            ratio_of="the brand's limit",
            target=f"≤ {BRAND_RPM}",
            ok=at_most(state["max_in_window"]["default"], BRAND_RPM),
        ),
        Figure("429 responses", state["responses_429"], "", target="0", ok=state["responses_429"] == 0),
        Figure(
            "requests per contact",
            round(requests / contacts, 4),
            "",
            ratio=round(requests / contacts * BATCH_ITEMS, 3),
            ratio_of="one request per 100 contacts",
        ),
        Figure(
            "projected real time (API phase scaled, the rest as measured)",
            round((wall - api_wall) / 60 + scale.minutes(api_wall), 2),
            "min",
            ratio=round(((wall - api_wall) / 60 + scale.minutes(api_wall)) / scale.minutes(floor_s), 3),
            ratio_of=f"the rate floor ({scale.minutes(floor_s):g} min)",
        ),
    )
    section.notes.append(
        f"Time scale {scale.time_scale} (an emulated minute lasts {scale.window_s:g} s), "
        f"latency {scale.latency_ms:g} ms. Wall time includes reading and preparing each segment (real "
        "time, not scaled). It starts once all processes have started and imported the provider (with "
        f"Airflow: {started - spawned:.1f} s for {segments} processes at once, not counted), as a "
        "LocalExecutor task's process has."
    )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", required=True, help="the job as JSON")
    job = json.loads(parser.parse_args().child)
    quiet_logs()
    print(READY, flush=True)
    sys.stdin.readline()  # wait for the common start
    emit(child(job))


if __name__ == "__main__":
    main()
