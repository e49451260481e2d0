"""One brand, one budget: a sliding-window limiter whose state lives in a store every sender shares.

The rule is the in-process limiter's (:mod:`.ratelimit`): a request holds its slot from the moment it is
sent until one window after its response, so the server never counts more than the budget in any window.
Here the slots are *leases* in a store keyed by brand, so threads, task processes, workers and hosts draw
on one budget, and a segment alone gets all of it instead of budget ÷ pool slots.

- A lease taken for sending carries a TTL (``lease_ttl`` + one window): a SIGKILLed worker's leases
  expire on their own. Its release re-dates it to "now + one window", on the store's clock.
- A 429's back-off is a "nobody sends before" time in the store: every sender of the brand waits.
- A store seen for the first time, or whose state was lost (Redis restarted), is trusted only one window
  after that moment: requests sent before were not recorded in it.
- When the store cannot be reached, the limiter falls back to the static split (budget ÷ ``rate_share``,
  in-process) with a WARNING, after one window of silence (what the brand sent through the store in
  that window is unknown to the fallback; its own in-flight requests are counted in it), and rejoins
  the store when it answers again, carrying its in-window history over as leases. Shares of the
  fallback add up to at most the budget (a network split where some hosts still reach the store can
  exceed it by the split-off hosts' shares).

Stores: :class:`MemoryStore` (one process), :class:`SQLiteStore` (one host, several processes: WAL and
``BEGIN IMMEDIATE`` serialise them) and :class:`RedisStore` (any number of hosts; atomic Lua scripts on
Redis' own clock). The brand key is a hash of base URL and API key, never the key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from airflow_provider_omnisend.api.errors import OmnisendCancelled
from airflow_provider_omnisend.api.ratelimit import SlidingWindowLimiter

log = logging.getLogger(__name__)
_NEVER = -1e300


def brand_key(base_url: str, api_key: str) -> str:
    """A stable id of the brand a key belongs to: a hash, so the store never holds the key."""
    return hashlib.sha256(f"{base_url.rstrip('/')}\n{api_key}".encode()).hexdigest()[:32]


class StoreUnavailable(Exception):
    """The shared store could not be reached or answered with an error."""


@dataclass(frozen=True)
class Grant:
    """A store's answer: a lease id when a slot was granted, else how long to wait before asking again."""

    lease: str | None
    wait: float


class LimitStore(Protocol):
    """Atomic operations on one bucket's leases (``key`` names brand and bucket)."""

    def acquire(self, key: str, *, limit: int, window: float, lease_ttl: float,
                history: list[float]) -> Grant:
        """Take a lease if fewer than ``limit`` are live. ``history`` (expiry times in seconds from now,
        the caller's fallback sends) is recorded first when given."""

    def release(self, key: str, lease: str, *, window: float) -> None:
        """The request's response ended: its lease lives one more window."""

    def penalise(self, key: str, seconds: float) -> None:
        """Nobody sends before ``seconds`` from now (never shortens an earlier back-off)."""

    def live(self, key: str) -> int:
        """Leases counted now (for tests and benchmarks)."""


class _Leases:
    """One bucket's state as plain data: the rule every store applies atomically in its own way."""

    def __init__(self, trusted_from: float) -> None:
        self.expiry: dict[str, float] = {}
        self.not_before = float("-inf")
        self.trusted_from = trusted_from

    def acquire(self, now: float, *, limit: int, window: float, lease_ttl: float,
                history: list[float]) -> Grant:
        for offset in history:
            self.expiry[uuid.uuid4().hex] = now + offset
        self.expiry = {lease: t for lease, t in self.expiry.items() if t > now}
        start = max(self.not_before, self.trusted_from)
        if now < start:
            return Grant(None, start - now)
        if len(self.expiry) >= limit:
            return Grant(None, min(self.expiry.values()) - now)
        lease = uuid.uuid4().hex
        self.expiry[lease] = now + lease_ttl + window
        return Grant(lease, 0.0)


