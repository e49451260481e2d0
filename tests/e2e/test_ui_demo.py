"""``scripts/demo.sh --ui`` (``python -m airflow_provider_omnisend.testing.ui_demo``, which it execs) as
a user runs it: it comes up, serves the UI on the URL it prints with the login it prints, runs an
export, and Ctrl-C (SIGINT to its process group, as a terminal sends it) stops every process it started
-- Airflow's components, their task processes and the emulator -- within a bounded time.

"No orphans" is checked two ways: every process below the demo just before Ctrl-C is gone afterwards,
and no process on the machine still has the demo's AIRFLOW_HOME in its environment (a process that
left the tree, e.g. a task re-parented to init, would still be found).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
import requests

from airflow_provider_omnisend.testing.airflow_cluster import DAG_ID, REPO_ROOT, log_tail
from airflow_provider_omnisend.testing.ui_demo import DEMO_API_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

STARTUP_TIMEOUT = 300.0  # db migrate and four components on a busy 2-core machine
#: Ctrl-C to exit, by design at most ~50 s: the components but the api-server get SIGTERM together, then
#: SIGKILL after 20 s; then the api-server the same way; then the emulator (10 s). Measured: ~20 s.
SHUTDOWN_LIMIT = 60.0
SHUTDOWN_TIMEOUT = 120.0  # the test's own bound, looser than the limit it asserts


class Demo:
    """The demo process, started in its own session (so that a signal to its group reaches it alone, as
    a terminal's Ctrl-C reaches the foreground job), its output collected line by line."""

    def __init__(self, root: Path) -> None:
        self.root = root
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OMNISEND_"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_omnisend.testing.ui_demo", "--root", str(root),
             "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT, env=env,
            start_new_session=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"the demo exited ({self.proc.wait()}) before printing {pattern!r}:\n"
                            f"{self.output()}\n{self.logs()}")
            self.lines.append(line)
            if match := re.search(pattern, line):
                return match
        pytest.fail(f"the demo printed no {pattern!r} within {timeout:.0f}s:\n{self.output()}\n{self.logs()}")

    def logs(self) -> str:
        logs = sorted(self.root.glob("logs/*.log"))
        return "\n".join(f"--- {p.name} ---\n{log_tail(p, 2000)}" for p in logs)

    def ctrl_c(self, timeout: float = SHUTDOWN_TIMEOUT) -> tuple[int, float]:
        started = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo did not stop within {timeout:.0f}s of Ctrl-C:\n{self.output()}")
        took = time.monotonic() - started
        with contextlib.suppress(queue.Empty):  # the rest of its output, up to EOF
            while (line := self._queue.get(timeout=10)) is not None:
                self.lines.append(line)
        return code, took

    def kill(self) -> None:
        """Test clean-up only: whatever is left of the demo, SIGKILL."""
        for p in [*descendants(self.proc.pid), *processes_of(self.root)]:
            with contextlib.suppress(psutil.Error):
                p.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def processes_of(root: Path) -> list[psutil.Process]:
    """Every process on the machine whose environment names ``root``'s Airflow home."""
    home = str(root / "airflow")
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("AIRFLOW_HOME") == home:
                found.append(proc)
    return found


