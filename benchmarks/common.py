"""What every measurement shares: figures and sections of the report, machine facts, the emulator, a
client that counts its requests, and a timed run of the export engine."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow as pa

from airflow_provider_omnisend.api.client import OmnisendClient
from airflow_provider_omnisend.api.versions import get_version
from airflow_provider_omnisend.export import engine as engine_module
from airflow_provider_omnisend.export.engine import ExportEngine, ExportOptions, ExportSummary
from airflow_provider_omnisend.export.mapping import MappingSpec
from airflow_provider_omnisend.export.progress import MemoryProgressStore
from airflow_provider_omnisend.export.rejects import RejectsWriter
from airflow_provider_omnisend.testing.emulator import EmulatorServer
from airflow_provider_omnisend.testing.sample_data import DEMO_MAPPING

PROJECT_ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
SEGMENT = "VIP"
#: Omnisend's published limits: requests per minute per brand, contacts per batch request.
BRAND_RPM = 400
BATCH_ITEMS = 100
#: Real latency of one Omnisend round trip assumed by the rate-limit measurements (scaled with time).
REAL_LATENCY_MS = 100.0


# ---------------------------------------------------------------------------------------------- report
@dataclass
class Figure:
    """One reported figure: an absolute value, and a ratio to something measured in the same run."""

    name: str
    value: float | int | str | None
    unit: str = ""
    ratio: float | None = None
    ratio_of: str = ""  # what the ratio divides by ("naive baseline, per row")
    target: str = ""  # "≥ 300000", shown as written
    ok: bool | None = None  # None: no target


def at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


@dataclass
class Section:
    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    error: str | None = None

    def add(self, *figures: Figure) -> None:
        self.figures.extend(figures)

    @property
    def ok(self) -> bool | None:
        verdicts = [f.ok for f in self.figures if f.ok is not None]
        return all(verdicts) if verdicts else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def load_avg() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def machine() -> dict[str, Any]:
    import numpy
    import pandas

    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = status_kb(Path("/proc/meminfo"), "MemTotal")
    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "memory_gb": round(mem_kb / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
    }


def status_kb(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of a process, in MiB.

    Not ``getrusage().ru_maxrss``: Linux carries that over ``exec`` from the forking parent, which here
    holds generated data, so it would measure the parent instead of the child.
    """
    return round(status_kb(Path(f"/proc/{pid}/status"), "VmHWM") / 1024, 1)


