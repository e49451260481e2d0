"""Secrets and personal data: after failing runs (retired API version; 5xx until retries run out) and a
succeeding run with a distinctive API key, the key appears in nothing we can capture or find, e-mail
addresses stay out of INFO-level logs and out of the state folder, and rejects files are private.

Positive controls keep the greps honest: the same scan finds the e-mails in the rejects file, and the
key in the connection's own definition.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.csv as pacsv
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_omnisend.api.errors import OmnisendApiError, OmnisendVersionRetiredError
from airflow_provider_omnisend.operators.export import OmnisendExportSegmentOperator
from airflow_provider_omnisend.testing.emulator import EmulatorServer
from airflow_provider_omnisend.testing.sample_data import synthetic_profiles
from tests.reliability.helpers import MAPPING, files_under, find_in_files
from tests.support import TIME_SCALE, omnisend_conn_uri

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRET = f"omni-SECRET-{secrets.token_hex(12)}"
DAG_ID = "omnisend_secrets"
ROWS = 500


@pytest.fixture(scope="module")
def secret_emulator():
    with EmulatorServer(api_key=SECRET, time_scale=TIME_SCALE) as server:
        yield server


def _context() -> dict[str, Any]:
    pushed: list[tuple[str, Any]] = []
    ti = SimpleNamespace(task_id="export", map_index=-1,
                         xcom_push=lambda key, value: pushed.append((key, value)))
    return {"dag": SimpleNamespace(dag_id=DAG_ID), "ti": ti, "run_id": "manual__secrets", "pushed": pushed}


def _exception_texts(err: BaseException) -> list[str]:
    texts = ["".join(traceback.format_exception(err))]
    seen: BaseException | None = err
    while seen is not None:  # the whole chain, suppressed context included
        texts += [str(seen), repr(seen), repr(getattr(seen, "__dict__", {}))]
        seen = seen.__cause__ or seen.__context__
    return texts


def test_api_key_and_emails_do_not_leak(  # noqa: PLR0917 - pytest fixtures
        secret_emulator, monkeypatch, tmp_path, caplog, capfd, figures):
    home, lake, state = tmp_path / "airflow_home", tmp_path / "lake", tmp_path / "state"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    conn = omnisend_conn_uri(secret_emulator.api_url, api_key=SECRET, max_attempts=2)
    monkeypatch.setenv("AIRFLOW_CONN_OMNISEND_SECRET", conn)
    caplog.set_level(logging.DEBUG)
    lake.mkdir()
    table = synthetic_profiles(ROWS, seed=3)
    pacsv.write_csv(table, lake / "export.csv")
    emails = sorted({e for e in table.column("EmailAddress").to_pylist() if "@" in e})
    secret_emulator.reset()

    def operator(**kwargs: Any) -> OmnisendExportSegmentOperator:
        return OmnisendExportSegmentOperator(
            task_id="export", source=str(lake), segment="VIP", mapping=MAPPING,
            omnisend_conn_id="omnisend_secret", state_path=str(state), poll_interval=0.05, **kwargs)

    texts: list[str] = []
    # 1. a failing run: the API version is retired (410)
    secret_emulator.configure(retired_versions=["2026-03-15"])
    with pytest.raises(AirflowFailException) as retired:
        operator().execute(_context())
    assert "HTTP 410" in str(retired.value)
    texts += _exception_texts(retired.value)
    # 2. a failing run: 5xx until the retries run out (a retryable error for Airflow)
    secret_emulator.configure(retired_versions=[], error_rate=1.0)
    with pytest.raises(OmnisendApiError) as exhausted:
        operator().execute(_context())
    assert exhausted.value.status in (500, 503)
    assert not isinstance(exhausted.value, OmnisendVersionRetiredError)
    texts += _exception_texts(exhausted.value)
    # 3. a succeeding run (rejects in the run folder by default), then one with CSV rejects
    secret_emulator.configure(error_rate=0.0)
    ok, context = operator(), _context()
    result = ok.execute(context)
    assert result["sent"] > 0 and result["rejected"] > 0
    texts += [json.dumps(result), json.dumps(context["pushed"], default=str)]
    ok.render_template_fields(context)
    texts += [repr(getattr(ok, name)) for name in ok.template_fields]
    csv_rejects = tmp_path / "rejects" / "rejects.csv"
    again = operator(rejects_path=str(csv_rejects), full_refresh=True).execute(_context())
    texts.append(json.dumps(again))
    out, err = capfd.readouterr()
    texts += [out, err, caplog.text]
    texts += [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]

    run_folder = home / "omnisend_runs"
    default_rejects = Path(result["rejects_path"])
    assert default_rejects.is_relative_to(run_folder)
    every_file = files_under(state, run_folder, csv_rejects)
    figures(texts_scanned=len(texts), files_scanned=len(every_file), emails_checked=len(emails),
            files=sorted({p.name for p in every_file}))

    # the key: nowhere
    assert not [i for i, text in enumerate(texts) if SECRET.lower() in text.lower()]
    assert not find_in_files([SECRET], state, run_folder, csv_rejects, home)
    # e-mail addresses: not in INFO-level logs (ours in caplog; the operator's own logger writes to stdout)
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] + [out, err]
    assert not [e for e in emails if any(e.lower() in text.lower() for text in info)]
    # nor in the state folder (snapshots, CURRENT.json, watermark, batch-id files)
    state_files = files_under(state)
    assert "CURRENT.json" in {p.name for p in state_files}
    assert any(p.suffix == ".parquet" for p in state_files)
    assert any(p.name.endswith(".json") and p.name != "CURRENT.json" for p in state_files)  # the watermark
    assert not find_in_files(emails, state)
    # rejects files are private, whatever their format or place
    for path in (default_rejects, csv_rejects):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    # positive controls: the scans do find what is there
    assert find_in_files(emails, default_rejects) and find_in_files(emails, csv_rejects)
    assert SECRET in conn
