"""A throwaway Airflow for tests and benchmarks: api-server, scheduler, dag-processor and triggerer, the
example DAG, a copy of a lake folder, and a REST API v2 client. Two executors:

- ``executor="local"`` (default): the LocalExecutor on one SQLite DB, as ``scripts/demo.sh`` runs it;
- ``executor="celery"``: a distributed Airflow as production runs it -- a fresh PostgreSQL database as
  the metadata DB, Redis (a database number of its own) as the Celery broker, and ``workers`` separate
  ``airflow celery worker`` processes, each with its own TMPDIR (its "local disk") and log-server port.
  PostgreSQL and Redis come from :mod:`airflow_provider_omnisend.testing.services`.

Every process is started in its own session and stopped (its whole tree) by :meth:`AirflowCluster.stop`;
every wait has a deadline. Nothing here talks to anything but 127.0.0.1.

Used by the end-to-end and reliability suites (``tests/e2e``, ``tests/reliability``) and by the scale-out
benchmark; a project that builds on this provider can drive its own DAGs with it the same way::

    with EmulatorServer(time_scale=0.05) as emu:
        cluster = AirflowCluster(root, emu, conn_uri=..., lake_root=..., export_subdir=..., segments=[...])
        with cluster:
            run_id = cluster.trigger({"segments": [...]})["dag_run_id"]
            cluster.wait_run(run_id, timeout=300)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import requests

from airflow_provider_omnisend.testing import services
from airflow_provider_omnisend.testing.emulator import EmulatorServer
from airflow_provider_omnisend.testing.servers import LOOPBACK, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"
#: The shipped sample lake (scripts/make_sample_lake.py), its export folder and its two segments.
SAMPLE_LAKE = REPO_ROOT / "examples" / "lake"
SAMPLE_EXPORT_SUBDIR = Path("CustomerInsights_demo") / "OmnisendExport"
SAMPLE_SEGMENTS = ("HighValueCustomers", "NewsletterFans")
AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "omnisend_segment_export"
EXPORT_TASK = "segment.export"
ADMIN_USER = "admin"


class RunFailed(AssertionError):
    """A DAG run did not succeed; the message holds the task states and the failing tasks' logs."""


# ------------------------------------------------------------------------------------ Airflow processes

def airflow_env(home: Path, *, conn_uri: str, lake_dir: Path, state_dir: Path, segments: Iterable[str],
                pool_slots: int = 2, dags_folder: Path = DAGS_FOLDER, **extra: str) -> dict[str, str]:
    """A clean environment for Airflow child processes (none of the caller's AIRFLOW_* settings)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "OMNISEND_", "PYTHONPATH"))}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(REPO_ROOT),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_OMNISEND_DEFAULT": conn_uri,
        "OMNISEND_LAKE_PATH": lake_dir.as_uri(),
        "OMNISEND_SEGMENTS": json.dumps(list(segments)),
        "OMNISEND_STATE_PATH": str(state_dir),
        "OMNISEND_POOL_SLOTS": str(pool_slots),
        "NO_COLOR": "1",
    })
    env.update(extra)
    return env


def log_tail(path: Path, chars: int = 6000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def run_airflow(args: list[str], env: Mapping[str, str], log: Path, *, timeout: float) -> int:
    """Run ``airflow <args>`` to completion (own session, killed on timeout); output to ``log``."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([AIRFLOW_BIN, *args], stdout=out, stderr=subprocess.STDOUT, env=dict(env),
                                cwd=REPO_ROOT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_tree(proc)
            raise TimeoutError(f"airflow {' '.join(args)} did not finish in {timeout:.0f}s\n"
                               f"{log_tail(log)}") from None
        except BaseException:  # Ctrl-C (or a test's timeout) while waiting: leave no orphan behind
            stop_tree(proc)
            raise


