"""Apache Airflow provider for Omnisend: export customer segments from a data lake into Omnisend."""

from __future__ import annotations

__version__ = "0.1.0"

#: API versions the connection form offers; the first is the default.
API_VERSIONS = ("2026-03-15", "v5", "v3")


def get_provider_info() -> dict:
    """Describe the provider to Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

    The connection form is declared with Airflow 3.2+ ``conn-fields`` (JSON-schema fields stored in the
    connection's extra) and ``ui-field-behaviour``; the Python ``get_connection_form_widgets`` route is
    deprecated and not used.
    """
    return {
        "package-name": "airflow-provider-omnisend",
        "name": "Omnisend",
        "description": "Export customer segments from a data lake into Omnisend (e-mail/SMS marketing).",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Omnisend",
                "external-doc-url": "https://api-docs.omnisend.com/",
                "how-to-guide": [],
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": "Omnisend",
             "python-modules": ["airflow_provider_omnisend.hooks.omnisend",
                                "airflow_provider_omnisend.hooks.lake"]}
        ],
        "operators": [
            {"integration-name": "Omnisend", "python-modules": ["airflow_provider_omnisend.operators.export"]}
        ],
        "sensors": [
            {"integration-name": "Omnisend",
             "python-modules": ["airflow_provider_omnisend.sensors.export_ready",
                                "airflow_provider_omnisend.sensors.batches"]}
        ],
        "triggers": [
            {"integration-name": "Omnisend",
             "python-modules": ["airflow_provider_omnisend.triggers.export_ready",
                                "airflow_provider_omnisend.triggers.new_export",
                                "airflow_provider_omnisend.triggers.batches"]}
        ],
        "asset-uris": [
            {
                "schemes": ["omnisend"],
                "handler": "airflow_provider_omnisend.assets.sanitize_uri",
                "factory": "airflow_provider_omnisend.assets.create_asset",
                "to_openlineage_converter": "airflow_provider_omnisend.assets.convert_asset_to_openlineage",
            }
        ],
        "extra-links": ["airflow_provider_omnisend.links.OmnisendSegmentLink"],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_omnisend.hooks.omnisend.OmnisendHook",
                "hook-name": "Omnisend",
                "connection-type": "omnisend",
                "conn-fields": {
                    "api_version": {
                        "label": "API version",
                        "description": "2026-03-15 is current; v5 and v3 are legacy and will be retired.",
                        "schema": {"type": ["string", "null"], "default": API_VERSIONS[0],
                                   "enum": list(API_VERSIONS)},
                    },
                    "privacy_acknowledged": {
                        "label": "I agree: data privacy and compliance",
                        "description": (
                            "Confirm that exporting these profiles to Omnisend complies with your data "
                            "privacy obligations (consent, GDPR/CCPA). No contact data is sent until ticked."
                        ),
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "allowed_dag_ids": {
                        "label": "Allowed DAG ids",
                        "description": (
                            "Comma-separated DAG id patterns (fnmatch, e.g. marketing_*) allowed to use this "
                            "connection. Empty means any DAG."
                        ),
                        "schema": {"type": ["string", "null"], "default": ""},
                    },
                    "brand": {
                        "label": "Brand",
                        "description": (
                            "A non-secret name of the Omnisend store (e.g. contoso-shop): exports emit the "
                            "Asset omnisend://<brand>/<segment>. Empty: the connection id."
                        ),
                        "schema": {"type": ["string", "null"], "default": ""},
                    },
                    "requests_per_minute": {
                        "label": "Requests per minute",
                        "description": (
                            "This connection's share of the brand's 400 requests/min. The default 300 "
                            "leaves headroom for the shop's other integrations."
                        ),
                        "schema": {"type": ["integer", "null"], "default": 300, "minimum": 1,
                                   "maximum": 400},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "port"],
                    "relabeling": {"password": "API key", "host": "Base URL"},
                    "placeholders": {
                        "host": "https://api.omnisend.com/api",
                        "password": "Omnisend API key (Store settings > API keys)",
                    },
                },
            }
        ],
    }
