"""Run a local server (the Omnisend emulator, Prism, Azurite) as a real child process.

Used by the test suite, the demo and the benchmarks: each server listens on 127.0.0.1 on a free port,
is waited for until it accepts connections, and is always stopped (its whole process group) on exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Block until 127.0.0.1:port accepts a connection; fail early if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {LOOPBACK}:{port} within {timeout:.0f}s")


class ServerProcess:
    """A child process serving on 127.0.0.1:``port``; a context manager that starts and stops it.

    Output goes to a log file (``log_path``) so that a failing test can show it and a chatty server
    cannot block on a full pipe.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int,
        name: str,
        startup_timeout: float = 60.0,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.name = name
        self.startup_timeout = startup_timeout
        self.env = env
        self.cwd = cwd
        log_root = Path(log_dir) if log_dir else Path(tempfile.gettempdir())
        log_root.mkdir(parents=True, exist_ok=True)
        self.log_path = log_root / f"{name}-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> ServerProcess:
        env = {**os.environ, **(self.env or {})}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
                start_new_session=True,
            )
        try:
            wait_for_port(self.port, timeout=self.startup_timeout, proc=self.proc)
        except (RuntimeError, TimeoutError) as err:
            self.stop()
            raise RuntimeError(
                f"{self.name} did not start: {err}\n--- {self.log_path} ---\n{self.log_tail()}") from err
        return self

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
