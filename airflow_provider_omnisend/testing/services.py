"""PostgreSQL and Redis for the distributed tests and benchmarks: found running, or started throwaway.

A CeleryExecutor Airflow needs a real metadata database (PostgreSQL) and a broker (Redis); the shared
rate limiter keeps its state in Redis too. Production machines run them as services, and so do CI and
the developers' machines (``scripts/setup.sh --test`` installs and starts them). The tests use them when
they answer -- ``OMNISEND_TEST_POSTGRES_URL`` / ``OMNISEND_TEST_REDIS_URL``, else the default local
ports -- and otherwise start throwaway instances on free ports from the installed binaries.

Tests never touch what others keep there: each cluster gets a fresh, randomly named PostgreSQL
database (dropped afterwards) and a Redis database number of its own. A test that must *restart* Redis
(the limiter's fallback) starts its own :class:`RedisServer`: a shared one is never restarted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_omnisend.testing.servers import LOOPBACK, ServerProcess, free_port

POSTGRES_ENV = "OMNISEND_TEST_POSTGRES_URL"
REDIS_ENV = "OMNISEND_TEST_REDIS_URL"
DEFAULT_POSTGRES_URL = f"postgresql://postgres@{LOOPBACK}:5432/postgres"
DEFAULT_REDIS_URL = f"redis://{LOOPBACK}:6379"
#: Where Debian's postgresql package puts initdb/postgres (the newest version installed wins).
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SETUP_HINT = ("Run `bash scripts/setup.sh --test` (installs and starts Debian's postgresql and "
              "redis-server as root), or point {env} at a running server.")


class ServiceUnavailable(RuntimeError):
    """A service the test needs is neither running nor startable here; the message says what to do."""


# ---------------------------------------------------------------------------------------------- probes

def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or LOOPBACK, parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


# ------------------------------------------------------------------------------------------------ Redis

class RedisServer(ServerProcess):
    """A throwaway ``redis-server`` on 127.0.0.1 (no persistence); :meth:`restart` keeps its port."""

    def __init__(self, *, port: int | None = None, log_dir: str | os.PathLike[str] | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server is not installed. " + SETUP_HINT.format(env=REDIS_ENV))
        port = port or free_port()
        super().__init__([binary, "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly", "no",
                          "--protected-mode", "no"], port=port, name="redis", log_dir=log_dir,
                         startup_timeout=30)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}"

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server (its data goes with it), stay down ``down_seconds``, start it again."""
        import time

        self.stop()
        time.sleep(down_seconds)
        self.start()


def redis_base_url() -> str:
    """The running Redis to use (``OMNISEND_TEST_REDIS_URL``, else 127.0.0.1:6379), or '' if none answers."""
    url = os.environ.get(REDIS_ENV) or DEFAULT_REDIS_URL
    return url.rstrip("/") if _reachable(url, 6379) else ""


@contextlib.contextmanager
def redis_service(log_dir: Path | None = None) -> Iterator[str]:
    """The base URL of a Redis to use: a running one, else a throwaway server for the block's duration."""
    url = redis_base_url()
    if url:
        yield url
        return
    with RedisServer(log_dir=log_dir) as server:
        yield server.url


def redis_db_url(base_url: str, db: int) -> str:
    """``base_url`` with Redis database number ``db`` (callers pick numbers nobody else uses)."""
    return _with_path(base_url, f"/{db}")


def random_redis_db() -> int:
    """A Redis database number 1..15 (0 is everybody's default), so parallel clusters rarely share one;
    the tests' keys carry a random prefix as well, and nothing ever flushes a database."""
    return 1 + secrets.randbelow(15)


# ------------------------------------------------------------------------------------------- PostgreSQL

def postgres_admin_url() -> str:
    """The running PostgreSQL to use (``OMNISEND_TEST_POSTGRES_URL``, else 127.0.0.1:5432), or ''."""
    url = os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES_URL
    return url if _reachable(url, 5432) else ""


def _admin(url: str, sql: str) -> None:
    import psycopg2

    try:
        conn = psycopg2.connect(url, connect_timeout=10)
    except psycopg2.Error as err:
        raise ServiceUnavailable(
            f"PostgreSQL at {_redact(url)} refused the connection: {str(err).strip()}. The tests need a user "
            f"that may create databases. " + SETUP_HINT.format(env=POSTGRES_ENV)) from None
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _redact(url: str) -> str:
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, "", ""))


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, randomly named database on ``admin_url``'s server, dropped (connections and all) on exit."""
    name = f"omnisend_test_{secrets.token_hex(6)}"
    _admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield _with_path(admin_url, f"/{name}")
    finally:
        with contextlib.suppress(Exception):
            _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PostgresServer(ServerProcess):
    """A throwaway PostgreSQL cluster (``initdb`` in a temp folder, trust auth) on 127.0.0.1.

    PostgreSQL refuses to run as root: as root the cluster is created and run as the ``postgres`` user
    that Debian's package adds.
    """

    def __init__(self, *, log_dir: str | os.PathLike[str] | None = None) -> None:
        bins = sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")), key=lambda p: int(p.parent.name)
                      if p.parent.name.isdigit() else 0)
        if not bins:
            raise ServiceUnavailable("PostgreSQL is not installed. " + SETUP_HINT.format(env=POSTGRES_ENV))
        self.bin = bins[-1]
        self.data = Path(tempfile.mkdtemp(prefix="omnisend-pg-"))
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.data, "postgres")
        port = free_port()
        super().__init__([*self.as_user, str(self.bin / "postgres"), "-D", str(self.data / "db"),
                          "-p", str(port), "-h", LOOPBACK, "-k", str(self.data), "-F"],
                         port=port, name="postgres", log_dir=log_dir, startup_timeout=60)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def start(self) -> PostgresServer:
        initdb = [*self.as_user, str(self.bin / "initdb"), "-D", str(self.data / "db"), "-U", "postgres",
                  "--auth=trust", "--no-sync", "-E", "UTF8"]
        done = subprocess.run(initdb, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise ServiceUnavailable(f"initdb failed ({done.returncode}): {done.stderr[-2000:]}")
        super().start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        shutil.rmtree(self.data, ignore_errors=True)


@contextlib.contextmanager
def postgres_database(log_dir: Path | None = None) -> Iterator[str]:
    """A fresh database's URL: on a running PostgreSQL, else on a throwaway server for the block."""
    admin = postgres_admin_url()
    if admin:
        with fresh_database(admin) as url:
            yield url
        return
    with PostgresServer(log_dir=log_dir) as server, fresh_database(server.url) as url:
        yield url


def sqlalchemy_url(url: str, driver: str = "postgresql+psycopg2") -> str:
    """A ``postgresql://`` URL in SQLAlchemy's spelling with an explicit driver."""
    return driver + url[url.index("://"):]
