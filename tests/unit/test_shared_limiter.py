"""The brand-wide limiter: its rule (fake clock), and real stores shared by real processes.

SQLite and Redis are real (Redis: the running one on 127.0.0.1, or a throwaway server; keys under a random
prefix, nothing flushed). Each process records when it was granted a slot; no window of the merged
record may hold more than the budget. Nothing else enforces the budget in these tests, so the assertion
fails if the store does not.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from airflow_provider_omnisend.api.sharedlimit import (
    MemoryStore,
    RedisStore,
    SharedLimiter,
    SQLiteStore,
    brand_key,
)
from tests.support import FakeClock

REPO_ROOT = Path(__file__).resolve().parents[2]


def busiest(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while stamps[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def fake_limiter(store: MemoryStore, clock: FakeClock, **kwargs) -> SharedLimiter:
    return SharedLimiter(store, "brand:default", clock=clock, sleep=clock.sleep, **kwargs)


def test_brand_key_hides_the_api_key():
    key = brand_key("https://api.omnisend.com/api/", "secret-key-123")
    assert key == brand_key("https://api.omnisend.com/api", "secret-key-123")
    assert "secret" not in key and len(key) == 32
    assert key != brand_key("https://api.omnisend.com/api", "other-key-456")


def test_two_limiters_on_one_store_share_the_budget_and_the_back_off():
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    a = fake_limiter(store, clock, limit=10, window=1.0, lease_ttl=5.0)
    b = fake_limiter(store, clock, limit=10, window=1.0, lease_ttl=5.0)
    stamps = []
    for i in range(60):
        with (a if i % 3 else b).slot():
            stamps.append(clock.now)
            clock.now += 0.01
    assert busiest(stamps, 1.0) == 10
    assert stamps[-1] >= 5.0  # 60 requests at 10 per window
    a.penalise(3.0)  # a 429 seen by a holds b back too, and adds to the window's history
    before = clock.now
    with b.slot():
        assert clock.now >= before + 3.0


def test_a_waiter_is_granted_the_moment_a_slot_leaves_the_window():
    """No time lost to polling, hand-over or the end of a sharer's export: the k-th request goes out
    (k // limit) cycles of one window + one round trip after the first (a slot serves again one window
    after its response), plus k % limit round trips -- the floor the benchmarks divide by."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    big = fake_limiter(store, clock, limit=10, window=1.0, lease_ttl=5.0)
    small = fake_limiter(store, clock, limit=10, window=1.0, lease_ttl=5.0)
    rtt, sent = 0.01, []
    for k in range(45):
        with (small if k < 14 else big).slot():  # a small export ends mid-window; the big one goes on
            sent.append(clock.now)
            clock.now += rtt
    floor = [(k // 10) * (1.0 + rtt) + (k % 10) * rtt for k in range(45)]
    assert sent == pytest.approx(floor, abs=0.005)  # polling in window / 10 steps would be 0.1 late


def test_a_lease_never_released_expires_after_its_ttl():
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    killed = fake_limiter(store, clock, limit=3, window=1.0, lease_ttl=5.0)
    for _ in range(3):
        killed.acquire()  # a worker SIGKILLed mid-request: never released
    survivor = fake_limiter(store, clock, limit=3, window=1.0, lease_ttl=5.0)
    with survivor.slot():
        assert clock.now >= 6.0  # lease_ttl + one window


def test_an_unreachable_store_falls_back_to_the_static_share(caplog):
    redis = pytest.importorskip("redis")
    from airflow_provider_omnisend.testing.servers import free_port

    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
    limiter = SharedLimiter(RedisStore(client), "k", limit=20, window=0.5, fallback_limit=5, retry_store=60)
    stamps = []
    with caplog.at_level(logging.WARNING):
        for _ in range(12):
            with limiter.slot():
                stamps.append(time.monotonic())
    assert busiest(stamps, 0.5) <= 5
    warnings = [r.getMessage() for r in caplog.records if "falling back" in r.getMessage()]
    assert len(warnings) == 1 and "5 of 20" in warnings[0]


def test_sqlite_store_is_owner_only_and_trusts_a_new_file_one_window_later(tmp_path):
    path = tmp_path / "rl" / "ratelimit.sqlite"
    store = SQLiteStore(path)
    started = time.time()
    limiter = SharedLimiter(store, "k", limit=5, window=0.3, clock=time.time)
    limiter.release(limiter.acquire())
    assert time.time() - started >= 0.3  # a new file knows nothing of requests sent before it
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.live("k") == 1


@pytest.fixture(scope="module")
def redis_url():
    pytest.importorskip("redis")
    from airflow_provider_omnisend.testing.services import redis_service

    with redis_service() as url:
        yield url + "/0"


def _children(spec: str, key: str, *, limit: int, window: float, seconds: float, n: int,
              lease_ttl: float = 30.0, hold: bool = False) -> list[subprocess.Popen]:
    args = [sys.executable, "-m", "tests.shared_limit_child", spec, key, str(limit), str(window),
            str(seconds), str(lease_ttl)]
    return [subprocess.Popen([*args, *(["hold"] if hold else [])], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             text=True) for _ in range(n)]


def _stamps(procs: list[subprocess.Popen]) -> list[float]:
    stamps = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        stamps += [float(line) for line in out.split()]
    return stamps


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_separate_processes_share_one_budget(kind, tmp_path, request):
    if kind == "redis":
        spec = f"redis:{request.getfixturevalue('redis_url')}|omnisend-test:{uuid.uuid4().hex}"
    else:
        spec = f"sqlite:{tmp_path / 'ratelimit.sqlite'}"
    limit, window = 15, 0.5
    stamps = _stamps(_children(spec, "brand:default", limit=limit, window=window, seconds=3.0, n=3))
    assert busiest(stamps, window) <= limit
    # they kept sending for several windows (lenient: process start-up on a loaded CI machine)
    assert len(stamps) >= 2 * limit


def test_a_sigkilled_process_leases_expire(redis_url):
    """A process holding the whole budget in flight is SIGKILLed: its leases free after lease_ttl + one
    window, not never (and not before)."""
    url, prefix = redis_url, f"omnisend-test:{uuid.uuid4().hex}"
    window, ttl = 0.3, 1.5
    holder = _children(f"redis:{url}|{prefix}", "k", limit=4, window=window, seconds=60, n=1, lease_ttl=ttl,
                       hold=True)[0]
    granted = [float(holder.stdout.readline()) for _ in range(4)]  # the whole budget, never released
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    survivor = SharedLimiter(RedisStore.from_url(url, prefix=prefix), "k", limit=4, window=window,
                             lease_ttl=ttl)
    with survivor.slot():
        freed = time.time()
    assert granted[0] + ttl + window - 0.2 <= freed <= granted[-1] + ttl + window + 5.0


def test_redis_restarted_mid_run_never_goes_over_the_budget(caplog):
    pytest.importorskip("redis")
    from airflow_provider_omnisend.testing.services import RedisServer

    limit, window = 10, 0.4
    with RedisServer() as server, caplog.at_level(logging.WARNING):
        stores = [RedisStore.from_url(server.url, timeout=0.3) for _ in range(2)]
        # two "processes" (independent limiters and stores), each with half the budget as fallback
        limiters = [SharedLimiter(s, "k", limit=limit, window=window, lease_ttl=2.0,
                                  fallback_limit=limit // 2, retry_store=0.2, clock=time.time)
                    for s in stores]
        stamps: list[float] = []
        lock = threading.Lock()
        end = time.time() + 4.0

        def work(limiter: SharedLimiter) -> None:
            while time.time() < end:
                with limiter.slot(), lock:
                    stamps.append(time.time())

        threads = [threading.Thread(target=work, args=(lim,)) for lim in limiters for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(1.2)
        server.restart(down_seconds=1.0)
        for t in threads:
            t.join(timeout=30)
    assert busiest(stamps, window) <= limit
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "falling back" in messages and "answers again" in messages
    assert len(stamps) >= 3 * limit  # it kept sending through the outage and after


def test_a_429_back_off_is_shared_through_redis(redis_url):
    """One process's 429 holds every sender of the brand back (here: a second store connection)."""
    prefix = f"omnisend-test:{uuid.uuid4().hex}"
    first, second = (SharedLimiter(RedisStore.from_url(redis_url, prefix=prefix), "k", limit=50, window=0.2,
                                   lease_ttl=1.0) for _ in range(2))
    first.release(first.acquire())  # past the new state's first window
    first.penalise(1.0)
    first.penalise(0.1)  # never shortens it
    started = time.time()
    second.release(second.acquire())
    assert time.time() - started >= 0.9
