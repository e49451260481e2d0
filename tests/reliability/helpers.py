"""Shared helpers of the reliability suite (import as ``tests.reliability.helpers``).

The expected end state is computed here from the source table alone, without the product's code:
e-mails trimmed and lower-cased, invalid ones rejected by an independent (stricter than needed) pattern,
the first occurrence of each e-mail wins, country names mapped to ISO codes from a fixed table.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_omnisend.testing.airflow_cluster import EXPORT_TASK

if TYPE_CHECKING:
    from airflow_provider_omnisend.testing.airflow_cluster import AirflowCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
SEGMENT = "VIP"
SEGMENT_TAG = "segment: VIP"
#: {omnisend_field: column} of the synthetic profiles (same as the demo's mapping, spelled out here).
MAPPING = {
    "email": "EmailAddress", "firstName": "FirstName", "lastName": "LastName", "address": "Address1",
    "city": "City", "state": "StateOrProvince", "postalCode": "PostalCode", "countryCode": "Country",
}
COUNTRY_CODES = {"Lithuania": "LT", "United States": "US", "Germany": "DE", "France": "FR", "Japan": "JP",
                 "United Kingdom": "GB"}
_LOCAL = r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*"
_EMAIL = re.compile(rf"{_LOCAL}@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{{2,}}")
_DUPLICATE_OF = re.compile(r"same e-mail as row (\d+)")


def independent_email_ok(email: str) -> bool:
    """RFC 5321 limits (local part 64, address 254, DNS label 63) and a conservative syntax."""
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        return False
    local, domain = email.split("@")
    return len(local) <= 64 and all(len(label) <= 63 for label in domain.split("."))


@dataclass
class Expected:
    """What must hold after an export of ``rows``: contacts by e-mail, and where every row goes."""

    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    winners: dict[int, str] = field(default_factory=dict)  # row -> e-mail it put in Omnisend
    invalid: set[int] = field(default_factory=set)
    duplicates: dict[int, int] = field(default_factory=dict)  # row -> winning row
    rows: int = 0

    @property
    def email_rows(self) -> dict[str, int]:
        return {email: row for row, email in self.winners.items()}


def expected_state(table: pa.Table, mapping: dict[str, str] = MAPPING, *, tag: str | None = SEGMENT_TAG
                   ) -> Expected:
    out = Expected(rows=table.num_rows)
    first_row: dict[str, int] = {}
    for i, row in enumerate(table.select(list(mapping.values())).to_pylist()):
        email = (row[mapping["email"]] or "").strip().lower()
        if not independent_email_ok(email):
            out.invalid.add(i)
            continue
        if email in first_row:
            out.duplicates[i] = first_row[email]
            continue
        first_row[email] = i
        out.winners[i] = email
        fields: dict[str, Any] = {}
        for name, column in mapping.items():
            value = (row[column] or "").strip()
            if name == "email" or not value:
                continue
            fields[name] = COUNTRY_CODES.get(value, value) if name == "countryCode" else value
        out.contacts[email] = fields
    if tag:
        for fields in out.contacts.values():
            fields["_tag"] = tag
    return out


def read_rejects(path: str | Path) -> pa.Table:
    path = str(path)
    if path.endswith(".csv"):
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={"row": pa.int64(), "reason": pa.string(), "detail": pa.string()}))
    return pq.read_table(path)


@dataclass
class Verdict:
    missing_contacts: list[str]
    wrong_fields: list[tuple[str, str, Any, Any]]
    extra_contacts: list[str]
    rows_in_both: list[int]
    rows_in_neither: list[int]
    rows_rejected_twice: list[int]
    rejects_without_reason: list[int]
    wrong_reasons: list[tuple[int, str, str]]

    @property
    def rows_lost(self) -> int:
        return len(self.rows_in_neither) + len(self.missing_contacts)

    def problems(self) -> dict[str, Any]:
        return {k: v[:10] for k, v in self.__dict__.items() if v}


def verify_export(contacts: Iterable[dict[str, Any]], rejects: pa.Table, expected: Expected) -> Verdict:
    """Compare the emulator's contacts and the rejects file with the independently expected state."""
    stored = {c["email"]: c for c in contacts}
    missing = sorted(e for e in expected.contacts if e not in stored)
    extra = sorted(e for e in stored if e not in expected.contacts)
    wrong = []
    for email, fields in expected.contacts.items():
        got = stored.get(email)
        if got is None:
            continue
        for name, value in fields.items():
            if name == "_tag":
                if value not in (got.get("tags") or []):
                    wrong.append((email, "tags", value, got.get("tags")))
            elif got.get(name) != value:
                wrong.append((email, name, value, got.get(name)))
    rows = rejects.column("row").to_pylist()
    reasons = rejects.column("reason").to_pylist()
    details = rejects.column("detail").to_pylist()
    seen: set[int] = set()
    twice, no_reason, wrong_reason = [], [], []
    for row, reason, detail in zip(rows, reasons, details, strict=True):
        if row in seen:
            twice.append(row)
        seen.add(row)
        if not reason or not detail:
            no_reason.append(row)
        if row in expected.invalid and reason not in ("invalid_email", "missing_email"):
            wrong_reason.append((row, reason, detail))
        if row in expected.duplicates:
            match = _DUPLICATE_OF.search(detail or "")
            if reason != "duplicate" or not match or int(match.group(1)) != expected.duplicates[row]:
                wrong_reason.append((row, reason, detail))
    in_omnisend = {r for r, email in expected.winners.items() if email in stored}
    both = sorted(in_omnisend & seen)
    neither = sorted(set(range(expected.rows)) - in_omnisend - seen)
    # a contact Omnisend refused (reason omnisend_*) is accounted for by its rejects entry
    refused = {row for row, reason in zip(rows, reasons, strict=True)
               if (reason or "").startswith("omnisend_")}
    email_rows = expected.email_rows
    missing = [e for e in missing if email_rows[e] not in refused]
    return Verdict(missing, wrong, extra, both, neither, twice, no_reason, wrong_reason)


