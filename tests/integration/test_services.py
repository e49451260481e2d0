"""The PostgreSQL and Redis the CeleryExecutor tests rely on: found or started, isolated, cleaned up."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_omnisend.testing.services import (
    RedisServer,
    postgres_admin_url,
    postgres_database,
    redis_db_url,
    redis_service,
)

pytestmark = pytest.mark.integration


def test_fresh_postgres_database_is_created_and_dropped(tmp_path: Path) -> None:
    import psycopg2

    with postgres_database(log_dir=tmp_path) as url:
        name = url.rsplit("/", 1)[1]
        assert name.startswith("omnisend_test_")
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            assert cur.fetchone()[0] == name
        conn.close()
    admin = postgres_admin_url()
    if admin:  # a throwaway server goes away entirely; a shared one must not keep the database
        with psycopg2.connect(admin) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
            assert cur.fetchone()[0] == 0
        conn.close()


def test_redis_service_answers_and_a_throwaway_server_restarts_on_its_port(tmp_path: Path) -> None:
    import redis

    with redis_service(log_dir=tmp_path) as base:
        assert redis.Redis.from_url(redis_db_url(base, 3)).ping()
    with RedisServer(log_dir=tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        server.restart()
        assert client.get("k") is None  # a restart loses the data (what the limiter must survive)
        assert redis.Redis.from_url(server.url).ping()
