"""Real processes share one brand's budget through Redis, measured where it counts: at the emulator.

The emulator (a real process) allows 1,000 requests per window, far above the 30 the processes share,
so nothing but the shared limiter keeps its busiest window at 30 or below.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis_url():
    pytest.importorskip("redis")
    from airflow_provider_omnisend.testing.services import redis_service

    with redis_service() as url:
        yield url + "/0"


def test_three_processes_keep_to_one_budget_at_the_server(emulator, redis_url):
    budget, processes, seconds = 30, 3, 3.0
    window = 60 * emulator.time_scale
    emulator.configure(rpm=1000)
    spec = f"redis:{redis_url}|omnisend-test:{uuid.uuid4().hex}"
    args = [sys.executable, "-m", "tests.shared_limit_child", spec, "brand:default", str(budget), str(window),
            str(seconds), "10", f"api={emulator.api_url}"]
    procs = [subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    sent = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        sent.append(int(out.split()[-1]))
    state = emulator.state()
    assert state["max_in_window"]["default"] <= budget, json.dumps(state["max_in_window"])
    assert state["responses_429"] == 0
    # they kept sending for several windows, every process some of it (lenient: a loaded CI machine)
    assert sum(sent) >= 2 * budget and min(sent) > 0


def test_the_hook_builds_one_brand_limiter_per_process_on_redis(omnisend_conn, redis_url):
    from airflow_provider_omnisend.api.sharedlimit import RedisStore, SharedLimiter
    from airflow_provider_omnisend.hooks.omnisend import OmnisendHook

    conn_id = omnisend_conn(redis_url=redis_url, redis_prefix=f"omnisend-test:{uuid.uuid4().hex}",
                            lease_ttl=5)
    first = OmnisendHook(conn_id, rate_share=4).client
    second = OmnisendHook(conn_id, rate_share=4).client
    limiter = first.limiters["default"]
    assert isinstance(limiter, SharedLimiter) and isinstance(limiter.store, RedisStore)
    assert second.limiters["default"] is limiter  # one per brand per process: exports, sensors, triggers
    assert (limiter.limit, limiter.fallback.limit, limiter.lease_ttl) == (300, 75, 5.0)
    assert first.limiters["tags"].limit == 60
    first.ping()
    assert limiter.store.live(limiter.key) == 1
