"""SIGTERM an export whose SIGTERM sets the client's cancel event (what the operator's ``on_kill`` does):
it must stop sending within a fraction of a second, checkpoint what was submitted, and a rerun must lose
nothing and send again at most the batches that were in flight (#16 item 8).

The child pushes at 10 requests/s, so the push alone would last about 20 s: an engine that did not
observe the cancel event would run on to the end and fail the exit-time assertion.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.reliability.helpers import (
    REPO_ROOT,
    JsonFileProgressStore,
    make_client,
    read_rejects,
    run_engine,
    slow_batches,
    verify_export,
)
from tests.reliability.test_reliability_kills import CHILD, EXPECTED, MAX_IN_FLIGHT, ROWS, TABLE, _prepare
from tests.support import TEST_API_KEY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: SIGTERM to exit; generous for a shared CI machine, far below the ~20 s the push would last
MAX_EXIT_S = 3.0


def test_sigterm_stops_the_push_promptly_and_the_rerun_resends_at_most_in_flight(emulator, tmp_path, figures):
    s = _prepare(emulator, tmp_path, baseline=False)
    argv = [sys.executable, str(CHILD), "--api-url", emulator.api_url, "--api-key", TEST_API_KEY,
            "--rows", str(ROWS), "--state-dir", str(s.state_dir), "--work-dir", str(s.work_dir),
            "--rejects", str(tmp_path / "rejects-killed.parquet"), "--progress", str(s.progress),
            "--summary", str(tmp_path / "summary.json"), "--max-in-flight", str(MAX_IN_FLIGHT),
            "--rpm", "600", "--cancel-on-sigterm"]
    with open(tmp_path / "child.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                                stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while s.sent() < 20:
        assert proc.poll() is None, (tmp_path / "child.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "the push did not start in time"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    killed_at = time.monotonic()
    proc.wait(timeout=30)
    exit_s = time.monotonic() - killed_at
    sent_at_exit = s.sent()
    time.sleep(0.5)
    assert s.sent() == sent_at_exit, "a request was sent after the process exited"
    log_text = (tmp_path / "child.log").read_text(errors="replace")
    assert proc.returncode != 0 and "OmnisendCancelled" in log_text, log_text[-2000:]
    assert sent_at_exit < s.chunks, "the export finished before the kill"
    saved = JsonFileProgressStore(s.progress).get("omnisend_export_progress")
    assert saved and (saved["submitted"] or list(s.state_dir.glob("runs/*/*.parquet")))  # checkpointed

    rerun = run_engine(client=make_client(emulator.api_url, TEST_API_KEY), batches=slow_batches(TABLE),
                       columns=TABLE.column_names, state_dir=s.state_dir, work_dir=tmp_path / "work-rerun",
                       rejects_path=tmp_path / "rejects-rerun.parquet",
                       progress=JsonFileProgressStore(s.progress), export_id="kill-test",
                       max_in_flight=MAX_IN_FLIGHT)
    emulator.wait_batches_done(timeout=60)
    resent = s.sent() - s.chunks
    verdict = verify_export(emulator.contacts(), read_rejects(tmp_path / "rejects-rerun.parquet"), EXPECTED)
    figures(sigterm_to_exit_s=round(exit_s, 3), sent_before_kill=sent_at_exit, batches_to_send=s.chunks,
            resent=resent, rerun_resumed_batches=rerun.resumed_batches)
    assert exit_s < MAX_EXIT_S, f"the export took {exit_s:.2f}s to stop after SIGTERM"
    assert verdict.rows_lost == 0 and not verdict.problems(), verdict.problems()
    assert 0 <= resent <= MAX_IN_FLIGHT
