"""The brand-wide limiter against today's static split, side by side in the same run (issue #13 item 6).

    nice -n 5 .venv/bin/python -m benchmarks.shared_limit [--time-scale 0.2] [--rows 100000]
        [--alone-rows 300000] [--store redis]

1. One segment alone on a pool of 4: the static split gives it budget ÷ 4; the shared limiter the whole
   budget. Figure: the share of the budget's ceiling it reached = the least time its requests can take
   under the limiter's rule (:meth:`Scale.window_floor`) ÷ the time they took. (Contacts per minute ÷
   budget × 100 is not that share: the sliding window lets a whole budget through at once in the first
   window, so a run of a few windows "beats" that ceiling.)
2. Unequal segments at once (60% + 3 × 13.3% of the rows), one engine each (threads of one process, as
   exports on one worker; every engine has its own client, limiter and store connection, so the shared
   ones meet only in the store, as task processes do): push time ÷ the brand's floor for all their
   requests, the same rule.
3. The limiter's own cost per request (one acquire + release, no HTTP) for the memory, local (SQLite) and
   Redis stores, in ms; and in the unequal run, the store operations per request (acquires refused
   while the window is full count too) and the slowest ones.

A brand-new store (a new Redis prefix or SQLite file) answers "wait" for one window before its first
lease: requests sent before it existed are not in it (see :mod:`airflow_provider_omnisend.api.sharedlimit`).
A deployment pays that once, not per run; here every section uses a new bucket, so the bucket is opened
(and that wait measured, ``first_use_s``) before the engines start.

The emulator enforces 400/min; the connection's budget is 300, so the emulator's limit is looser than the
budget whose busiest window is reported.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_provider_omnisend.api.sharedlimit import (
    Grant,
    LimitStore,
    MemoryStore,
    RedisStore,
    SharedLimiter,
    SQLiteStore,
)
from airflow_provider_omnisend.export.engine import ExportEngine, ExportOptions
from airflow_provider_omnisend.export.progress import MemoryProgressStore
from airflow_provider_omnisend.export.rejects import RejectsWriter
from airflow_provider_omnisend.lake import iter_batches

from .common import Scale, demo_spec, emulator, load_avg, make_client
from .data import lake, profiles, write_parquet

BUDGET = 300
POOL = 4
LEASE_TTL = 10.0


class TracedStore:
    """A store that records when each lease was granted, how many acquires were refused, and how long
    each store operation took: the grant timeline and the limiter's cost under contention."""

    def __init__(self, inner: LimitStore, trace: Trace) -> None:
        self.inner, self.trace = inner, trace
        self._granted: dict[str, float] = {}

    def acquire(self, key: str, **kwargs: Any) -> Grant:
        started = time.perf_counter()
        grant = self.inner.acquire(key, **kwargs)
        self.trace.op(started, granted=grant.lease is not None)
        if grant.lease is not None:
            self._granted[grant.lease] = time.perf_counter()
        return grant

    def release(self, key: str, lease: str, **kwargs: Any) -> None:
        started = time.perf_counter()
        self.inner.release(key, lease, **kwargs)
        self.trace.op(started, held=started - self._granted.pop(lease, started))

    def penalise(self, key: str, seconds: float) -> None:
        self.inner.penalise(key, seconds)

    def live(self, key: str) -> int:
        return self.inner.live(key)