# ------------------------------------------------------------------------------------ emulator figures


def posts(emulator_state: dict[str, Any]) -> int:
    """POST /api/batches requests the emulator saw (refused ones included)."""
    return int(emulator_state["requests"].get("POST /api/batches", 0))


def batches_created(emulator_state: dict[str, Any]) -> int:
    return sum(emulator_state["batches"].values())


def api_requests(emulator_state: dict[str, Any]) -> int:
    return sum(emulator_state["requests"].values())


# --------------------------------------------------------------------------- a file-backed state store


class JsonFileProgressStore:
    """Stands in for Airflow's task state store: a JSON file, replaced atomically on every change."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def get(self, key: str, default: Any = None) -> Any:
        return self._load().get(key, default)

    def set(self, key: str, value: Any) -> None:
        data = self._load()
        data[key] = value
        self._write(data)

    def delete(self, key: str) -> None:
        data = self._load()
        if data.pop(key, None) is not None:
            self._write(data)

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".progress-", dir=self.path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# ------------------------------------------------------------------------------------ running exports


def slow_batches(table: pa.Table, *, rows_per_batch: int = 1000, delay: float = 0.0
                 ) -> Iterator[pa.RecordBatch]:
    """The table as record batches, optionally pausing between them (a slow lake read)."""
    for batch in table.to_batches(max_chunksize=rows_per_batch):
        if delay:
            time.sleep(delay)
        yield batch


def run_engine(
    *,
    client: Any,
    batches: Iterable[pa.RecordBatch],
    columns: list[str],
    state_dir: str | Path,
    work_dir: str | Path,
    rejects_path: str | Path,
    progress: Any,
    export_id: str = "reliability",
    max_in_flight: int = 8,
    poll_interval: float = 0.05,
    max_reject_ratio: float = 0.5,
    confirm_every: int = 200,
) -> Any:
    """One ExportEngine run of the synthetic profiles' mapping; returns the summary."""
    from airflow_provider_omnisend.export.engine import ExportEngine, ExportOptions
    from airflow_provider_omnisend.export.mapping import MappingSpec
    from airflow_provider_omnisend.export.rejects import RejectsWriter

    spec = MappingSpec.build(MAPPING, segment=SEGMENT, available_columns=columns)
    rejects = RejectsWriter(str(rejects_path), source_columns=spec.source_columns)
    engine = ExportEngine(
        client=client, spec=spec,
        options=ExportOptions(segment=SEGMENT, segment_tag=SEGMENT_TAG, poll_interval=poll_interval,
                              max_in_flight=max_in_flight, max_reject_ratio=max_reject_ratio,
                              confirm_every=confirm_every),
        state_dir=str(state_dir), work_dir=str(work_dir), artifacts_dir=str(Path(work_dir) / "artifacts"),
        rejects=rejects, progress=progress, export_id=export_id)
    try:
        return engine.run(batches)
    finally:
        rejects.close()


