"""SIGKILL the process running the export during a real Airflow run, at five points, and let Airflow retry.

A real Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor on SQLite) runs the example
DAG over a 30,000-row Customer Insights export (CDM, header-less CSV) against the emulator. While the
``segment.export`` task runs, the test finds its task process (``airflow worker -- <ti id>``, the process
executing the operator, below the LocalExecutor's supervisor) and SIGKILLs it at a chosen point. The
supervisor reports the try failed; the scheduler retries it (``OMNISEND_RETRY_DELAY=1``); the retry
resumes from the task state store and the journal under the state folder. After the run succeeds:

* nothing is lost: every valid row is in the emulator with the right fields, every other row is in the
  rejects file with a reason (checked against an expectation computed without the product's code);
* no more is sent again than the batches in flight (the connection's ``max_in_flight``, 8), and nothing
  when the kill came before the first push or after the last one;
* the snapshot is consistent: it holds every contact, and the next refresh of the same data sends nothing;
* the killed try's local staging (which holds e-mails) is gone once the retry is done.

The kill points are found by polling the emulator and the task's staging folder, except "before the
snapshot write", which is too short a window to hit by polling: for it the DAG file (the example DAG,
verbatim, with a test patch in front) pauses the first try there while a marker file is armed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_omnisend.testing.airflow_cluster import DAGS_FOLDER, EXPORT_TASK, AirflowCluster
from airflow_provider_omnisend.testing.emulator import EmulatorServer
from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export
from airflow_provider_omnisend.testing.sample_data import COLUMNS, synthetic_profiles
from tests.reliability.helpers import (
    SEGMENT,
    expected_state,
    find_task_process,
    kill_when,
    posts,
    read_rejects,
    verify_export,
)
from tests.support import omnisend_conn_uri

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

API_KEY = "kill-test-key-5d0c"
TIME_SCALE = 0.05  # an emulated minute lasts 3 s
ROWS = 30_000
REQUESTS_PER_MINUTE = 120  # 40 requests/s real: the push lasts ~7 s, long enough to hit its middle
MAX_IN_FLIGHT = 8  # the connection's default
ITEMS_PER_BATCH = 100
TABLE = synthetic_profiles(ROWS, seed=11)
EXPECTED = expected_state(TABLE)
CHUNKS = math.ceil(len(EXPECTED.contacts) / ITEMS_PER_BATCH)
FIRST_REFRESH = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
NEXT_REFRESH = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)

#: Put in front of the example DAG's code (after its imports) in the test's DAGs folder.
PAUSE_PATCH = '''
# --- kill test only: the first try pauses before writing the snapshot while <pause dir>/armed exists ---
import os as _os
import time as _time
from pathlib import Path as _Path

from airflow_provider_omnisend.export import engine as _engine

# The engine writes the new snapshot (after every batch was confirmed) with this function.
_real_write_snapshot = _engine.write_snapshot_batches


def _paused_write_snapshot(*args, **kwargs):
    armed = _Path(_os.environ["OMNISEND_TEST_PAUSE_DIR"]) / "armed"
    if armed.exists():
        armed.rename(armed.with_name("paused"))
        _time.sleep(600)
    return _real_write_snapshot(*args, **kwargs)


_engine.write_snapshot_batches = _paused_write_snapshot
# --- end of the kill test's patch ---
'''
PATCH_AFTER = "from airflow_provider_omnisend.sensors.export_ready import OmnisendSegmentExportSensor\n"


def write_lake(root: Path, refresh: datetime) -> Path:
    return write_cdm_export(root, entity=SEGMENT, columns=COLUMNS, rows=TABLE, partitions=4,
                            refresh_times=(refresh,))


def write_dags_folder(folder: Path) -> Path:
    source = (DAGS_FOLDER / "omnisend_segment_export.py").read_text(encoding="utf-8")
    assert PATCH_AFTER in source, "the example DAG's imports changed: move the kill test's patch"
    folder.mkdir(parents=True)
    (folder / "omnisend_segment_export.py").write_text(source.replace(PATCH_AFTER, PATCH_AFTER + PAUSE_PATCH),
                                                      encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    root = tmp_path_factory.mktemp("airflow-kills")
    lake_root = root / "lake-source"
    export_dir = write_lake(lake_root, FIRST_REFRESH)
    pause_dir = root / "pause"
    pause_dir.mkdir()
    with EmulatorServer(api_key=API_KEY, time_scale=TIME_SCALE, log_dir=root / "emulator") as emu:
        conn = omnisend_conn_uri(emu.api_url, api_key=API_KEY, window_seconds=60 * TIME_SCALE,
                                 requests_per_minute=REQUESTS_PER_MINUTE, max_in_flight=MAX_IN_FLIGHT)
        airflow = AirflowCluster(
            root / "cluster", emu, conn_uri=conn, lake_root=lake_root,
            export_subdir=export_dir.relative_to(lake_root), segments=[SEGMENT], pool_slots=1,
            dags_folder=write_dags_folder(root / "dags"),
            env={"OMNISEND_RETRY_DELAY": "1", "OMNISEND_RETRIES": "2",
                 "OMNISEND_TEST_PAUSE_DIR": str(pause_dir)})
        with airflow:
            yield airflow


def pause_dir(cluster: AirflowCluster) -> Path:
    return Path(cluster.env["OMNISEND_TEST_PAUSE_DIR"])


# ------------------------------------------------------------------------------------------ kill points

class Watch:
    """What the test can see of the running export: the emulator's counters and the task's staging."""

    def __init__(self, cluster: AirflowCluster) -> None:
        self.cluster = cluster
        self.confirming_since: float | None = None

    def sent(self) -> int:
        return posts(self.cluster.emulator.state())

    def processing(self) -> int:
        batches = self.cluster.emulator.state()["batches"]
        return batches["pending"] + batches["inProgress"]

    def staging(self) -> bool:
        return bool(staged_files(self.cluster))

    def confirming(self) -> bool:
        """Every batch posted (and its answer collected: 0.3 s later), the emulator still processing."""
        if self.sent() < CHUNKS or not self.processing():
            self.confirming_since = None
            return False
        self.confirming_since = self.confirming_since or time.monotonic()
        return time.monotonic() - self.confirming_since >= 0.3

    def paused(self) -> bool:
        return (pause_dir(self.cluster) / "paused").exists()


#: point -> (ready(watch), batches that may be sent again)
KILL_POINTS: dict[str, tuple[Callable[[Watch], bool], int]] = {
    "prepare": (lambda w: w.staging() and w.sent() == 0, 0),
    "after_first_batches": (lambda w: w.sent() >= 3, MAX_IN_FLIGHT),
    "mid_push": (lambda w: w.sent() >= CHUNKS // 2, MAX_IN_FLIGHT),
    "confirming": (Watch.confirming, 0),
    "before_snapshot": (Watch.paused, 0),
}


def staged_files(cluster: AirflowCluster) -> list[Path]:
    """The export's local staging (the operator's scratch folder in the task's TMPDIR)."""
    return list(cluster.tmp.glob("omnisend-staging/**/staging*.parquet"))


