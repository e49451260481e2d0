"""Versions, typed errors and the sliding-window limiter (pure logic, no network)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from airflow_provider_omnisend.api.errors import (
    OmnisendApiError,
    OmnisendAuthError,
    OmnisendCancelled,
    OmnisendRateLimitError,
    OmnisendValidationError,
    OmnisendVersionRetiredError,
    error_from_response,
    redact,
)
from airflow_provider_omnisend.api.ratelimit import SlidingWindowLimiter
from airflow_provider_omnisend.api.versions import get_version
from tests.support import FakeClock


def test_versions_headers_caps_and_base_urls():
    current, v5, v3 = get_version("2026-03-15"), get_version("v5"), get_version("v3")
    assert current.auth_headers("k") == {
        "Authorization": "Omnisend-API-Key k", "Omnisend-Version": "2026-03-15"}
    assert v5.auth_headers("k") == {"X-API-KEY": "k"} == v3.auth_headers("k")
    assert (current.batch_item_cap, v3.batch_item_cap) == (100, 1000)
    assert get_version(None).name == "2026-03-15"
    assert current.base_url(None) == "https://api.omnisend.com/api"
    assert v3.base_url("http://127.0.0.1:9/api") == "http://127.0.0.1:9/v3"
    assert current.base_url("api.example.test/api/") == "https://api.example.test/api"
    with pytest.raises(ValueError, match="Choose one of: 2026-03-15, v5, v3"):
        get_version("v4")


@pytest.mark.parametrize(
    ("status", "cls"),
    [(401, OmnisendAuthError), (403, OmnisendAuthError), (410, OmnisendVersionRetiredError),
     (429, OmnisendRateLimitError), (400, OmnisendValidationError), (500, OmnisendApiError)],
)
def test_error_types_and_message(status, cls):
    body = {"type": "https://problems.omnisend.com/x", "title": "Title here", "detail": "Detail here",
            "instance": "urn:omnisend:request:abc", "status": status}
    err = error_from_response(status, body, method="POST", path="/batches")
    assert type(err) is cls
    text = str(err)
    for part in (f"HTTP {status}", "Title here", "Detail here", "urn:omnisend:request:abc", "POST /batches"):
        assert part in text


def test_validation_error_carries_field_errors_and_rate_limit_hint():
    err = error_from_response(400, {"title": "Validation failed", "errors": [
        {"field": "items.0.identifiers", "code": "required", "message": "is required"}]},
        method="POST", path="/contacts")
    assert isinstance(err, OmnisendValidationError)
    assert err.errors[0]["field"] == "items.0.identifiers"
    assert "items.0.identifiers: is required" in str(err)
    limited = error_from_response(429, {"retryAfter": 7}, method="GET", path="/x", retry_after=99)
    assert limited.retry_after == 7  # the RFC 9457 body wins over a header
    assert error_from_response(429, "not json", method="GET", path="/x", retry_after=3).retry_after == 3


def test_limiter_never_exceeds_budget_in_any_window():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(limit=10, window=1.0, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(95):
        with limiter.slot():
            stamps.append(clock.now)
            clock.now += 0.01  # the request takes 10 ms
    for i, start in enumerate(stamps):
        assert sum(1 for s in stamps[i:] if s < start + 1.0) <= 10
    # 95 requests at 10 per window need at least 9 full windows.
    assert stamps[-1] >= 9.0


def test_limiter_counts_requests_in_flight():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(limit=2, window=1.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.acquire()
    assert limiter.in_window() == 2
    released = threading.Timer(0.05, limiter.release)
    released.start()
    limiter.acquire()  # blocks until the release, then one window after it
    assert clock.now >= 1.0
    released.join()


def test_limiter_penalty_holds_everyone_back():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(limit=5, window=1.0, clock=clock, sleep=clock.sleep)
    with limiter.slot():
        pass
    limiter.penalise(3.0)
    with limiter.slot():
        assert clock.now >= 3.0


def test_limiter_penalty_only_adds_waiting():
    """Issue #13 item 2: limit 10, 10 requests at t=0, a 429 with retryAfter 2 s at t=5. The back-off
    must not forget the ten: the eleventh waits until they leave the window (t=60), not t=7.01."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(limit=10, window=60.0, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        with limiter.slot():
            pass
    clock.now = 5.0
    limiter.penalise(2.0)
    limiter.penalise(0.5)  # a shorter back-off later never shortens the first
    clock.now = 7.01
    with limiter.slot():
        assert clock.now >= 60.0
    # and a back-off alone (budget free) still holds senders until it ends
    limiter.penalise(30.0)
    started = clock.now
    with limiter.slot():
        assert clock.now >= started + 30.0


