"""The brand-wide limiter against today's static split, side by side in the same run (issue #13 item 6).

    nice -n 5 .venv/bin/python -m benchmarks.shared_limit [--time-scale 0.05] [--rows 40000]

1. One segment alone on a pool of 4: the static split gives it budget ÷ 4; the shared limiter the whole
   budget. Figure: achieved contacts per emulated minute ÷ the budget's ceiling (budget × 100).
2. Unequal segments at once (60% + 3 × 13% of the rows), one engine each (threads of one process, as
   exports on one worker; every engine has its own client and limiter object, and the shared ones meet
   only in the store): wall time ÷ the brand's floor for all their requests.
3. The limiter's own cost per request (one acquire + release, no HTTP) for the memory, local (SQLite) and
   Redis stores, in ms.

The emulator enforces 400/min; the connection's budget is 300, so the emulator's limit is looser than the
budget whose busiest window is reported.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from airflow_provider_omnisend.api.sharedlimit import (
    MemoryStore,
    RedisStore,
    SharedLimiter,
    SQLiteStore,
)
from airflow_provider_omnisend.export.engine import ExportEngine, ExportOptions
from airflow_provider_omnisend.export.progress import MemoryProgressStore
from airflow_provider_omnisend.export.rejects import RejectsWriter
from airflow_provider_omnisend.lake import iter_batches

from .common import BATCH_ITEMS, Scale, demo_spec, emulator, make_client
from .data import lake, profiles, write_parquet

BUDGET = 300
POOL = 4


def _client(emu: Any, scale: Scale, *, shared_store: Any, key: str) -> Any:
    if shared_store is None:
        return make_client(emu.api_url, scale, BUDGET // POOL)
    client = make_client(emu.api_url, scale, BUDGET)
    client.limiters = {
        "default": SharedLimiter(shared_store, f"{key}:default", limit=BUDGET, window=scale.window_s,
                                 lease_ttl=10.0, fallback_limit=BUDGET // POOL),
        "tags": SharedLimiter(shared_store, f"{key}:tags", limit=60, window=scale.window_s, lease_ttl=10.0),
    }
    return client


def _segments(emu: Any, scale: Scale, work: Path, sizes: list[int], shared_store: Any) -> dict[str, Any]:
    emu.reset()
    key = uuid.uuid4().hex
    results: list[Any] = [None] * len(sizes)
    clients = [_client(emu, scale, shared_store=shared_store, key=key) for _ in sizes]

    def one(i: int) -> None:
        source = lake(write_parquet(profiles(sizes[i], start=sum(sizes[:i])), work / f"lake-{key}-{i}"))
        spec = demo_spec(source.columns)
        run_dir = work / f"engine-{key}-{i}"
        run_dir.mkdir(parents=True)
        rejects = RejectsWriter(str(run_dir / "rejects.parquet"), source_columns=spec.source_columns)
        engine = ExportEngine(
            client=clients[i], spec=spec, rejects=rejects, progress=MemoryProgressStore(),
            options=ExportOptions(segment=f"S{i}", segment_tag=f"segment: S{i}", max_profiles=None,
                                  poll_interval=2.0 * scale.time_scale),
            state_dir=str(run_dir / "state"), work_dir=run_dir / "staging", artifacts_dir=run_dir)
        try:
            results[i] = engine.run(iter_batches(source, columns=spec.source_columns))
        finally:
            rejects.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(sizes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = emu.state()
    first = min(c.first_start for c in clients)
    last = max(c.last_end for c in clients)
    requests = sum(c.total for c in clients)
    contacts = sum(r.sent - r.api_rejected for r in results)
    floor_s = (math.ceil(requests / BUDGET) - 1) * scale.window_s
    minutes = scale.minutes(last - first)
    return {"sizes": sizes, "contacts": contacts, "requests": requests, "push_s": round(last - first, 2),
            "over_floor": round((last - first) / floor_s, 3) if floor_s else None,
            "of_ceiling": round(contacts / minutes / (BUDGET * BATCH_ITEMS), 3),
            "responses_429": state["responses_429"], "max_in_window": state["max_in_window"]["default"]}


def limiter_cost(store: Any, n: int = 2000) -> float:
    """ms per acquire + release, one thread, a limit nobody reaches (a short window: the first grant on
    a new store waits one window, which is not the cost per request)."""
    limiter = SharedLimiter(store, uuid.uuid4().hex, limit=1_000_000, window=0.05, lease_ttl=0.05)
    limiter.release(limiter.acquire())
    started = time.perf_counter()
    for _ in range(n):
        limiter.release(limiter.acquire())
    return round((time.perf_counter() - started) / n * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--time-scale", type=float, default=0.05)
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    scale = Scale(args.time_scale)
    out: dict[str, Any] = {"budget": BUDGET, "pool": POOL, "time_scale": args.time_scale}
    with tempfile.TemporaryDirectory(prefix="bench-shared-limit-") as tmp:
        work = Path(tmp)
        out["cost_ms"] = {
            "memory": limiter_cost(MemoryStore()),
            "local": limiter_cost(SQLiteStore(work / "cost.sqlite")),
            "redis": limiter_cost(RedisStore.from_url(args.redis_url, prefix=f"bench:{uuid.uuid4().hex}")),
        }
        print(json.dumps(out["cost_ms"]), flush=True)
        unequal = [round(args.rows * 0.6)] + [round(args.rows * 0.13)] * 3
        with emulator(scale, log_dir=work) as emu:
            for name, store in (("static", None), ("shared", MemoryStore())):
                out[f"alone_{name}"] = _segments(emu, scale, work, [args.rows], store)
                print(name, "alone", json.dumps(out[f"alone_{name}"]), flush=True)
                out[f"unequal_{name}"] = _segments(emu, scale, work, unequal, store)
                print(name, "unequal", json.dumps(out[f"unequal_{name}"]), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
