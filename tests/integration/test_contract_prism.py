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

import pytest
import requests

from airflow_provider_omnisend.hooks.omnisend import OmnisendHook
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