def stop_tree(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the process group of ``proc`` (and any descendant that left it), then SIGKILL what is left."""
    stop_trees([proc], timeout)


def stop_trees(procs: Iterable[subprocess.Popen], timeout: float = 20.0) -> None:
    """:func:`stop_tree` for several processes at once: all are asked to stop, then waited for together
    (one ``timeout`` in all, not one each), then whatever is left is killed."""
    procs = list(procs)
    tree: list[psutil.Process] = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            tree += [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    leaders = {proc.pid for proc in procs}
    for p in tree:  # task processes put themselves in their own process groups
        if p.pid not in leaders:
            with contextlib.suppress(psutil.Error):
                p.terminate()
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)


def prepare_airflow_home(env: Mapping[str, str], logs: Path, *, pool_slots: int = 2) -> None:
    """``airflow db migrate``, and the pool ``OMNISEND_POOL`` names, if any (the DAG needs none)."""
    steps: list[tuple[str, list[str], float]] = [("db-migrate", ["db", "migrate"], 300)]
    if env.get("OMNISEND_POOL"):
        steps.append(("pools-set", ["pools", "set", env["OMNISEND_POOL"], str(pool_slots),
                                    "Omnisend exports at once per brand"], 120))
    for name, args, timeout in steps:
        rc = run_airflow(args, env, logs / f"{name}.log", timeout=timeout)
        if rc != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({rc})\n{log_tail(logs / f'{name}.log')}")


# ------------------------------------------------------------------------------------------ the cluster

class AirflowCluster:
    """api-server, scheduler, dag-processor and triggerer (and Celery workers), plus a REST client.

    ``lake_root`` is copied to ``root/lake`` (and again by :meth:`reset`); the DAG reads the export folder
    ``root/lake/<export_subdir>``. ``pool_slots`` caps the exports running at once (and sizes the pool
    ``env`` may name in ``OMNISEND_POOL``) and divides the connection's budget between them;
    ``parallelism`` bounds the executor.
    ``env`` adds or overrides environment variables of every Airflow process. With
    ``executor="celery"``, ``workers`` Celery workers run ``worker_concurrency`` tasks each; the broker
    is ``redis_url`` (a server the caller may restart) or the Redis that ``services`` finds or starts.
    The api-server listens on 127.0.0.1:``port`` (default: a free port).
    """

    COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
    EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}

    def __init__(self, root: Path, emulator: EmulatorServer, *, conn_uri: str, lake_root: Path,
                 export_subdir: Path | str, segments: Iterable[str], pool_slots: int = 2,
                 parallelism: int = 4, dags_folder: Path = DAGS_FOLDER,
                 env: Mapping[str, str] | None = None, executor: str = "local", workers: int = 2,
                 worker_concurrency: int = 2, redis_url: str | None = None, port: int | None = None) -> None:
        if executor not in self.EXECUTORS:
            raise ValueError(f"executor must be one of {sorted(self.EXECUTORS)}, got {executor!r}")
        self.executor = executor
        self.workers = [f"worker-{n + 1}" for n in range(workers)] if executor == "celery" else []
        self.worker_concurrency = worker_concurrency
        self.redis_url = redis_url
        self._services = ExitStack()
        self.root = root
        self.emulator = emulator
        self.lake_root = lake_root
        self.export_subdir = Path(export_subdir)
        self.segments = list(segments)
        self.pool_slots = pool_slots
        self.home = root / "airflow"
        self.logs = root / "logs"
        self.tmp = root / "tmp"  # TMPDIR of every Airflow process: the export's local staging lands here
        self.state_dir = root / "state"
        self.export_dir = self._copy_lake()
        self.port = port or free_port()
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.password = secrets.token_urlsafe(12)
        self.procs: dict[str, subprocess.Popen] = {}
        self.session = requests.Session()
        self._token: str | None = None
        for d in (self.home, self.logs, self.state_dir, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        passwords = self.home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({ADMIN_USER: self.password}))
        self.env = airflow_env(
            self.home, conn_uri=conn_uri, lake_dir=self.export_dir, state_dir=self.state_dir,
            segments=self.segments, pool_slots=pool_slots, dags_folder=dags_folder,
            TMPDIR=str(self.tmp),
            AIRFLOW__CORE__EXECUTOR=self.EXECUTORS[executor],
            AIRFLOW__CORE__PARALLELISM=str(parallelism),
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
            # Parsing the example DAG takes ~2 s, but far longer on a loaded CI machine: not an import error.
            AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="180",
            # No automatic runs, only triggered ones, unless `env` says otherwise (e.g. "asset").
            **{"OMNISEND_EXPORT_SCHEDULE": "none", **dict(env or {})},
        )

    def _copy_lake(self) -> Path:
        shutil.rmtree(self.root / "lake", ignore_errors=True)
        shutil.copytree(self.lake_root, self.root / "lake")
        return self.root / "lake" / self.export_subdir

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> AirflowCluster:
        try:
            self.start()
            self.wait_for_dag()
            self.unpause()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 240.0) -> AirflowCluster:
        if self.executor == "celery":
            self.env.update(self._celery_env())
        prepare_airflow_home(self.env, self.logs, pool_slots=self.pool_slots)
        for name in self.COMPONENTS:
            self._spawn(name, [name], self.env)
        for name in self.workers:
            self.start_worker(name)
        self.wait_until(self._healthy, timeout=timeout, what="all Airflow components healthy")
        return self

    def _celery_env(self) -> dict[str, str]:
        """PostgreSQL metadata DB, Redis broker: found running or started, released by :meth:`stop`."""
        db = services.sqlalchemy_url(self._services.enter_context(services.postgres_database(self.logs)))
        redis_base = self.redis_url or self._services.enter_context(services.redis_service(self.logs))
        self.broker_url = services.redis_db_url(redis_base, services.random_redis_db())
        return {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            # A task whose worker died (no heartbeat) is failed and retried after this many seconds,
            # not Airflow's default 300: the worker-loss test waits for it.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        }

    def _spawn(self, name: str, args: list[str], env: Mapping[str, str]) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "ab") as out:
            self.procs[name] = subprocess.Popen(
                [AIRFLOW_BIN, *args], stdout=out, stderr=subprocess.STDOUT, env=dict(env), cwd=REPO_ROOT,
                start_new_session=True,
            )
        return self.procs[name]

    def start_worker(self, name: str) -> subprocess.Popen:
        """Start (or restart) Celery worker ``name``: its own TMPDIR, pid file and log-server port."""
        tmp = self.root / name / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "TMPDIR": str(tmp),
               "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        return self._spawn(name, ["celery", "worker", "--celery-hostname", f"{name}@%h",
                                  "--concurrency", str(self.worker_concurrency),
                                  "--pid", str(self.root / name / "worker.pid")], env)

    def restart(self, name: str) -> subprocess.Popen:
        """Stop component ``name`` (SIGTERM, its whole tree) and start it again, as a restart or a
        redeploy would: e.g. a triggerer, whose triggers a new one then picks up."""
        if name not in self.COMPONENTS:
            raise ValueError(f"restart() takes one of {self.COMPONENTS}; restart a worker with start_worker")
        stop_tree(self.procs.pop(name))
        return self._spawn(name, [name], self.env)

    def kill_worker(self, name: str) -> None:
        """SIGKILL worker ``name`` and every process below it (its running tasks), as a lost host."""
        proc = self.procs.pop(name)
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        for p in tree:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(tree, timeout=20)
        proc.wait(timeout=20)

    def worker_started(self, name: str) -> bool:
        """The worker printed its start-up banner (whatever the log level). Tasks sent before it
        consumes wait in the broker, so this only catches a worker that dies at start-up early."""
        return f"{name}@" in log_tail(self.logs / f"{name}.log", 200_000)

    def stop(self) -> None:
        """Stop every process started here: workers, triggerer, dag-processor and scheduler (with their
        task processes) together, then the api-server, which the stopping tasks still report to."""
        self.session.close()
        stop_trees([self.procs.pop(name) for name in list(self.procs) if name != "api-server"])
        stop_trees([self.procs.pop(name) for name in list(self.procs)])
        self._services.close()

    def _healthy(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = log_tail(self.logs / f"{name}.log")
                raise RuntimeError(f"{name} exited ({proc.returncode})\n{log}")
        if not all(self.worker_started(name) for name in self.workers):
            return False
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
                         for name in (*self.COMPONENTS, *self.workers))

    # ---------------------------------------------------------------- REST API v2

    def token(self) -> str:
        if self._token is None:
            resp = self.session.post(f"{self.base_url}/auth/token",
                                     json={"username": ADMIN_USER, "password": self.password}, timeout=30)
            if resp.status_code != 201:
                raise RuntimeError(f"no API token: {resp.status_code} {resp.text[:500]}")
            self._token = resp.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, *, expect: int | tuple[int, ...] = 200, **kw: Any) -> Any:
        resp = self.session.request(method, f"{self.base_url}/api/v2/{path.lstrip('/')}",
                                    headers={"Authorization": f"Bearer {self.token()}"}, timeout=30, **kw)
        codes = (expect,) if isinstance(expect, int) else expect
        if resp.status_code not in codes:
            raise AssertionError(f"{method} {path}: {resp.status_code} {resp.text[:2000]}")
        return resp.json() if resp.content else None

    def wait_for_dag(self, dag_id: str = DAG_ID, timeout: float = 180.0) -> dict[str, Any]:
        def parsed() -> dict[str, Any] | None:
            errors = self.api("GET", "importErrors")
            if errors["import_errors"]:
                raise AssertionError(f"DAG import errors: {errors['import_errors']}")
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

    def tries(self, run_id: str, task_id: str, map_index: int = -1, dag_id: str = DAG_ID) -> list[dict]:
        """Every try of one task instance (the REST API's task instance history), oldest first."""
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries"
        return self.api("GET", path)["task_instances"]

    def xcom(self, ti: dict[str, Any], key: str = "return_value") -> Any:
        path = (f"dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/"
                f"xcomEntries/{key}")
        return self.api("GET", path, params={"map_index": ti["map_index"], "deserialize": "true"})["value"]

    def log_entries(self, ti: dict[str, Any], try_number: int | None = None) -> list[Any] | None:
        """A task instance's structured log entries (through the REST API), or None when it has none."""
        number = try_number or max(1, ti["try_number"])
        resp = self.session.get(
            f"{self.base_url}/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/"
            f"{ti['task_id']}/logs/{number}",
            params={"map_index": ti["map_index"], "full_content": "true"},
            headers={"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}, timeout=30)
        return resp.json().get("content", []) if resp.ok else None

    def task_log(self, ti: dict[str, Any], lines: int = 25, try_number: int | None = None) -> str:
        """The last lines of a task instance's log (through the REST API), errors with their exception."""
        number = try_number or max(1, ti["try_number"])
        entries = self.log_entries(ti, number)
        if entries is None:
            return "(no log)"
        out = []
        for entry in entries:
            if not isinstance(entry, dict):
                out.append(str(entry))
                continue
            text = f"{entry.get('level', '')} {entry.get('event', '')}"
            for err in entry.get("error_detail") or ():
                frame = (err.get("frames") or [{}])[-1]
                text += (f" | {err.get('exc_type')}: {err.get('exc_value')} "
                         f"at {frame.get('filename')}:{frame.get('lineno')}")
            out.append(text)
        header = f"--- log of {ti['task_id']}[{ti['map_index']}] try {number} ---"
        return "\n".join([header, *out[-lines:]])

    def wait_run(self, run_id: str, *, timeout: float, dag_id: str = DAG_ID,
                 tolerate_retries: bool = False) -> dict[str, Any]:
        """Wait until the run succeeds; raise :class:`RunFailed` (with the failing tasks' logs) otherwise.

        Unless ``tolerate_retries``, a task that fails or is up for retry ends the wait at once, instead
        of sitting through the DAG's retry delays.
        """
        bad_states = {"failed", "upstream_failed"} | (set() if tolerate_retries else {"up_for_retry"})

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
            logs = "\n".join(self.task_log(t) for t in tis if t["state"] in bad_states | {"up_for_retry"})
            raise RunFailed(f"run {run_id} did not succeed (run {run['state']}), tasks {states}\n{logs}")
        return run

    def wait_finished(self, run_id: str, *, timeout: float, dag_id: str = DAG_ID) -> dict[str, Any]:
        """Wait until the run ends, successfully or not; return it (for runs expected to fail)."""
        return self.wait_until(lambda: (run := self.dag_run(run_id, dag_id))["state"] in {"success", "failed"}
                               and run, timeout=timeout, what=f"run {run_id} to end", interval=2)

    def task_process(self, ti_id: str) -> psutil.Process | None:
        """The process running a task instance's code (the task runner, titled ``airflow worker -- <id>``),
        below the scheduler's LocalExecutor workers or a Celery worker; None if there is none (yet)."""
        found = self.task_host(ti_id)
        return found[1] if found else None

    def task_host(self, ti_id: str) -> tuple[str, psutil.Process] | None:
        """(component, task runner process) of a running task instance: ``scheduler`` or a worker name."""
        for name in ("scheduler", *self.workers):
            parent = self.procs.get(name)
            if parent is None:
                continue
            with contextlib.suppress(psutil.Error):
                for proc in psutil.Process(parent.pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        if " ".join(proc.cmdline()).strip().endswith(f"-- {ti_id}"):
                            return name, proc
        return None

    def reset(self) -> None:
        """Between tests: no active run, an empty emulator, no snapshots or watermarks, a fresh lake copy."""
        for run in self.active_runs():
            self.fail_run(run["dag_run_id"])
        self.wait_until(lambda: not self.active_runs(), timeout=60, what="no active runs")
        shutil.rmtree(self.state_dir)
        self.state_dir.mkdir()
        self._copy_lake()
        self.emulator.reset()
