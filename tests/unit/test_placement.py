"""Local state and rejects are refused under an executor that spans hosts, unless shared on purpose."""

from __future__ import annotations

import pytest

from airflow_provider_omnisend.api.errors import OmnisendConfigError
from airflow_provider_omnisend.hooks.placement import ALLOW_ENV, check_shared_paths, configured_executors

PATHS = {"state_path": "/opt/airflow/omnisend_state", "rejects_path": "abfs://c/rejects.parquet"}


def test_local_paths_are_fine_on_one_host() -> None:
    check_shared_paths(PATHS, executors=["LocalExecutor"])


@pytest.mark.parametrize("executors", [["CeleryExecutor"], ["LocalExecutor", "KubernetesExecutor"]])
def test_a_local_path_under_a_multi_host_executor_is_refused_with_what_to_set(
        executors: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    with pytest.raises(OmnisendConfigError) as err:
        check_shared_paths(PATHS, executors=executors)
    message = str(err.value)
    refused = message.split(" is on", maxsplit=1)[0]
    assert refused == "state_path='/opt/airflow/omnisend_state'"  # the remote rejects path is fine
    assert "OMNISEND_STATE_PATH" in message and "allow_local_state=True" in message and ALLOW_ENV in message


def test_remote_paths_and_the_opt_in_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    check_shared_paths({"state_path": "s3://b/state", "rejects_path": "gs://b/r.csv"},
                       executors=["CeleryExecutor"])
    check_shared_paths(PATHS, executors=["CeleryExecutor"], allow_local=True)
    monkeypatch.setenv(ALLOW_ENV, "true")
    check_shared_paths({"state_path": "file:///mnt/shared/state"}, executors=["CeleryExecutor"])


def test_executor_names_from_the_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR",
                       "LocalExecutor,airflow.providers.celery.executors.celery_executor.CeleryExecutor")
    assert configured_executors() == ["LocalExecutor", "CeleryExecutor"]
