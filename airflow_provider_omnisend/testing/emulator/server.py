"""``EmulatorServer``: the emulator as a child process, for tests, the demo and the benchmarks."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import requests

from airflow_provider_omnisend.testing.servers import LOOPBACK, ServerProcess, free_port

from .config import API_VERSION, DEFAULT_API_KEY

_PROJECT_ROOT = Path(__file__).resolve().parents[3]


class EmulatorServer(ServerProcess):
    """Start ``python -m airflow_provider_omnisend.testing.emulator`` on 127.0.0.1 and talk to its controls.

    >>> with EmulatorServer(time_scale=0.01) as emu:          # doctest: +SKIP
    ...     requests.post(f"{emu.api_url}/contacts", headers=emu.headers(), json={...})
    ...     emu.state()["contacts"]
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        time_scale: float = 1.0,
        latency_ms: float = 0,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        port = port or free_port()
        argv = [
            sys.executable,
            "-m",
            "airflow_provider_omnisend.testing.emulator",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--api-key",
            api_key,
            "--time-scale",
            repr(float(time_scale)),
            "--latency-ms",
            repr(float(latency_ms)),
            *extra_args,
        ]
        path = os.environ.get("PYTHONPATH")
        env = {"PYTHONPATH": f"{_PROJECT_ROOT}{os.pathsep}{path}" if path else str(_PROJECT_ROOT)}
        super().__init__(argv, port=port, name="omnisend-emulator", env=env, log_dir=log_dir)
        self.api_key = api_key
        self.time_scale = time_scale
        self._session = requests.Session()

    def start(self) -> EmulatorServer:
        super().start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                if self._session.get(f"{self.base_url}/_emulator/health", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"emulator not healthy\n{self.log_tail()}")
            time.sleep(0.05)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self._session.close()

    # ---------------------------------------------------------------- URLs and headers

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api"

    def headers(self, *, version: str = API_VERSION) -> dict[str, str]:
        """Headers for a 2026-03-15 request with this server's API key."""
        return {"Authorization": f"Omnisend-API-Key {self.api_key}", "Omnisend-Version": version}

    # ---------------------------------------------------------------- controls

    def _control(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._session.request(
            method, f"{self.base_url}/_emulator/{path}", timeout=kw.pop("timeout", 30), **kw
        )
        resp.raise_for_status()
        return resp.json()

    def state(self) -> dict[str, Any]:
        return self._control("GET", "state")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings at run time (rates, limits, faults, seed...); returns the full settings."""
        resp = self._session.post(f"{self.base_url}/_emulator/config", json=settings, timeout=30)
        if resp.status_code == 400:
            raise ValueError(f"invalid emulator settings: {resp.json().get('errors')}")
        resp.raise_for_status()
        return resp.json()

    def reset(self) -> None:
        self._control("POST", "reset")

    def contacts(self) -> list[dict[str, Any]]:
        """Every stored contact (the emulator's full view), read from the export stream."""
        out = []
        with self._session.get(
            f"{self.base_url}/_emulator/contacts/export", stream=True, timeout=300
        ) as resp:
            resp.raise_for_status()
            rest = b""
            for chunk in resp.iter_content(chunk_size=1 << 20):
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                out.extend(orjson.loads(line) for line in lines if line)
            if rest.strip():
                out.append(orjson.loads(rest))
        return out

    def wait_batches_done(self, timeout: float = 60.0, *, poll_s: float = 0.05) -> dict[str, Any]:
        """Block until no batch is pending or in progress; returns the final state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if state["batches"]["pending"] == 0 and state["batches"]["inProgress"] == 0:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"batches still running after {timeout}s: {state['batches']}")
            time.sleep(poll_s)

    def wait_idle(self, timeout: float = 60.0, *, poll_s: float = 0.05) -> dict[str, Any]:
        """Block until no batch and no tag operation is outstanding; returns the final state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            b = state["batches"]
            if b["pending"] == 0 and b["inProgress"] == 0 and state["tag_operations_pending"] == 0:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"emulator still busy after {timeout}s: {b}, "
                    f"{state['tag_operations_pending']} tag operations"
                )
            time.sleep(poll_s)
