"""Fixtures of the end-to-end tests (helpers in ``tests/e2e/helpers.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_omnisend.testing.airflow_cluster import AirflowCluster
from airflow_provider_omnisend.testing.emulator import EmulatorServer
from tests.e2e.helpers import ARTIFACTS, E2E_API_KEY, E2E_TIME_SCALE, sample_cluster


@pytest.fixture
def e2e_emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(api_key=E2E_API_KEY, time_scale=E2E_TIME_SCALE, log_dir=tmp_path / "emulator") as emu:
        yield emu


@pytest.fixture(scope="module")
def airflow_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    """A running Airflow (shared by the tests of one module) with the example DAG parsed and unpaused."""
    root = tmp_path_factory.mktemp("airflow-cluster")
    with (EmulatorServer(api_key=E2E_API_KEY, time_scale=E2E_TIME_SCALE, log_dir=root / "emulator") as emu,
          sample_cluster(root, emu) as cluster):
        yield cluster


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
