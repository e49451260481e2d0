"""The provider registers the omnisend connection type and its form with Airflow."""

from __future__ import annotations

from importlib.metadata import entry_points

from airflow_provider_omnisend import get_provider_info


def test_entry_point_points_at_provider_info():
    eps = [ep for ep in entry_points(group="apache_airflow_provider")
           if ep.value.startswith("airflow_provider_omnisend")]
    assert len(eps) == 1
    assert eps[0].load() is get_provider_info


def test_providers_manager_sees_connection_type_and_fields():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "airflow-provider-omnisend" in pm.providers
    hook = pm.hooks["omnisend"]
    assert hook is not None
    assert hook.hook_class_name == "airflow_provider_omnisend.hooks.omnisend.OmnisendHook"
    assert hook.connection_id_attribute_name == "omnisend_conn_id"
    # What the API server hands the connection form: widgets from conn-fields, and field behaviours.
    widgets = {w.field_name: w.field for key, w in pm.connection_form_widgets.items()
               if key.startswith("extra__omnisend__")}
    assert set(widgets) == {"api_version", "privacy_acknowledged", "allowed_dag_ids", "requests_per_minute",
                            "brand"}
    assert widgets["api_version"]["schema"]["enum"] == ["2026-03-15", "v5", "v3"]
    assert widgets["api_version"]["value"] == "2026-03-15"
    assert widgets["privacy_acknowledged"]["value"] is False
    assert widgets["privacy_acknowledged"]["schema"]["title"] == "I agree: data privacy and compliance"
    assert widgets["requests_per_minute"]["value"] == 300
    behaviour = pm.field_behaviours["omnisend"]
    assert set(behaviour["hidden_fields"]) >= {"login", "schema", "port"}
    assert behaviour["relabeling"]["password"] == "API key"
    assert behaviour["placeholders"]["host"] == "https://api.omnisend.com/api"


def test_provider_info_lists_its_classes_as_official_providers_do():
    import importlib

    info = get_provider_info()
    assert [i["integration-name"] for i in info["integrations"]] == ["Omnisend"]
    for kind in ("hooks", "operators", "sensors", "triggers"):
        modules = [m for entry in info[kind] for m in entry["python-modules"]]
        assert modules and all(entry["integration-name"] == "Omnisend" for entry in info[kind])
        for module in modules:
            importlib.import_module(module)


def test_conventions_deferrable_default_and_templated_arguments(monkeypatch):
    import importlib
    import inspect

    from airflow_provider_omnisend.operators.export import OmnisendExportSegmentOperator
    from airflow_provider_omnisend.sensors import batches, export_ready

    assert {"send_welcome_message", "rate_share"} <= set(OmnisendExportSegmentOperator.template_fields)
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    try:
        for module in (importlib.reload(export_ready), importlib.reload(batches)):
            sensor_cls = next(v for k, v in vars(module).items() if k.startswith("Omnisend") and
                              k.endswith("Sensor"))
            assert inspect.signature(sensor_cls).parameters["deferrable"].default is True, sensor_cls
    finally:
        monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
        importlib.reload(export_ready)
        importlib.reload(batches)
