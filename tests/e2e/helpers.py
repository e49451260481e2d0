"""End-to-end helpers: the shipped sample lake, what Omnisend should hold after exporting it, and real
Airflow (the CLI, or the cluster of ``airflow_provider_omnisend.testing.airflow_cluster``) running the
example DAG on it against a real emulator process. Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any

from airflow_provider_omnisend.testing.airflow_cluster import (
    SAMPLE_EXPORT_SUBDIR,
    SAMPLE_LAKE,
    SAMPLE_SEGMENTS,
    AirflowCluster,
    airflow_env,
)
from airflow_provider_omnisend.testing.emulator import EmulatorServer
from tests.support import omnisend_conn_uri

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPORT_SUBDIR = SAMPLE_EXPORT_SUBDIR
ARTIFACTS = REPO_ROOT / "artifacts" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")

SEGMENTS = SAMPLE_SEGMENTS
E2E_API_KEY = "e2e-key-4b1d9c2a77"
#: The emulator's minute lasts 3 s; the connection's limiter gets the same window.
E2E_TIME_SCALE = 0.05
#: The e2e connection's requests per minute: below the emulator's 400, so the emulator cannot enforce it.
E2E_BUDGET = 300

#: Country names of the sample lake -> ISO 3166 alpha-2, written out by hand (independent of the product).
COUNTRY_CODES = {"Germany": "DE", "France": "FR", "United States": "US", "United Kingdom": "GB",
                 "Lithuania": "LT", "Japan": "JP"}
#: A plausible address: dot-atoms (no leading, trailing or doubled dots) on both sides, a dot in the domain.
_EMAIL = re.compile(r"^[^@\s.]+(\.[^@\s.]+)*@[^@\s.]+(\.[^@\s.]+)+$")


# ------------------------------------------------------------------------------------------- the lake

def copy_sample_lake(dest: Path) -> Path:
    """Copy ``examples/lake`` to ``dest``; return the export folder (the one holding model.json)."""
    shutil.copytree(SAMPLE_LAKE, dest)
    return dest / SAMPLE_EXPORT_SUBDIR


def partition_files(export_dir: Path, entity: str) -> list[Path]:
    """The local files of ``entity``'s partitions, in model.json order (locations are ADLS URLs)."""
    model = json.loads((export_dir / "model.json").read_text(encoding="utf-8"))
    (ent,) = [e for e in model["entities"] if e["name"] == entity]
    out = []
    for part in ent["partitions"]:
        rel = part["location"].split(f"/{export_dir.name}/", 1)[1]
        out.append(export_dir / rel)
    return out


def partition_rows(export_dir: Path, entity: str) -> int:
    """Rows of ``entity`` in the lake (header-less CSV partitions): what an export reads."""
    total = 0
    for path in partition_files(export_dir, entity):
        with open(path, encoding="utf-8", newline="") as fh:
            total += sum(1 for _ in csv.reader(fh))
    return total


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
    # the connection's budget (300), below the emulator's own 400: an overshoot shows here, not as a 429
    assert state["max_in_window"]["default"] <= E2E_BUDGET < state["config"]["rpm"], state
    return state


# ------------------------------------------------------------------------------------ Airflow processes

def e2e_conn_uri(emulator: EmulatorServer, **extra: object) -> str:
    """The omnisend connection of the e2e Airflow: the emulator, its key, a time-scaled rate window."""
    return omnisend_conn_uri(emulator.api_url, api_key=emulator.api_key, requests_per_minute=E2E_BUDGET,
                             window_seconds=60 * emulator.time_scale, **extra)


def sample_env(home: Path, *, emulator: EmulatorServer, lake_dir: Path, state_dir: Path) -> dict[str, str]:
    """Environment of ``airflow`` CLI processes running the example DAG on the sample lake."""
    return airflow_env(home, conn_uri=e2e_conn_uri(emulator), lake_dir=lake_dir, state_dir=state_dir,
                       segments=SEGMENTS)


def sample_cluster(root: Path, emulator: EmulatorServer) -> AirflowCluster:
    """An Airflow cluster running the example DAG on a copy of the shipped sample lake."""
    return AirflowCluster(root, emulator, conn_uri=e2e_conn_uri(emulator), lake_root=SAMPLE_LAKE,
                          export_subdir=SAMPLE_EXPORT_SUBDIR, segments=SEGMENTS)


def add_refresh(export_dir: Path, entity: str, folder: str, refresh_time: str) -> str:
    """Write a new refresh of ``entity`` as Customer Insights does: the partition files first (copies of
    the newest refresh's, in ``<entity>/<folder>``), then model.json listing them (atomic replace).
    Returns the export id the reader gives it."""
    model_path = export_dir / "model.json"
    model = json.loads(model_path.read_text(encoding="utf-8"))
    (ent,) = [e for e in model["entities"] if e["name"] == entity]
    newest = [p for p in ent["partitions"] if p["refreshTime"] == ent["partitions"][-1]["refreshTime"]]
    for old, path in zip(newest, partition_files(export_dir, entity)[-len(newest):], strict=True):
        target = export_dir / entity / folder / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        base = old["location"].split(f"/{entity}/", 1)[0]
        ent["partitions"].append({**old, "refreshTime": refresh_time,
                                  "location": f"{base}/{entity}/{folder}/{path.name}"})
    tmp = model_path.with_name(".model.json.tmp")
    tmp.write_text(json.dumps(model, indent=2), encoding="utf-8")
    tmp.replace(model_path)
    return f"cdm:{entity}:{folder}"
