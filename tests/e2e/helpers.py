"""End-to-end helpers: real Airflow (CLI, or api-server + scheduler + dag-processor + triggerer on SQLite with
the LocalExecutor), the example DAG from ``dags/``, a copy of the sample lake and a real emulator process.

Every process is started in its own session and stopped (its whole tree) in fixture teardown; every wait
has a deadline. Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from airflow_provider_omnisend.testing.emulator import EmulatorServer
from airflow_provider_omnisend.testing.servers import LOOPBACK, free_port
from tests.support import omnisend_conn_uri

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"
SAMPLE_LAKE = REPO_ROOT / "examples" / "lake"
EXPORT_SUBDIR = Path("CustomerInsights_demo") / "OmnisendExport"
ARTIFACTS = REPO_ROOT / "artifacts" / "e2e"
AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))
CHROMIUM = Path("/usr/bin/chromium")

DAG_ID = "omnisend_segment_export"
SEGMENTS = ("HighValueCustomers", "NewsletterFans")
E2E_API_KEY = "e2e-key-4b1d9c2a77"
#: The emulator's minute lasts 3 s; the connection's limiter gets the same window.
E2E_TIME_SCALE = 0.05
ADMIN_USER = "admin"

#: Country names of the sample lake -> ISO 3166 alpha-2, written out by hand (independent of the product).
COUNTRY_CODES = {"Germany": "DE", "France": "FR", "United States": "US", "United Kingdom": "GB",
                 "Lithuania": "LT", "Japan": "JP"}
#: A plausible address: dot-atoms (no leading, trailing or doubled dots) on both sides, a dot in the domain.
_EMAIL = re.compile(r"^[^@\s.]+(\.[^@\s.]+)*@[^@\s.]+(\.[^@\s.]+)+$")


# ------------------------------------------------------------------------------------------- the lake

def copy_sample_lake(dest: Path) -> Path:
    """Copy ``examples/lake`` to ``dest``; return the export folder (the one holding model.json)."""
    shutil.copytree(SAMPLE_LAKE, dest)
    return dest / EXPORT_SUBDIR


def partition_files(export_dir: Path, entity: str) -> list[Path]:
    """The local files of ``entity``'s partitions, in model.json order (locations are ADLS URLs)."""
    model = json.loads((export_dir / "model.json").read_text(encoding="utf-8"))
    (ent,) = [e for e in model["entities"] if e["name"] == entity]
    out = []
    for part in ent["partitions"]:
        rel = part["location"].split(f"/{export_dir.name}/", 1)[1]
        out.append(export_dir / rel)
    return out


def expected_contacts(export_dir: Path, segments: tuple[str, ...] | list[str]) -> dict[str, dict[str, Any]]:
    """What Omnisend should hold after exporting ``segments``, computed from model.json and the CSVs.

    Per segment: rows in partition order, e-mail trimmed and lower-cased, only plausible e-mails, the first
    row of each e-mail wins. Across segments a contact collects one tag per segment, and its fields may come
    from any of its segments (exports of different segments are not ordered). Returns
    ``{email: {"tags": {...}, "candidates": [{firstName, lastName, city, countryCode}, ...]}}``.
    """
    model = json.loads((export_dir / "model.json").read_text(encoding="utf-8"))
    out: dict[str, dict[str, Any]] = {}
    for segment in segments:
        (entity,) = [e for e in model["entities"] if e["name"] == segment]
        columns = [a["name"] for a in entity["attributes"]]
        seen: set[str] = set()
        for path in partition_files(export_dir, segment):
            with open(path, encoding="utf-8", newline="") as fh:
                for values in csv.reader(fh):
                    row = dict(zip(columns, values, strict=True))
                    email = row["EmailAddress"].strip().lower()
                    if not _EMAIL.match(email) or email in seen:
                        continue
                    seen.add(email)
                    country = row["Country"].strip()
                    code = country if len(country) == 2 else COUNTRY_CODES[country]
                    fields = {"firstName": row["FirstName"].strip() or None,
                              "lastName": row["LastName"].strip() or None,
                              "city": row["City"].strip() or None, "countryCode": code}
                    entry = out.setdefault(email, {"tags": set(), "candidates": []})
                    entry["tags"].add(f"segment: {segment}")
                    entry["candidates"].append(fields)
    return out