def listening(url: str) -> bool:
    host, port = re.match(r"https?://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=2):
        return True
    return False


def assert_no_orphans(root: Path, before: list[psutil.Process], code: int, took: float, out: str) -> None:
    assert code == 0, f"exit code {code}\n{out}"
    alive = [p for p in before if running(p)]
    assert not alive, f"still running after Ctrl-C: {[(p.pid, cmdline(p)) for p in alive]}"
    left = processes_of(root)
    assert not left, f"processes of the demo's AIRFLOW_HOME after Ctrl-C: {[cmdline(p) for p in left]}"
    assert took < SHUTDOWN_LIMIT, f"Ctrl-C took {took:.1f} s to stop the demo\n{out}"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    started = Demo(tmp_path / "demo")
    try:
        yield started
    finally:
        started.kill()


def test_ui_demo_serves_the_printed_url_runs_an_export_and_ctrl_c_stops_everything(demo: Demo) -> None:
    url = demo.wait_for_line(r"^Airflow UI:\s+(http://127\.0\.0\.1:\d+)/$", STARTUP_TIMEOUT)[1]
    user, password = demo.wait_for_line(r"^Login:\s+(\S+) / (\S+)\s", 10).groups()
    params = demo.wait_for_line(rf"^DAG:\s+{DAG_ID}: .* with the params (.+)$", 10)[1]
    assert {"segments", "dry_run", "full_refresh"} <= set(params.split(", ")), params  # from the API
    emulator = demo.wait_for_line(r"^Emulator:\s+(http://127\.0\.0\.1:\d+)/", 10)[1]
    demo.wait_for_line(r"Press Ctrl-C", 10)
    assert DEMO_API_KEY not in demo.output()  # the login is Airflow's own, not the connection's secret
    assert password != DEMO_API_KEY

    page = requests.get(f"{url}/", timeout=30)
    assert page.status_code == 200 and "<title>Airflow" in page.text, page.text[:300]
    session = requests.Session()
    wrong = session.post(f"{url}/auth/token", json={"username": user, "password": password + "x"}, timeout=30)
    assert wrong.status_code == 401, wrong.text
    login = session.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=30)
    assert login.status_code == 201, login.text
    session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    dag = session.get(f"{url}/api/v2/dags/{DAG_ID}", timeout=30).json()
    assert dag["is_paused"] is False, dag

    # A real export (the emulator at real time), so that task processes are running at Ctrl-C.
    run = session.post(f"{url}/api/v2/dags/{DAG_ID}/dagRuns", timeout=30, json={
        "logical_date": datetime.now(UTC).isoformat(), "conf": {"segments": ["HighValueCustomers"]}}).json()
    tis = f"{url}/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        found = session.get(tis, timeout=30).json()["task_instances"]
        states = {t["task_id"]: t["state"] for t in found}
        if states.get("segment.export") == "running":
            (export_id,) = [t["id"] for t in found if t["task_id"] == "segment.export"]
            break
        assert "failed" not in states.values(), states
        time.sleep(1)
    else:
        pytest.fail(f"no export started within 180 s: {states}\n{demo.logs()}")

    before = descendants(demo.proc.pid)
    names = " ".join(cmdline(p) for p in before)
    for component in ("api_server", "scheduler", "dag-processor", "triggerer", "testing.emulator"):
        assert component in names, f"{component} is not running below the demo: {names}"
    # the export's task runner (titled "... -- <task instance id>"), in a process group of its own
    assert any(cmdline(p).strip().endswith(f"-- {export_id}") for p in before), names

    code, took = demo.ctrl_c()
    assert_no_orphans(demo.root, before, code, took, demo.output())
    assert re.search(r"^Stopped in \d+\.\d s: every process this demo started has exited\.$", demo.output(),
                     re.MULTILINE), demo.output()
    print(f"Ctrl-C to exit, with an export running: {took:.1f} s")
    assert not listening(url) and not listening(emulator)


def test_ctrl_c_during_start_up_leaves_nothing_behind(demo: Demo) -> None:
    """Ctrl-C while ``airflow db migrate`` runs: the migration (its own session, so the terminal's
    SIGINT does not reach it) is stopped too, and nothing else starts."""
    demo.wait_for_line(r"^Starting", 60)
    migrate = demo.root / "logs" / "db-migrate.log"
    deadline = time.monotonic() + 60
    while not (migrate.exists() and any("migrate" in cmdline(p) for p in descendants(demo.proc.pid))):
        assert time.monotonic() < deadline, f"db migrate did not start\n{demo.output()}"
        time.sleep(0.2)
    before = descendants(demo.proc.pid)

    code, took = demo.ctrl_c()
    assert_no_orphans(demo.root, before, code, took, demo.output())
    assert "during start-up: stopped what had started" in demo.output()
    assert not (demo.root / "logs" / "scheduler.log").exists(), "components started after Ctrl-C"
