"""Boolean operator and sensor arguments are parsed strictly: a typo fails the task, naming the argument
and the value, before anything is read or sent."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_omnisend.api.errors import OmnisendConfigError
from airflow_provider_omnisend.hooks.omnisend import bool_arg
from airflow_provider_omnisend.operators.export import OmnisendExportSegmentOperator
from airflow_provider_omnisend.sensors.export_ready import OmnisendSegmentExportSensor


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), (1, True), (0, False), ("true", True), ("False", False),
    (" TRUE ", True), ("1", True), ("0", False), ("yes", True), ("No", False),
])
def test_accepted_values(value, expected):
    assert bool_arg(value, "dry_run") is expected


@pytest.mark.parametrize("value", ["flase", "ture", "", "None", "on", "2", 2, -1, None, [], {"x": 1}, 1.0])
def test_anything_else_is_an_error_naming_the_argument_and_value(value):
    with pytest.raises(OmnisendConfigError) as err:
        bool_arg(value, "incremental")
    message = str(err.value)
    assert message.startswith("incremental must be true or false") and repr(value)[:60] in message


@pytest.mark.parametrize("name", ["dry_run", "incremental", "full_refresh", "force", "send_welcome_message",
                                  "allow_local_state"])
def test_the_operator_fails_at_once_on_a_bad_flag(name):
    """Before the connection or the lake is touched: the source does not even exist."""
    op = OmnisendExportSegmentOperator(task_id="t", source="file:///nowhere", segment="s",
                                       mapping={"email": "Email"}, omnisend_conn_id="no_such_conn",
                                       **{name: "flase"})
    context = {"dag": SimpleNamespace(dag_id="d"), "ti": SimpleNamespace(task_id="t", map_index=-1)}
    with pytest.raises(AirflowFailException, match=rf"^{name} must be true or false .* got 'flase'"):
        op.execute(context)


def test_the_sensor_fails_at_once_on_a_bad_force(tmp_path):
    sensor = OmnisendSegmentExportSensor(task_id="w", source=str(tmp_path / "nowhere"), segment="s",
                                         state_path=str(tmp_path / "state"), force="ture")
    with pytest.raises(AirflowFailException, match=r"^force must be true or false .* got 'ture'"):
        sensor.execute({})
