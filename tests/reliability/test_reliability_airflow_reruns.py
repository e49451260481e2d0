"""Runs over the same export in a real Airflow: on demand, after a failure, on a day without a new export,
and after a run whose export was killed.

Issue #16 items 1-3 as the scheduler sees them (the ``airflow dags test`` of ``tests/e2e`` only covers
``force``, and ``test_reliability_bad_inputs`` the reject-ratio watermark without Airflow):

* after a run exported an export, a run with ``force`` exports it again (the diff sends nothing) and one
  with ``full_refresh`` sends every contact again, instead of waiting for a new export;
* an export failing the reject-ratio check is marked handled: the next run does not fire it again, a
  forced run does;
* a run with no new export ends with the sensor *skipped* (not failed) after the configured timeout,
  saying why; ``OMNISEND_SKIP_NO_EXPORT=false`` makes it a failure;
* issue #17 item 3: the export SIGKILLed at 40% of its push in a run that then fails (no retries), a
  *new* DAG run over the same export resumes it: it re-sends at most the batches in flight at the kill
  (plus those submitted since the last checkpoint when the local journal is gone), 0 rows lost.

One real Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor on SQLite) runs the
example DAG against the emulator, with ``retries=0`` and a short sensor timeout, over one CDM export with
several segments: ``Small`` and ``Dirty`` (2,000 rows each, a quarter of ``Dirty``'s e-mails broken),
``Pending`` (listed in model.json, no partition written yet), and ``VIP`` (30,000 rows) for the kill.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_omnisend.lake.watermark import watermark_key
from airflow_provider_omnisend.testing.airflow_cluster import DAG_ID, DAGS_FOLDER, EXPORT_TASK, AirflowCluster
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

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

API_KEY = "reruns-key-81c3a"
TIME_SCALE = 0.05  # an emulated minute lasts 3 s
REQUESTS_PER_MINUTE = 40  # 13 requests/s real, after a first window of 40 at once
ITEMS_PER_BATCH = 100
SENSOR = "segment.wait_for_export"
#: seconds the export-ready sensor waits for a new export (OMNISEND_SENSOR_TIMEOUT)
SENSOR_TIMEOUT = 10
#: what the scheduler adds on top before the deferred sensor is resumed to give up (a loaded machine)
GIVE_UP_SLACK = 120
RUN_TIMEOUT = 240
REFRESH = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)

SMALL, DIRTY, PENDING, VIP = "Small", "Dirty", "Pending", SEGMENT
VIP_ROWS = 30_000  # 292 batches: the push lasts ~20 s, so 40% is well past the first window
MAX_IN_FLIGHT = 8  # the connection's default
CHECKPOINT_INTERVAL = 1.0  # ExportOptions.checkpoint_interval: the shared journal's rate
TABLES = {
    VIP: synthetic_profiles(VIP_ROWS, seed=11),
    SMALL: synthetic_profiles(2_000, seed=5, start=100_000),
    DIRTY: synthetic_profiles(2_000, seed=6, start=200_000, invalid_fraction=0.25),
}
NO_NEW_EXPORT = "No new complete export appeared in time"
#: The example DAG, verbatim but for its id, parsed with OMNISEND_SKIP_NO_EXPORT=false in its environment
#: (a parse-time setting: the dag-processor and each task process parse the file on their own).
STRICT_DAG = f"{DAG_ID}_strict"


def write_dags_folder(folder: Path) -> Path:
    source = (DAGS_FOLDER / f"{DAG_ID}.py").read_text(encoding="utf-8")
    future, dag_id = "from __future__ import annotations\n", f'dag_id="{DAG_ID}"'
    assert future in source and dag_id in source, "the example DAG changed: adapt the strict copy"
    strict = source.replace(dag_id, f'dag_id="{STRICT_DAG}"').replace(
        future, future + 'import os as _os\n\n_os.environ["OMNISEND_SKIP_NO_EXPORT"] = "false"\n', 1)
    folder.mkdir(parents=True)
    (folder / f"{DAG_ID}.py").write_text(source, encoding="utf-8")
    (folder / f"{STRICT_DAG}.py").write_text(strict, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    root = tmp_path_factory.mktemp("airflow-reruns")
    lake_root = root / "lake-source"
    export_dir = write_cdm_export(lake_root, entity=SMALL, columns=COLUMNS, rows=TABLES[SMALL], partitions=2,
                                  refresh_times=(REFRESH,),
                                  more_entities={DIRTY: TABLES[DIRTY], VIP: TABLES[VIP]},
                                  extra_entities=(PENDING,))
    with EmulatorServer(api_key=API_KEY, time_scale=TIME_SCALE, log_dir=root / "emulator") as emu:
        conn = omnisend_conn_uri(emu.api_url, api_key=API_KEY, window_seconds=60 * TIME_SCALE,
                                 requests_per_minute=REQUESTS_PER_MINUTE)
        airflow = AirflowCluster(
            root / "cluster", emu, conn_uri=conn, lake_root=lake_root,
            export_subdir=export_dir.relative_to(lake_root), segments=[SMALL], pool_slots=1,
            dags_folder=write_dags_folder(root / "dags"),
            env={"OMNISEND_RETRIES": "0", "OMNISEND_SENSOR_TIMEOUT": str(SENSOR_TIMEOUT),
                 # the scheduler notices a deferred sensor's timeout within 2 s (default 15)
                 "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2"})
        with airflow:
            airflow.wait_for_dag(STRICT_DAG)
            airflow.unpause(STRICT_DAG)
            yield airflow


@pytest.fixture(autouse=True)
def clean_slate(cluster: AirflowCluster) -> AirflowCluster:
    cluster.reset()
    return cluster


# ------------------------------------------------------------------------------------------ helpers

def run(cluster: AirflowCluster, dag_id: str = DAG_ID, **conf: Any
        ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Trigger a run of one segment with ``conf`` and wait until it ends; (run, {task_id: ti})."""
    run_id = cluster.trigger(conf, dag_id)["dag_run_id"]
    finished = cluster.wait_finished(run_id, timeout=RUN_TIMEOUT, dag_id=dag_id)
    tis = {t["task_id"]: t for t in cluster.task_instances(run_id, dag_id) if t["map_index"] in (-1, 0)}
    return finished, tis


