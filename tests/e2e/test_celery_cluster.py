"""The example DAG on a distributed Airflow: CeleryExecutor, PostgreSQL metadata DB, Redis broker and two
separate ``airflow celery worker`` processes (each with its own TMPDIR and log-server port), against the
emulator as a real process. One cluster serves the whole module (starting it costs about a minute);
``clean_slate`` gives each test an empty emulator and no state. The broker is a Redis of the module's
own, so that a test can restart it mid-export.

The exports share the brand's budget through the brand-wide limiter in that same Redis (the
connection's ``redis_url``), as a Celery deployment would; the pool's static split is only its
fallback while Redis is away.

The emulator enforces Omnisend's 400 requests per minute; the connection's budget is 300, so a busiest
window above 300 (tasks that do not share the budget) fails the test before the emulator would answer
429.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_omnisend.testing.airflow_cluster import EXPORT_TASK, AirflowCluster
from airflow_provider_omnisend.testing.emulator import EmulatorServer
from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export
from airflow_provider_omnisend.testing.sample_data import COLUMNS, synthetic_profiles
from airflow_provider_omnisend.testing.services import RedisServer
from tests.support import FIELD_COLUMNS, expected_contacts

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

API_KEY = "celery-key-5e21b7"
#: An emulated minute lasts 6 s: the big segment's export spans a few windows, long enough to kill a
#: worker in the middle of it.
TIME_SCALE = 0.1
BUDGET = 300
#: Unequal segments (rows): the big one would keep its static share after the small ones end.
SIZES = {"Big": 20_000, "SmallA": 3_000, "SmallB": 3_000}


def _tables() -> dict[str, Any]:
    out, start = {}, 0
    for n, (name, rows) in enumerate(SIZES.items()):
        out[name] = synthetic_profiles(rows, seed=11 + n, start=start)
        start += rows
    return out


@pytest.fixture(scope="module")
def tables() -> dict[str, Any]:
    return _tables()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The cluster's own Redis (the broker), so that a test can restart it: a shared one never is."""
    with RedisServer(log_dir=tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def celery_cluster(tmp_path_factory: pytest.TempPathFactory, tables: dict[str, Any],
                   redis_server: RedisServer) -> Iterator[AirflowCluster]:
    root = tmp_path_factory.mktemp("celery-cluster")
    names = list(SIZES)
    export_dir = write_cdm_export(root / "lake", entity=names[0], columns=COLUMNS, rows=tables[names[0]],
                                  partitions=4, more_entities={n: tables[n] for n in names[1:]})
    with EmulatorServer(api_key=API_KEY, time_scale=TIME_SCALE, log_dir=root / "emulator") as emu:
        conn = json.dumps({"conn_type": "omnisend", "host": emu.api_url, "password": API_KEY,
                           "extra": {"privacy_acknowledged": True, "requests_per_minute": BUDGET,
                                     "window_seconds": 60 * TIME_SCALE, "backoff_initial": 0.1,
                                     "backoff_max": 1.0, "timeout": 10,
                                     "redis_url": redis_server.url + "/0",
                                     "redis_prefix": f"omnisend:rl:test-{secrets.token_hex(4)}"}})
        cluster = AirflowCluster(
            root / "airflow", emu, conn_uri=conn, lake_root=root / "lake",
            export_subdir=export_dir.relative_to(root / "lake"), segments=names, pool_slots=len(names),
            executor="celery", workers=2, worker_concurrency=2, redis_url=redis_server.url,
            env={"OMNISEND_RETRY_DELAY": "1", "OMNISEND_ALLOW_LOCAL_STATE": "true"},
        )
        with cluster:
            yield cluster


@pytest.fixture(autouse=True)
def clean_slate(celery_cluster: AirflowCluster) -> AirflowCluster:
    celery_cluster.reset()
    return celery_cluster


def assert_exact(emulator: EmulatorServer, tables: dict[str, Any]) -> dict[str, Any]:
    """Every valid profile of every segment is in Omnisend with its fields and its segment tag, nothing
    else is, nobody got a welcome message, no 429, and no window held more than the budget."""
    state = emulator.wait_idle(timeout=60)
    got = {c["email"]: c for c in emulator.contacts()}
    want: dict[str, tuple[dict[str, str], str]] = {}
    for name, table in tables.items():
        for email, fields in expected_contacts(table).items():
            want[email] = (fields, f"segment: {name}")
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    assert not missing and not extra, (
        f"missing {missing[:5]} ({len(missing)}), extra {extra[:5]} ({len(extra)})")
    wrong = [(e, got[e]) for e, (fields, tag) in want.items()
             if {f: got[e].get(f) for f in FIELD_COLUMNS} != fields or got[e].get("tags") != [tag]]
    assert not wrong, f"{len(wrong)} contacts differ, e.g. {wrong[:2]}"
    assert state["welcome_messages"] == 0, state
    assert state["responses_429"] == 0, state
    assert state["max_in_window"]["default"] <= BUDGET, state
    return state


def test_unequal_segments_on_two_workers_share_one_budget(celery_cluster: AirflowCluster,
                                                          tables: dict[str, Any]) -> None:
    run_id = celery_cluster.trigger({"segments": list(SIZES)})["dag_run_id"]
    workers_used: set[str] = set()

    def finished() -> bool:
        for t in celery_cluster.task_instances(run_id):
            found = celery_cluster.task_host(t["id"]) if t["state"] == "running" else None
            if found:
                workers_used.add(found[0])
        return celery_cluster.dag_run(run_id)["state"] in {"success", "failed"}

    celery_cluster.wait_until(finished, timeout=400, what="the run to finish", interval=1)
    celery_cluster.wait_run(run_id, timeout=30)
    assert_exact(celery_cluster.emulator, tables)
    assert workers_used == set(celery_cluster.workers), f"only {workers_used} ran tasks"


def test_worker_killed_mid_export_is_retried_and_loses_nothing(celery_cluster: AirflowCluster,
                                                               tables: dict[str, Any]) -> None:
    run_id = celery_cluster.trigger({"segments": ["Big"]})["dag_run_id"]

    def exporting() -> tuple[str, Any] | None:
        ti = celery_cluster.task_instance(run_id, EXPORT_TASK, 0)
        found = celery_cluster.task_host(ti["id"]) if ti and ti["state"] == "running" else None
        return found if found and celery_cluster.emulator.state()["contacts"] >= 2_000 else None

    worker, _ = celery_cluster.wait_until(exporting, timeout=240, what="the export under way", interval=0.5)
    sent_before = celery_cluster.emulator.state()["contacts"]
    celery_cluster.kill_worker(worker)
    try:
        celery_cluster.wait_run(run_id, timeout=300, tolerate_retries=True)
    finally:
        celery_cluster.start_worker(worker)
    ti = celery_cluster.task_instance(run_id, EXPORT_TASK, 0)
    assert ti["try_number"] >= 2, "the killed try was not retried"
    assert sent_before < SIZES["Big"], "the worker was killed after the export had finished"
    state = assert_exact(celery_cluster.emulator, {"Big": tables["Big"]})
    # A retry resumes from the confirmed batches: at most the batches in flight when the worker died
    # (the connection's max_in_flight, 8 by default) are sent again.
    posted = sum(n for key, n in state["requests"].items()
                 if key.startswith("POST") and key.endswith("batches"))
    batches = -(-len(expected_contacts(tables["Big"])) // 100)
    assert posted <= batches + 8 + 2, (posted, batches, state["requests"])


def test_redis_restarted_mid_export_completes_within_the_budget(
        celery_cluster: AirflowCluster, tables: dict[str, Any], redis_server: RedisServer) -> None:
    """Redis (here the Celery broker) goes away for a few seconds and comes back empty mid-export:
    the export completes exactly, never above the budget."""
    run_id = celery_cluster.trigger({"segments": ["Big"]})["dag_run_id"]

    def exporting() -> bool:
        ti = celery_cluster.task_instance(run_id, EXPORT_TASK, 0)
        return bool(ti and ti["state"] == "running" and celery_cluster.emulator.state()["contacts"] >= 2_000)

    celery_cluster.wait_until(exporting, timeout=240, what="the export under way", interval=0.5)
    redis_server.restart(down_seconds=3)
    assert celery_cluster.emulator.state()["contacts"] < SIZES["Big"], "Redis restarted after the export"
    celery_cluster.wait_run(run_id, timeout=300, tolerate_retries=True)
    assert_exact(celery_cluster.emulator, {"Big": tables["Big"]})
    log = celery_cluster.task_log(celery_cluster.task_instance(run_id, EXPORT_TASK, 0), lines=2000)
    assert "falling back to this process's static share" in log, log[-3000:]
