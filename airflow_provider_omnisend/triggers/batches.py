"""OmnisendBatchTrigger: the deferrable twin of OmnisendBatchSensor, polled in the triggerer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_omnisend.export.confirm import batch_counts


class OmnisendBatchTrigger(BaseTrigger):
    """Polls batch statuses until all are terminal. Its kwargs hold ids and a connection id, no secret:
    the key is read from the connection inside the triggerer."""

    def __init__(self, *, omnisend_conn_id: str, batch_ids: list[str], poll_interval: float = 30.0,
                 rate_share: int = 1) -> None:
        super().__init__()
        self.omnisend_conn_id = omnisend_conn_id
        self.batch_ids = list(batch_ids)
        self.poll_interval = poll_interval
        self.rate_share = rate_share

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{self.__class__.__module__}.{self.__class__.__qualname__}",
                {"omnisend_conn_id": self.omnisend_conn_id, "batch_ids": self.batch_ids,
                 "poll_interval": self.poll_interval, "rate_share": self.rate_share})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_omnisend.hooks.omnisend import OmnisendHook

        try:
            client = OmnisendHook(self.omnisend_conn_id, rate_share=self.rate_share).get_client()
            while True:
                # The HTTP client is synchronous: keep it off the event loop.
                done, counts = await asyncio.to_thread(batch_counts, client, self.batch_ids)
                if done:
                    yield TriggerEvent({"status": "success", "counts": counts})
                    return
                await asyncio.sleep(self.poll_interval)
        except Exception as err:
            yield TriggerEvent({"status": "error", "message": f"{type(err).__name__}: {err}"})