class Trace:
    def __init__(self) -> None:
        self.grants: list[float] = []
        self.refused = 0
        self.ops_ms: list[float] = []
        self.held_ms: list[float] = []
        self._lock = threading.Lock()

    def op(self, started: float, *, granted: bool | None = None, held: float | None = None) -> None:
        now = time.perf_counter()
        with self._lock:
            self.ops_ms.append((now - started) * 1000)
            if held is not None:
                self.held_ms.append(held * 1000)
            if granted:
                self.grants.append(time.time())
            elif granted is False:
                self.refused += 1

    def summary(self, window: float, budget: int, last_end: float) -> dict[str, Any]:
        if not self.grants:
            return {}
        grants = sorted(self.grants)
        per_window = Counter(int((t - grants[0]) // window) for t in grants)
        ops, held = sorted(self.ops_ms), sorted(self.held_ms) or [0.0]
        return {
            "grants_per_window": [per_window.get(i, 0) for i in range(max(per_window) + 1)],
            # from the 1st grant of a budget to the 1st of the next: one window + the slot's round trip
            "cycle_s": [round(b - a, 3)
                        for a, b in zip(grants[::budget], grants[budget::budget], strict=False)],
            # the last budget's part: its requests, then confirming (polls), to the last response
            "last_cycle_to_end_s": round(last_end - grants[(len(grants) - 1) // budget * budget], 2),
            "held_ms": {"p50": round(held[len(held) // 2], 1), "max": round(held[-1], 1)},
            "store_ops_per_request": round(len(ops) / len(self.grants), 2),
            "refused_acquires": self.refused,
            "store_op_ms": {"p50": round(ops[len(ops) // 2], 2), "p99": round(ops[int(len(ops) * 0.99)], 2),
                            "max": round(ops[-1], 2)},
        }


def store_factory(kind: str, work: Path, redis_url: str) -> Callable[[], LimitStore]:
    """A new connection to one store per call (memory: the one object), as each task process opens."""
    if kind == "memory":
        shared = MemoryStore()
        return lambda: shared
    if kind == "local":
        path = work / "ratelimit.sqlite"
        return lambda: SQLiteStore(path)
    prefix = f"bench:{uuid.uuid4().hex}"
    return lambda: RedisStore.from_url(redis_url, prefix=prefix)


def open_buckets(store: LimitStore, keys: list[str], window: float) -> float:
    """Create the buckets and wait until the store trusts them (a brand-new store's one-time wait)."""
    started = time.monotonic()
    pending = list(keys)
    while pending:
        waits = []
        for key in list(pending):
            grant = store.acquire(key, limit=1, window=window, lease_ttl=window, history=[])
            if grant.lease is not None:
                store.release(key, grant.lease, window=0.0)  # a probe, not a request: gone at once
                pending.remove(key)
            else:
                waits.append(grant.wait)
        if waits:
            time.sleep(max(0.001, min(waits)))
    return round(time.monotonic() - started, 2)


def _client(emu: Any, scale: Scale, store: LimitStore | None, key: str) -> Any:
    if store is None:
        return make_client(emu.api_url, scale, BUDGET // POOL)
    client = make_client(emu.api_url, scale, BUDGET)
    common = {"window": scale.window_s, "lease_ttl": LEASE_TTL}
    client.limiters = {
        "default": SharedLimiter(store, f"{key}:default", limit=BUDGET, fallback_limit=BUDGET // POOL,
                                 **common),
        "tags": SharedLimiter(store, f"{key}:tags", limit=60, fallback_limit=60 // POOL, **common),
    }
    return client


def run_segments(emu: Any, scale: Scale, work: Path, sizes: list[int],
                 make_store: Callable[[], LimitStore] | None) -> dict[str, Any]:
    """One engine per segment, all at once; figures against the brand's floor for their requests."""
    emu.reset()
    key = uuid.uuid4().hex
    trace = Trace()
    first_use = None
    if make_store is not None:
        first_use = open_buckets(make_store(), [f"{key}:default", f"{key}:tags"], scale.window_s)
    clients = [_client(emu, scale, None if make_store is None else TracedStore(make_store(), trace), key)
               for _ in sizes]
    results: list[Any] = [None] * len(sizes)

    def one(i: int) -> None:
        results[i] = _export(clients[i], scale, sizes[i], sum(sizes[:i]), work / f"{key}-{i}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(sizes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = emu.state()
    first, last = min(c.first_start for c in clients), max(c.last_end for c in clients)
    push = last - first
    requests = sum(n for c in clients for route, n in c.routes.items() if "/tags" not in route)
    floor_s = scale.window_floor(requests, BUDGET)
    return {
        "sizes": sizes, "contacts": sum(r.sent - r.api_rejected for r in results), "requests": requests,
        "push_s": round(push, 2), "ends_s": [round(c.last_end - first, 2) for c in clients],
        "floor_s": round(floor_s, 2), "over_floor": round(push / floor_s, 3) if floor_s else None,
        "of_ceiling": round(floor_s / push, 3) if floor_s else None,
        "first_use_s": first_use, **trace.summary(scale.window_s, BUDGET, last),
        "responses_429": state["responses_429"], "max_in_window": state["max_in_window"]["default"],
    }


def _export(client: Any, scale: Scale, rows: int, start: int, folder: Path) -> Any:
    """One segment's ExportEngine.run (its own lake folder, state and rejects); its summary."""
    source = lake(write_parquet(profiles(rows, start=start), folder / "lake"))
    spec = demo_spec(source.columns)
    run_dir = folder / "engine"
    run_dir.mkdir(parents=True)
    rejects = RejectsWriter(str(run_dir / "rejects.parquet"), source_columns=spec.source_columns)
    engine = ExportEngine(
        client=client, spec=spec, rejects=rejects, progress=MemoryProgressStore(),
        options=ExportOptions(segment=folder.name, segment_tag=f"segment: {folder.name}", max_profiles=None,
                              poll_interval=2.0 * scale.time_scale),
        state_dir=str(run_dir / "state"), work_dir=run_dir / "staging", artifacts_dir=run_dir)
    try:
        return engine.run(iter_batches(source, columns=spec.source_columns))
    finally:
        rejects.close()


def limiter_cost(store: LimitStore, n: int = 2000) -> float:
    """ms per acquire + release, one thread, a limit nobody reaches (the bucket opened first: a new
    store's one-window wait is not the cost per request)."""
    key = uuid.uuid4().hex
    open_buckets(store, [key], 0.05)
    limiter = SharedLimiter(store, key, limit=1_000_000, window=0.05, lease_ttl=0.05)
    started = time.perf_counter()
    for _ in range(n):
        limiter.release(limiter.acquire())
    return round((time.perf_counter() - started) / n * 1000, 3)


def _utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--time-scale", type=float, default=0.2)
    parser.add_argument("--rows", type=int, default=100_000, help="all segments of the unequal case")
    parser.add_argument("--alone-rows", type=int, help="the segment alone (default: --rows)")
    parser.add_argument("--store", choices=("memory", "local", "redis"), default="redis")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--shared-only", action="store_true",
                        help="profile the shared limiter alone (the side-by-side figures need both)")
    args = parser.parse_args()
    scale = Scale(args.time_scale)
    alone = args.alone_rows or args.rows
    out: dict[str, Any] = {"budget": BUDGET, "pool": POOL, "time_scale": args.time_scale, "store": args.store,
                           "rows": args.rows, "alone_rows": alone, "started": _utc(),
                           "load_before": load_avg()}
    with tempfile.TemporaryDirectory(prefix="bench-shared-limit-") as tmp:
        work = Path(tmp)
        out["cost_ms"] = {
            "memory": limiter_cost(MemoryStore()),
            "local": limiter_cost(SQLiteStore(work / "cost.sqlite")),
            "redis": limiter_cost(RedisStore.from_url(args.redis_url, prefix=f"bench:{uuid.uuid4().hex}")),
        }
        print(json.dumps(out["cost_ms"]), flush=True)
        unequal = [args.rows - 3 * round(args.rows * 0.4 / 3)] + [round(args.rows * 0.4 / 3)] * 3
        with emulator(scale, log_dir=work) as emu:
            modes = {"static": None, "shared": store_factory(args.store, work, args.redis_url)}
            for name, make_store in modes.items():
                if args.shared_only and make_store is None:
                    continue
                for case, sizes in (("alone", [alone]), ("unequal", unequal)):
                    out[f"{case}_{name}"] = run_segments(emu, scale, work, sizes, make_store)
                    print(name, case, json.dumps(out[f"{case}_{name}"]), flush=True)
    out["load_after"] = load_avg()
    out["ended"] = _utc()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