def make_client(api_url: str, api_key: str, *, requests_per_minute: int = 300, window_seconds: float = 0.6,
                timeout: float = 5.0, max_in_flight: int = 8, max_attempts: int = 8) -> Any:
    from airflow_provider_omnisend.api.client import OmnisendClient
    from airflow_provider_omnisend.api.versions import get_version

    return OmnisendClient(base_url=api_url, api_key=api_key, version=get_version(None),
                          requests_per_minute=requests_per_minute, window_seconds=window_seconds,
                          timeout=timeout, max_in_flight=max_in_flight, max_attempts=max_attempts,
                          backoff_initial=0.05, backoff_max=0.5)


# ------------------------------------------------------------------------- killing a task in real Airflow


def find_task_process(cluster: AirflowCluster, run_id: str, task_id: str = EXPORT_TASK) -> psutil.Process:
    """The process running ``task_id`` (map index 0) of ``run_id``, as soon as it runs."""
    def running() -> psutil.Process | None:
        ti = cluster.task_instance(run_id, task_id, 0)
        if ti and ti["state"] in {"success", "failed", "up_for_retry"}:
            raise AssertionError(f"the export ended before it could be killed: {ti['state']}\n"
                                 f"{cluster.task_log(ti)}")
        return cluster.task_process(ti["id"]) if ti and ti["state"] == "running" else None

    return cluster.wait_until(running, timeout=180, what="the export task's process", interval=0.2)


def kill_when(ready: Callable[[], bool], proc: psutil.Process, timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``ready()``: no handler, no clean-up, as an OOM kill or a lost node."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not proc.is_running():
            raise AssertionError("the task process ended before the kill point")
        if time.monotonic() > deadline:
            raise AssertionError("the kill point was not reached in time")
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=30)


# ------------------------------------------------------------------------------------ leak scanning


def file_texts(path: Path) -> list[str]:
    """What a file holds, as text: its raw bytes, and for Parquet also every value decoded (Parquet
    pages are compressed, so a raw grep alone would miss plaintext inside them)."""
    raw = path.read_bytes()
    texts = [raw.decode("utf-8", errors="replace")]
    if raw[:4] == b"PAR1":
        table = pq.read_table(path)
        texts.append(" ".join(table.column_names))
        texts.extend(str(v) for column in table.columns for v in column.to_pylist())
    return texts


def files_under(*roots: Path) -> list[Path]:
    out: list[Path] = []
    for root in map(Path, roots):
        if root.is_file():
            out.append(root)
        elif root.exists():
            out.extend(sorted(p for p in root.rglob("*") if p.is_file()))
    return out


def find_in_files(needles: Iterable[str], *roots: Path) -> list[tuple[str, str]]:
    """(file, needle) for every needle found (case-insensitively) in a file below ``roots``."""
    needles = [n.lower() for n in needles]
    hits = []
    for path in files_under(*roots):
        text = "\n".join(file_texts(path)).lower()
        hits.extend((str(path), n) for n in needles if n in text)
    return hits
