"""Capacity of the Omnisend emulator: requests/s for 100-item contact batches, and memory at 1M contacts.

Starts the emulator as its own process (limiter off: ``--rpm 0``), drives it from an aiohttp client with
``--concurrency`` connections for a fixed number of ``POST /api/batches`` (100 new contacts each), waits
until every batch is processed, reads a page of ``GET /api/contacts?tag=`` and optionally the export
stream, and prints one JSON object:

    requests_per_s       accepted POST /batches per second while the background worker also runs
    items_processed_per_s contacts upserted per second, from the first request until the queue drained
    peak_rss_mb          the emulator's peak resident memory (VmHWM), and bytes per contact

In the suite (``python -m benchmarks.run --only emulator``) it tells which time scale the rate-limit
measurements can use: the emulated ceiling (400 × 100 contacts per emulated minute) must stay well below
what the emulator processes, or those measurements would measure the emulator.

Usage: ``python -m benchmarks.emulator_capacity [--contacts 1000000] [--concurrency 32] [--export]``.
Bounded: a fixed number of requests to 127.0.0.1 only, with a deadline (``--max-seconds``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from airflow_provider_omnisend.testing.emulator import EmulatorServer

from .common import (
    API_KEY,
    BATCH_ITEMS,
    BRAND_RPM,
    Context,
    Figure,
    Section,
    at_least,
    load_avg,
    machine,
    status_kb,
)

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
    return status_kb(Path(f"/proc/{pid}/status"), field)


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


def capacity(
    *,
    contacts: int,
    batch_size: int = BATCH_ITEMS,
    concurrency: int = 32,
    export: bool = False,
    max_seconds: float = 900,
) -> dict[str, Any]:
    requests_total = contacts // batch_size
    deadline = time.monotonic() + max_seconds
    with EmulatorServer(api_key=API_KEY, extra_args=["--rpm", "0", "--log-level", "warning"]) as emu:
        pid = emu.proc.pid  # type: ignore[union-attr]
        rss_idle = vm_kb(pid, "VmRSS")
        t_start = time.perf_counter()
        load = asyncio.run(drive(emu.base_url, requests_total, batch_size, concurrency, deadline))
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

        exported = None
        if export:
            t0 = time.perf_counter()
            n = len(emu.contacts())
            exported = {"contacts": n, "seconds": round(time.perf_counter() - t0, 2)}
        peak_kb = vm_kb(pid, "VmHWM")
        rss_kb = vm_kb(pid, "VmRSS")

    return {
        "benchmark": "emulator_capacity",
        "batch_size": batch_size,
        "concurrency": concurrency,
        "post_batches": load,
        "contacts_stored": items,
        "batches": state["batches"],
        "items_processed_per_s": round(items / drained, 1),
        "seconds_until_drained": round(drained, 2),
        "list_by_tag_ms": {"first_page": round(page_first_ms, 1), "next_page": round(page_next_ms, 1)},
        "export": exported,
        "rss_idle_mb": round(rss_idle / 1024, 1),
        "rss_end_mb": round(rss_kb / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "bytes_per_contact": round((peak_kb - rss_idle) * 1024 / max(items, 1)),
    }


def measure(ctx: Context) -> Section:
    """How fast the emulator processes batches, against the contact rate the chosen time scale asks for."""
    section = Section("emulator", "0. Emulator capacity (context for the time scale)")
    result = capacity(contacts=ctx.sizes["contacts"], concurrency=8)
    section.details = result
    needed = BRAND_RPM * BATCH_ITEMS / ctx.scale.window_s  # contacts per real second at the ceiling
    processed = result["items_processed_per_s"]
    section.add(
        Figure(
            "POST /batches accepted (limiter off, 8 in flight)",
            result["post_batches"]["requests_per_s"],
            "requests/s",
            ratio=round(result["post_batches"]["requests_per_s"] * ctx.scale.window_s / BRAND_RPM, 1),
            ratio_of=f"{BRAND_RPM} per emulated minute at time scale {ctx.scale.time_scale}",
        ),
        Figure(
            "contacts processed by the emulator's batch worker",
            processed,
            "contacts/s",
            ratio=round(processed / needed, 2),
            ratio_of=f"the {BRAND_RPM}/min ceiling at time scale {ctx.scale.time_scale} "
            f"({needed:,.0f} contacts/s)",
            target="≥ 1.5 × the ceiling",
            ok=at_least(processed, 1.5 * needed),
        ),
        Figure("emulator peak RSS", result["peak_rss_mb"], "MB"),
    )
    section.notes.append(
        "No provider target: this bounds what the rate-limit measurements can show. Below "
        "1.5 × the ceiling, use a larger --time-scale."
    )
    return section


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=BATCH_ITEMS)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--export", action="store_true", help="also time the full export stream")
    ap.add_argument("--max-seconds", type=float, default=900)
    args = ap.parse_args()
    load_before = load_avg()
    result = capacity(
        contacts=args.contacts,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        export=args.export,
        max_seconds=args.max_seconds,
    )
    # other processes on the machine skew every figure: a load above the CPU count means contention
    result["machine"] = {**machine(), "load_avg_before": load_before, "load_avg_after": load_avg()}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