class MemoryStore:
    """Leases in this process (threads share them): the in-process default and the unit tests' store."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Leases] = {}

    def _bucket(self, key: str) -> _Leases:
        return self._buckets.setdefault(key, _Leases(trusted_from=float("-inf")))

    def acquire(self, key: str, *, limit: int, window: float, lease_ttl: float,
                history: list[float]) -> Grant:
        with self._lock:
            return self._bucket(key).acquire(self._clock(), limit=limit, window=window,
                                             lease_ttl=lease_ttl, history=history)

    def release(self, key: str, lease: str, *, window: float) -> None:
        with self._lock:
            self._bucket(key).expiry[lease] = self._clock() + window

    def penalise(self, key: str, seconds: float) -> None:
        with self._lock:
            bucket = self._bucket(key)
            bucket.not_before = max(bucket.not_before, self._clock() + seconds)

    def live(self, key: str) -> int:
        with self._lock:
            now = self._clock()
            return sum(1 for t in self._bucket(key).expiry.values() if t > now)


class SQLiteStore:
    """Leases in a SQLite file that the task processes of one host share (the embedded default).

    ``BEGIN IMMEDIATE`` takes the write lock before reading, so check-and-take is atomic across
    processes; WAL keeps readers off the writer's back. The folder is 0700 and the file 0600: only the
    Airflow user sees how busy a brand is. Times are wall-clock seconds (one host, one clock).
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
                 timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._clock = clock
        self._timeout = timeout
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
                conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("CREATE TABLE IF NOT EXISTS lease (bucket TEXT, id TEXT, expiry REAL, "
                             "PRIMARY KEY (bucket, id))")
                conn.execute("CREATE TABLE IF NOT EXISTS bucket (bucket TEXT PRIMARY KEY, "
                             "not_before REAL, trusted_from REAL)")
            except (OSError, sqlite3.Error) as err:
                raise StoreUnavailable(f"rate-limit store {self.path}: {err}") from None
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[tuple[sqlite3.Connection, float]]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn, self._clock()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            raise StoreUnavailable(f"rate-limit store {self.path}: {err}") from None

    def acquire(self, key: str, *, limit: int, window: float, lease_ttl: float,
                history: list[float]) -> Grant:
        with self._write() as (conn, now):
            conn.executemany("INSERT INTO lease VALUES (?, ?, ?)",
                             [(key, uuid.uuid4().hex, now + offset) for offset in history])
            conn.execute("DELETE FROM lease WHERE bucket = ? AND expiry <= ?", (key, now))
            row = conn.execute("SELECT not_before, trusted_from FROM bucket WHERE bucket = ?",
                               (key,)).fetchone()
            if row is None:  # a new (or deleted) file: requests before now are not in it
                row = (_NEVER, now + window)
                conn.execute("INSERT INTO bucket VALUES (?, ?, ?)", (key, *row))
            start = max(row)
            if now < start:
                return Grant(None, start - now)
            count, earliest = conn.execute("SELECT COUNT(*), MIN(expiry) FROM lease WHERE bucket = ?",
                                           (key,)).fetchone()
            if count >= limit:
                return Grant(None, earliest - now)
            lease = uuid.uuid4().hex
            conn.execute("INSERT INTO lease VALUES (?, ?, ?)", (key, lease, now + lease_ttl + window))
            return Grant(lease, 0.0)

    def release(self, key: str, lease: str, *, window: float) -> None:
        with self._write() as (conn, now):
            conn.execute("INSERT OR REPLACE INTO lease VALUES (?, ?, ?)", (key, lease, now + window))

    def penalise(self, key: str, seconds: float) -> None:
        with self._write() as (conn, now):
            conn.execute("INSERT INTO bucket VALUES (?, ?, ?) ON CONFLICT (bucket) DO UPDATE "
                         "SET not_before = MAX(not_before, excluded.not_before)", (key, now + seconds, now))

    def live(self, key: str) -> int:
        with self._write() as (conn, now):
            return conn.execute("SELECT COUNT(*) FROM lease WHERE bucket = ? AND expiry > ?",
                                (key, now)).fetchone()[0]