def assert_emulator_holds(emulator: EmulatorServer, expected: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The emulator holds exactly the expected contacts, fields and tags; no welcome messages, no 429s."""
    state = emulator.wait_idle(timeout=60)
    contacts = emulator.contacts()
    by_email = {c["email"]: c for c in contacts}
    assert len(by_email) == len(contacts), "the same e-mail is stored twice"
    missing = sorted(set(expected) - set(by_email))
    extra = sorted(set(by_email) - set(expected))
    assert not missing and not extra, (
        f"missing {missing[:5]} ({len(missing)}), extra {extra[:5]} ({len(extra)})")
    wrong = []
    for email, want in expected.items():
        got = by_email[email]
        fields = {k: got.get(k) for k in ("firstName", "lastName", "city", "countryCode")}
        if fields not in want["candidates"] or set(got.get("tags") or []) != want["tags"]:
            wrong.append((email, fields, got.get("tags"), want))
    assert not wrong, f"{len(wrong)} contacts differ, e.g. {wrong[:3]}"
    assert state["welcome_messages"] == 0, state
    assert state["responses_429"] == 0, state
    assert all(ident.get("sendWelcomeMessage") is False for c in contacts for ident in c["identifiers"]), (
        "an identifier lacks sendWelcomeMessage=false")
    assert state["max_in_window"]["default"] <= 400, state
    return state


# ------------------------------------------------------------------------------------ Airflow processes

def airflow_env(home: Path, *, emulator: EmulatorServer, lake_dir: Path, state_dir: Path,
                **extra: str) -> dict[str, str]:
    """A clean environment for Airflow child processes (none of the test process's AIRFLOW_* settings)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "OMNISEND_", "PYTHONPATH"))}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(REPO_ROOT),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_OMNISEND_DEFAULT": omnisend_conn_uri(
            emulator.api_url, api_key=emulator.api_key, window_seconds=60 * emulator.time_scale),
        "OMNISEND_LAKE_PATH": lake_dir.as_uri(),
        "OMNISEND_SEGMENTS": json.dumps(list(SEGMENTS)),
        "OMNISEND_STATE_PATH": str(state_dir),
        "OMNISEND_POOL_SLOTS": "2",
        "NO_COLOR": "1",
    })
    env.update(extra)
    return env


