"""Asset scheduling in a real Airflow (#16 items 4, 5): the lake Asset's watcher starts one DAG run per
new complete export, without a cron; each export adds an event with its counts to the segment's Asset
``omnisend://<brand>/<segment>``, which starts a downstream DAG; OpenLineage reports the export.

One cluster for the module (LocalExecutor, SQLite), scheduled with ``OMNISEND_EXPORT_SCHEDULE=asset``
on a lake that starts empty; its watcher looks every 2 s. Its DAG folder holds the example DAG and a
downstream DAG scheduled on one segment's Asset; OpenLineage writes its events to a file. The tests run
in order on the lake they leave.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_omnisend.lake import watermark_key
from airflow_provider_omnisend.testing.airflow_cluster import DAG_ID, DAGS_FOLDER, AirflowCluster, log_tail
from airflow_provider_omnisend.testing.emulator import EmulatorServer
from airflow_provider_omnisend.triggers.new_export import ANNOUNCED_PREFIX
from tests.e2e.helpers import (
    E2E_API_KEY,
    E2E_TIME_SCALE,
    EXPORT_SUBDIR,
    SAMPLE_LAKE,
    SEGMENTS,
    add_refresh,
    assert_emulator_holds,
    e2e_conn_uri,
    expected_contacts,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

WATCH_INTERVAL = 2
#: How long no second run may start: several looks of the watcher after the run wrote its watermark.
QUIET = 4 * WATCH_INTERVAL + 4
BRAND = "e2e-shop"
DOWNSTREAM = "omnisend_downstream"
DOWNSTREAM_DAG = f'''
from datetime import datetime
from airflow.sdk import DAG, task
from airflow_provider_omnisend.assets import omnisend_segment_asset

VIP = omnisend_segment_asset("{BRAND}", "HighValueCustomers")
with DAG("{DOWNSTREAM}", schedule=[VIP], start_date=datetime(2026, 1, 1), catchup=False):
    @task
    def counts(triggering_asset_events=None):
        return [event.extra for event in triggering_asset_events[VIP]]
    counts()
'''


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    root = tmp_path_factory.mktemp("asset-cluster")
    empty_lake = root / "empty-lake"
    empty_lake.mkdir()
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(DAGS_FOLDER / "omnisend_segment_export.py", dags)
    (dags / f"{DOWNSTREAM}.py").write_text(DOWNSTREAM_DAG)
    transport = {"type": "file", "log_file_path": str(root / "lineage.jsonl"), "append": True}
    env = {"OMNISEND_EXPORT_SCHEDULE": "asset", "OMNISEND_WATCH_INTERVAL": str(WATCH_INTERVAL),
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport)}
    with (EmulatorServer(api_key=E2E_API_KEY, time_scale=E2E_TIME_SCALE, log_dir=root / "emulator") as emu,
          AirflowCluster(root, emu, conn_uri=e2e_conn_uri(emu, brand=BRAND), lake_root=empty_lake,
                         export_subdir=EXPORT_SUBDIR, segments=SEGMENTS, env=env,
                         dags_folder=dags) as cluster):
        cluster.wait_for_dag(DOWNSTREAM)
        cluster.unpause(DOWNSTREAM)
        yield cluster


def runs(cluster: AirflowCluster, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
    found = cluster.api("GET", f"dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "run_after"})
    return found["dag_runs"]


def wait_for_runs(cluster: AirflowCluster, count: int, dag_id: str = DAG_ID) -> dict[str, Any]:
    """The ``count``-th run, once it exists (asset-triggered: no cron, nobody pressed Trigger)."""
    found = cluster.wait_until(lambda: len(r := runs(cluster, dag_id)) >= count and r, timeout=90,
                               what=f"{count} asset-triggered run(s) of {dag_id}")
    assert len(found) == count, [r["dag_run_id"] for r in found]
    assert all(r["run_type"] == "asset_triggered" for r in found), [r["run_type"] for r in found]
    return found[-1]


def stays_at(cluster: AirflowCluster, count: int) -> None:
    time.sleep(QUIET)
    assert len(runs(cluster)) == count, "a second run started for the same export"


def asset_events(cluster: AirflowCluster, uri: str) -> list[dict[str, Any]]:
    events = cluster.api("GET", "assets/events", params={"limit": 100, "order_by": "timestamp"})
    return [e for e in events["asset_events"] if e["uri"] == uri]


def task_xcom(cluster: AirflowCluster, run_id: str, task_id: str, dag_id: str = DAG_ID) -> Any:
    ti = [t for t in cluster.task_instances(run_id, dag_id) if t["task_id"] == task_id]
    assert len(ti) == 1, ti
    return cluster.xcom(ti[0])


def lineage_of_exports(cluster: AirflowCluster) -> list[dict[str, Any]]:
    path = cluster.root / "lineage.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    events = [json.loads(line) for line in lines if line.strip()]
    return [e for e in events if e.get("eventType") == "COMPLETE"
            and e["job"]["name"].endswith(".segment.export")]


def test_a_new_export_folder_starts_one_run(watched: AirflowCluster) -> None:
    time.sleep(QUIET)  # the watcher looks at a lake without the export folder: nothing starts
    assert runs(watched) == []

    staging = watched.root / "lake" / ".incoming"  # the folder appears at once, complete
    shutil.copytree(SAMPLE_LAKE / EXPORT_SUBDIR, staging)
    watched.export_dir.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(watched.export_dir)

    run = wait_for_runs(watched, 1)
    watched.wait_run(run["dag_run_id"], timeout=180)
    assert task_xcom(watched, run["dag_run_id"], "segments_to_export") == list(SEGMENTS)
    assert_emulator_holds(watched.emulator, expected_contacts(watched.export_dir, SEGMENTS))
    stays_at(watched, 1)

    (event,) = asset_events(watched, watched.export_dir.as_uri())
    assert event["extra"]["from_trigger"] is True
    announced = {e["segment"]: e["export_id"] for e in event["extra"]["payload"]["exports"]}
    assert announced == {s: f"cdm:{s}:2026/11/27/0300" for s in SEGMENTS}


def test_each_export_adds_its_counts_to_the_segment_asset_and_starts_the_downstream_dag(
        watched: AirflowCluster) -> None:
    (run,) = runs(watched)
    exports = [t for t in watched.task_instances(run["dag_run_id"]) if t["task_id"] == "segment.export"]
    for ti in exports:
        summary = watched.xcom(ti)
        (event,) = asset_events(watched, f"omnisend://{BRAND}/{summary['segment']}")
        extra = event["extra"]
        assert event["source_dag_id"] == DAG_ID and event["source_run_id"] == run["dag_run_id"]
        for key in ("rows_read", "valid", "rejected", "duplicates", "new", "sent", "batches", "export_id"):
            assert extra[key] == summary[key], (key, extra, summary)
        assert extra["sent"] > 0
        assert "@" not in json.dumps(extra), "an e-mail in the asset event"

    downstream = wait_for_runs(watched, 1, dag_id=DOWNSTREAM)
    watched.wait_run(downstream["dag_run_id"], timeout=120, dag_id=DOWNSTREAM)
    (seen,) = task_xcom(watched, downstream["dag_run_id"], "counts", dag_id=DOWNSTREAM)
    assert seen["segment"] == "HighValueCustomers" and seen["sent"] > 0

    lineage = watched.wait_until(lambda: len(e := lineage_of_exports(watched)) >= 2 and e, timeout=60,
                                 what="OpenLineage COMPLETE events of both exports")
    for event in lineage:
        (source,) = event["inputs"]
        (segment,) = event["outputs"]
        assert source["namespace"] == "file" and source["name"].startswith(str(watched.export_dir))
        assert segment["namespace"] == f"omnisend://{BRAND}" and segment["name"] in SEGMENTS
        assert source["inputFacets"]["inputStatistics"]["rowCount"] > 0
        assert segment["outputFacets"]["outputStatistics"]["rowCount"] > 0


def test_a_second_export_starts_one_more_run_for_its_segment(watched: AirflowCluster) -> None:
    assert len(runs(watched)) == 1, "runs in the order of the module"
    export_id = add_refresh(watched.export_dir, "HighValueCustomers", "2026/11/28/0300",
                            "2026-11-28T03:00:00.0000000Z")

    run = wait_for_runs(watched, 2)
    watched.wait_run(run["dag_run_id"], timeout=180)
    assert task_xcom(watched, run["dag_run_id"], "segments_to_export") == ["HighValueCustomers"]
    stays_at(watched, 2)

    events = asset_events(watched, watched.export_dir.as_uri())
    assert len(events) == 2
    assert events[-1]["extra"]["payload"]["exports"][0]["export_id"] == export_id
    # the same contacts again: nothing sent, and the segment's Asset says so (one more downstream run)
    latest = asset_events(watched, f"omnisend://{BRAND}/HighValueCustomers")[-1]["extra"]
    assert latest["export_id"] == export_id and latest["sent"] == 0 and latest["unchanged"] > 0
    wait_for_runs(watched, 2, dag_id=DOWNSTREAM)


def test_a_restarted_triggerer_does_not_announce_the_same_export_again(watched: AirflowCluster) -> None:
    """What the watcher announced is in the lake Asset's state store (the metadata DB), not only in the
    triggerer's memory: with the watermark gone (as while the run it started still exports), a new
    triggerer process still knows the export was announced."""
    assert len(runs(watched)) == 2, "runs in the order of the module"
    (lake_event, *_) = asset_events(watched, watched.export_dir.as_uri())
    store = watched.api("GET", f"assets/{lake_event['asset_id']}/state-store")["asset_state_store"]
    announced = {e["key"]: e["value"] for e in store}
    key = watermark_key("omnisend_default", "HighValueCustomers")
    assert announced[ANNOUNCED_PREFIX + key] == "cdm:HighValueCustomers:2026/11/28/0300", announced
    (watched.state_dir / f"{key}.json").unlink()  # only the state store can tell now

    log = watched.logs / "triggerer.log"
    before = len(log_tail(log, 10**9))
    watched.restart("triggerer")
    watched.wait_until(lambda: re.search(r"trigger ID \d+ starting", log_tail(log, 10**9)[before:]),
                       timeout=150, what="the new triggerer to run the watcher")
    stays_at(watched, 2)
    assert "Trigger fired event" not in log_tail(log, 10**9)[before:]
