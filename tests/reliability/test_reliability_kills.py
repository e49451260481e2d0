"""SIGKILL an export (ExportEngine in a child process) at five points, rerun it, and check that nothing
was lost, that the snapshot is consistent, and that at most the batches in flight were sent again.

Set-up per test: the emulator processes batch items slowly (5,000 items/s) so that confirmation lasts
a while after the last push; the child pushes at 100 requests/s so that the push phase can be hit.
A baseline run of the first 100 rows writes a snapshot first, so the killed run is an incremental run
of a segment exported before (every run but a segment's very first); the very first run is
``test_kill_during_a_segments_first_export_resends_only_in_flight_batches``.

Kill points are found by polling the emulator's ``POST /api/batches`` count, its batch states and the
state/work folders; "before the snapshot write" by a marker the child writes (``export_child.py``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_omnisend.testing.sample_data import synthetic_profiles
from tests.reliability.helpers import (
    REPO_ROOT,
    JsonFileProgressStore,
    expected_state,
    files_under,
    find_in_files,
    make_client,
    posts,
    read_rejects,
    run_engine,
    slow_batches,
    verify_export,
)
from tests.support import TEST_API_KEY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROWS = 20_000
BASELINE_ROWS = 100
MAX_IN_FLIGHT = 8
CONFIRM_EVERY = 50  # confirm (and journal) every 50 pending batches, so the journal has parts mid-push
ITEMS_PER_BATCH = 100
CHILD = Path(__file__).with_name("export_child.py")
TABLE = synthetic_profiles(ROWS)
EXPECTED = expected_state(TABLE)


@dataclass
class Scenario:
    emulator: Any
    root: Path
    chunks: int  # batches the killed run has to send (the export minus the baseline)
    base_posts: int
    tag: str = "run"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def work_dir(self) -> Path:
        return self.root / f"work-{self.tag}"

    @property
    def progress(self) -> Path:
        return self.root / "task_state_store.json"

    @property
    def marker(self) -> Path:
        return self.root / "before-snapshot.marker"

    def sent(self) -> int:
        return posts(self.emulator.state()) - self.base_posts

    def processing(self) -> int:
        batches = self.emulator.state()["batches"]
        return batches["pending"] + batches["inProgress"]

    def pointer(self) -> dict[str, Any] | None:
        found = list(self.state_dir.glob("*/CURRENT.json")) + list(self.state_dir.glob("CURRENT.json"))
        return json.loads(found[0].read_text()) if found else None


def _prepare(emulator, tmp_path: Path, *, baseline: bool) -> Scenario:
    emulator.configure(processing_items_per_s=50)  # 5,000 items per real second at time_scale 0.01
    base_contacts = 0
    if baseline:
        head = TABLE.slice(0, BASELINE_ROWS)
        run_engine(client=make_client(emulator.api_url, TEST_API_KEY), batches=slow_batches(head),
                   columns=TABLE.column_names, state_dir=tmp_path / "state", work_dir=tmp_path / "work-base",
                   rejects_path=tmp_path / "rejects-base.parquet",
                   progress=JsonFileProgressStore(tmp_path / "task_state_store.json"), export_id="baseline")
        emulator.wait_batches_done(timeout=30)
        base_contacts = len(expected_state(head).contacts)
    to_send = len(EXPECTED.contacts) - base_contacts
    return Scenario(emulator, tmp_path, math.ceil(to_send / ITEMS_PER_BATCH), posts(emulator.state()))


def _spawn(s: Scenario, *, read_delay: float = 0.0, pause: bool = False) -> subprocess.Popen:
    argv = [sys.executable, str(CHILD), "--api-url", s.emulator.api_url, "--api-key", TEST_API_KEY,
            "--rows", str(ROWS), "--state-dir", str(s.state_dir), "--work-dir", str(s.work_dir),
            "--rejects", str(s.root / "rejects-killed.parquet"), "--progress", str(s.progress),
            "--summary", str(s.root / "summary-killed.json"), "--max-in-flight", str(MAX_IN_FLIGHT),
            "--confirm-every", str(CONFIRM_EVERY),
            "--read-delay", str(read_delay)]
    if pause:
        argv += ["--pause-before-snapshot", str(s.marker)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(s.root / "child.log", "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], s: Scenario, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                log = (s.root / "child.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"the export finished (rc {proc.returncode}) before the kill point\n{log}")
            if time.monotonic() > deadline:
                pytest.fail("the kill point was not reached in time")
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def _confirming(s: Scenario) -> Callable[[], bool]:
    """Every batch posted (and its answer collected: 0.3 s later), the emulator still processing."""
    since: list[float] = []

    def ready() -> bool:
        if s.sent() < s.chunks or not s.processing():
            since.clear()
            return False
        since.append(since[0] if since else time.monotonic())
        return time.monotonic() - since[0] >= 0.3

    return ready


def _when(condition: Callable[[Scenario], bool]) -> Callable[[Scenario], Callable[[], bool]]:
    return lambda s: lambda: condition(s)


#: ready(scenario) -> a poll that turns True at the kill point; resent_max bounds the batches sent again
KILL_POINTS: dict[str, dict[str, Any]] = {
    # the lake is read slowly (1,000 rows per 50 ms): staging is being written, nothing sent yet
    "prepare": {"read_delay": 0.05, "resent_max": 0,
                "ready": _when(lambda s: (s.work_dir / "staging.parquet").exists() and s.sent() == 0)},
    "after_first_batches": {"resent_max": MAX_IN_FLIGHT, "ready": _when(lambda s: s.sent() >= 3)},
    "mid_push": {"resent_max": MAX_IN_FLIGHT, "ready": _when(lambda s: s.sent() >= s.chunks // 2)},
    "confirming": {"resent_max": 0, "ready": _confirming},
    "before_snapshot": {"pause": True, "resent_max": 0, "ready": _when(lambda s: s.marker.exists())},
}


def _kill_and_rerun(s: Scenario, point: str) -> dict[str, Any]:
    spec = KILL_POINTS[point]
    pointer_before = s.pointer()
    proc = _spawn(s, read_delay=spec.get("read_delay", 0.0), pause=spec.get("pause", False))
    _kill_when(proc, spec["ready"](s), s)
    at_kill = {"sent": s.sent(), "processing": s.processing(),
               "journal_parts": len(list(s.state_dir.glob("runs/*/*.parquet")))}
    if point == "prepare":
        assert at_kill["sent"] == 0
    if point == "confirming":
        assert at_kill["sent"] == s.chunks and at_kill["processing"] > 0
    if point == "before_snapshot":
        assert s.pointer() == pointer_before, "the snapshot was written before the kill"
    # what a crash leaves behind: state (snapshot, CURRENT.json, journal parts, task state) holds no
    # e-mail; the local staging file, which does, is readable by its owner only
    assert files_under(s.state_dir, s.progress)
    assert not find_in_files(["example.com"], s.state_dir, s.progress)
    staging = s.work_dir / "staging.parquet"
    assert not staging.exists() or stat.S_IMODE(staging.stat().st_mode) == 0o600
    # the rerun (the task's retry), in this process, with the same task state store and state folder
    client = make_client(s.emulator.api_url, TEST_API_KEY)
    s.tag = "rerun"
    rerun = run_engine(client=client, batches=slow_batches(TABLE), columns=TABLE.column_names,
                       state_dir=s.state_dir, work_dir=s.work_dir,
                       rejects_path=s.root / "rejects-rerun.parquet",
                       progress=JsonFileProgressStore(s.progress), export_id="kill-test",
                       max_in_flight=MAX_IN_FLIGHT, confirm_every=CONFIRM_EVERY)
    s.emulator.wait_batches_done(timeout=60)
    resent = s.sent() - s.chunks
    verdict = verify_export(s.emulator.contacts(), read_rejects(s.root / "rejects-rerun.parquet"), EXPECTED)
    # a third run of the same export: the snapshot says everything is there
    before_third = posts(s.emulator.state())
    s.tag = "third"
    third = run_engine(client=client, batches=slow_batches(TABLE), columns=TABLE.column_names,
                       state_dir=s.state_dir, work_dir=s.work_dir,
                       rejects_path=s.root / "rejects-third.parquet",
                       progress=JsonFileProgressStore(s.progress), export_id="kill-test")
    return {"at_kill": at_kill, "chunks": s.chunks, "resent": resent, "rerun": rerun, "verdict": verdict,
            "third": third, "third_posts": posts(s.emulator.state()) - before_third, "pointer": s.pointer(),
            "progress_left": JsonFileProgressStore(s.progress).get("omnisend_export_progress")}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_then_rerun_loses_nothing_and_resends_at_most_in_flight(point, emulator, tmp_path, figures):
    s = _prepare(emulator, tmp_path, baseline=True)
    out = _kill_and_rerun(s, point)
    verdict, rerun, third = out["verdict"], out["rerun"], out["third"]
    figures(kill_point=point, batches_to_send=s.chunks, sent_before_kill=out["at_kill"]["sent"],
            journal_parts_at_kill=out["at_kill"]["journal_parts"],
            resent=out["resent"], rows_lost=verdict.rows_lost, rerun_resumed=rerun.resumed,
            rerun_summary_resent_batches=rerun.resent_batches, third_run_posts=out["third_posts"])
    assert not verdict.problems(), verdict.problems()
    assert verdict.rows_lost == 0
    assert 0 <= out["resent"] <= KILL_POINTS[point]["resent_max"], out
    assert rerun.rows_read == ROWS and rerun.valid == len(EXPECTED.contacts)
    # the snapshot is consistent: it holds every valid contact and a third run sends nothing
    assert out["pointer"]["rows"] == len(EXPECTED.contacts)
    assert out["third_posts"] == 0 and third.sent == 0 and third.batches == 0
    assert third.unchanged == len(EXPECTED.contacts) and third.new == third.changed == 0
    assert out["progress_left"] is None  # the task state store is cleaned up after success


def test_kill_during_a_segments_first_export_resends_only_in_flight_batches(emulator, tmp_path, figures):
    """No snapshot yet: the retry must hash with the same key as the killed run (at 5c48ed5 it drew a
    new random key, so its plan digest differed and every batch was sent again)."""
    s = _prepare(emulator, tmp_path, baseline=False)
    out = _kill_and_rerun(s, "mid_push")
    figures(kill_point="mid_push (first export)", batches_to_send=s.chunks,
            sent_before_kill=out["at_kill"]["sent"], resent=out["resent"], rows_lost=out["verdict"].rows_lost,
            rerun_resumed=out["rerun"].resumed)
    assert out["verdict"].rows_lost == 0 and not out["verdict"].problems()
    assert out["resent"] <= MAX_IN_FLIGHT, f"{out['resent']} batches were sent again"


@pytest.mark.parametrize("point", ["mid_push", "confirming"])
def test_summary_resent_batches_counts_the_batches_sent_again(emulator, tmp_path, figures, point):
    s = _prepare(emulator, tmp_path, baseline=True)
    out = _kill_and_rerun(s, point)
    figures(kill_point=f"{point} (summary check)", resent=out["resent"],
            rerun_summary_resent_batches=out["rerun"].resent_batches)
    assert out["verdict"].rows_lost == 0
    # Counted from the checkpoint: a batch recorded as being sent when the process died is sent again,
    # whether or not its first request reached Omnisend, so the count bounds the duplicates from above.
    assert out["resent"] <= out["rerun"].resent_batches <= MAX_IN_FLIGHT
