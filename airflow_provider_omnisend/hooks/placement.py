"""Where an export may keep its state and rejects: somewhere every worker sees.

With the LocalExecutor every task runs on one machine, so ``$AIRFLOW_HOME/omnisend_state`` is one
place. With the CeleryExecutor (or Kubernetes, or several executors) each try may run on another host:
state on a worker's local disk means the next run on another worker finds no snapshot and sends every
contact again, ``mirror`` never untags anyone, and rejects scatter over the workers. A local path is
therefore refused there, unless the user says it is shared storage (an NFS mount, a volume every
worker mounts, as docker-compose.yaml does) with ``allow_local_state=True`` or the environment variable
``OMNISEND_ALLOW_LOCAL_STATE=true``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from airflow_provider_omnisend.api.errors import OmnisendConfigError

ALLOW_ENV = "OMNISEND_ALLOW_LOCAL_STATE"
#: Executors that run every task on the scheduler's machine: only there is a local path one place.
SINGLE_HOST_EXECUTORS = frozenset({"LocalExecutor"})


def configured_executors() -> list[str]:
    """The class names of the executors in ``[core] executor`` (a comma list, aliases or paths)."""
    try:
        from airflow.sdk.configuration import conf

        value = conf.get("core", "executor", fallback="") or ""
    except Exception:  # no Airflow configuration (plain Python): judge by the environment alone
        value = os.environ.get("AIRFLOW__CORE__EXECUTOR", "")
    names = [part.split(":")[-1].strip().rsplit(".", 1)[-1] for part in value.split(",")]
    return [n for n in names if n]


def is_local_path(path: str) -> bool:
    """A plain path or a ``file://`` URL: on the disk of the machine the task runs on."""
    scheme = urlsplit(path).scheme
    return scheme in ("", "file", "local") or (len(scheme) == 1 and os.name == "nt")


def check_shared_paths(paths: Mapping[str, str], *, allow_local: bool = False,
                       executors: list[str] | None = None) -> None:
    """Refuse local ``paths`` (``{argument name: path}``) under an executor that spans hosts."""
    executors = configured_executors() if executors is None else executors
    if not executors or set(executors) <= SINGLE_HOST_EXECUTORS:
        return
    from airflow_provider_omnisend.hooks.omnisend import as_bool

    if allow_local or as_bool(os.environ.get(ALLOW_ENV, "")):
        return
    local = {name: path for name, path in paths.items() if is_local_path(path)}
    if not local:
        return
    where = ", ".join(f"{name}={path!r}" for name, path in local.items())
    raise OmnisendConfigError(
        f"{where} is on this worker's local disk, but Airflow runs {', '.join(executors)}: the next run may "
        "land on another worker, which would not see the snapshots (and send every contact again, or never "
        "untag in mirror mode) and would scatter the rejects. Set state_path / rejects_path (the DAG's "
        "OMNISEND_STATE_PATH) to storage every worker reaches (abfs://, s3://, gs://), or, if this path "
        f"is shared storage mounted on every worker, pass allow_local_state=True or set {ALLOW_ENV}=true.")