def log_tail(path: Path, chars: int = 6000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def run_airflow(args: list[str], env: dict[str, str], log: Path, *, timeout: float) -> int:
    """Run ``airflow <args>`` to completion (in its own session, killed on timeout); output to ``log``."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([AIRFLOW_BIN, *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=REPO_ROOT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_tree(proc)
            pytest.fail(f"airflow {' '.join(args)} did not finish in {timeout:.0f}s\n{log_tail(log)}")
    return -1  # unreachable


def stop_tree(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the process group of ``proc`` (and any descendant that left it), then SIGKILL what is left."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for p in tree[1:]:  # task processes put themselves in their own process groups
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


def prepare_airflow_home(env: dict[str, str], logs: Path) -> None:
    """``airflow db migrate`` and the ``omnisend_api`` pool, as scripts/demo.sh does."""
    for name, args, timeout in (
        ("db-migrate", ["db", "migrate"], 300),
        ("pools-set", ["pools", "set", "omnisend_api", "2", "Omnisend exports at once per brand"], 120),
    ):
        rc = run_airflow(args, env, logs / f"{name}.log", timeout=timeout)
        assert rc == 0, f"airflow {' '.join(args)} failed ({rc})\n{log_tail(logs / f'{name}.log')}"


# ------------------------------------------------------------------------------------------ the cluster

class AirflowCluster:
    """api-server, scheduler, dag-processor and triggerer on one SQLite DB, plus a REST client."""

    COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")

    def __init__(self, root: Path, emulator: EmulatorServer) -> None:
        self.root = root
        self.emulator = emulator
        self.home = root / "airflow"
        self.logs = root / "logs"
        self.export_dir = copy_sample_lake(root / "lake")
        self.state_dir = root / "state"
        self.port = free_port()
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.password = secrets.token_urlsafe(12)
        self.procs: dict[str, subprocess.Popen] = {}
        self.session = requests.Session()
        self._token: str | None = None
        for d in (self.home, self.logs, self.state_dir):
            d.mkdir(parents=True, exist_ok=True)
        passwords = self.home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({ADMIN_USER: self.password}))
        self.env = airflow_env(
            self.home, emulator=emulator, lake_dir=self.export_dir, state_dir=self.state_dir,
            # No automatic runs: only when the export Asset is updated (never, here) or when triggered.
            OMNISEND_EXPORT_SCHEDULE="asset",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
            AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager."
                                        "SimpleAuthManager",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{ADMIN_USER}:admin",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
            AIRFLOW__API__HOST=LOOPBACK,
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API__BASE_URL=self.base_url,
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.base_url}/execution/",
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
            AIRFLOW__API__SECRET_KEY=secrets.token_hex(16),
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="30",
        )

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 240.0) -> AirflowCluster:
        prepare_airflow_home(self.env, self.logs)
        for name in self.COMPONENTS:
            with open(self.logs / f"{name}.log", "wb") as out:
                self.procs[name] = subprocess.Popen(
                    [AIRFLOW_BIN, name], stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=REPO_ROOT,
                    start_new_session=True,
                )
        self.wait_until(self._healthy, timeout=timeout, what="all Airflow components healthy")
        return self

    def stop(self) -> None:
        self.session.close()
        for name in reversed(self.COMPONENTS):
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_tree(proc)

    def _healthy(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = log_tail(self.logs / f"{name}.log")
                raise RuntimeError(f"{name} exited ({proc.returncode})\n{log}")
        try:
            health = self.session.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
        except (requests.RequestException, ValueError):
            return False
        return all((health.get(k) or {}).get("status") == "healthy"
                   for k in ("metadatabase", "scheduler", "triggerer", "dag_processor"))

    def wait_until(self, check: Callable[[], Any], *, timeout: float, what: str,
                   interval: float = 1.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.diagnostics()}")
            time.sleep(interval)

    def diagnostics(self) -> str:
        return "\n".join(f"--- {name} (last lines) ---\n{log_tail(self.logs / f'{name}.log', 2500)}"
                         for name in self.COMPONENTS)

    # ---------------------------------------------------------------- REST API v2

    def token(self) -> str:
        if self._token is None:
            resp = self.session.post(f"{self.base_url}/auth/token",
                                     json={"username": ADMIN_USER, "password": self.password}, timeout=30)
            assert resp.status_code == 201, resp.text
            self._token = resp.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, *, expect: int | tuple[int, ...] = 200, **kw: Any) -> Any:
        resp = self.session.request(method, f"{self.base_url}/api/v2/{path.lstrip('/')}",
                                    headers={"Authorization": f"Bearer {self.token()}"}, timeout=30, **kw)
        codes = (expect,) if isinstance(expect, int) else expect
        assert resp.status_code in codes, f"{method} {path}: {resp.status_code} {resp.text[:2000]}"
        return resp.json() if resp.content else None

    def wait_for_dag(self, dag_id: str = DAG_ID, timeout: float = 180.0) -> dict[str, Any]:
        def parsed() -> dict[str, Any] | None:
            errors = self.api("GET", "importErrors")
            assert not errors["import_errors"], f"DAG import errors: {errors['import_errors']}"
            resp = self.session.get(f"{self.base_url}/api/v2/dags/{dag_id}",
                                    headers={"Authorization": f"Bearer {self.token()}"}, timeout=30)
            return resp.json() if resp.status_code == 200 else None

        return self.wait_until(parsed, timeout=timeout, what=f"DAG {dag_id} parsed", interval=2)

    def unpause(self, dag_id: str = DAG_ID) -> None:
        dag = self.api("PATCH", f"dags/{dag_id}", json={"is_paused": False})
        assert dag["is_paused"] is False

    def trigger(self, conf: dict[str, Any], dag_id: str = DAG_ID) -> dict[str, Any]:
        """POST a manual run as the UI's Trigger form does: a logical date, the params in ``conf``."""
        body = {"logical_date": datetime.now(UTC).isoformat(), "data_interval_start": None,
                "data_interval_end": None, "conf": conf}
        return self.api("POST", f"dags/{dag_id}/dagRuns", json=body, expect=(200, 201))

    def dag_run(self, run_id: str, dag_id: str = DAG_ID) -> dict[str, Any]:
        return self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")

    def active_runs(self, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        return self.api("GET", f"dags/{dag_id}/dagRuns", params={"state": ["queued", "running"]})["dag_runs"]

    def fail_run(self, run_id: str, dag_id: str = DAG_ID) -> None:
        """Mark a run failed (stops its tasks), so that it cannot leak into the next test."""
        self.api("PATCH", f"dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        return self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                        params={"limit": 100})["task_instances"]

    def task_instance(self, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any] | None:
        found = [t for t in self.task_instances(run_id)
                 if t["task_id"] == task_id and t["map_index"] == map_index]
        return found[0] if found else None

    def task_log(self, ti: dict[str, Any], lines: int = 25) -> str:
        """The last lines of a task instance's log (through the REST API), errors with their exception."""
        resp = self.session.get(
            f"{self.base_url}/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/"
            f"{ti['task_id']}/logs/{max(1, ti['try_number'])}",
            params={"map_index": ti["map_index"], "full_content": "true"},
            headers={"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}, timeout=30)
        if not resp.ok:
            return f"(no log: {resp.status_code})"
        out = []
        for entry in resp.json().get("content", []):
            if not isinstance(entry, dict):
                out.append(str(entry))
                continue
            text = f"{entry.get('level', '')} {entry.get('event', '')}"
            for err in entry.get("error_detail") or ():
                frame = (err.get("frames") or [{}])[-1]
                text += (f" | {err.get('exc_type')}: {err.get('exc_value')} "
                         f"at {frame.get('filename')}:{frame.get('lineno')}")
            out.append(text)
        header = f"--- log of {ti['task_id']}[{ti['map_index']}] try {ti['try_number']} ---"
        return "\n".join([header, *out[-lines:]])

    def wait_run(self, run_id: str, *, timeout: float, dag_id: str = DAG_ID) -> dict[str, Any]:
        """Wait until the run succeeds. Fail fast (with the failing task's log) as soon as a task fails or
        is up for retry, instead of sitting through the DAG's retry delays."""
        bad_states = {"failed", "up_for_retry", "upstream_failed"}

        def outcome() -> dict[str, Any] | None:
            run = self.dag_run(run_id, dag_id)
            if run["state"] in {"success", "failed"}:
                return run
            if any(t["state"] in bad_states for t in self.task_instances(run_id, dag_id)):
                return run
            return None

        run = self.wait_until(outcome, timeout=timeout, what=f"run {run_id} to finish", interval=2)
        if run["state"] != "success":
            tis = self.task_instances(run_id, dag_id)
            if run["state"] != "failed":
                self.fail_run(run_id, dag_id)
            states = sorted((t["task_id"], t["map_index"], t["state"]) for t in tis)
            logs = "\n".join(self.task_log(t) for t in tis if t["state"] in bad_states)
            pytest.fail(f"run {run_id} did not succeed (run {run['state']}), tasks {states}\n{logs}")
        return run

    def reset(self) -> None:
        """Between tests: no active run, an empty emulator, no snapshots or watermarks, a fresh lake copy."""
        for run in self.active_runs():
            self.fail_run(run["dag_run_id"])
        self.wait_until(lambda: not self.active_runs(), timeout=60, what="no active runs")
        shutil.rmtree(self.state_dir)
        self.state_dir.mkdir()
        shutil.rmtree(self.root / "lake")
        copy_sample_lake(self.root / "lake")
        self.emulator.reset()
