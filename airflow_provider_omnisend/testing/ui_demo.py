"""``bash scripts/demo.sh --ui``: the example DAG in the real Airflow UI, until Ctrl-C.

``scripts/demo.sh`` alone runs the DAG once (``airflow dags test``) and exits; this is its interactive
variant. It starts the local Omnisend emulator and, through :class:`AirflowCluster` (the same Airflow
the end-to-end tests drive: api-server, scheduler, dag-processor and triggerer, LocalExecutor on SQLite),
Airflow on a copy of the shipped sample lake, prints the UI's URL and a generated login, and waits.
Ctrl-C (SIGINT), SIGTERM or SIGHUP stops every process it started -- each component's whole process
tree, then the emulator -- and exits 0; further signals during that bounded shutdown are ignored, so a
second Ctrl-C cannot leave half of them running. A component that dies on its own ends the demo with
its log and exit code 1.

The login is the simple auth manager's user ``admin`` with a password generated per start; it has
nothing to do with the Omnisend connection, whose (emulator) key is never printed. Everything listens
on 127.0.0.1 only.

    python -m airflow_provider_omnisend.testing.ui_demo --root .demo [--port 8080]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import requests

from airflow_provider_omnisend.testing.airflow_cluster import (
    ADMIN_USER,
    DAG_ID,
    REPO_ROOT,
    SAMPLE_EXPORT_SUBDIR,
    SAMPLE_LAKE,
    SAMPLE_SEGMENTS,
    AirflowCluster,
    log_tail,
)
from airflow_provider_omnisend.testing.emulator import EmulatorServer
from airflow_provider_omnisend.testing.servers import LOOPBACK, free_port

#: The emulator's key (a local stand-in, as in scripts/demo.sh): it stays in the connection, never printed.
DEMO_API_KEY = "demo-key"
DEFAULT_PORT = 8080
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop(KeyboardInterrupt):
    """A stop signal arrived: leave every ``with`` block, so that each one stops what it started."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    for sig in SIGNALS:  # the shutdown below is bounded; a second Ctrl-C must not cut it short
        signal.signal(sig, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def choose_port(wanted: int) -> int:
    """``wanted`` if it is free, else any free port (0 asks for any)."""
    if wanted and port_is_free(wanted):
        return wanted
    port = free_port()
    if wanted:
        say(f"Port {wanted} is in use; the UI gets port {port} instead.")
    return port


def connection_json(api_url: str) -> str:
    """The omnisend connection of scripts/demo.sh: the emulator, at the real rate window."""
    return json.dumps({"conn_type": "omnisend", "host": api_url, "password": DEMO_API_KEY,
                       "extra": {"api_version": "2026-03-15", "privacy_acknowledged": True,
                                 "requests_per_minute": 300}})


def say(text: str) -> None:
    print(text, flush=True)


def param_names(cluster: AirflowCluster) -> str:
    """The DAG's params as the api-server has them (what the Trigger form offers)."""
    try:
        return ", ".join(cluster.api("GET", f"dags/{DAG_ID}/details").get("params") or {})
    except (AssertionError, requests.RequestException):
        return "see the form"


def banner(cluster: AirflowCluster, emulator: EmulatorServer) -> str:
    return "\n".join([
        "",
        f"Airflow UI:  {cluster.base_url}/",
        f"Login:       {ADMIN_USER} / {cluster.password}   (generated for this start)",
        f"DAG:         {DAG_ID}: no schedule; Dags -> {DAG_ID} -> Trigger, with the params "
        f"{param_names(cluster)}",
        f"Emulator:    {emulator.base_url}/_emulator/state (what the local Omnisend received)",
        f"Sample lake: {cluster.export_dir}",
        f"Logs:        {cluster.logs}",
        "Press Ctrl-C to stop every process this demo started.",
        "",
    ])


def watch(cluster: AirflowCluster, interval: float = 2.0) -> int:
    """Block until a stop signal (0) or until a component exits on its own (its log tail, then 1)."""
    try:
        while True:
            for name, proc in cluster.procs.items():
                if proc.poll() is not None:
                    say(f"Airflow's {name} exited ({proc.returncode}); the demo stops.\n"
                        f"{log_tail(cluster.logs / f'{name}.log', 3000)}")
                    return 1
            time.sleep(interval)
    except Stop as stop:
        say(f"{stop}: stopping Airflow and the emulator (each component gets 20 s, then SIGKILL) ...")
        return 0


def prepare_root(root: Path) -> None:
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty: give --root a new or empty folder "
                         "(scripts/demo.sh --ui starts from an empty .demo).")
    root.mkdir(parents=True, exist_ok=True)


def run(root: Path, port: int) -> int:
    prepare_root(root)
    for sig in SIGNALS:
        signal.signal(sig, _on_signal)
    stopping = time.monotonic()
    try:
        say("Starting the Omnisend emulator and Airflow (db migrate, api-server, scheduler, dag-processor, "
            f"triggerer; logs in {root / 'logs'}) ...")
        with EmulatorServer(api_key=DEMO_API_KEY, log_dir=root / "emulator") as emulator:
            cluster = AirflowCluster(root, emulator, conn_uri=connection_json(emulator.api_url),
                                     lake_root=SAMPLE_LAKE, export_subdir=SAMPLE_EXPORT_SUBDIR,
                                     segments=SAMPLE_SEGMENTS,
                                     port=choose_port(port))
            with cluster:
                say(banner(cluster, emulator))
                code = watch(cluster)
                for sig in SIGNALS:
                    signal.signal(sig, signal.SIG_IGN)
                stopping = time.monotonic()
    except Stop as stop:  # during start-up: what had started is stopped already
        say(f"{stop} during start-up: stopped what had started.")
        return 0
    except (RuntimeError, TimeoutError, AssertionError) as err:  # start-up failed; what started is stopped
        say(f"The demo could not start: {err}\nEvery log is in {root / 'logs'}; {root} can be removed.")
        return 1
    say(f"Stopped in {time.monotonic() - stopping:.1f} s: every process this demo started has exited.")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_omnisend.testing.ui_demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT / ".demo",
                        help="an empty folder for Airflow's home, the lake copy, state and logs (.demo)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"the UI's port on 127.0.0.1 (default {DEFAULT_PORT}, or a free one if taken; "
                             "0: any free port)")
    args = parser.parse_args(argv)
    return run(args.root.resolve(), args.port)


if __name__ == "__main__":
    sys.exit(main())