def states(tis: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {task: ti["state"] for task, ti in tis.items()}


def log_text(cluster: AirflowCluster, ti: dict[str, Any]) -> str:
    """Every field of every log entry (a skip's reason is a field of its entry, not its event)."""
    return json.dumps(cluster.log_entries(ti) or [])


def wall_seconds(ti: dict[str, Any]) -> float:
    start, end = (datetime.fromisoformat(ti[k]) for k in ("start_date", "end_date"))
    return (end - start).total_seconds()


def assert_gave_up(cluster: AirflowCluster, sensor: dict[str, Any], segment: str, state: str) -> float:
    """The export-ready sensor waited the configured timeout (not 6 h), then ended in ``state`` saying why;
    returns how long it waited."""
    assert sensor["state"] == state, sensor
    waited = wall_seconds(sensor)
    assert SENSOR_TIMEOUT <= waited <= SENSOR_TIMEOUT + GIVE_UP_SLACK, waited
    log = log_text(cluster, sensor)
    assert NO_NEW_EXPORT in log and repr(segment) in log and "force=true" in log, log[-3000:]
    return waited


def staged_files(cluster: AirflowCluster) -> list[Path]:
    """Staged exports (e-mails) in the tasks' temp folder."""
    return list(cluster.tmp.glob("omnisend-staging/**/staging*.parquet"))


def export_summary(cluster: AirflowCluster, tis: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return cluster.xcom(tis[EXPORT_TASK])


def watermark(cluster: AirflowCluster, segment: str) -> dict[str, Any]:
    path = cluster.state_dir / f"{watermark_key('omnisend_default', segment)}.json"
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------- on demand

def test_force_and_full_refresh_export_an_exported_export_again(cluster: AirflowCluster, figures) -> None:
    expected = expected_state(TABLES[SMALL], tag=f"segment: {SMALL}")
    chunks = math.ceil(len(expected.contacts) / ITEMS_PER_BATCH)

    first, tis = run(cluster, segments=[SMALL])
    assert first["state"] == "success", states(tis)
    exported = export_summary(cluster, tis)
    assert exported["sent"] == len(expected.contacts)
    assert posts(cluster.emulator.wait_batches_done()) == chunks

    # Without force nothing is new: the sensor gives up after its timeout and skips the export.
    again, tis = run(cluster, segments=[SMALL])
    assert again["state"] == "success" and states(tis)[EXPORT_TASK] == "skipped", states(tis)
    waited = assert_gave_up(cluster, tis[SENSOR], SMALL, "skipped")
    assert posts(cluster.emulator.state()) == chunks

    # force: the same export at once, exported again; the snapshot diff leaves nothing to send.
    forced, tis = run(cluster, segments=[SMALL], force=True)
    assert forced["state"] == "success", states(tis)
    assert "force: exported again" in log_text(cluster, tis[SENSOR])
    assert wall_seconds(tis[SENSOR]) < SENSOR_TIMEOUT, "the forced sensor waited"
    summary = export_summary(cluster, tis)
    assert summary["export_id"] == exported["export_id"]
    assert summary["unchanged"] == len(expected.contacts) and summary["sent"] == 0, summary
    assert posts(cluster.emulator.state()) == chunks

    # full_refresh (implies force): every contact is sent again.
    refreshed, tis = run(cluster, segments=[SMALL], full_refresh=True)
    assert refreshed["state"] == "success", states(tis)
    summary = export_summary(cluster, tis)
    assert summary["export_id"] == exported["export_id"] and summary["sent"] == len(expected.contacts)
    state = cluster.emulator.wait_batches_done()
    assert posts(state) == 2 * chunks
    verdict = verify_export(cluster.emulator.contacts(), read_rejects(summary["rejects_path"]), expected)
    assert not verdict.problems() and verdict.rows_lost == 0, verdict.problems()
    assert state["responses_429"] == 0 and state["welcome_messages"] == 0, state
    figures(batches=chunks, unforced_sensor_skipped_after_s=waited, forced_batches=0,
            full_refresh_batches=chunks)


# --------------------------------------------------------------------------------- too many rejects

def test_a_failed_reject_ratio_is_handled_and_only_force_runs_it_again(cluster: AirflowCluster,
                                                                       figures) -> None:
    expected = expected_state(TABLES[DIRTY], tag=f"segment: {DIRTY}")
    assert len(expected.invalid) / expected.rows > 0.05  # above the operator's max_reject_ratio

    failed, tis = run(cluster, segments=[DIRTY])
    assert failed["state"] == "failed" and states(tis)[EXPORT_TASK] == "failed", states(tis)
    assert [t["try_number"] for t in cluster.tries(failed["dag_run_id"], EXPORT_TASK, 0)] == [1]
    log = log_text(cluster, tis[EXPORT_TASK])
    assert "max_reject_ratio" in log and "marked as handled" in log and "force=true" in log, log[-3000:]
    mark = watermark(cluster, DIRTY)
    assert "max_reject_ratio" in mark["failure"], mark
    # The valid rows were sent and confirmed; every other row is in the rejects file with its reason.
    sent = posts(cluster.emulator.wait_batches_done())
    # (the DAG's default: in the state store, below runs/<dag>/<day>/<run>/<task>/)
    rejects = max((cluster.state_dir / "runs").rglob("rejects.parquet"), key=lambda p: p.stat().st_mtime)
    verdict = verify_export(cluster.emulator.contacts(), read_rejects(rejects), expected)
    assert not verdict.problems() and verdict.rows_lost == 0, verdict.problems()

    # The next run does not fire it again: nothing new, the sensor skips.
    again, tis = run(cluster, segments=[DIRTY])
    assert again["state"] == "success" and states(tis)[EXPORT_TASK] == "skipped", states(tis)
    waited = assert_gave_up(cluster, tis[SENSOR], DIRTY, "skipped")
    assert watermark(cluster, DIRTY) == mark

    # force runs it again (the same data fails the same check, and the diff sends nothing new).
    forced, tis = run(cluster, segments=[DIRTY], force=True)
    assert forced["state"] == "failed"
    assert states(tis)[SENSOR] == "success" and states(tis)[EXPORT_TASK] == "failed", states(tis)
    assert "marked as handled" in log_text(cluster, tis[EXPORT_TASK])
    assert watermark(cluster, DIRTY)["written_at"] > mark["written_at"]
    assert posts(cluster.emulator.state()) == sent
    figures(rows=expected.rows, rejected=len(expected.invalid) + len(expected.duplicates),
            unforced_sensor_skipped_after_s=waited)


# ------------------------------------------------------------------------------ no new export today

def test_no_new_export_fails_the_sensor_when_skip_is_turned_off(cluster: AirflowCluster, figures) -> None:
    """The default (a skip) is shown by the two tests above; here OMNISEND_SKIP_NO_EXPORT=false."""
    failed, tis = run(cluster, STRICT_DAG, segments=[PENDING])
    assert failed["state"] == "failed", states(tis)
    assert states(tis)[EXPORT_TASK] == "upstream_failed", states(tis)
    figures(sensor_failed_after_s=assert_gave_up(cluster, tis[SENSOR], PENDING, "failed"))
    assert cluster.emulator.state()["requests"] == {}


# ------------------------------------------------------------------- a new run after a killed one (#17)

@pytest.mark.parametrize("machine", ["same", "other"])
def test_a_new_dag_run_resumes_the_export_of_a_killed_failed_run(cluster: AirflowCluster, machine: str,
                                                                 figures) -> None:
    """SIGKILL the export at 40% of the push; with retries=0 the run fails. A new DAG run over the same
    export (no force: the failed run wrote no watermark) resumes from the journal keyed by connection,
    segment, export id and mapping: it confirms what was submitted and re-sends at most the batches in
    flight ("same" machine: the local journal is there), or those plus the batches submitted since the
    last checkpoint ("other" machine: only the journal under the state folder)."""
    expected = expected_state(TABLES[VIP])
    chunks = math.ceil(len(expected.contacts) / ITEMS_PER_BATCH)
    killed_id = cluster.trigger({"segments": [VIP]})["dag_run_id"]
    proc = find_task_process(cluster, killed_id)
    seen: list[tuple[float, int]] = []  # (time, batches posted), sampled until the kill

    def at_40_percent() -> bool:
        seen.append((time.monotonic(), posts(cluster.emulator.state())))
        return seen[-1][1] >= 0.4 * chunks

    kill_when(at_40_percent, proc)
    killed_at, sent_at_kill = seen[-1]
    killed = cluster.wait_finished(killed_id, timeout=RUN_TIMEOUT)
    assert killed["state"] == "failed"
    tries = cluster.tries(killed_id, EXPORT_TASK, 0)
    assert [(t["try_number"], t["state"]) for t in tries] == [(1, "failed")], tries  # retries exhausted
    sent_by_killed = posts(cluster.emulator.wait_batches_done())
    assert sent_at_kill <= sent_by_killed < chunks
    assert staged_files(cluster), "the killed try left no staging: the clean-up check below proves nothing"
    if machine == "other":
        journals = list(cluster.state_dir.glob("*/runs/*/ledger.sqlite*"))
        assert journals, "no local journal beside the state folder's journal"
        for path in journals:
            path.unlink()

    resumed, tis = run(cluster, segments=[VIP])
    assert resumed["state"] == "success", states(tis)
    summary = export_summary(cluster, tis)
    state = cluster.emulator.wait_batches_done()
    resent = posts(state) - chunks
    # the batches in flight, plus (another machine) those posted in the checkpoint interval before the kill
    in_interval = sent_at_kill - min(n for t, n in seen if t >= killed_at - CHECKPOINT_INTERVAL - 0.5)
    bound = MAX_IN_FLIGHT + (in_interval if machine == "other" else 0)
    assert 0 <= resent <= bound, f"{resent} batches sent again (at most {bound} may be)"
    if machine == "same":  # the summary's count bounds the duplicates from above
        assert resent <= summary["resent_batches"] <= MAX_IN_FLIGHT, summary
    assert summary["resumed"] and summary["resumed_batches"] > 0, summary
    assert summary["batches"] == chunks and summary["rows_read"] == VIP_ROWS, summary
    verdict = verify_export(cluster.emulator.contacts(), read_rejects(summary["rejects_path"]), expected)
    assert not verdict.problems() and verdict.rows_lost == 0, verdict.problems()
    assert state["responses_429"] == 0 and state["welcome_messages"] == 0, state
    figures(machine=machine, batches_to_send=chunks, posted_before_kill=sent_at_kill,
            posted_by_killed_run=sent_by_killed, resent=resent, bound=bound,
            resumed_batches=summary["resumed_batches"], resent_batches=summary["resent_batches"],
            rows_lost=verdict.rows_lost)
    # The killed run's staging (e-mails) does not outlive the new run, although it was another run's.
    assert not staged_files(cluster), staged_files(cluster)
