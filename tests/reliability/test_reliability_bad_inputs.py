"""The bad-input corpus (``tests/fixtures/bad_inputs/``) through OmnisendExportSegmentOperator.execute().

Each input ends either in an AirflowFailException whose message says what is wrong, where and how to
fix it, or in a successful run where every row is in Omnisend or in the rejects file with a reason.
No other exception type (an unhandled traceback, which Airflow would retry) and no silent loss.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_provider_omnisend.operators.export import OmnisendExportSegmentOperator
from airflow_provider_omnisend.testing.emulator import EmulatorServer
from tests.reliability.helpers import api_requests, independent_email_ok, posts
from tests.support import TEST_API_KEY, TIME_SCALE, omnisend_conn_uri

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bad_inputs"
sys.path.insert(0, str(FIXTURES))
from make_fixtures import INVALID_EMAILS, LONG, VALID_CONTROL  # noqa: E402

CDM_EXPORT = "CustomerInsights_00000000-0000-0000-0000-000000000001/OmnisendExport"
MAPPING = {"email": "EmailAddress", "firstName": "FirstName"}
DAG_ID = "omnisend_reliability"


def _context(dag_id: str = DAG_ID) -> dict[str, Any]:
    pushed: list[tuple[str, Any]] = []
    ti = SimpleNamespace(task_id="export", map_index=-1,
                         xcom_push=lambda key, value: pushed.append((key, value)))
    return {"dag": SimpleNamespace(dag_id=dag_id), "ti": ti, "run_id": "manual__reliability",
            "pushed": pushed}


def run(conn_id: str, source: str | Path, tmp_path: Path, *, dag_id: str = DAG_ID, **kwargs: Any
        ) -> dict[str, Any] | AirflowFailException:
    """Execute the operator; return its summary, or the AirflowFailException it raised. Any other
    exception fails the test: it would be an unhandled traceback (and a pointless Airflow retry)."""
    kwargs.setdefault("mapping", MAPPING)
    kwargs.setdefault("rejects_path", str(tmp_path / "rejects.parquet"))
    op = OmnisendExportSegmentOperator(
        task_id="export", source=str(source), segment="VIP", omnisend_conn_id=conn_id,
        state_path=str(tmp_path / "state"), poll_interval=0.05, **kwargs)
    try:
        return op.execute(_context(dag_id))
    except (AirflowFailException, AirflowSkipException) as err:
        return err
    except Exception as err:  # pragma: no cover - reported as a failure
        pytest.fail(f"unhandled {type(err).__name__} (Airflow would retry it): {err}")


def failed(result: Any) -> str:
    assert isinstance(result, AirflowFailException), f"expected a clear failure, got {result!r}"
    return str(result)


def rejects(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "rejects.parquet"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    return pq.read_table(path).to_pylist()


def stored(emulator) -> dict[str, dict[str, Any]]:
    emulator.wait_batches_done(timeout=30)
    return {c["email"]: c for c in emulator.contacts()}


def accounted(result: dict[str, Any], emulator, tmp_path: Path) -> None:
    """No silent loss: rows read = contacts in Omnisend from this run + rows rejected in the rejects file
    (which also lists the field warnings of contacts sent without an invalid optional field)."""
    records = rejects(tmp_path)
    assert all(r["reason"] and r["detail"] for r in records)
    rows = [r for r in records if r["kind"] == "row_rejected"]
    assert len({r["row"] for r in rows}) == len(rows) == result["rejected"]
    assert len(records) - len(rows) == result["field_warnings"]
    assert result["rows_read"] == result["sent"] + result["rejected"]
    assert len(stored(emulator)) == result["sent"]


# ---------------------------------------------------------------------------------------- schema errors


def test_no_email_column(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(), FIXTURES / "no_email_column.csv", tmp_path))
    assert "'EmailAddress'" in message and "not in the export" in message
    assert "'CustomerId', 'FirstName', 'LastName'" in message  # what is there
    assert api_requests(emulator.state()) == 0


def test_all_emails_null(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(), FIXTURES / "all_emails_null.csv", tmp_path))
    assert "4 of 4 rows were rejected (100.0%), above max_reject_ratio=5.0%" in message
    assert str(tmp_path / "rejects.parquet") in message
    rows = rejects(tmp_path)
    assert [r["row"] for r in rows] == [0, 1, 2, 3]
    assert {r["reason"] for r in rows} == {"missing_email"}
    assert all('email (column "EmailAddress") is empty' in r["detail"] for r in rows)
    assert posts(emulator.state()) == 0


def test_empty_export_succeeds(emulator, omnisend_conn, tmp_path):
    result = run(omnisend_conn(), FIXTURES / "empty_export.csv", tmp_path)
    assert isinstance(result, dict), result
    assert result["rows_read"] == result["sent"] == result["rejected"] == result["batches"] == 0
    assert rejects(tmp_path) == []
    assert api_requests(emulator.state()) == 0


def test_over_max_profiles_fails_before_any_call(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(), FIXTURES / "over_max_profiles.csv", tmp_path, max_profiles=25))
    assert "30 valid profiles" in message and "max_profiles=25" in message and "Nothing was sent" in message
    assert "Raise max_profiles" in message
    assert posts(emulator.state()) == 0 and api_requests(emulator.state()) == 0


# ------------------------------------------------------------------------------------------- row errors


def test_invalid_emails_are_rejected_with_a_reason(emulator, omnisend_conn, tmp_path):
    assert len(INVALID_EMAILS) >= 20
    assert not any(independent_email_ok(e.strip().lower()) for e in INVALID_EMAILS.values())
    result = run(omnisend_conn(), FIXTURES / "invalid_emails.csv", tmp_path, max_reject_ratio=1.0)
    assert isinstance(result, dict), result
    rows = rejects(tmp_path)
    kinds = list(INVALID_EMAILS)
    assert sorted(r["row"] for r in rows) == list(range(1, len(kinds) + 1))
    for r in rows:
        kind = kinds[r["row"] - 1]
        assert r["reason"] == "invalid_email", (kind, r["reason"])
        assert 'email (column "EmailAddress")' in r["detail"], (kind, r["detail"])
        assert r["EmailAddress"] == INVALID_EMAILS[kind]  # the raw value, to fix it in the lake
        assert INVALID_EMAILS[kind] not in r["detail"]
    assert set(stored(emulator)) == {VALID_CONTROL}
    accounted(result, emulator, tmp_path)


def test_a_failed_reject_ratio_marks_the_export_handled_and_force_re_runs_it(emulator, omnisend_conn,
                                                                              tmp_path):
    conn_id = omnisend_conn()
    source = FIXTURES / "invalid_emails.csv"
    message = failed(run(conn_id, source, tmp_path, max_reject_ratio=0.05))
    assert "max_reject_ratio" in message and "marked as handled" in message and "force=true" in message
    (mark,) = (tmp_path / "state").glob("*.json")
    assert "max_reject_ratio" in json.loads(mark.read_text())["failure"]  # the failure is recorded
    again = run(conn_id, source, tmp_path, max_reject_ratio=0.05)  # the schedule does not re-fire it
    assert isinstance(again, AirflowSkipException) and "was already exported" in str(again)
    forced = run(conn_id, source, tmp_path, max_reject_ratio=1.0, force=True)
    assert isinstance(forced, dict) and forced["rejected"] == len(INVALID_EMAILS)


def test_duplicates_differing_in_case_and_whitespace(emulator, omnisend_conn, tmp_path):
    result = run(omnisend_conn(), FIXTURES / "case_whitespace_duplicates.csv", tmp_path, max_reject_ratio=1.0)
    assert isinstance(result, dict), result
    contacts = stored(emulator)
    assert {e: c["firstName"] for e, c in contacts.items()} == {
        "ann.lee@example.com": "Ann-first", "bob@example.com": "Bob-first", "carl@example.com": "Carl"}
    winners = {1: 0, 2: 0, 3: 0, 4: 0, 6: 5, 7: 5}
    rows = rejects(tmp_path)
    assert {r["row"]: r["reason"] for r in rows} == dict.fromkeys(winners, "duplicate")
    for r in rows:
        assert f"same e-mail as row {winners[r['row']]}," in r["detail"]
    assert result["duplicates"] == 6
    accounted(result, emulator, tmp_path)


def test_unicode_names_arrive_intact(emulator, omnisend_conn, tmp_path):
    import csv

    with open(FIXTURES / "unicode_names.csv", encoding="utf-8", newline="") as fh:
        source = list(csv.DictReader(fh))
    result = run(omnisend_conn(), FIXTURES / "unicode_names.csv", tmp_path,
                 mapping={"email": "EmailAddress", "firstName": "FirstName", "lastName": "LastName",
                          "city": "City"})
    assert isinstance(result, dict), result
    contacts = stored(emulator)
    assert len(contacts) == len(source) == result["sent"]
    for row in source:
        got = contacts[row["EmailAddress"]]
        assert (got["firstName"], got["lastName"], got["city"]) == (row["FirstName"], row["LastName"],
                                                                     row["City"])
    accounted(result, emulator, tmp_path)


def test_10kb_strings_are_left_out_with_a_reason(emulator, omnisend_conn, tmp_path, capfd):
    """Too long an optional field: the contact is sent without it (a field warning); too long an
    e-mail: the row is rejected. The summary line counts the warnings per field and reason."""
    result = run(omnisend_conn(), FIXTURES / "long_strings.csv", tmp_path, max_reject_ratio=1.0,
                 mapping={"email": "EmailAddress", "firstName": "FirstName", "lastName": "LastName",
                          "address": "Address1"},
                 custom_properties={"notes": "Notes"})
    assert isinstance(result, dict), result
    by_row = {r["row"]: r for r in rejects(tmp_path)}
    assert {row: (r["kind"], r["reason"], r["field"]) for row, r in by_row.items()} == {
        1: ("field_dropped", "too_long", "firstName"), 2: ("field_dropped", "too_long", "lastName"),
        3: ("field_dropped", "too_long", "address"), 4: ("row_rejected", "invalid_email", "email"),
        5: ("field_dropped", "too_long", "customProperties.notes")}
    assert (result["rejected"], result["field_warnings"]) == (1, 4)
    assert result["field_warning_reasons"] == {
        name: {"too_long": 1} for name in ("address", "customProperties.notes", "firstName", "lastName")}
    out, err = capfd.readouterr()  # the operator's own (structlog) logger writes to stdout
    summary = next(line for line in (out + err).splitlines() if "summary:" in line)
    assert "field_warnings=4" in summary and (
        "(field warnings: address too_long=1; customProperties.notes too_long=1; firstName too_long=1; "
        "lastName too_long=1)") in summary
    assert "@" not in summary and "AAAA" not in summary  # counts only: no e-mail, no value
    assert by_row[1]["detail"] == (f'firstName (column "FirstName") is {LONG} characters; '
                                   "Omnisend accepts at most 255")
    assert f"is {LONG} characters" in by_row[2]["detail"]  # characters, not UTF-8 bytes
    assert "address" in by_row[3]["detail"] and "at most 255" in by_row[3]["detail"]
    assert "at most 254" in by_row[4]["detail"]
    assert "custom property 'notes'" in by_row[5]["detail"] and "at most 2048" in by_row[5]["detail"]
    assert len(by_row[1]["FirstName"]) == LONG  # the value is kept whole in the rejects file
    contacts = stored(emulator)
    assert set(contacts) == {"fine@example.com", "longfirst@example.com", "longlast@example.com",
                             "longaddress@example.com", "longnote@example.com"}
    assert "firstName" not in contacts["longfirst@example.com"]
    assert contacts["longfirst@example.com"]["lastName"] == "Row"
    assert "address" not in contacts["longaddress@example.com"]
    assert "notes" not in (contacts["longnote@example.com"].get("customProperties") or {})
    accounted(result, emulator, tmp_path)


def test_parquet_with_integer_emails(emulator, omnisend_conn, tmp_path):
    result = run(omnisend_conn(), FIXTURES / "email_as_integer", tmp_path, max_reject_ratio=1.0)
    assert isinstance(result, dict), result
    assert set(stored(emulator)) == {"text1@example.com", "text2@example.com"}
    rows = {r["EmailAddress"]: r["reason"] for r in rejects(tmp_path)}
    assert rows == {"12345": "invalid_email", "67890123": "invalid_email", None: "missing_email"}
    accounted(result, emulator, tmp_path)


def test_csv_with_embedded_newlines_and_quotes(emulator, omnisend_conn, tmp_path):
    result = run(omnisend_conn(), FIXTURES / "embedded_newlines_quotes.csv", tmp_path,
                 mapping={"email": "EmailAddress", "firstName": "FirstName", "lastName": "LastName",
                          "address": "Address1"})
    assert isinstance(result, dict), result
    contacts = stored(emulator)
    assert contacts["quotes@example.com"]["firstName"] == 'Bob "the builder"'
    assert contacts["quotes@example.com"]["lastName"] == "Smith, Jr."
    assert contacts["newline@example.com"]["address"] == "Main St Apt 4"  # line breaks become a space
    assert contacts["crlf@example.com"]["address"] == "Line 1 Line 2"
    assert contacts["both@example.com"]["address"] == 'He said: "hi, there"'
    assert contacts["both@example.com"]["lastName"] == "O'Hara, \"Sr.\""
    assert result["rows_read"] == 4 and result["rejected"] == 0
    accounted(result, emulator, tmp_path)


def test_csv_with_a_bom(emulator, omnisend_conn, tmp_path):
    result = run(omnisend_conn(), FIXTURES / "bom.csv", tmp_path,
                 mapping={"email": "EmailAddress", "firstName": "FirstName", "lastName": "LastName"})
    assert isinstance(result, dict), result
    contacts = stored(emulator)
    assert contacts["bom1@example.com"]["firstName"] == "Åsa"
    assert contacts["bom2@example.com"]["lastName"] == "Nordmann"  # no stray \r from CRLF
    accounted(result, emulator, tmp_path)


def test_csv_with_the_wrong_delimiter(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(), FIXTURES / "wrong_delimiter.csv", tmp_path))
    assert "'EmailAddress', 'FirstName'" in message and "not in the export" in message
    assert "available columns are 'EmailAddress^FirstName^LastName'" in message  # the one column found
    assert api_requests(emulator.state()) == 0


def test_cdm_csv_with_the_wrong_delimiter(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(), FIXTURES / "wrong_delimiter_cdm" / CDM_EXPORT, tmp_path))
    assert "not found in the header of CSV file" in message and "Customers_1.csv" in message
    assert "available columns: 'CustomerId;EmailAddress;FirstName;LastName'" in message
    assert api_requests(emulator.state()) == 0


# ------------------------------------------------------------------------------------ CDM folder errors


def test_cdm_headerless_partition_with_a_column_count_unlike_model_json(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(), FIXTURES / "cdm_column_mismatch" / CDM_EXPORT, tmp_path))
    assert "Customers_1.csv" in message
    assert ("it has 3 column(s) per row but the manifest of entity 'Customers' declares 4 attribute(s)"
            in message)
    assert "delimiter" in message  # how to fix
    assert api_requests(emulator.state()) == 0


def test_cdm_model_json_missing(emulator, omnisend_conn, tmp_path):
    source = FIXTURES / "cdm_no_model" / CDM_EXPORT
    message = failed(run(omnisend_conn(), source, tmp_path, source_format="cdm"))
    assert f"No CDM manifest in '{source}'" in message and "expected 'model.json'" in message
    assert "'Customers'" in message  # what the folder holds
    assert api_requests(emulator.state()) == 0


def test_cdm_model_json_missing_auto_format_does_not_quote_row_data(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(), FIXTURES / "cdm_no_model" / CDM_EXPORT, tmp_path))
    assert "ann@example.com" not in message and "'Ann'" not in message
    assert "model.json" in message


def test_cdm_model_json_corrupt(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(), FIXTURES / "cdm_corrupt_model" / CDM_EXPORT, tmp_path))
    assert "model.json" in message and "is not valid JSON" in message and "re-run the export" in message
    assert api_requests(emulator.state()) == 0


def test_cdm_model_json_pointing_at_missing_partitions(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(), FIXTURES / "cdm_missing_partitions" / CDM_EXPORT, tmp_path))
    assert "No complete export in" in message and "cdm_missing_partitions" in message
    assert "entity 'Customers'" in message
    assert "refresh '2026/01/15/0300' still misses 1 of 1 partition" in message
    assert api_requests(emulator.state()) == 0


def test_cdm_missing_partitions_message_names_the_file_and_a_fix(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(), FIXTURES / "cdm_missing_partitions" / CDM_EXPORT, tmp_path))
    assert "Customers_1.csv" in message and "re-run" in message.lower()


# ------------------------------------------------------------------------------- API and connection


def test_wrong_api_key_fails_clearly_without_retry(emulator, omnisend_conn, tmp_path):
    conn_id = omnisend_conn(api_key="not-the-right-key")
    message = failed(run(conn_id, FIXTURES / "valid_small.csv", tmp_path))
    assert "HTTP 401" in message and "Check the API key in the Omnisend connection" in message
    assert "not-the-right-key" not in message
    assert emulator.state()["requests"] == {"POST /api/batches": 1}  # one call, no retry


@pytest.fixture(scope="module")
def retired_emulator():
    with EmulatorServer(api_key=TEST_API_KEY, time_scale=TIME_SCALE,
                        extra_args=["--retired-version", "2026-03-15"]) as server:
        yield server


def test_retired_api_version_fails_clearly_without_retry(retired_emulator, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_OMNISEND_RETIRED", omnisend_conn_uri(retired_emulator.api_url))
    message = failed(run("omnisend_retired", FIXTURES / "valid_small.csv", tmp_path))
    assert "HTTP 410" in message and "retired" in message
    assert "Switch the connection's API version" in message
    assert retired_emulator.state()["requests"] == {"POST /api/batches": 1}


def test_privacy_not_acknowledged_is_refused_before_any_request(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(privacy_acknowledged=False), FIXTURES / "valid_small.csv", tmp_path))
    assert "has not acknowledged data privacy" in message and "privacy_acknowledged" in message
    assert api_requests(emulator.state()) == 0
    assert not (tmp_path / "rejects.parquet").exists()  # refused before reading the lake


def test_dag_not_in_the_allowed_list_is_refused(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(allowed_dag_ids="marketing_*, crm_sync"),
                         FIXTURES / "valid_small.csv", tmp_path))
    assert f"DAG {DAG_ID!r} is not allowed" in message and "marketing_*, crm_sync" in message
    assert api_requests(emulator.state()) == 0
    result = run(omnisend_conn(allowed_dag_ids="marketing_*"), FIXTURES / "valid_small.csv", tmp_path,
                 dag_id="marketing_vip")
    assert isinstance(result, dict) and result["sent"] == 5


def test_mirror_on_a_legacy_version_is_refused_before_any_request(emulator, omnisend_conn, tmp_path):
    for version in ("v3", "v5"):
        message = failed(run(omnisend_conn(api_version=version), FIXTURES / "valid_small.csv", tmp_path,
                             mode="mirror"))
        assert f"API {version} does not have" in message and "2026-03-15" in message
    assert api_requests(emulator.state()) == 0
    assert not (tmp_path / "rejects.parquet").exists()  # refused before reading the lake


def test_an_unknown_mirror_scope_is_refused_before_any_request(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(), FIXTURES / "valid_small.csv", tmp_path, mode="mirror",
                         mirror_scope="everyone"))
    assert "mirror_scope must be 'snapshot' or 'tag', got 'everyone'" in message
    assert api_requests(emulator.state()) == 0


def test_mirror_through_the_operator_untags_by_email_with_the_connection_secret(emulator, omnisend_conn,
                                                                               tmp_path):
    """The operator seals the e-mails with the connection's secret (its API key when no state_secret
    is set), so the next mirror run untags who left without listing the tag."""
    conn = omnisend_conn()
    assert run(conn, FIXTURES / "valid_small.csv", tmp_path)["sent"] == 5
    fewer = tmp_path / "fewer.csv"
    fewer.write_text("".join((FIXTURES / "valid_small.csv").read_text().splitlines(True)[:4]))  # 2 leave
    before = dict(emulator.state()["requests"])
    summary = run(conn, fewer, tmp_path, mode="mirror", force=True)
    assert (summary["removed"], summary["untagged"], summary["mirror_via"]) == (2, 2, "sealed")
    requests = emulator.state()["requests"]
    assert requests.get("GET /api/contacts", 0) == before.get("GET /api/contacts", 0)
    assert requests["DELETE /api/contacts/tags"] - before.get("DELETE /api/contacts/tags", 0) == 1
    state_files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert any(p.name.startswith("emails-") for p in state_files)
    assert not any(b"example.com" in p.read_bytes() for p in state_files)  # sealed, not in clear


def test_empty_api_key_is_a_non_retryable_configuration_error(emulator, omnisend_conn, tmp_path):
    message = failed(run(omnisend_conn(api_key=""), FIXTURES / "valid_small.csv", tmp_path))
    assert "API key is empty" in message and "API key field" in message
    assert api_requests(emulator.state()) == 0


def test_staging_folder_that_cannot_be_prepared_fails_clearly(emulator, omnisend_conn, tmp_path, monkeypatch):
    """What a previous try left where the staging goes cannot be removed (here: a file, not a folder)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    blocked = tmp_path / "tmp" / "omnisend-staging" / DAG_ID / "manual__reliability" / "export"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("left behind")
    message = failed(run(omnisend_conn(), FIXTURES / "valid_small.csv", tmp_path))
    assert f"Cannot prepare the local staging folder {blocked}" in message
    assert "TMPDIR" in message and "clear the task" in message
    assert posts(emulator.state()) == 0