def test_cancel_stops_a_limiter_wait_promptly():
    cancel = threading.Event()
    limiter = SlidingWindowLimiter(limit=1, window=60.0, cancel=cancel)
    limiter.acquire()
    threading.Timer(0.1, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(OmnisendCancelled):
        limiter.acquire()  # would wait for a release that never comes (in flight) without the cancel
    assert time.monotonic() - started < 2.0


def test_limiter_is_thread_safe():
    limiter = SlidingWindowLimiter(limit=1000, window=60.0)
    def work() -> None:
        for _ in range(100):
            with limiter.slot():
                pass

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert limiter.in_window() == 800
    with pytest.raises(ValueError):
        SlidingWindowLimiter(limit=0)


def test_cancel_stops_the_retry_sleep_promptly():
    """A call retrying a refused connection with a long back-off lets go as soon as ``cancel`` is set,
    and a cancelled client sends nothing more."""
    import socket

    from airflow_provider_omnisend.api.client import OmnisendClient

    with socket.socket() as probe:  # a port nobody listens on: every attempt is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    version = get_version(None)
    client = OmnisendClient(base_url=version.base_url(f"http://127.0.0.1:{port}/api"), api_key="k",
                            version=version, timeout=1, backoff_initial=30.0, backoff_max=30.0)
    threading.Timer(0.2, client.cancel.set).start()
    started = time.monotonic()
    with pytest.raises(OmnisendCancelled):
        client.ping()
    assert time.monotonic() - started < 3.0
    sent = client.stats["requests"]
    with pytest.raises(OmnisendCancelled):
        client.ping()
    assert client.stats["requests"] == sent


_TAIL = "TAIL-9d1"


@pytest.mark.parametrize("value", [
    f"abc'def-{_TAIL}", f'abc"def-{_TAIL}', f"a,b}}c]d;e-{_TAIL}", f"\"abc'def-{_TAIL}\"",
    f"abc\\\"de'f-{_TAIL}", f"Bearer abc\\'x,{{'y'}}-{_TAIL}",
])
def test_an_echoed_header_value_is_redacted_to_its_end(value):
    """A header value the client does not know (no secret given) is hidden whole however it is quoted:
    raw, JSON, repr, JSON in JSON, repr in JSON; JSON stays JSON."""
    headers = {"Host": "h", "X-API-KEY": value, "Authorization": value, "Accept": "*/*"}
    raw = " ".join(f"{k}: {v}" for k, v in headers.items())
    texts = [f"X-API-KEY: {value}", f"{raw}\r\nNext: 1", repr(headers), json.dumps(headers),
             json.dumps({"detail": f"headers {headers!r} raw {raw}", "errors": [json.dumps(headers)]}),
             json.dumps({"echo": json.dumps({"echo": json.dumps(headers)})}), f"<td>x-api-key={value}</td>"]
    for text in texts:
        clean = redact(text)
        assert _TAIL not in clean and "***" in clean, (text, clean)
        if text.startswith("{\""):
            assert json.loads(clean)  # a success body is still parsed after redaction
    assert redact(json.dumps(headers)) == json.dumps({**headers, "X-API-KEY": "***", "Authorization": "***"})