def run_child(module: str, *args: str, timeout: float = 3600) -> dict[str, Any]:
    """Run ``python -m <module> <args>`` and return the JSON object it prints last."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=timeout,
    )
    if out.returncode:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def quiet_logs() -> None:
    """The provider logs progress at INFO; a benchmark prints its own figures."""
    logging.getLogger("airflow_provider_omnisend").setLevel(logging.WARNING)


def emit(result: dict[str, Any]) -> None:
    """What a child process reports: one JSON line on stdout."""
    print(json.dumps(result, default=str), flush=True)


# ---------------------------------------------------------------------------------------------- time
@dataclass(frozen=True)
class Scale:
    """Emulated time: one Omnisend minute lasts ``60 × time_scale`` real seconds.

    The round-trip latency is scaled with it (``REAL_LATENCY_MS × time_scale``), so latency keeps the
    same share of a window as in reality and figures project to real time by dividing by the scale.
    """

    time_scale: float

    @property
    def window_s(self) -> float:
        return 60.0 * self.time_scale

    @property
    def latency_ms(self) -> float:
        return REAL_LATENCY_MS * self.time_scale

    def minutes(self, seconds: float) -> float:
        """Real seconds measured here → emulated (projected real) minutes."""
        return seconds / self.window_s

    def window_floor(self, requests: int, budget: int) -> float:
        """The least time ``requests`` requests can take under the limiter's own rule, in seconds.

        A request holds its slot from its send until one window after its response, so a slot serves
        again at the earliest one window plus one round trip (the emulator's latency) after it was
        taken: the first ``budget`` requests go at once, each next ``budget`` one such cycle later.
        Contacts ÷ the ceiling (budget × 100 per minute) is not a floor: it charges the first window's
        burst, which the sliding window lets through at once.
        """
        return max(0, math.ceil(requests / budget) - 1) * (self.window_s + self.latency_ms / 1000)


@contextmanager
def emulator(scale: Scale, *, log_dir: Path, rpm: int = BRAND_RPM) -> Iterator[EmulatorServer]:
    """The emulator with Omnisend's published limits, time-scaled; its log goes to ``log_dir``."""
    server = EmulatorServer(
        api_key=API_KEY,
        time_scale=scale.time_scale,
        latency_ms=scale.latency_ms,
        extra_args=["--rpm", str(rpm), "--log-level", "warning"],
        log_dir=log_dir,
    )
    with server:
        yield server


# ---------------------------------------------------------------------------------------------- client
class CountingClient(OmnisendClient):
    """The real client, counting requests per route and when the first one started and the last ended."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.routes: Counter[str] = Counter()
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.last_end_by_route: dict[str, float] = {}
        self._lock = threading.Lock()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        route = f"{method} {_route(path)}"
        with self._lock:
            self.routes[route] += 1
            if self.first_start is None:
                self.first_start = time.time()
        try:
            return super().request(method, path, **kwargs)
        finally:
            with self._lock:
                self.last_end = self.last_end_by_route[route] = time.time()

    @property
    def total(self) -> int:
        return sum(self.routes.values())

    @property
    def busy_seconds(self) -> float:
        """From the first request's start to the last response (0 if nothing was sent)."""
        if self.first_start is None or self.last_end is None:
            return 0.0
        return self.last_end - self.first_start


def _route(path: str) -> str:
    parts = path.split("?", maxsplit=1)[0].strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "batches":
        parts[1] = "{id}"
    return "/" + "/".join(parts)


def make_client(api_url: str, scale: Scale, budget: int) -> CountingClient:
    """A 2026-03-15 client with ``budget`` requests per (scaled) minute, as the hook would build it."""
    return CountingClient(
        base_url=api_url,
        api_key=API_KEY,
        version=get_version(None),
        requests_per_minute=budget,
        window_seconds=scale.window_s,
        max_in_flight=8,
    )


# ---------------------------------------------------------------------------------------------- engine
def demo_spec(columns: Iterable[str]) -> MappingSpec:
    """The example DAG's mapping with the segment tag on."""
    return MappingSpec.build(DEMO_MAPPING, segment=SEGMENT, available_columns=list(columns))


@dataclass
class EngineRun:
    summary: ExportSummary
    #: seconds per engine step: load_state (pointer, and a remote snapshot fetched), prepare, diff (spill
    #: the staged keys by range, then compare), push, mirror (untag who left), seal (the e-mails sealed
    #: beside the snapshot, when a state_secret is given), snapshot (merge range by range while writing)
    phases: dict[str, float]
    seconds: float
    #: This process's peak RSS (MiB) when each step last ended: the step that raised it holds the peak.
    peaks: dict[str, float] = field(default_factory=dict)


#: Steps of ExportEngine.run timed by wrapping the module-level functions it calls.
_TIMED_STEPS = {
    "load_state": "load_state",
    "fetch_snapshot": "load_state",
    "prepare_export": "prepare",
    "spill_keys": "diff",
    "diff_partitioned": "diff",
    "write_snapshot": "snapshot",
    "write_snapshot_batches": "snapshot",
}


def run_engine(
    *,
    client: Any,
    batches: Iterable[pa.RecordBatch],
    columns: Iterable[str],
    work: Path,
    scale: Scale | None = None,
    state_secret: bytes | None = None,
    **options: Any,
) -> EngineRun:
    """One ``ExportEngine.run`` as the operator does it (state under ``work/state``), with step timings.

    ``scale`` shrinks the confirmation poll interval (2 s by default) with emulated time.
    """
    spec = demo_spec(columns)
    work.mkdir(parents=True, exist_ok=True)
    run_dir = Path(_fresh_dir(work / "run"))
    if scale is not None:
        options.setdefault("poll_interval", 2.0 * scale.time_scale)
    options.setdefault("max_profiles", None)
    rejects = RejectsWriter(str(run_dir / "rejects.parquet"), source_columns=spec.source_columns)
    engine = ExportEngine(
        client=client,
        spec=spec,
        options=ExportOptions(segment=SEGMENT, segment_tag=f"segment: {SEGMENT}", **options),
        state_dir=str(work / "state"),
        work_dir=run_dir / "staging",
        artifacts_dir=run_dir,
        rejects=rejects,
        progress=MemoryProgressStore(),
        state_secret=state_secret,
    )
    phases: dict[str, float] = dict.fromkeys(
        ["load_state", "prepare", "diff", "push", "mirror", "seal", "snapshot"], 0.0)
    peaks: dict[str, float] = {"start": peak_rss_mb()}

    def timed(step: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[step] += time.perf_counter() - t0
                peaks[step] = peak_rss_mb()

        return wrapper

    engine._push = timed("push", engine._push)  # type: ignore[method-assign]
    engine._mirror = timed("mirror", engine._mirror)  # type: ignore[method-assign]
    engine._seal_emails = timed("seal", engine._seal_emails)  # type: ignore[method-assign]
    started = time.perf_counter()
    with ExitStack() as stack:
        for name, step in _TIMED_STEPS.items():
            stack.enter_context(
                mock.patch.object(engine_module, name, timed(step, getattr(engine_module, name)))
            )
        try:
            summary = engine.run(batches)
        finally:
            rejects.close()
    seconds = time.perf_counter() - started
    return EngineRun(
        summary=summary,
        phases={k: round(v, 3) for k, v in phases.items()},
        seconds=round(seconds, 3),
        peaks=peaks,
    )


def _fresh_dir(base: Path) -> str:
    n = 0
    while (path := Path(f"{base}{n}")).exists():
        n += 1
    path.mkdir(parents=True)
    return str(path)


# ---------------------------------------------------------------------------------------------- context
@dataclass
class Context:
    """What a measurement gets from ``benchmarks.run``."""

    quick: bool
    sizes: dict[str, Any]  # this measurement's sizes for the chosen mode
    scale: Scale
    work: Path  # scratch space, deleted afterwards
    out: Path  # results folder (profiles go here)
    profile: bool = False
