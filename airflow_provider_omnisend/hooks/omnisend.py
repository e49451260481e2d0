"""OmnisendHook: an Airflow connection of type ``omnisend`` turned into an authenticated client.

The connection holds the API key (password field), the base URL (host), and in its extra the fields the
provider declares: ``api_version``, ``privacy_acknowledged``, ``allowed_dag_ids`` and
``requests_per_minute``. Advanced extras: ``timeout`` (s), ``max_in_flight``, ``window_seconds`` (the
rate window, 60; shrunk only for tests against a time-scaled emulator), ``backoff_initial``,
``backoff_max``, ``max_attempts``, ``state_secret`` (see :meth:`OmnisendHook.state_secret`), and
HttpHook's ``proxies``/``verify``/``cert``/``trust_env``. Security extras: ``max_retry_wait`` (s, 900),
``max_response_bytes`` (16 MiB) and ``allow_insecure_http`` (plain http to a non-loopback host).
``brand``: the store's non-secret name in the segment Assets' URIs ``omnisend://<brand>/<segment>``
(default: the connection id).

Rate-limit extras (the budget is shared brand-wide through a store, see :mod:`..api.sharedlimit`):
``rate_limit_store`` — ``auto`` (default: Redis when ``redis_url`` or ``redis_conn_id`` is set, else
``local``), ``redis``, ``local`` (a SQLite file that the task processes of one host share, at
``rate_limit_path``, default ``$AIRFLOW_HOME/omnisend/ratelimit.sqlite``), ``memory`` (one process) or
``static`` (no store: each hook takes budget ÷ ``rate_share``, the old behaviour); ``redis_url`` or
``redis_conn_id`` (an Airflow Redis connection: host, port, password, extra ``db``/``ssl``),
``redis_prefix`` (key prefix, ``omnisend:rl``) and ``lease_ttl`` (s, default 2 × ``timeout`` + 10: how long
a request that never reports back keeps its slot, e.g. after a SIGKILL; keep it above ``timeout``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import quote

import requests
from airflow.providers.http.hooks.http import HttpHook
from requests_toolbelt.adapters.socket_options import TCPKeepAliveAdapter

from airflow_provider_omnisend.api.client import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRY_WAIT,
    TAGS_REQUESTS_PER_MINUTE,
    OmnisendClient,
    checked_api_key,
    harden_session,
)
from airflow_provider_omnisend.api.errors import OmnisendApiError, OmnisendConfigError
from airflow_provider_omnisend.api.sharedlimit import (
    MemoryStore,
    RedisStore,
    SQLiteStore,
    brand_key,
    process_limiter,
)
from airflow_provider_omnisend.api.versions import ApiVersion, get_version
from airflow_provider_omnisend.assets import check_brand

DEFAULT_REQUESTS_PER_MINUTE = 300
STORE_KINDS = ("auto", "redis", "local", "memory", "static")
BRAND_REQUESTS_PER_MINUTE = 400
_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f", ""})

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OmnisendConnSettings:
    """The connection's non-secret settings, parsed and checked (strings from the UI form included)."""

    conn_id: str
    base_url: str
    version: ApiVersion
    privacy_acknowledged: bool
    allowed_dag_ids: tuple[str, ...]
    requests_per_minute: int
    window_seconds: float
    timeout: float
    max_in_flight: int
    max_attempts: int
    backoff_initial: float
    backoff_max: float
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    allow_insecure_http: bool = False
    rate_limit_store: str = "auto"
    redis_url: str | None = None
    redis_conn_id: str | None = None
    redis_prefix: str = "omnisend:rl"
    rate_limit_path: str | None = None
    lease_ttl: float | None = None
    #: non-secret name of the Omnisend store, in the segment Assets' URIs (extra ``brand``; default the
    #: connection id)
    brand: str = ""

    @classmethod
    def from_connection(cls, conn: Any) -> OmnisendConnSettings:
        extra = conn.extra_dejson or {}
        where = f"Omnisend connection {conn.conn_id!r}"
        try:
            version = get_version(extra.get("api_version"))
        except ValueError as err:
            raise OmnisendConfigError(f"{where}: {err}") from None
        rpm = _number(extra, "requests_per_minute", DEFAULT_REQUESTS_PER_MINUTE, int, where)
        if not 1 <= rpm <= BRAND_REQUESTS_PER_MINUTE:
            raise OmnisendConfigError(
                f"{where}: requests_per_minute is {rpm}; it must be between 1 and the brand's "
                f"{BRAND_REQUESTS_PER_MINUTE} (default {DEFAULT_REQUESTS_PER_MINUTE}).")
        return cls(
            conn_id=conn.conn_id,
            base_url=version.base_url(conn.host),
            version=version,
            privacy_acknowledged=_flag(extra, "privacy_acknowledged", where),
            allowed_dag_ids=_dag_patterns(extra.get("allowed_dag_ids"), where),
            requests_per_minute=rpm,
            window_seconds=_number(extra, "window_seconds", 60.0, float, where),
            timeout=_number(extra, "timeout", 30.0, float, where),
            max_in_flight=_number(extra, "max_in_flight", 8, int, where),
            max_attempts=_number(extra, "max_attempts", 8, int, where),
            backoff_initial=_number(extra, "backoff_initial", 1.0, float, where),
            backoff_max=_number(extra, "backoff_max", 60.0, float, where),
            max_retry_wait=_number(extra, "max_retry_wait", DEFAULT_MAX_RETRY_WAIT, float, where),
            max_response_bytes=_number(extra, "max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES, int, where),
            allow_insecure_http=_flag(extra, "allow_insecure_http", where),
            rate_limit_store=_store_kind(extra, where),
            redis_url=str(extra.get("redis_url") or "") or None,
            redis_conn_id=str(extra.get("redis_conn_id") or "") or None,
            redis_prefix=str(extra.get("redis_prefix") or "omnisend:rl"),
            rate_limit_path=str(extra.get("rate_limit_path") or "") or None,
            lease_ttl=_number(extra, "lease_ttl", None, float, where),
            brand=_brand(extra.get("brand"), conn.conn_id, where),
        )


class OmnisendHook(HttpHook):
    """Interact with Omnisend through an ``omnisend`` connection.

    :param omnisend_conn_id: the connection id (default ``omnisend_default``).
    :param dag_id: the DAG using the hook, checked against the connection's allowed DAG ids; taken from
        the running task's context when not given.
    :param requests_per_minute: use less than the connection's budget; never more.
    :param rate_share: how many tasks share the connection's budget at once (the DAG's pool slots): this
        hook uses the budget divided by it, so together they stay within the brand's limit.
    :param method: the HTTP method of :meth:`run` (HttpHook's generic call), GET by default.
    """

    conn_name_attr = "omnisend_conn_id"
    default_conn_name = "omnisend_default"
    conn_type = "omnisend"
    hook_name = "Omnisend"

    def __init__(
        self,
        omnisend_conn_id: str = default_conn_name,
        *,
        dag_id: str | None = None,
        requests_per_minute: int | None = None,
        rate_share: int = 1,
        method: str = "GET",
    ) -> None:
        super().__init__(method=method, http_conn_id=omnisend_conn_id)
        self._keep_alive = (120, 20, 30)  # HttpHook's defaults: idle s, probes, interval s
        self.omnisend_conn_id = omnisend_conn_id
        self.dag_id = dag_id
        self.requested_rpm = requests_per_minute
        self.rate_share = max(1, int(rate_share))

    # ------------------------------------------------------------------ connection
    @cached_property
    def connection(self) -> Any:
        try:
            return self.get_connection(self.omnisend_conn_id)
        except Exception as err:
            raise OmnisendConfigError(
                f"Omnisend connection {self.omnisend_conn_id!r} could not be loaded ({type(err).__name__}). "
                "Create it in Admin > Connections (type Omnisend) or set AIRFLOW_CONN_"
                f"{self.omnisend_conn_id.upper()}.") from None

    @cached_property
    def settings(self) -> OmnisendConnSettings:
        return OmnisendConnSettings.from_connection(self.connection)

    def _api_key(self) -> str:
        raw = self.connection.password or ""
        if raw:
            _mask(raw)
        try:
            key = checked_api_key(raw)
        except OmnisendConfigError as err:
            raise OmnisendConfigError(f"Omnisend connection {self.omnisend_conn_id!r}: {err}") from None
        _mask(key)
        return key

    def state_secret(self) -> bytes:
        """The secret the incremental state's e-mail hashes are bound to (besides the random key stored
        with them): the extra's ``state_secret``, else the API key. Kept out of the state folder, so
        the folder alone tells nobody who is in a segment. Rotating it makes the next run send every
        contact once (the old snapshot can no longer be compared); set ``state_secret`` to keep the
        snapshots across API key rotations."""
        secret = str((self.connection.extra_dejson or {}).get("state_secret") or "")
        if secret:
            _mask(secret)
        return (secret or self._api_key()).encode()

    # ------------------------------------------------------------------ HttpHook's machinery
    # ``get_conn`` is HttpHook's own: it builds the session, applies the connection's transport extras
    # and mounts its keep-alive adapter. The steps below only adapt it to an Omnisend connection.
    def _set_base_url(self, connection: Any) -> None:
        self.base_url = self.settings.base_url  # the API version decides the path (/api, /v3, /v5)
        self._base_url_initialized = True

    def _configure_session_from_auth(self, session: requests.Session, connection: Any) -> requests.Session:
        harden_session(session)  # the key travels in the version's header, never as Basic auth
        session.headers.update(self.settings.version.auth_headers(self._api_key()))
        return session

    def _configure_session_from_extra(self, session: requests.Session, connection: Any,
                                      extra_options: dict[str, Any]) -> requests.Session:
        """HttpHook's transport extras (proxies, verify, cert, trust_env, ...); the rest of our extra is
        settings, not headers (HttpHook would send them all, ``state_secret`` included), so drop it."""
        session = super()._configure_session_from_extra(session, connection, extra_options)
        for key in connection.extra_dejson or {}:
            session.headers.pop(key, None)
        verify = session.verify
        if isinstance(verify, str) and verify.strip().lower() in _TRUE | _FALSE:
            verify = verify.strip().lower() in _TRUE
        if verify is False:
            log.warning("Omnisend connection %r has TLS certificate verification off (extra verify): the "
                        "API key can be read by anyone in the middle. Remove the extra, or set it to a CA "
                        "bundle path.", self.omnisend_conn_id)
        session.verify = verify
        session.trust_env = as_bool(session.trust_env)
        return session

    def get_conn(self, headers: dict[Any, Any] | None = None,
                 extra_options: dict[str, Any] | None = None) -> requests.Session:
        """HttpHook's session, keep-alive adapter sized for ``max_in_flight`` concurrent senders."""
        if self.adapter is None and self.keep_alive_adapter is not None:
            size = max(4, self.settings.max_in_flight * 2)
            self.keep_alive_adapter = TCPKeepAliveAdapter(
                idle=self._keep_alive[0], count=self._keep_alive[1], interval=self._keep_alive[2],
                pool_connections=2, pool_maxsize=size)
        return super().get_conn(headers, extra_options)

    # ------------------------------------------------------------------ HttpHook's generic calls
    def run(self, endpoint: str | None = None, data: dict[str, Any] | str | None = None,
            headers: dict[str, Any] | None = None, extra_options: dict[str, Any] | None = None,
            **request_kwargs: Any) -> Any:
        """Call any Omnisend endpoint (``method`` from the constructor) through the client: its rate
        limiter, retries and, for anything but GET, the privacy gate. Returns the parsed JSON body (not
        a ``requests.Response``). ``data`` is the query for GET and the JSON body otherwise; ``json=``
        is accepted too. Per-call headers and extra options are refused: auth and transport come from
        the connection."""
        if headers or extra_options or set(request_kwargs) - {"json"}:
            raise OmnisendConfigError(
                "OmnisendHook.run takes an endpoint and data (or json=) only; per-call headers, "
                f"extra_options and {sorted(set(request_kwargs) - {'json'})} are not supported. Auth and "
                "transport come from the Omnisend connection.")
        method = self.method
        if method != "GET":
            self.check_can_send()
        path = "/" + (endpoint or "").lstrip("/")
        if method == "GET":
            return self.client.request(method, path, params=data if isinstance(data, Mapping) else None)
        body = data.encode() if isinstance(data, str) else None
        payload = request_kwargs.get("json", data if isinstance(data, Mapping) else None)
        return self.client.request(method, path, json=payload, body=body)

    def run_and_check(self, *args: Any, **kwargs: Any) -> Any:
        raise OmnisendConfigError(
            "OmnisendHook.run_and_check would bypass the rate limiter, retries and privacy gate; use "
            "OmnisendHook.run(endpoint, data) or the typed methods (create_batch, add_tags, ...).")

    def run_with_advanced_retry(self, *args: Any, **kwargs: Any) -> Any:
        raise OmnisendConfigError(
            "OmnisendHook.run_with_advanced_retry is not supported: the client already retries what is "
            "worth retrying (429 with Omnisend's retryAfter, 5xx, timeouts) within the rate budget; use "
            "OmnisendHook.run(endpoint, data) or the typed methods.")

    @cached_property
    def client(self) -> OmnisendClient:
        """The connection's client. Its limiters are the brand's, shared through the connection's
        rate-limit store by every task, sensor and trigger (budget ÷ ``rate_share`` is only the
        fallback while the store is unreachable, or everything with ``rate_limit_store: static``)."""
        s = self.settings
        share = max(1, s.requests_per_minute // self.rate_share)
        rpm = s.requests_per_minute if s.rate_limit_store != "static" else share
        if self.requested_rpm is not None:
            rpm = max(1, min(rpm, int(self.requested_rpm)))
        return OmnisendClient(
            base_url=s.base_url, api_key=self._api_key(), version=s.version, requests_per_minute=rpm,
            window_seconds=s.window_seconds, timeout=s.timeout, max_attempts=s.max_attempts,
            backoff_initial=s.backoff_initial, backoff_max=s.backoff_max, max_in_flight=s.max_in_flight,
            session=self.get_conn(), max_retry_wait=s.max_retry_wait, max_response_bytes=s.max_response_bytes,
            allow_insecure_http=s.allow_insecure_http, limiters=self._brand_limiters(rpm, min(rpm, share)),
        )

    def _brand_limiters(self, limit: int, fallback: int) -> dict[str, Any] | None:
        """The process's brand-wide limiters for this connection's store (None for ``static``)."""
        s = self.settings
        if s.rate_limit_store == "static":
            return None
        tags_fallback = max(1, min(fallback, TAGS_REQUESTS_PER_MINUTE // self.rate_share))
        store_id, make_store = self._limit_store()
        brand = brand_key(s.base_url, self._api_key())
        lease_ttl = s.lease_ttl if s.lease_ttl is not None else 2 * s.timeout + 10
        common = {"window": s.window_seconds, "lease_ttl": lease_ttl}
        return {
            "default": process_limiter(store_id, make_store, f"{brand}:default", limit=limit,
                                       fallback_limit=fallback, **common),
            "tags": process_limiter(store_id, make_store, f"{brand}:tags",
                                    limit=min(TAGS_REQUESTS_PER_MINUTE, limit),
                                    fallback_limit=tags_fallback, **common),
        }

    def _limit_store(self) -> tuple[str, Any]:
        """(an id naming the store, a factory building it): Redis, a host-wide SQLite file, or memory."""
        s = self.settings
        if s.rate_limit_store == "memory":
            return "memory", MemoryStore
        if s.rate_limit_store == "local":
            home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
            path = s.rate_limit_path or os.path.join(home, "omnisend", "ratelimit.sqlite")
            return f"sqlite:{path}", lambda: SQLiteStore(path)
        url = s.redis_url or self._redis_url_from_connection(s.redis_conn_id or "")
        _mask(url)
        return f"redis:{hashlib.sha256(url.encode()).hexdigest()}:{s.redis_prefix}", (
            lambda: RedisStore.from_url(url, prefix=s.redis_prefix))

    def _redis_url_from_connection(self, conn_id: str) -> str:
        """A redis:// URL from an Airflow Redis connection (host, port, password, extra db and ssl)."""
        try:
            conn = self.get_connection(conn_id)
        except Exception as err:
            raise OmnisendConfigError(
                f"Omnisend connection {self.omnisend_conn_id!r}: its redis_conn_id {conn_id!r} could not be "
                f"loaded ({type(err).__name__}). Create that Redis connection or set redis_url.") from None
        extra = conn.extra_dejson or {}
        if conn.password:
            _mask(conn.password)
        scheme = "rediss" if as_bool(extra.get("ssl")) else "redis"
        auth = f":{quote(conn.password, safe='')}@" if conn.password else ""
        return f"{scheme}://{auth}{conn.host or '127.0.0.1'}:{conn.port or 6379}/{int(extra.get('db') or 0)}"

    def get_client(self) -> OmnisendClient:
        return self.client

    # ------------------------------------------------------------------ guards
    def check_can_send(self) -> None:
        """Refuse to send contact data unless privacy is acknowledged and this DAG is allowed."""
        s = self.settings
        if not s.privacy_acknowledged:
            raise OmnisendConfigError(
                f"Omnisend connection {s.conn_id!r} has not acknowledged data privacy and compliance, so no "
                "contact data is sent. Edit the connection (Admin > Connections) and tick "
                "'I agree: data privacy and compliance', or set \"privacy_acknowledged\": true in its extra.")
        if s.allowed_dag_ids:
            dag_id = self.dag_id or _current_dag_id()
            if dag_id is None or not any(fnmatch.fnmatchcase(dag_id, pat) for pat in s.allowed_dag_ids):
                who = f"DAG {dag_id!r}" if dag_id else "code outside a DAG"
                raise OmnisendConfigError(
                    f"Omnisend connection {s.conn_id!r} may only be used by DAGs matching "
                    f"{', '.join(s.allowed_dag_ids)}; {who} "
                    "is not allowed. Add it to the connection's 'Allowed DAG ids' or use another connection.")

    # ------------------------------------------------------------------ typed API
    def upsert_contact(self, contact: Mapping[str, Any]) -> dict[str, Any]:
        self.check_can_send()
        return self.client.upsert_contact(contact)

    def create_batch(self, items: Sequence[Mapping[str, Any]] | None = None, endpoint: str = "contacts",
                     method: str = "POST", *, body: bytes | None = None) -> dict[str, Any]:
        self.check_can_send()
        return self.client.create_batch(items, endpoint=endpoint, method=method, body=body)

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        return self.client.get_batch(batch_id)

    def get_batch_items(self, batch_id: str) -> dict[str, Any]:
        return self.client.get_batch_items(batch_id)

    def list_batches(self, *, endpoint: str = "contacts", offset: int = 0, limit: int = 250,
                     status: str | None = None) -> dict[str, Any]:
        return self.client.list_batches(endpoint=endpoint, offset=offset, limit=limit, status=status)

    def add_tags(self, tags: Sequence[str], emails: Sequence[str]) -> int:
        self.check_can_send()
        return self.client.add_tags(tags, emails)

    def remove_tags(self, tags: Sequence[str], emails: Sequence[str] = (), *,
                    contact_ids: Sequence[str] = ()) -> int:
        self.check_can_send()
        return self.client.remove_tags(tags, emails, contact_ids=contact_ids)

    def list_contacts(self, *, page_size: int = 250, **filters: Any) -> Iterator[dict[str, Any]]:
        self.check_can_send()  # reads personal data back: the same gates as sending it
        return self.client.list_contacts(page_size=page_size, **filters)

    def test_connection(self) -> tuple[bool, str]:
        """One cheap authenticated call; never raises (Airflow's "Test" button shows the message)."""
        try:
            client = self.client
            saved = client.max_attempts
            client.max_attempts = 1  # a test should answer quickly, not retry for minutes
            try:
                client.ping()
            finally:
                client.max_attempts = saved
        except OmnisendApiError as err:
            if err.status is None:
                return False, f"Could not reach Omnisend: {err}"
            return False, str(err)
        except Exception as err:  # a form must show a message, whatever went wrong
            return False, f"{type(err).__name__}: {err}"
        s = self.settings
        note = ("" if s.privacy_acknowledged
                else " Privacy is not acknowledged yet: no contact data will be sent.")
        return True, f"Connected to Omnisend API {s.version.name} at {s.base_url}.{note}"


def _current_dag_id() -> str | None:
    try:
        from airflow.sdk import get_current_context

        return get_current_context()["dag"].dag_id
    except Exception:
        return None


def _mask(secret: str) -> None:
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)
    except Exception:  # masking is best effort outside a task
        pass


def as_bool(value: Any) -> bool:
    """A flag from a form, a template or JSON: "true"/"yes"/"on"/"1" (any case) or a real bool."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


_BOOL_ARGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def bool_arg(value: Any, name: str) -> bool:
    """An operator or sensor flag (``dry_run``, ``force``...): a bool, 0/1, or true/false, 1/0, yes/no in
    any case (a rendered template gives "True"). Anything else raises: a typo such as "flase" or "ture"
    must not quietly become a real export or a skipped one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    word = value.strip().lower() if isinstance(value, str) else None
    if word in _BOOL_ARGS:
        return _BOOL_ARGS[word]
    raise OmnisendConfigError(
        f"{name} must be true or false (also 1/0 or yes/no, any case), got {value!r:.60}. Fix the "
        f"argument {name}= (or the template or param that renders it).")


def _brand(value: object, conn_id: str, where: str) -> str:
    """The extra ``brand`` (checked), else the connection id made fit for a URI host."""
    if value in (None, ""):
        return re.sub(r"[^a-z0-9._-]+", "-", conn_id.lower()).strip("._-")[:100] or "omnisend"
    try:
        return check_brand(value, where=f"{where}: brand")
    except ValueError as err:
        raise OmnisendConfigError(str(err)) from None


def _flag(extra: Mapping[str, Any], key: str, where: str) -> bool:
    """A connection flag that gates something: only a real bool, None or a usual true/false string (a
    list, a dict or 2 is a mistake, not a yes)."""
    value = extra.get(key)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise OmnisendConfigError(
        f"{where}: extra {key!r} must be true or false, got a {type(value).__name__} ({value!r:.40}). "
        "Edit the connection and set it to true or false.")


def _dag_patterns(value: Any, where: str) -> tuple[str, ...]:
    """``allowed_dag_ids`` as patterns: a comma/newline separated string or a list of strings. Given but
    empty after parsing (" , ") is an error: it must not switch the check off."""
    if value is None or value in ("", []):
        return ()
    if isinstance(value, str):
        items: list[Any] = value.replace("\n", ",").split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        items = [None]
    if not all(isinstance(item, str) for item in items):
        raise OmnisendConfigError(
            f"{where}: extra 'allowed_dag_ids' must be DAG id patterns (a comma separated string or a list "
            f"of strings), got {value!r:.60}.")
    patterns = tuple(p for p in (item.strip() for item in items) if p)
    if not patterns:
        raise OmnisendConfigError(
            f"{where}: extra 'allowed_dag_ids' is {value!r:.60}, which holds no DAG id pattern. Give the "
            "allowed DAG ids (e.g. omnisend_*) or remove the extra to allow every DAG.")
    return patterns


def _store_kind(extra: Mapping[str, Any], where: str) -> str:
    kind = str(extra.get("rate_limit_store") or "auto").strip().lower()
    if kind not in STORE_KINDS:
        raise OmnisendConfigError(f"{where}: extra 'rate_limit_store' is {kind!r}; choose one of "
                                  f"{', '.join(STORE_KINDS)}.")
    if kind == "auto":
        kind = "redis" if extra.get("redis_url") or extra.get("redis_conn_id") else "local"
    if kind == "redis" and not (extra.get("redis_url") or extra.get("redis_conn_id")):
        raise OmnisendConfigError(f"{where}: rate_limit_store is 'redis' but neither 'redis_url' nor "
                                  "'redis_conn_id' is set in the extra; set one of them.")
    return kind


def _number(extra: Mapping[str, Any], key: str, default: Any, kind: type, where: str) -> Any:
    value = extra.get(key)
    if value in (None, ""):
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise OmnisendConfigError(f"{where}: extra {key!r} must be a number, got {value!r}.") from None
