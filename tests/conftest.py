"""Shared test set-up: an isolated AIRFLOW_HOME, and the Omnisend emulator as a real local process."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Airflow reads its configuration at import: point it at a throw-away home before anything imports it.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="omnisend-tests-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

#: API key the test emulator accepts; tests grep logs for it to prove it never leaks.
TEST_API_KEY = "test-key-7f3a9c1e5b"
#: The emulator runs a one-minute window in 0.6 s; clients get the same window in their extras.
TIME_SCALE = 0.01


@pytest.fixture(scope="session")
def emulator_session() -> Iterator:
    from airflow_provider_omnisend.testing.emulator import EmulatorServer

    with EmulatorServer(api_key=TEST_API_KEY, time_scale=TIME_SCALE) as server:
        yield server


@pytest.fixture
def emulator(emulator_session):
    """A running emulator, reset to an empty brand with no faults before each test."""
    emulator_session.reset()
    emulator_session.configure(time_scale=TIME_SCALE)
    return emulator_session


def omnisend_conn_uri(api_url: str, *, api_key: str = TEST_API_KEY, **extra: object) -> str:
    """AIRFLOW_CONN_* JSON for an omnisend connection to ``api_url`` with a time-scaled rate window."""
    settings = {
        "privacy_acknowledged": True,
        "requests_per_minute": 300,
        "window_seconds": 60 * TIME_SCALE,
        "backoff_initial": 0.05,
        "backoff_max": 0.5,
        "timeout": 5,
        **extra,
    }
    return json.dumps({"conn_type": "omnisend", "host": api_url, "password": api_key, "extra": settings})


@pytest.fixture
def omnisend_conn(emulator, monkeypatch):
    """Register connection ``omnisend_test`` (via environment) pointing at the emulator; returns a setter
    that re-registers it with other extras."""

    def register(conn_id: str = "omnisend_test", **extra: object) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", omnisend_conn_uri(emulator.api_url, **extra))
        return conn_id

    register()
    return register
