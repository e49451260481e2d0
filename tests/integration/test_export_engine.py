"""The export engine against the emulator as a real process: complete, consent-safe, nothing lost."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_omnisend.lake import iter_batches, resolve_export
from airflow_provider_omnisend.testing.sample_data import COLUMNS, synthetic_profiles
from tests.support import expected_contacts, export_client, run_export

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def posted_batches(emulator, prefix: str = "/api") -> int:
    return emulator.state()["requests"].get(f"POST {prefix}/batches", 0)


def test_200k_rows_arrive_complete_field_by_field(emulator, tmp_path):
    table = synthetic_profiles(200_000, seed=3)
    pq.write_table(table, tmp_path / "export.parquet")
    export = resolve_export(f"file://{tmp_path}/export.parquet")
    summary, rejects = run_export(export_client(emulator), iter_batches(export, columns=COLUMNS),
                                  tmp_path=tmp_path)
    expected = expected_contacts(table)
    stored = {c["email"]: c for c in emulator.contacts()}
    assert set(stored) == set(expected)
    mismatches = [(email, field) for email, values in expected.items() for field, value in values.items()
                  if stored[email].get(field) != value]
    assert mismatches == []
    assert all("segment: VIP" in c["tags"] for c in stored.values())
    # Every input row is in exactly one place: Omnisend (its first valid occurrence) or the rejects file.
    assert summary.rows_read == 200_000 == summary.valid + summary.rejected
    assert summary.valid == len(expected) == summary.sent
    assert rejects.num_rows == summary.rejected
    assert sorted(rejects.column("row").to_pylist()) == sorted(set(rejects.column("row").to_pylist()))
    reasons = set(rejects.column("reason").to_pylist())
    assert reasons == {"invalid_email", "duplicate"}
    assert all(rejects.column("detail").to_pylist())
    # Full batches of 100 (chunks span staging blocks): only the last one is partial.
    assert summary.batches == posted_batches(emulator) == -(-len(expected) // 100)
    state = emulator.state()
    assert state["responses_429"] == 0
    assert state["welcome_messages"] == 0


def test_consent_no_status_unless_mapped_and_no_welcome(emulator, tmp_path):
    client = export_client(emulator)
    # Someone who unsubscribed in Omnisend must stay unsubscribed after an export.
    client.upsert_contact({"identifiers": [{"type": "email", "id": "customer5@example.com",
                                            "channels": {"email": {"status": "unsubscribed"}},
                                            "sendWelcomeMessage": False}]})
    table = synthetic_profiles(300, invalid_fraction=0, duplicate_fraction=0)
    run_export(client, table.to_batches(), tmp_path=tmp_path)
    stored = {c["email"]: c for c in emulator.contacts()}
    assert stored["customer5@example.com"]["status"] == "unsubscribed"
    assert {c["status"] for e, c in stored.items() if e != "customer5@example.com"} == {"nonSubscribed"}
    assert emulator.state()["welcome_messages"] == 0
    # A status is sent only when mapped, here as a constant.
    emulator.reset()
    run_export(client, table.to_batches(), tmp_path=tmp_path, run_name="mapped", state_dir=tmp_path / "s2",
               spec_kwargs={"email_status": {"constant": "subscribed"}})
    assert {c["status"] for c in emulator.contacts()} == {"subscribed"}


def test_batch_caps_per_api_version(emulator, tmp_path):
    table = synthetic_profiles(2_500, invalid_fraction=0, duplicate_fraction=0)
    summary, _ = run_export(export_client(emulator, api_version="v3"), table.to_batches(), tmp_path=tmp_path)
    assert summary.batches == posted_batches(emulator, "/v3") == 3  # 1000 + 1000 + 500
    assert emulator.state()["contacts"] == 2_500
    assert emulator.state()["welcome_messages"] == 0  # the legacy payload says so explicitly too
    emulator.reset()
    summary, _ = run_export(export_client(emulator), table.to_batches(), tmp_path=tmp_path,
                            run_name="current", state_dir=tmp_path / "s2")
    assert summary.batches == posted_batches(emulator) == 25


def test_body_stays_under_1mb(emulator, tmp_path):
    # Long but valid values: 100 items would exceed 1 MB, so chunks are cut by size, not count.
    table = synthetic_profiles(400, invalid_fraction=0, duplicate_fraction=0)
    long_text = pa.array(["x" * 2_000] * 400)
    props = {f"p{i}": f"P{i}" for i in range(6)}
    for name in props.values():
        table = table.append_column(name, long_text)
    summary, rejects = run_export(export_client(emulator), table.to_batches(), tmp_path=tmp_path,
                                  spec_kwargs={"custom_properties": props}, columns=table.column_names,
                                  max_body_bytes=1_000_000)
    assert rejects.num_rows == 0 and emulator.state()["contacts"] == 400
    assert summary.batches == posted_batches(emulator) > 4  # ~12 KB per item: at most ~80 per batch


def test_dry_run_sends_nothing(emulator, tmp_path):
    table = synthetic_profiles(1_000)
    summary, rejects = run_export(export_client(emulator), table.to_batches(), tmp_path=tmp_path,
                                  dry_run=True)
    assert emulator.state()["requests"] == {}
    assert summary.dry_run and summary.valid > 0 and rejects.num_rows == summary.rejected > 0
    with open(summary.sample_path, "rb") as fh:
        sample = orjson.loads(fh.read())
    assert sample["endpoint"] == "contacts" and len(sample["items"]) == 20
    assert all(i["identifiers"][0]["sendWelcomeMessage"] is False for i in sample["items"])
    assert not (tmp_path / "state" / "CURRENT.json").exists()  # a dry run leaves no snapshot


def test_item_errors_are_retried_once_then_rejected_with_omnisends_message(emulator, tmp_path):
    table = synthetic_profiles(5_000, invalid_fraction=0, duplicate_fraction=0)
    emulator.configure(item_error_rate=0.05, seed=11)
    summary, rejects = run_export(export_client(emulator), table.to_batches(), tmp_path=tmp_path)
    assert summary.retried_items > 100  # ~5% failed in the first round and were sent again
    api_rejects = rejects.filter(pa.compute.equal(rejects["reason"], "omnisend_transient_error"))
    assert 0 < api_rejects.num_rows < summary.retried_items  # ~5% of the retries failed again
    assert summary.api_rejected == api_rejects.num_rows
    assert all(d for d in api_rejects.column("detail").to_pylist())
    stored = {c["email"] for c in emulator.contacts()}
    rejected_rows = set(api_rejects.column("row").to_pylist())
    emails = table.column("EmailAddress").to_pylist()
    assert stored == {emails[i] for i in range(5_000) if i not in rejected_rows}
    assert summary.sent == len(stored) == 5_000 - summary.api_rejected  # sent: what Omnisend accepted
    assert summary.rows_read == summary.sent + summary.rejected + summary.unchanged


def test_stopped_batches_are_completed(emulator, tmp_path):
    table = synthetic_profiles(3_000, invalid_fraction=0, duplicate_fraction=0)
    emulator.configure(stop_next_batches=3)
    summary, rejects = run_export(export_client(emulator), table.to_batches(), tmp_path=tmp_path)
    assert emulator.state()["batches"].get("stopped") == 3
    assert summary.retried_items > 0 and rejects.num_rows == 0
    assert emulator.state()["contacts"] == 3_000


def test_over_max_profiles_fails_before_sending(emulator, tmp_path):
    from airflow_provider_omnisend.export.engine import ExportLimitError

    table = synthetic_profiles(1_500, invalid_fraction=0, duplicate_fraction=0)
    with pytest.raises(ExportLimitError, match=r"1,500 valid profiles.*max_profiles=1,000"):
        run_export(export_client(emulator), table.to_batches(), tmp_path=tmp_path, max_profiles=1_000)
    assert emulator.state()["requests"] == {}

