"""Contract tests: Stoplight Prism serves Omnisend's official OpenAPI specs and judges our traffic.

* ``prism mock --errors``: every hook method is driven against the spec; any request that violates it
  comes back as an error (and an ``sl-violations`` header, which we also collect).
* ``prism proxy --errors`` in front of the emulator: the emulator's *responses* are validated against
  the same spec, so the emulator cannot drift from the real API.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from airflow_provider_omnisend.export.mapping import MappingSpec
from airflow_provider_omnisend.export.normalize import normalize_batch
from airflow_provider_omnisend.export.payload import build_items
from airflow_provider_omnisend.hooks.omnisend import OmnisendHook
from airflow_provider_omnisend.lake import iter_batches, resolve_export
from airflow_provider_omnisend.testing.servers import ServerProcess, free_port
from tests.support import omnisend_conn_uri

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
PRISM = REPO / "node_modules" / ".bin" / "prism"
SPECS = REPO / "airflow_provider_omnisend" / "testing" / "openapi"


def prism(*args: str) -> ServerProcess:
    if not PRISM.exists() or not shutil.which("node"):
        pytest.fail("Prism is not installed: run scripts/setup.sh --test (npm ci)")
    port = free_port()
    return ServerProcess([str(PRISM), *args[:1], *args[1:], "-h", "127.0.0.1", "-p", str(port), "--errors"],
                         port=port, name=f"prism-{args[0]}", startup_timeout=90)


@pytest.fixture(scope="module")
def prism_mocks() -> Iterator[dict[str, ServerProcess]]:
    servers = {name: prism("mock", str(SPECS / f"{name}-2026-03-15.json"))
               for name in ("contacts", "batches")}
    try:
        for server in servers.values():
            server.start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


class ViolationLog:
    """Collects Prism's ``sl-violations`` headers from every response a session receives."""

    def __init__(self, session: requests.Session) -> None:
        self.violations: list[str] = []
        session.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        if "sl-violations" in response.headers:
            where = f"{response.request.method} {response.url}"
            self.violations.append(f"{where}: {response.headers['sl-violations']}")


def hook_for(monkeypatch, conn_id: str, url: str) -> tuple[OmnisendHook, ViolationLog]:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", omnisend_conn_uri(url, max_attempts=1))
    hook = OmnisendHook(conn_id)
    return hook, ViolationLog(hook.client.session)


CONTACT = {
    "identifiers": [{"type": "email", "id": "ann@example.com", "sendWelcomeMessage": False}],
    "firstName": "Ann", "lastName": "Lee", "countryCode": "LT", "city": "Vilnius", "postalCode": "01100",
    "tags": ["segment: VIP"], "customProperties": {"ltv": "120.5"},
}


def test_every_hook_method_conforms_to_the_official_spec(prism_mocks, monkeypatch):
    contacts, log_c = hook_for(monkeypatch, "prism_contacts", prism_mocks["contacts"].base_url)
    batches, log_b = hook_for(monkeypatch, "prism_batches", prism_mocks["batches"].base_url)
    assert contacts.upsert_contact(CONTACT)
    assert contacts.add_tags(["segment: VIP"], [f"u{i}@example.com" for i in range(300)]) == 2
    assert contacts.remove_tags(["segment: VIP"], ["u1@example.com"],
                                contact_ids=["65f1c0ffee0000000000abcd"]) == 2
    listed = list(contacts.list_contacts(tag="segment: VIP", page_size=250))
    assert isinstance(listed, list)
    ok, message = contacts.test_connection()
    assert ok, message
    created = batches.create_batch([CONTACT] * 100)
    assert "batchID" in created
    assert "batchID" in batches.get_batch(created["batchID"])
    assert batches.get_batch_items(created["batchID"]) is not None
    assert "batches" in batches.list_batches(endpoint="contacts", limit=250)
    assert log_c.violations == [] and log_b.violations == []


def test_prism_does_catch_a_violation(prism_mocks, monkeypatch):
    """The harness can fail: an empty batch breaks the spec's minItems and Prism says so."""
    batches, log = hook_for(monkeypatch, "prism_bad", prism_mocks["batches"].base_url)
    with pytest.raises(Exception, match=r"HTTP (400|422)"):
        batches.client.request("POST", "/batches",
                               json={"method": "POST", "endpoint": "contacts", "items": []})
    assert any("minItems" in v for v in log.violations)