def test_rejects_file_that_cannot_be_created_fails_clearly(emulator, omnisend_conn, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the rejects folder should be")
    target = blocker / "rejects.parquet"
    message = failed(run(omnisend_conn(), FIXTURES / "valid_small.csv", tmp_path, rejects_path=str(target)))
    assert f"Cannot create the rejects file {str(target)!r}" in message
    assert "lake_conn_id" in message
    assert posts(emulator.state()) == 0


def test_run_folders_by_day_and_the_old_ones_removed(emulator, omnisend_conn, tmp_path, monkeypatch):
    """The default rejects go to today's run folder below runs_path; day folders older than the
    retention period, and only those the operator created, are removed when an export starts."""
    from datetime import UTC, date, datetime

    from airflow_provider_omnisend.export.retention import day_folder

    monkeypatch.setattr(OmnisendExportSegmentOperator, "clock",
                        staticmethod(lambda: datetime(2026, 12, 5, 9, tzinfo=UTC)))
    runs = tmp_path / "runs"
    old = Path(day_folder(str(runs), DAG_ID, date(2026, 11, 4)))  # 31 days before
    (old / "manual__old" / "export" / "rejects.parquet").parent.mkdir(parents=True)
    (old / "manual__old" / "export" / "rejects.parquet").write_text("jane@example.com")
    kept = Path(day_folder(str(runs), DAG_ID, date(2026, 11, 5)))  # 30 days before
    foreign = runs / DAG_ID / "2020-01-01"  # named like a day folder, but not created by the operator
    foreign.mkdir()
    summary = run(omnisend_conn(), FIXTURES / "valid_small.csv", tmp_path, rejects_path=None,
                  runs_path=str(runs), retention_days="30", dry_run=True)
    assert not isinstance(summary, Exception), summary
    assert summary["rejects_path"] == str(runs / DAG_ID / "2026-12-05" / "manual__reliability" / "export"
                                          / "rejects.parquet")
    assert Path(summary["rejects_path"]).is_file()
    assert not old.exists() and kept.exists() and foreign.exists()
    message = failed(run(omnisend_conn(), FIXTURES / "valid_small.csv", tmp_path, retention_days="a month"))
    assert "retention_days must be a whole number of days" in message and "'a month'" in message


def test_dry_run_sample_is_pushed_to_xcom_for_the_ui(emulator, omnisend_conn, tmp_path):
    op = OmnisendExportSegmentOperator(
        task_id="export", source=str(FIXTURES / "valid_small.csv"), segment="VIP", mapping=MAPPING,
        omnisend_conn_id=omnisend_conn(), state_path=str(tmp_path / "state"), dry_run=True,
        rejects_path=str(tmp_path / "rejects.parquet"))
    context = _context()
    op.execute(context)
    (sample,) = [value for key, value in context["pushed"] if key == "payload_sample"]
    items = json.loads(sample)["items"]
    assert len(items) == 5
    assert api_requests(emulator.state()) == 0
    # XCom is readable by every Airflow user: the shape is there, the personal data is not.
    assert items[0]["identifiers"][0]["id"] == "p***@example.com"
    assert items[0]["identifiers"][0]["sendWelcomeMessage"] is False
    assert items[0]["firstName"] == "<text, 6 chars>"
    assert "person0" not in sample and "First0" not in sample
