"""OmnisendHook against the emulator running as a real process on 127.0.0.1."""

from __future__ import annotations

import logging
import threading

import pytest
import requests
from airflow.providers.http.hooks.http import HttpHook

from airflow_provider_omnisend.api.errors import (
    OmnisendApiError,
    OmnisendAuthError,
    OmnisendConfigError,
    OmnisendVersionRetiredError,
)
from airflow_provider_omnisend.hooks.omnisend import OmnisendHook
from airflow_provider_omnisend.testing.emulator import EmulatorServer
from tests.support import TEST_API_KEY, TIME_SCALE, omnisend_conn_uri

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def contact(email: str, **fields: object) -> dict:
    return {"identifiers": [{"type": "email", "id": email, "sendWelcomeMessage": False}], **fields}


def sent(emulator, method: str, route: str) -> int:
    return sum(n for key, n in emulator.state()["requests"].items() if key.startswith(f"{method} ")
               and key.split(" ", 1)[1].rstrip("/").endswith(route))


def test_upsert_and_batches_round_trip(emulator, omnisend_conn):
    hook = OmnisendHook(omnisend_conn())
    created = hook.upsert_contact(contact("ann@example.com", firstName="Ann"))
    assert created["id"]
    batch = hook.create_batch([contact(f"user{i}@example.com", lastName=f"L{i}") for i in range(100)])
    assert batch["totalCount"] == 100
    emulator.wait_batches_done(timeout=30)
    summary = hook.get_batch(batch["batchID"])
    assert summary["status"] == "finished" and summary["finishedCount"] == 100
    items = hook.get_batch_items(batch["batchID"])
    assert len(items["responses"]) == 100 and not items["errors"]
    listed = hook.list_batches()
    assert batch["batchID"] in [b["batchID"] for b in listed["batches"]]
    stored = {c["email"]: c for c in emulator.contacts()}
    assert stored["user7@example.com"]["lastName"] == "L7"
    assert stored["ann@example.com"]["firstName"] == "Ann"


def test_batch_caps_per_version(emulator, omnisend_conn):
    hook = OmnisendHook(omnisend_conn())
    with pytest.raises(ValueError, match="batch cap of 100"):
        hook.create_batch([contact(f"u{i}@example.com") for i in range(101)])
    assert sent(emulator, "POST", "/batches") == 0  # refused before sending
    legacy = OmnisendHook(omnisend_conn("omnisend_v3", api_version="v3"))
    assert legacy.settings.base_url.endswith("/v3")
    batch = legacy.create_batch([contact(f"v3user{i}@example.com") for i in range(1000)])
    assert batch["totalCount"] == 1000
    with pytest.raises(ValueError, match="batch cap of 1000"):
        legacy.create_batch([contact(f"x{i}@example.com") for i in range(1001)])


def test_headers_per_version(emulator, omnisend_conn):
    current = OmnisendHook(omnisend_conn()).get_conn()
    assert current.headers["Authorization"] == f"Omnisend-API-Key {TEST_API_KEY}"
    assert current.headers["Omnisend-Version"] == "2026-03-15"
    legacy = OmnisendHook(omnisend_conn("omnisend_v5", api_version="v5")).get_conn()
    assert legacy.headers["X-API-KEY"] == TEST_API_KEY
    assert "Omnisend-Version" not in legacy.headers and "Authorization" not in legacy.headers
    # The emulator really authenticates each generation by its own header.
    assert OmnisendHook(omnisend_conn("omnisend_v5", api_version="v5")).create_batch(
        [contact("v5@example.com")])["totalCount"] == 1


def test_tags_in_chunks_of_250_and_list_paging(emulator, omnisend_conn):
    hook = OmnisendHook(omnisend_conn())
    emails = [f"t{i}@example.com" for i in range(600)]
    for start in range(0, 600, 100):
        hook.create_batch([contact(e) for e in emails[start:start + 100]])
    emulator.wait_batches_done(timeout=30)
    assert hook.add_tags(["vip"], emails) == 3
    listed = _wait_for(lambda: list(hook.list_contacts(tag="vip", page_size=250)), 600)
    assert {c["email"] for c in listed} == set(emails)
    assert hook.remove_tags(["vip"], emails[:300]) == 2
    remaining = _wait_for(lambda: list(hook.list_contacts(tag="vip")), 300)
    assert {c["email"] for c in remaining} == set(emails[300:])


