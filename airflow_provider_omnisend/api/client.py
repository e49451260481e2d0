"""OmnisendClient: typed calls over one HTTP session, rate-limited and retried.

Retries (tenacity) cover what can succeed on a second try: 429 (waiting Omnisend's ``retryAfter``, else a
``Retry-After`` header, else exponential backoff with jitter), 5xx, timeouts and dropped connections.
400, 401, 403, 404, 410 and 422 are never retried: they need a fix, not patience. Every attempt takes a
slot from the limiter, so retries stay inside the budget too.

Hostile or misconfigured servers: redirects are never followed (a 3xx would carry the key header and the
contacts to another host, or turn a POST into a GET whose answer looks like success); bodies are streamed
and capped (``max_response_bytes``); a server's wait hint is capped (``max_retry_wait``); every server
text is redacted of the key before it reaches a message or a log; plain http is refused for hosts other
than loopback unless ``allow_insecure_http``; credentials in the base URL are refused (requests would
turn them into Basic auth in place of the key header).

``cancel`` (a ``threading.Event``, one per client unless given) stops everything promptly: once set, the
limiter's waits and the retry sleeps raise :class:`OmnisendCancelled` instead of sleeping on, and no new
attempt is sent. A task's ``on_kill`` sets it so a killed export lets go within a fraction of a second.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
import tenacity
import urllib3
from requests.adapters import HTTPAdapter

from airflow_provider_omnisend.api.errors import (
    OmnisendApiError,
    OmnisendCancelled,
    OmnisendConfigError,
    OmnisendRateLimitError,
    error_from_response,
    redact,
)
from airflow_provider_omnisend.api.ratelimit import SlidingWindowLimiter
from airflow_provider_omnisend.api.versions import MAX_BATCH_BODY_BYTES, ApiVersion

log = logging.getLogger(__name__)

#: /contacts/tags has its own, smaller budget (docs/omnisend-api.md, section 4).
TAGS_REQUESTS_PER_MINUTE = 60
#: Selector cap per tags call (docs/omnisend-api.md, section 6).
TAGS_MAX_EMAILS = 250
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Longest wait (s) a 429's hint or the backoff may impose before the call fails instead.
DEFAULT_MAX_RETRY_WAIT = 900.0
#: Largest response body read (bytes); Omnisend's biggest pages are a few hundred kB.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_CHUNK = 64 * 1024


class _Transient(Exception):
    """Internal: an attempt failed in a way worth another try."""

    def __init__(self, error: OmnisendApiError) -> None:
        super().__init__(str(error))
        self.error = error


class OmnisendClient:
    """One brand's API, as a connection sees it.

    ``requests_per_minute`` is this connection's share of the brand's 400/min; ``window_seconds`` is the
    length of Omnisend's window (60; tests and benchmarks shrink it together with the emulator's time
    scale). ``max_in_flight`` sizes the HTTP connection pool for concurrent senders.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        version: ApiVersion,
        requests_per_minute: int = 300,
        window_seconds: float = 60.0,
        timeout: float = 30.0,
        max_attempts: int = 8,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        max_in_flight: int = 8,
        session: requests.Session | None = None,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        allow_insecure_http: bool = False,
        cancel: threading.Event | None = None,
        limiters: Mapping[str, Any] | None = None,
    ) -> None:
        api_key = checked_api_key(api_key)
        check_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self._secrets = (api_key,)
        self.max_retry_wait = max_retry_wait
        self.max_response_bytes = max_response_bytes
        self.base_url = base_url.rstrip("/")
        self.version = version
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_in_flight = max_in_flight
        self.window_seconds = window_seconds
        self.requests_per_minute = requests_per_minute
        self.cancel = cancel if cancel is not None else threading.Event()
        # Given limiters (the hook's brand-wide ones, shared through a store) or this client's own.
        self.limiters = dict(limiters) if limiters else {
            "default": SlidingWindowLimiter(limit=requests_per_minute, window=window_seconds,
                                            cancel=self.cancel),
            "tags": SlidingWindowLimiter(
                limit=min(TAGS_REQUESTS_PER_MINUTE, requests_per_minute), window=window_seconds,
                cancel=self.cancel,
            ),
        }
        if session is None:  # a given session (the hook's, from HttpHook) brings its own adapter
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(4, max_in_flight * 2))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session
        self.session.headers.update(version.auth_headers(api_key))
        harden_session(self.session)
        self.session.headers.setdefault("Accept", "application/json")
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the key
        return f"OmnisendClient(base_url={self.base_url!r}, version={self.version.name!r})"

    # ------------------------------------------------------------------ transport
    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        bucket: str = "default",
    ) -> Any:
        """Send one call with rate limiting and retries; return the parsed JSON body (None if empty)."""
        data = body if body is not None else (orjson.dumps(json) if json is not None else None)
        headers = {"Content-Type": "application/json"} if data is not None else None
        limiter = self.limiters[bucket]
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=self._stop,
            wait=self._wait,
            reraise=True,
            before_sleep=self._before_sleep,
            sleep=self._retry_sleep,
        )
        try:
            for attempt in retrying:
                with attempt, limiter.slot(self.cancel):
                    if self.cancel.is_set():
                        raise OmnisendCancelled(f"Cancelled before {method} {path} was sent to Omnisend.")
                    self._count("requests")
                    if attempt.retry_state.attempt_number > 1:
                        self._count("retries")
                        if method != "GET":
                            self._count("write_retries")
                    return self._send_once(method, path, data, headers, params)
        except _Transient as exhausted:
            raise exhausted.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_once(self, method: str, path: str, data: bytes | None, headers: dict | None,
                   params: Mapping[str, Any] | None) -> Any:
        url = f"{self.base_url}{path}"
        try:
            response = self.session.request(method, url, data=data, headers=headers, params=params,
                                            timeout=self.timeout, allow_redirects=False, stream=True)
            content = self._read_body(response, method, path)
        except requests.Timeout as err:
            self._count("timeouts")
            raise _Transient(OmnisendApiError(
                f"Omnisend {method} {path} timed out after {self.timeout:.0f}s ({type(err).__name__})",
                method=method, path=path)) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as err:
            self._count("connection_errors")
            raise _Transient(OmnisendApiError(
                f"Omnisend {method} {path} failed: connection error ({type(err).__name__}). "
                f"Check the connection's base URL {self.base_url!r} and the network.",
                method=method, path=path)) from None
        log.debug("omnisend %s %s -> %s", method, path, response.status_code)
        self._count(f"http_{response.status_code}")
        if 300 <= response.status_code < 400:
            raise _redirect_error(response, method, path)
        try:
            parsed = orjson.loads(content) if content else None
        except orjson.JSONDecodeError:
            parsed = None
        if response.status_code < 400:
            return parsed
        error = error_from_response(response.status_code, parsed, method=method, path=path,
                                    retry_after=_retry_after_header(response))
        if response.status_code in RETRYABLE_STATUSES:
            if isinstance(error, OmnisendRateLimitError):
                self._count("rate_limited")
                self._check_wait(error)
                if error.retry_after:
                    # Someone else sharing the brand used the budget: hold all our senders back.
                    self.limiters["tags" if "/tags" in path else "default"].penalise(error.retry_after)
            raise _Transient(error)
        raise error

    def _read_body(self, response: requests.Response, method: str, path: str) -> bytes:
        """The body, read up to ``max_response_bytes`` within ``timeout`` seconds, redacted of the key.

        ``read1`` returns after one socket read, so a server dripping a byte at a time (each read within
        the socket timeout) still meets the deadline instead of holding a limiter slot for hours."""
        cap = self.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.timeout
        try:
            while chunk := _read_some(response):
                if time.monotonic() > deadline:
                    raise requests.exceptions.ReadTimeout(f"the body took over {self.timeout:.0f}s")
                size += len(chunk)
                if size > cap:
                    raise OmnisendApiError(
                        f"Omnisend {method} {path} answered HTTP {response.status_code} with a body over "
                        f"{cap} bytes; it was not read further. Check the connection's base URL points at "
                        "Omnisend, or raise the extra max_response_bytes.", status=response.status_code,
                        method=method, path=path)
                chunks.append(chunk)
        finally:
            response.close()
        body = b"".join(chunks)
        if not body:
            return body
        text = body.decode("utf-8", errors="replace")
        clean = redact(text, self._secrets)
        return body if clean == text else clean.encode()

    def _check_wait(self, error: OmnisendRateLimitError) -> None:
        """Fail instead of sleeping longer than ``max_retry_wait`` (and holding the limiter that long)."""
        if error.retry_after is not None and error.retry_after > self.max_retry_wait:
            raise OmnisendRateLimitError(
                f"{error} | Omnisend asked to wait {error.retry_after:.0f}s before retrying, more than the "
                f"connection's max_retry_wait of {self.max_retry_wait:.0f}s: the call failed instead. Retry "
                "the task later, or raise the extra max_retry_wait.", retry_after=error.retry_after,
                status=error.status, title=error.title, detail=error.detail, instance=error.instance,
                problem_type=error.problem_type, method=error.method, path=error.path)

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        """``max_attempts`` tries; a 429 gets five times as many, since Omnisend says when to come back
        and another integration's burst on the shared budget is no reason to fail an export."""
        exc = state.outcome.exception() if state.outcome else None
        rate_limited = isinstance(exc, _Transient) and isinstance(exc.error, OmnisendRateLimitError)
        return state.attempt_number >= self.max_attempts * (5 if rate_limited else 1)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if (isinstance(exc, _Transient) and isinstance(exc.error, OmnisendRateLimitError)
                and exc.error.retry_after is not None):
            return exc.error.retry_after
        backoff = tenacity.wait_random_exponential(multiplier=self.backoff_initial,
                                                   max=min(self.backoff_max, self.max_retry_wait))
        return backoff(state)

    def _retry_sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise OmnisendCancelled("Cancelled while waiting to retry an Omnisend call.")

    @staticmethod
    def _before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = exc.error if isinstance(exc, _Transient) else exc
        log.warning("Omnisend call failed (attempt %d), retrying in %.1fs: %s",
                    state.attempt_number, state.next_action.sleep if state.next_action else 0.0, reason)

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    # ------------------------------------------------------------------ contacts
    def upsert_contact(self, contact: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update one contact (upsert by e-mail). Prefer batches for more than a few."""
        return self.request("POST", "/contacts", json=contact) or {}

    def get_contact(self, contact_id: str) -> dict[str, Any]:
        return self.request("GET", f"/contacts/{contact_id}") or {}

    def list_contacts(self, *, page_size: int = 250, **filters: Any) -> Iterator[dict[str, Any]]:
        """Yield contacts, following cursor paging (2026) or ``paging.next`` links (legacy)."""
        params: dict[str, Any] = {"limit": page_size, **{k: v for k, v in filters.items() if v is not None}}
        path = "/contacts"
        while True:
            page = self.request("GET", path, params=params) or {}
            yield from page.get("contacts", [])
            paging = page.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if paging.get("hasMore") and after and after != params.get("after"):
                params = {**params, "after": after}  # a repeated cursor would loop forever: stop
                continue
            next_url = paging.get("next")
            if next_url and not self.version.name.startswith("2026") and next_url.startswith(self.base_url):
                path, params = next_url[len(self.base_url):], {}
                continue
            return

    # ------------------------------------------------------------------ batches
    def create_batch(
        self,
        items: Sequence[Mapping[str, Any]] | None = None,
        endpoint: str = "contacts",
        method: str = "POST",
        *,
        body: bytes | None = None,
    ) -> dict[str, Any]:
        """POST /batches. Pass ``items`` (dicts), or a prebuilt ``body`` (the export engine's hot path).

        Item count and body size are checked against the version's caps before anything is sent.
        """
        if body is None:
            if not items:
                raise ValueError("create_batch needs at least one item")
            if len(items) > self.version.batch_item_cap:
                raise ValueError(
                    f"{len(items)} items exceed the {self.version.name} batch cap of "
                    f"{self.version.batch_item_cap}; split them")
            body = orjson.dumps({"method": method, "endpoint": endpoint, "items": list(items)})
        if len(body) > MAX_BATCH_BODY_BYTES:
            raise ValueError(f"batch body is {len(body)} bytes; Omnisend's limit is {MAX_BATCH_BODY_BYTES}")
        return self.request("POST", "/batches", body=body) or {}

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        return self.request("GET", f"/batches/{batch_id}") or {}

    def get_batch_items(self, batch_id: str) -> dict[str, Any]:
        return self.request("GET", f"/batches/{batch_id}/items") or {}

    def list_batches(self, *, endpoint: str = "contacts", offset: int = 0, limit: int = 250,
                     status: str | None = None) -> dict[str, Any]:
        """One page of GET /batches (offset paging): many batches' counts for the price of one call."""
        params: dict[str, Any] = {"endpoint": endpoint, "offset": offset, "limit": limit}
        if status:
            params["status"] = status
        return self.request("GET", "/batches", params=params) or {}

    # ------------------------------------------------------------------ tags
    def add_tags(self, tags: Sequence[str], emails: Sequence[str]) -> int:
        """Tag contacts by e-mail, 250 per call within /contacts/tags' 60/min. Returns calls made."""
        return self._tags("POST", tags, emails=emails)

    def remove_tags(self, tags: Sequence[str], emails: Sequence[str] = (), *,
                    contact_ids: Sequence[str] = ()) -> int:
        """Remove tags (never anything more destructive), 250 selectors per call. Returns calls made."""
        return self._tags("DELETE", tags, emails=emails, contact_ids=contact_ids)

    def _tags(self, method: str, tags: Sequence[str], *, emails: Sequence[str] = (),
              contact_ids: Sequence[str] = ()) -> int:
        if self.version.legacy:
            raise OmnisendConfigError(
                f"Tag calls need API version 2026-03-15; the connection uses {self.version.name}.")
        if not tags or len(tags) > 100:
            raise ValueError(f"a tags call takes 1 to 100 tags, got {len(tags)}")
        calls = 0
        for selector, values in (("emails", list(emails)), ("contactIDs", list(contact_ids))):
            for start in range(0, len(values), TAGS_MAX_EMAILS):
                chunk = values[start:start + TAGS_MAX_EMAILS]
                self.request(method, "/contacts/tags", json={"tags": list(tags), selector: chunk},
                             bucket="tags")
                calls += 1
        return calls

    # ------------------------------------------------------------------ health
    def ping(self) -> None:
        """One cheap authenticated call (raises the typed error on failure)."""
        self.request("GET", "/contacts", params={"limit": 1})

    def close(self) -> None:
        self.session.close()


def checked_api_key(api_key: str | None) -> str:
    """The key without the whitespace a paste or a secrets file leaves around it; a key with a control
    character inside is refused (requests would echo it in an InvalidHeader error, past the masker)."""
    key = (api_key or "").strip()
    if not key:
        raise OmnisendConfigError("The Omnisend API key is empty: put it in the connection's API key field.")
    bad = [i for i, ch in enumerate(key) if ord(ch) < 32 or ord(ch) == 127]
    if bad:
        raise OmnisendConfigError(
            f"The Omnisend API key contains a control character (at position {bad[0] + 1} of {len(key)}): "
            "paste it again in the connection's API key field, without line breaks or tabs.")
    return key


def check_base_url(base_url: str, *, allow_insecure_http: bool = False) -> None:
    """Refuse credentials in the URL, and plain http to anything but loopback unless explicitly allowed."""
    parts = urlsplit(base_url)
    if parts.username is not None or parts.password is not None:
        shown = f"{parts.scheme}://***@{parts.hostname or ''}{parts.path}"
        raise OmnisendConfigError(
            f"The Omnisend base URL {shown!r} contains credentials (user:password@). Remove them from the "
            "connection's host: the API key goes in the API key field.")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname or ""):
        raise OmnisendConfigError(
            f"The Omnisend base URL {base_url!r} uses plain http to {parts.hostname!r}, which would send "
            "the API key unencrypted. Use https://, or set the connection extra allow_insecure_http to "
            "true for a trusted local network (e.g. the emulator in docker compose).")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def harden_session(session: requests.Session) -> requests.Session:
    """No Basic auth from URL userinfo or ~/.netrc in place of the key header."""
    session.auth = _no_auth
    return session


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def _redirect_error(response: requests.Response, method: str, path: str) -> OmnisendApiError:
    target = urlsplit(response.headers.get("Location") or "")
    host = target.hostname or "(same host)" if target.path or target.hostname else "(no Location)"
    return OmnisendApiError(
        f"Omnisend {method} {path} answered HTTP {response.status_code}, a redirect to host {host!r}; "
        "redirects are never followed (they would carry the API key and the contacts elsewhere). Check "
        "the connection's base URL (https://api.omnisend.com/api) and any proxy in between.",
        status=response.status_code, method=method, path=path)


def _read_some(response: requests.Response) -> bytes:
    """At most one socket read of the body, with urllib3's errors as requests' (as iter_content does)."""
    try:
        return response.raw.read1(_CHUNK, decode_content=True)
    except urllib3.exceptions.ReadTimeoutError as err:
        raise requests.exceptions.ReadTimeout(str(err)) from err
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as err:
        raise requests.exceptions.ChunkedEncodingError(str(err)) from err


def _retry_after_header(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