def snapshot_pointer(cluster: AirflowCluster) -> dict[str, Any]:
    (pointer,) = cluster.state_dir.glob("*/CURRENT.json")
    return json.loads(pointer.read_text())


# ------------------------------------------------------------------------------------------------ test

@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_of_the_export_task_then_airflow_retry_loses_nothing(cluster: AirflowCluster, point: str,
                                                                    figures) -> None:
    cluster.reset()
    cluster.emulator.configure(processing_items_per_s=100)  # 2,000 items/s real: confirmation takes a while
    for marker in pause_dir(cluster).iterdir():
        marker.unlink()
    if point == "before_snapshot":
        (pause_dir(cluster) / "armed").touch()
    ready, resent_max = KILL_POINTS[point]
    watch = Watch(cluster)

    run_id = cluster.trigger({"segments": [SEGMENT]})["dag_run_id"]
    proc = find_task_process(cluster, run_id)
    kill_when(lambda: ready(watch), proc)
    sent_at_kill = watch.sent()
    if point == "prepare":
        assert sent_at_kill == 0
    if point in {"confirming", "before_snapshot"}:
        assert sent_at_kill == CHUNKS
    if point == "before_snapshot":
        assert snapshot_pointer(cluster)["rows"] == 0, "the snapshot was written before the kill"

    # Airflow notices the dead task process and retries the task; the retry resumes and the run succeeds.
    cluster.wait_run(run_id, timeout=300, tolerate_retries=True)
    tries = cluster.tries(run_id, EXPORT_TASK, 0)
    assert [t["try_number"] for t in tries] == [1, 2], tries
    assert tries[0]["state"] in {"failed", "up_for_retry"} and tries[1]["state"] == "success", tries
    summary = cluster.xcom(cluster.task_instance(run_id, EXPORT_TASK, 0))

    state = cluster.emulator.wait_batches_done(timeout=60)
    resent = posts(state) - CHUNKS
    verdict = verify_export(cluster.emulator.contacts(), read_rejects(summary["rejects_path"]), EXPECTED)
    assert not verdict.problems(), verdict.problems()
    assert verdict.rows_lost == 0
    assert 0 <= resent <= resent_max, f"{resent} batches sent again (at most {resent_max} may be)"
    assert summary["rows_read"] == ROWS and summary["valid"] == len(EXPECTED.contacts)
    assert state["responses_429"] == 0 and state["welcome_messages"] == 0, state
    # The killed try's staging (e-mails) does not outlive the retry.
    assert not staged_files(cluster), staged_files(cluster)

    # The snapshot is consistent: it holds every contact, and the next refresh of the same data sends
    # nothing at all.
    assert snapshot_pointer(cluster)["rows"] == len(EXPECTED.contacts)
    write_lake(cluster.root / "lake", NEXT_REFRESH)
    before = posts(cluster.emulator.state())
    next_run = cluster.trigger({"segments": [SEGMENT]})["dag_run_id"]
    cluster.wait_run(next_run, timeout=240)
    again = cluster.xcom(cluster.task_instance(next_run, EXPORT_TASK, 0))
    assert posts(cluster.emulator.state()) == before
    assert again["sent"] == 0 and again["unchanged"] == len(EXPECTED.contacts), again

    figures(kill_point=point, batches_to_send=CHUNKS, sent_before_kill=sent_at_kill, resent=resent,
            resumed_batches=summary.get("resumed_batches"), rows_lost=verdict.rows_lost,
            tries=len(tries), next_refresh_posts=0)