def _wait_for(fetch, expected: int, timeout: float = 10.0) -> list:
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if len(result) == expected or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def test_wrong_key_is_not_retried(emulator, omnisend_conn):
    hook = OmnisendHook(omnisend_conn("omnisend_bad", api_key="wrong-key-123456"))
    with pytest.raises(OmnisendAuthError) as err:
        hook.create_batch([contact("a@example.com")])
    assert "HTTP 401" in str(err.value) and "API key" in str(err.value)
    assert emulator.state()["responses"].get("401") == 1
    ok, message = hook.test_connection()
    assert not ok and "401" in message


def test_retired_version_410():
    with EmulatorServer(api_key=TEST_API_KEY, time_scale=TIME_SCALE,
                        extra_args=["--retired-version", "2026-03-15"]) as emu:
        mp = pytest.MonkeyPatch()
        mp.setenv("AIRFLOW_CONN_OMNISEND_RETIRED", omnisend_conn_uri(emu.api_url))
        try:
            hook = OmnisendHook("omnisend_retired")
            with pytest.raises(OmnisendVersionRetiredError, match="2026-03-15"):
                hook.create_batch([contact("a@example.com")])
            ok, message = hook.test_connection()
            assert not ok and "410" in message
        finally:
            mp.undo()


def test_429_bursts_and_5xx_are_retried(emulator, omnisend_conn):
    hook = OmnisendHook(omnisend_conn())
    emulator.configure(burst_429=3)
    assert hook.create_batch([contact("r@example.com")])["totalCount"] == 1
    assert hook.client.stats["rate_limited"] == 3
    emulator.configure(error_rate=0.5, seed=7)
    for i in range(10):
        hook.create_batch([contact(f"e{i}@example.com")])
    assert hook.client.stats["http_500"] + hook.client.stats["http_503"] > 0
    emulator.configure(error_rate=1.0)
    with pytest.raises(OmnisendApiError) as err:
        hook.get_batch("000000000000000000000000")
    assert err.value.status in (500, 503)
    emulator.configure(error_rate=0.0)
    with pytest.raises(OmnisendApiError) as err:
        hook.get_batch("000000000000000000000000")
    assert err.value.status == 404  # not retried: a fix is needed, not patience


def test_timeouts_and_dropped_connections_are_retried(emulator, omnisend_conn):
    hook = OmnisendHook(omnisend_conn(timeout=0.5))
    emulator.configure(timeout_rate=0.3, timeout_s=2, drop_rate=0.3, seed=3)
    for i in range(8):
        hook.create_batch([contact(f"d{i}@example.com")])
    stats = hook.client.stats
    assert stats["timeouts"] + stats["connection_errors"] > 0
    assert stats["retries"] >= stats["timeouts"] + stats["connection_errors"]


def test_test_connection_ok_and_unreachable(emulator, omnisend_conn, monkeypatch):
    ok, message = OmnisendHook(omnisend_conn()).test_connection()
    assert ok and "2026-03-15" in message
    monkeypatch.setenv("AIRFLOW_CONN_OMNISEND_DOWN", omnisend_conn_uri("http://127.0.0.1:9/api"))
    ok, message = OmnisendHook("omnisend_down").test_connection()
    assert not ok and "Could not reach Omnisend" in message


def test_privacy_and_allowed_dags_refuse_before_sending(emulator, omnisend_conn):
    hook = OmnisendHook(omnisend_conn("omnisend_private", privacy_acknowledged=False))
    with pytest.raises(OmnisendConfigError) as err:
        hook.create_batch([contact("p@example.com")])
    assert "omnisend_private" in str(err.value) and "I agree: data privacy and compliance" in str(err.value)
    with pytest.raises(OmnisendConfigError):
        hook.add_tags(["x"], ["p@example.com"])
    conn_id = omnisend_conn("omnisend_marketing", allowed_dag_ids="marketing_*, crm_sync")
    with pytest.raises(OmnisendConfigError, match="DAG 'finance_report' is not allowed"):
        OmnisendHook(conn_id, dag_id="finance_report").create_batch([contact("p@example.com")])
    with pytest.raises(OmnisendConfigError, match="code outside a DAG"):
        OmnisendHook(conn_id).create_batch([contact("p@example.com")])
    assert sent(emulator, "POST", "/batches") == 0
    assert OmnisendHook(conn_id, dag_id="marketing_daily").create_batch([contact("p@example.com")])