# KEYS: leases zset, bucket hash. ARGV: limit, window, lease_ttl, lease id, history offsets...
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local limit, window, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[i]), ARGV[4] .. ':h' .. i)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local trusted = tonumber(redis.call('HGET', KEYS[2], 'trusted_from'))
if not trusted then
  trusted = now + window
  redis.call('HSET', KEYS[2], 'trusted_from', trusted)
end
local start = math.max(trusted, tonumber(redis.call('HGET', KEYS[2], 'not_before') or '-1e300'))
if now < start then return {0, tostring(start - now)} end
if redis.call('ZCARD', KEYS[1]) >= limit then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tostring(tonumber(first[2]) - now)}
end
redis.call('ZADD', KEYS[1], now + ttl + window, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil((ttl + 2 * window) * 1000))
return {1, '0'}
"""
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
_PENALISE = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1e6 + tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'not_before') or '-1e300')
if until_ > current then redis.call('HSET', KEYS[1], 'not_before', tostring(until_)) end
return 1
"""
_LIVE = """
local t = redis.call('TIME')
return redis.call('ZCOUNT', KEYS[1], '(' .. (tonumber(t[1]) + tonumber(t[2]) / 1e6), '+inf')
"""


class RedisStore:
    """Leases in Redis, shared by every worker on every host; each operation is one Lua script, atomic
    and timed by Redis' own clock, so hosts' clocks need not agree. The bucket hash (back-off and the
    moment the state was created) has no expiry: losing it means Redis lost its data, and then the
    state is trusted one window later."""

    def __init__(self, client: Any, *, prefix: str = "omnisend:rl") -> None:
        import redis

        self._errors = (redis.RedisError, OSError)
        self._client = client
        self._prefix = prefix
        self._scripts = {name: client.register_script(src) for name, src in
                         (("acquire", _ACQUIRE), ("release", _RELEASE), ("penalise", _PENALISE),
                          ("live", _LIVE))}

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "omnisend:rl", timeout: float = 2.0) -> RedisStore:
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout),
                   prefix=prefix)

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return self._scripts[name](keys=keys, args=args)
        except self._errors as err:
            raise StoreUnavailable(f"Redis rate-limit store: {type(err).__name__}: {err}") from None

    def _keys(self, key: str) -> list[str]:
        return [f"{self._prefix}:{key}:leases", f"{self._prefix}:{key}:bucket"]

    def acquire(self, key: str, *, limit: int, window: float, lease_ttl: float,
                history: list[float]) -> Grant:
        lease = uuid.uuid4().hex
        granted, wait = self._run("acquire", self._keys(key), [limit, window, lease_ttl, lease, *history])
        return Grant(lease, 0.0) if int(granted) else Grant(None, float(wait))

    def release(self, key: str, lease: str, *, window: float) -> None:
        self._run("release", self._keys(key)[:1], [lease, window])

    def penalise(self, key: str, seconds: float) -> None:
        self._run("penalise", self._keys(key)[1:], [seconds])

    def live(self, key: str) -> int:
        return int(self._run("live", self._keys(key)[:1], []))


