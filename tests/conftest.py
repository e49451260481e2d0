"""Shared test set-up: an isolated AIRFLOW_HOME, and the Omnisend emulator as a real local process."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import TEST_API_KEY, TIME_SCALE, omnisend_conn_uri

REPO_ROOT = Path(__file__).resolve().parent.parent
# Airflow reads its configuration at import: point it at a throw-away home before anything imports it.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="omnisend-tests-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

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


@pytest.fixture
def omnisend_conn(emulator, monkeypatch):
    """Register connection ``omnisend_test`` (via environment) pointing at the emulator; returns a setter
    that re-registers it with other extras."""

    def register(conn_id: str = "omnisend_test", **extra: object) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", omnisend_conn_uri(emulator.api_url, **extra))
        return conn_id

    register()
    return register