def test_api_key_never_logged(emulator, omnisend_conn, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    hook = OmnisendHook(omnisend_conn())
    emulator.configure(burst_429=2)
    hook.create_batch([contact("k@example.com")])
    errors = []
    monkeypatch.setenv("AIRFLOW_CONN_OMNISEND_BADKEY",
                       omnisend_conn_uri(emulator.api_url, api_key="leaky-secret-98765"))
    try:
        OmnisendHook("omnisend_badkey").create_batch([contact("k@example.com")])
    except OmnisendAuthError as err:
        errors.append(str(err) + repr(err))
    assert errors
    text = caplog.text + "".join(errors) + repr(hook.client) + repr(hook.settings)
    assert TEST_API_KEY not in text and "leaky-secret-98765" not in text
    assert "retrying" in caplog.text  # the log did record the retries, so there was something to leak


def test_limiter_keeps_a_burst_of_2000_inside_the_budget(emulator, omnisend_conn):
    """2,000 requests from 16 threads at a time-scaled 300/min budget: the emulator's busiest window
    never exceeds the budget and it never answers 429."""
    hook = OmnisendHook(omnisend_conn(max_attempts=1))
    client = hook.get_client()
    batch = client.create_batch([contact("burst@example.com")])
    errors: list[Exception] = []

    def worker(n: int) -> None:
        try:
            for _ in range(n):
                client.get_batch(batch["batchID"])
        except Exception as err:  # collected: an assertion inside a thread would be lost
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(125,)) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    state = emulator.state()
    assert not errors
    assert state["responses_429"] == 0
    assert 0 < state["max_in_window"]["default"] <= 300
    assert client.stats["requests"] == 2001


def test_emulator_is_a_real_process(emulator):
    assert requests.get(f"{emulator.base_url}/_emulator/health", timeout=5).ok


def test_state_secret_is_the_api_key_unless_the_extra_sets_one(emulator, omnisend_conn):
    assert OmnisendHook(omnisend_conn()).state_secret() == TEST_API_KEY.encode()
    conn_id = omnisend_conn(state_secret="kept across key rotations")
    assert OmnisendHook(conn_id).state_secret() == b"kept across key rotations"


def test_session_adapter_and_extras_come_through_httphook(emulator, omnisend_conn, monkeypatch):
    """HttpHook builds the session: its keep-alive adapter (sized for max_in_flight) and its transport
    extras; the connection's settings (state_secret included) never become headers."""
    from requests_toolbelt.adapters.socket_options import TCPKeepAliveAdapter

    built: list[object] = []
    real = HttpHook._configure_session_from_mount_adapters
    monkeypatch.setattr(HttpHook, "_configure_session_from_mount_adapters",
                        lambda self, session: built.append(session) or real(self, session))
    hook = OmnisendHook(omnisend_conn(max_in_flight=6, state_secret="hush-0815",
                                      proxies={"https": "http://127.0.0.1:9"}, trust_env="false"))
    session = hook.client.session
    assert built == [session]  # HttpHook.get_conn made the client's session
    adapter = session.get_adapter(emulator.api_url)
    assert isinstance(adapter, TCPKeepAliveAdapter) and adapter._pool_maxsize == 12
    assert session.proxies == {"https": "http://127.0.0.1:9"} and session.trust_env is False
    assert session.headers["Authorization"] == f"Omnisend-API-Key {TEST_API_KEY}"
    settings = {"state_secret", "max_in_flight", "privacy_acknowledged", "proxies"}
    assert not settings & {k.lower() for k in session.headers}
    assert "hush-0815" not in repr(dict(session.headers))


def test_inherited_run_goes_through_the_client_and_raw_calls_are_refused(emulator, omnisend_conn):
    hook = OmnisendHook(omnisend_conn())
    page = hook.run("contacts", data={"limit": 1})
    assert "contacts" in page and hook.client.stats["requests"] == 1  # counted: through the limiter
    writer = OmnisendHook(omnisend_conn("omnisend_private", privacy_acknowledged=False), method="POST")
    with pytest.raises(OmnisendConfigError, match="privacy"):
        writer.run("contacts", json=contact("gate@example.com"))
    assert sent(emulator, "POST", "/contacts") == 0
    posted = OmnisendHook(omnisend_conn(), method="POST").run("contacts", json=contact("run@example.com"))
    assert posted["id"] and sent(emulator, "POST", "/contacts") == 1
    with pytest.raises(OmnisendConfigError, match="headers"):
        hook.run("contacts", headers={"X-API-KEY": "other"})
    with pytest.raises(OmnisendConfigError, match="rate limiter"):
        hook.run_and_check(requests.Session(), requests.Request("GET", emulator.api_url).prepare(), {})
    with pytest.raises(OmnisendConfigError, match="not supported"):
        hook.run_with_advanced_retry({}, "contacts")
