"""InstantApi: an in-process stand-in for OmnisendClient, for measuring and testing the export core
without HTTP (the memory benchmark, the property tests).

It accepts every batch and reports it finished at once, with the calls the engine makes
(``create_batch``, ``list_batches``, ``get_batch``, ``get_batch_items``, ``list_contacts``,
``remove_tags``). It keeps one integer per batch (ids are sequential, so no table of them is needed)
and builds the response dicts on demand, so its own memory stays out of a figure; ``keep_bodies``
also keeps the exact bytes the real client would have POSTed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import orjson


class InstantApi:
    def __init__(self, *, keep_bodies: bool = False) -> None:
        self.counts: list[int] = []
        self.bodies: list[bytes] = []
        self._keep_bodies = keep_bodies
        self._lock = threading.Lock()

    @staticmethod
    def _batch(number: int, count: int) -> dict[str, Any]:
        return {"batchID": f"{number:024x}", "status": "finished", "totalCount": count,
                "finishedCount": count, "errorsCount": 0}

    def create_batch(self, items: Any = None, endpoint: str = "contacts", method: str = "POST", *,
                     body: bytes | None = None) -> dict[str, Any]:
        if items is not None or body is None:
            raise TypeError("the export engine sends prebuilt batch bodies (body=...), not items")
        count = len(orjson.loads(body)["items"])
        with self._lock:
            number = len(self.counts)
            self.counts.append(count)
            if self._keep_bodies:
                self.bodies.append(bytes(body))
        return {"batchID": f"{number:024x}", "totalCount": count}

    def list_batches(self, *, endpoint: str = "contacts", offset: int = 0, limit: int = 250,
                     status: str | None = None) -> dict[str, Any]:
        with self._lock:
            end = len(self.counts) - offset
            numbers = range(max(0, end) - 1, max(0, end - limit) - 1, -1)  # newest first
            return {"batches": [self._batch(n, self.counts[n]) for n in numbers]}

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        number = int(batch_id, 16)
        with self._lock:
            return self._batch(number, self.counts[number])

    def get_batch_items(self, batch_id: str) -> dict[str, Any]:
        return {"responses": [], "errors": []}

    def list_contacts(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return iter(())

    def remove_tags(self, tags: Any, emails: Any = (), *, contact_ids: Any = ()) -> int:
        return 0
