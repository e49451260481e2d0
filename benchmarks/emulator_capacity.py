"""Capacity of the Omnisend emulator: requests/s for 100-item contact batches, and memory at 1M contacts.

Starts the emulator as its own process (limiter off: ``--rpm 0``), drives it from an aiohttp client with
``--concurrency`` connections for a fixed number of ``POST /api/batches`` (100 new contacts each), waits
until every batch is processed, reads a page of ``GET /api/contacts?tag=`` and optionally the export
stream, and prints one JSON object:

    requests_per_s       accepted POST /batches per second while the background worker also runs
    items_processed_per_s contacts upserted per second, from the first request until the queue drained
    peak_rss_mb          the emulator's peak resident memory (VmHWM), and bytes per contact

Usage: ``python benchmarks/emulator_capacity.py [--contacts 1000000] [--concurrency 32] [--export]``.
Bounded: a fixed number of requests to 127.0.0.1 only, with a deadline (``--max-seconds``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_omnisend.testing.emulator import EmulatorServer

API_KEY = "bench-key"
HEADERS = {
    "Authorization": f"Omnisend-API-Key {API_KEY}",
    "Omnisend-Version": "2026-03-15",
    "Content-Type": "application/json",
}


_ITEM = (
    b'{"identifiers":[{"type":"email","id":"user%07d@example.com","sendWelcomeMessage":false,'
    b'"channels":{"email":{"status":"subscribed","statusChangedAt":"2026-03-15T10:00:00Z"}}}],'
    b'"firstName":"First%d","lastName":"Benchmark","countryCode":"LT","city":"Vilnius",'
    b'"tags":["segment: capacity","bucket: %d"],"customProperties":{"ltv":%d,"tier":"gold"}}'
)


def batch_body(n: int, size: int) -> bytes:
    """Body of batch ``n``: ``size`` new contacts (a byte template, so the client stays cheap)."""
    ks = range(n * size, (n + 1) * size)
    items = b",".join([_ITEM % (k, k, k % 10, k % 1000) for k in ks])
    return b'{"method":"POST","endpoint":"contacts","items":[' + items + b"]}"


def vm_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def drive(base: str, requests: int, size: int, concurrency: int, deadline: float) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_n = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_n
        while next_n < requests and time.monotonic() < deadline:
            n = next_n
            next_n += 1
            body = batch_body(n, size)
            t0 = time.perf_counter()
            async with session.post(f"{base}/api/batches", data=body, headers=HEADERS) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms_p50": round(statistics.median(latencies) * 1000, 2),
        "latency_ms_p99": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "statuses": {str(k): v for k, v in statuses.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--export", action="store_true", help="also time the full export stream")
    ap.add_argument("--max-seconds", type=float, default=900)
    args = ap.parse_args()
    requests_total = args.contacts // args.batch_size
    deadline = time.monotonic() + args.max_seconds

    load_before = os.getloadavg()
    with EmulatorServer(api_key=API_KEY, extra_args=["--rpm", "0", "--log-level", "warning"]) as emu:
        pid = emu.proc.pid  # type: ignore[union-attr]
        rss_idle = vm_kb(pid, "VmRSS")
        t_start = time.perf_counter()
        load = asyncio.run(drive(emu.base_url, requests_total, args.batch_size, args.concurrency, deadline))
        state = emu.wait_batches_done(timeout=max(deadline - time.monotonic(), 1), poll_s=0.5)
        drained = time.perf_counter() - t_start
        items = state["contacts"]

        page_t0 = time.perf_counter()
        first = emu._session.get(
            f"{emu.api_url}/contacts",
            params={"tag": "bucket: 3", "limit": 250},
            headers=emu.headers(),
            timeout=120,
        )
        page_first_ms = (time.perf_counter() - page_t0) * 1000
        cursor = first.json()["paging"]["cursors"]["after"]
        page_t0 = time.perf_counter()
        emu._session.get(
            f"{emu.api_url}/contacts",
            params={"tag": "bucket: 3", "limit": 250, "after": cursor},
            headers=emu.headers(),
            timeout=120,
        )
        page_next_ms = (time.perf_counter() - page_t0) * 1000

        export = None
        if args.export:
            t0 = time.perf_counter()
            n = len(emu.contacts())
            export = {"contacts": n, "seconds": round(time.perf_counter() - t0, 2)}
        peak_kb = vm_kb(pid, "VmHWM")
        rss_kb = vm_kb(pid, "VmRSS")

    result = {
        "benchmark": "emulator_capacity",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            # other processes on the machine skew every figure: a load above the CPU count means contention
            "load_avg_1m_before": round(load_before[0], 2),
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
        },
        "batch_size": args.batch_size,
        "concurrency": args.concurrency,
        "post_batches": load,
        "contacts_stored": items,
        "batches": state["batches"],
        "items_processed_per_s": round(items / drained, 1),
        "seconds_until_drained": round(drained, 2),
        "list_by_tag_ms": {"first_page": round(page_first_ms, 1), "next_page": round(page_next_ms, 1)},
        "export": export,
        "rss_idle_mb": round(rss_idle / 1024, 1),
        "rss_end_mb": round(rss_kb / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "bytes_per_contact": round((peak_kb - rss_idle) * 1024 / max(items, 1)),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
