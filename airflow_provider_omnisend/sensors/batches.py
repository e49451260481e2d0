"""OmnisendBatchSensor: wait until Omnisend has processed the given batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import fsspec
from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException

from airflow_provider_omnisend.export.confirm import TERMINAL_STATUSES, batch_counts
from airflow_provider_omnisend.hooks.omnisend import OmnisendHook
from airflow_provider_omnisend.triggers.batches import OmnisendBatchTrigger


def load_batch_ids(batch_ids: Sequence[str] | Mapping[str, Any] | str | None) -> list[str]:
    """Batch ids given as a list, a comma-separated string, a file URL with one id per line, or the
    export operator's summary (its ``batch_ids``, else its ``batch_ids_path``)."""
    if not batch_ids:
        return []
    if isinstance(batch_ids, Mapping):
        return load_batch_ids(batch_ids.get("batch_ids") or batch_ids.get("batch_ids_path"))
    if isinstance(batch_ids, str):
        if "," not in batch_ids and ("://" in batch_ids or batch_ids.startswith("/")):
            with fsspec.open(batch_ids, "r") as fh:
                return [line.strip() for line in fh.read().splitlines() if line.strip()]
        return [part.strip() for part in batch_ids.split(",") if part.strip()]
    return [str(b) for b in batch_ids]


class OmnisendBatchSensor(BaseSensorOperator):
    """Wait until every batch is ``finished`` or ``stopped``; return each batch's counts.

    For batches submitted some other way (another tool, a custom task): the export operator confirms
    its own batches before it succeeds, so the example DAG does not follow it with this sensor.

    :param batch_ids: a list, a file URL with one id per line, or a summary dict holding
        ``batch_ids`` or ``batch_ids_path`` (as the export operator's).
    :param deferrable: wait in the triggerer instead of holding a worker slot (default: Airflow's
        ``[operators] default_deferrable``).
    :param rate_share: how many tasks share the connection's budget at once (as the export operator's):
        the fallback split of the budget while the brand-wide limiter's store is unreachable.
    """

    template_fields: Sequence[str] = ("batch_ids", "omnisend_conn_id")

    def __init__(self, *, batch_ids: Sequence[str] | Mapping[str, Any] | str | None,
                 omnisend_conn_id: str = OmnisendHook.default_conn_name,
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 poll_interval: float = 30.0, rate_share: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.batch_ids = batch_ids
        self.omnisend_conn_id = omnisend_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.rate_share = rate_share

    def poke(self, context: Context) -> PokeReturnValue:
        ids = load_batch_ids(self.batch_ids)
        if not ids:
            return PokeReturnValue(is_done=True, xcom_value={})
        hook = OmnisendHook(self.omnisend_conn_id, rate_share=self.rate_share)
        done, counts = batch_counts(hook.get_client(), ids)
        if not done:
            waiting = sum(1 for c in counts.values() if c["status"] not in TERMINAL_STATUSES)
            self.log.info("%d of %d Omnisend batches still processing", waiting, len(ids))
        return PokeReturnValue(is_done=done, xcom_value=counts if done else None)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)  # defer only when the first look says "not yet"
        if first.is_done:
            return first.xcom_value
        self.defer(
            trigger=OmnisendBatchTrigger(omnisend_conn_id=self.omnisend_conn_id,
                                         batch_ids=load_batch_ids(self.batch_ids),
                                         poll_interval=self.poll_interval, rate_share=self.rate_share),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )
        return None

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "success":
            raise AirflowException(f"Waiting for Omnisend batches failed: {event.get('message')}")
        return event["counts"]