class SharedLimiter:
    """The limiter a client uses, backed by a store; drop-in for :class:`SlidingWindowLimiter`.

    ``fallback_limit`` (budget ÷ rate_share) is what this process may use alone while the store is
    unreachable. ``retry_store`` is how often a fallen-back limiter asks the store again (seconds).
    """

    def __init__(self, store: LimitStore, key: str, *, limit: int, window: float = 60.0,
                 lease_ttl: float = 120.0, fallback_limit: int | None = None, retry_store: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1 request per window, got {limit}")
        self.store, self.key, self.limit, self.window = store, key, limit, window
        self.lease_ttl = lease_ttl
        self.retry_store = retry_store
        self._clock, self._sleep = clock, sleep
        self.fallback = SlidingWindowLimiter(limit=max(1, fallback_limit or limit), window=window,
                                             clock=clock, sleep=sleep)
        self._fallen_back_at: float | None = None
        self._degraded = False  # fell back since the store last answered
        self._state = threading.Lock()
        self.waited_seconds = 0.0

    @contextmanager
    def slot(self, cancel: threading.Event | None = None) -> Iterator[None]:
        lease = self.acquire(cancel)
        try:
            yield
        finally:
            self.release(lease)

    def acquire(self, cancel: threading.Event | None = None) -> str | None:
        """Block until a slot is free; returns the lease (None when the fallback granted it)."""
        while True:
            if cancel is not None and cancel.is_set():
                raise OmnisendCancelled("Cancelled before sending to Omnisend.")
            if not self._use_store():
                self.fallback.acquire(cancel)
                return None
            history = self.fallback.history_offsets(self.lease_ttl) if self._degraded else []
            try:
                grant = self.store.acquire(self.key, limit=self.limit, window=self.window,
                                           lease_ttl=self.lease_ttl, history=history)
            except StoreUnavailable as err:
                self._fall_back(err)
                continue
            if self._degraded:
                self._rejoined(len(history))
            if grant.lease is not None:
                return grant.lease
            wait = max(0.001, min(grant.wait, self.window / 10))
            self.waited_seconds += wait
            if cancel is not None and cancel.wait(wait):
                raise OmnisendCancelled("Cancelled while waiting for the Omnisend rate budget.")
            if cancel is None:
                self._sleep(wait)

    def release(self, lease: str | None) -> None:
        if lease is None:
            self.fallback.release()
            return
        try:
            self.store.release(self.key, lease, window=self.window)
        except StoreUnavailable as err:  # the lease expires on its TTL; the fallback counts it meanwhile
            self._fall_back(err)
            self.fallback.note_ended()

    def penalise(self, seconds: float) -> None:
        self.fallback.penalise(seconds)
        try:
            self.store.penalise(self.key, seconds)
        except StoreUnavailable as err:
            self._fall_back(err)

    def in_window(self) -> int:
        return self.store.live(self.key) if self._fallen_back_at is None else self.fallback.in_window()

    def _use_store(self) -> bool:
        with self._state:
            since = self._fallen_back_at
            if since is None:
                return True
            if self._clock() - since < self.retry_store:
                return False
            self._fallen_back_at = None  # ask the store again; rejoin it if it answers
            return True

    def _rejoined(self, carried: int) -> None:
        with self._state:
            if self._degraded:
                self._degraded = False
                log.warning("The shared rate-limit store answers again: rejoined it, carrying this "
                            "process's %d requests of the last window over.", carried)

    def _fall_back(self, err: StoreUnavailable) -> None:
        with self._state:
            if not self._degraded:
                self._degraded = True
                # The fallback knows nothing of what the brand sent through the store in the last
                # window: nobody sends on the fallback before that window has passed.
                self.fallback.penalise(self.window)
                log.warning("%s -- falling back to this process's static share of the budget (%d of %d "
                            "requests per window) until it answers again.",
                            err, self.fallback.limit, self.limit)
            self._fallen_back_at = self._clock()


_registry: dict[tuple[Any, ...], Any] = {}
_registry_lock = threading.Lock()


def process_limiter(store_id: str, make_store: Callable[[], LimitStore], key: str, *, limit: int,
                    window: float, lease_ttl: float, fallback_limit: int) -> SharedLimiter:
    """The process's one limiter per store, bucket key and limits (and one store object per store id),
    so every client, sensor and trigger of a brand in this process shares it."""
    pid = os.getpid()  # a forked child opens its own connections
    ident = (pid, store_id, key, limit, window, lease_ttl, fallback_limit)
    with _registry_lock:
        limiter = _registry.get(ident)
        if limiter is None:
            store = _registry.get((pid, "store", store_id))
            if store is None:
                store = _registry[(pid, "store", store_id)] = make_store()
            limiter = _registry[ident] = SharedLimiter(store, key, limit=limit, window=window,
                                                       lease_ttl=lease_ttl, fallback_limit=fallback_limit)
        return limiter