@pytest.mark.parametrize("spec", ["contacts", "batches"])
def test_emulator_responses_conform_through_prism_proxy(emulator, monkeypatch, spec):
    with prism("proxy", str(SPECS / f"{spec}-2026-03-15.json"), emulator.api_url) as proxy:
        hook, log = hook_for(monkeypatch, f"prism_proxy_{spec}", proxy.base_url)
        if spec == "contacts":
            hook.upsert_contact(CONTACT)
            hook.upsert_contact({**CONTACT, "firstName": "Anna"})
            hook.add_tags(["vip"], ["ann@example.com"])
            assert [c["email"] for c in hook.list_contacts(email="ann@example.com")] == ["ann@example.com"]
        else:
            created = hook.create_batch([CONTACT, {"identifiers": [{"type": "email", "id": "not-an-email"}]}])
            emulator.wait_batches_done(timeout=30)
            assert hook.get_batch(created["batchID"])["status"] == "finished"
            items = hook.get_batch_items(created["batchID"])
            assert len(items["errors"]) == 1
            hook.list_batches(endpoint="contacts")
    assert log.violations == []


def test_payloads_with_every_mapped_feature_conform(prism_mocks, monkeypatch):
    """Items as the export builds them (national phone converted, typed custom properties, statuses
    with statusChangedAt, consent) pass POST /contacts and POST /batches of the 2026-03-15 spec."""
    table = pa.table({
        "E": ["ann@example.fr", "bob@example.de"], "P": ["06 12 34 56 78", "030 1234567"],
        "C": ["France", "Allemagne"], "LTV": ["120,5", "80"], "VIP": ["True", "False"],
        "SINCE": ["2024-01-31", "2023-05-01 10:00:00"], "ST": ["subscribed", "unsubscribed"],
        "AT": ["2026-03-01T10:00:00Z", "2026-02-01T08:30:00+01:00"], "IP": ["203.0.113.7", None],
    })
    spec = MappingSpec.build(
        {"email": "E", "phone": "P", "countryCode": "C"}, segment="VIP",
        custom_properties={"ltv": "LTV", "vip": "VIP", "since": "SINCE"},
        custom_property_types={"ltv": "number", "vip": "boolean", "since": "date"},
        email_status="ST", sms_status="ST", status_changed_at="AT",
        consent={"createdAt": "AT", "source": {"constant": "customer-insights"}, "ip": "IP"})
    result = normalize_batch(table, spec, row_offset=0)
    assert result.warnings is None
    items = [orjson.loads(item) for item in build_items(result.valid, spec).to_pylist()]
    assert items[0]["identifiers"][1]["id"] == "+33612345678"
    assert items[0]["customProperties"] == {"ltv": 120.5, "vip": True, "since": "2024-01-31"}
    assert items[0]["identifiers"][0]["channels"]["email"]["statusChangedAt"] == "2026-03-01T10:00:00Z"
    assert_items_conform(prism_mocks, monkeypatch, items)


def test_list_properties_read_from_parquet_conform(prism_mocks, monkeypatch, tmp_path):
    """A Parquet list<string> column (nulls, empty lists, quotes, emoji) and a delimited text column
    declared "list", read by the lake reader and built as the export builds them: arrays of strings in
    customProperties pass POST /contacts and POST /batches of the 2026-03-15 spec."""
    lists = pa.array([["running", None, ' "yoga" '], None, [], ["émoji 🎉", "a\\b"]],
                     pa.large_list(pa.string()))
    pq.write_table(pa.table({"E": [f"u{i}@example.com" for i in range(4)], "T": lists,
                             "S": ["S;M", None, "L", " ; "]}), tmp_path / "part-0.parquet")
    export = resolve_export(str(tmp_path))
    spec = MappingSpec.build({"email": "E"}, custom_properties={"interests": "T", "sizes": "S"},
                             custom_property_types={"sizes": "list"}, segment="VIP",
                             source_types=dict(export.column_types))
    batch = next(iter_batches(export, columns=spec.source_columns))
    result = normalize_batch(batch, spec, row_offset=0)
    items = [orjson.loads(item) for item in build_items(result.valid, spec).to_pylist()]
    assert [item.get("customProperties") for item in items] == [
        {"interests": ["running", '"yoga"'], "sizes": ["S", "M"]}, None, {"sizes": ["L"]},
        {"interests": ["émoji 🎉", "a\\b"]}]
    assert_items_conform(prism_mocks, monkeypatch, items)


def assert_items_conform(prism_mocks, monkeypatch, items: list[dict]) -> None:
    """Each item through POST /contacts, all of them through POST /batches: no spec violation."""
    contacts, log_c = hook_for(monkeypatch, "prism_items_contacts", prism_mocks["contacts"].base_url)
    batches, log_b = hook_for(monkeypatch, "prism_items_batches", prism_mocks["batches"].base_url)
    for item in items:
        assert contacts.upsert_contact(item)
    assert "batchID" in batches.create_batch(items)
    assert log_c.violations == [] and log_b.violations == []
