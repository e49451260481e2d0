"""Reach the lake with an Airflow connection: the glue between Airflow connections and ``lake/``.

``lake/`` itself never imports Airflow; the sensor, its trigger and the export operator call these.
"""

from __future__ import annotations

import os
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.core import split_protocol

from airflow_provider_omnisend.lake.fs import make_filesystem


def lake_filesystem(source: str, lake_conn_id: str | None) -> AbstractFileSystem | None:
    """The authenticated fsspec filesystem for ``source`` from an Airflow connection (None: no connection).

    Uses Airflow's ObjectStoragePath when a provider registers a filesystem for the URL scheme (e.g.
    microsoft-azure for abfs://). Otherwise the connection's extra is taken as fsspec storage options
    (e.g. ``{"connection_string": ...}`` or ``{"account_name": ..., "account_key": ...}`` for adlfs), so
    a plain "generic" connection works without installing the cloud provider.
    """
    if not lake_conn_id:
        return None
    from airflow.sdk import BaseHook, ObjectStoragePath

    path = ObjectStoragePath(source, conn_id=lake_conn_id)
    try:
        return path.fs
    except ValueError as err:
        if "No filesystem registered" not in str(err):
            raise
    options = BaseHook.get_connection(lake_conn_id).extra_dejson
    origin = f"The extra of Airflow connection {lake_conn_id!r}"
    return make_filesystem(path.protocol or "file", options, origin=origin)


#: URL schemes that reach the same kind of store (adlfs registers both Azure names).
_SAME_STORE = {"abfss": "abfs", "az": "abfs", "s3a": "s3", "gcs": "gs"}


def _store(url: str) -> str:
    protocol = split_protocol(str(url))[0] or "file"
    protocol = protocol.lower()
    return "file" if protocol == "local" else _SAME_STORE.get(protocol, protocol)


def companion_storage_options(
    url: str, *, lake_source: str, lake_conn_id: str | None
) -> dict[str, Any] | None:
    """Credentials for a place the export writes beside the lake (``state_path``, ``rejects_path``).

    The lake connection's, when ``url`` is on the same kind of store as the lake (an abfs:// state
    folder next to an abfs:// lake). None otherwise: a local path needs none, and a different store
    uses fsspec's defaults (its environment variables, a managed identity...). In-process only: the
    options may hold a secret, so they are never logged, put in XCom or in trigger kwargs.
    """
    if not lake_conn_id or _store(url) == "file" or _store(url) != _store(lake_source):
        return None
    fs = lake_filesystem(str(url), lake_conn_id)
    return dict(getattr(fs, "storage_options", None) or {}) if fs is not None else None


def default_state_path() -> str:
    """``$AIRFLOW_HOME/omnisend_state``: where watermarks live unless ``state_path`` is given."""
    home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return os.path.join(home, "omnisend_state")
