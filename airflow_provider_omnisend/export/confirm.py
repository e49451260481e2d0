"""Confirm submitted batches: wait until Omnisend has processed them and collect per-item failures.

Confirmation must not eat the rate budget the pushes need. One ``GET /batches`` page reports up to 250
batches' counts, so pending batches are confirmed in bulk; only a batch that reports errors, was
``stopped``, or did not process every item costs a ``GET /batches/{id}/items``. A batch the listing does
not show (another integration flooding the list) falls back to ``GET /batches/{id}``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_provider_omnisend.api.errors import OmnisendApiError, OmnisendCancelled

log = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"finished", "stopped"})
#: Hard cap of list pages one poll may read (250 batches a page) before falling back to per-batch GETs.
MAX_LIST_PAGES = 400
#: List pages always worth reading, even for a handful of batches.
MIN_LIST_PAGES = 4
#: What :func:`batch_counts` reports per batch (the batch sensor's and trigger's XCom/event value).
COUNT_KEYS = ("status", "totalCount", "finishedCount", "errorsCount")


class BatchApi(Protocol):
    def list_batches(self, *, endpoint: str = ..., offset: int = ..., limit: int = ...,
                     status: str | None = ...) -> dict[str, Any]: ...
    def get_batch(self, batch_id: str) -> dict[str, Any]: ...
    def get_batch_items(self, batch_id: str) -> dict[str, Any]: ...


@dataclass
class ItemFailure:
    """One item Omnisend did not apply. ``email`` comes from the echoed request, to find the row."""

    email: str | None
    response_code: int | None
    message: str

    @property
    def transient(self) -> bool:
        """Worth one more try: a server error, a rate limit, or never processed (stopped batch)."""
        return self.response_code is None or self.response_code >= 500 or self.response_code == 429


@dataclass
class BatchOutcome:
    """A terminal batch. When ``clean``, every item was applied; otherwise ``succeeded`` and ``failures``
    name the items by e-mail, and items in neither were never processed (a ``stopped`` batch)."""

    batch_id: str
    status: str
    total: int
    clean: bool = True
    succeeded: list[str] = field(default_factory=list)
    failures: list[ItemFailure] = field(default_factory=list)


class BatchConfirmer:
    """Polls until every given batch is terminal, then reports its failed items."""

    def __init__(self, api: BatchApi, *, endpoint: str = "contacts", poll_interval: float = 2.0,
                 timeout: float = 3600.0, cancel: threading.Event | None = None) -> None:
        self.api = api
        self.endpoint = endpoint
        self.poll_interval = poll_interval
        self.timeout = timeout
        #: set (by the task's on_kill) to stop waiting at once; the batches stay submitted, to confirm later
        self.cancel = cancel
        self.requests = 0
        # Legacy API generations have no batch listing: fall back to one GET per batch.
        self.can_list = True

    def summaries(self, batch_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Each batch's summary (status and counts): from list pages, else one GET per batch."""
        wanted = set(batch_ids)
        if not wanted:
            return {}
        summaries = self._list_summaries(wanted)
        for batch_id in wanted - summaries.keys():
            self.requests += 1
            summaries[batch_id] = self.api.get_batch(batch_id)
        return summaries

    def poll(self, batch_ids: Iterable[str]) -> dict[str, BatchOutcome]:
        """One pass: the outcomes of those batches that are terminal now (others are left out)."""
        outcomes = {}
        for batch_id, summary in self.summaries(batch_ids).items():
            if summary.get("status") in TERMINAL_STATUSES:
                outcomes[batch_id] = self._outcome(batch_id, summary)
        return outcomes

    def wait(self, batch_ids: Iterable[str]) -> dict[str, BatchOutcome]:
        """Block until every batch is terminal (or ``timeout``), polling every ``poll_interval``."""
        pending = set(batch_ids)
        done: dict[str, BatchOutcome] = {}
        deadline = time.monotonic() + self.timeout
        while pending:
            newly = self.poll(pending)
            done.update(newly)
            pending -= newly.keys()
            if not pending:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(pending)} Omnisend batches were still processing after {self.timeout:.0f}s "
                    f"(e.g. {sorted(pending)[:3]}). They may still finish: re-run the task to confirm them "
                    "without sending them again, or raise confirm_timeout.")
            self._sleep(len(pending))
        return done

    def _sleep(self, pending: int) -> None:
        if self.cancel is None:
            time.sleep(self.poll_interval)
        elif self.cancel.wait(self.poll_interval):
            raise OmnisendCancelled(f"Cancelled while {pending} Omnisend batches were processing; a later "
                                    "run confirms them without sending them again.")

    def _list_summaries(self, wanted: set[str]) -> dict[str, dict[str, Any]]:
        """Summaries of ``wanted`` batches found in list pages (newest first).

        Paging goes on while it is cheaper than the fallback: it stops once every batch is found, the
        list ends, or the pages read reach the number still missing (from then on one GET per missing
        batch costs no more), and at ``MAX_LIST_PAGES`` in any case.
        """
        found: dict[str, dict[str, Any]] = {}
        offset = 0
        pages = 0
        while self.can_list and pages < MAX_LIST_PAGES:
            pages += 1
            self.requests += 1
            try:
                page = self.api.list_batches(endpoint=self.endpoint, offset=offset, limit=250)
            except OmnisendApiError as err:
                if err.status not in (404, 405):
                    raise
                log.info("Batch listing is not available (%s); confirming batches one by one", err.status)
                self.can_list = False
                break
            batches = page.get("batches") or []
            for summary in batches:
                if summary.get("batchID") in wanted:
                    found[summary["batchID"]] = summary
            missing = len(wanted) - len(found)
            if not missing or len(batches) < 250 or pages >= max(MIN_LIST_PAGES, missing):
                break
            offset += len(batches)
        return found

    def _outcome(self, batch_id: str, summary: Mapping[str, Any]) -> BatchOutcome:
        total = int(summary.get("totalCount") or 0)
        status = str(summary.get("status"))
        finished = int(summary.get("finishedCount") or 0)
        errors = int(summary.get("errorsCount") or 0)
        outcome = BatchOutcome(batch_id=batch_id, status=status, total=total)
        if errors == 0 and finished >= total and status == "finished":
            return outcome
        self.requests += 1
        detail = self.api.get_batch_items(batch_id)
        outcome.clean = False
        for item in detail.get("responses") or []:
            code = _int(item.get("responseCode"))
            email = _item_email(item)
            if code is not None and code >= 400:
                outcome.failures.append(ItemFailure(email=email, response_code=code,
                                                    message=_item_message(item)))
            elif email:
                outcome.succeeded.append(email)
        for item in detail.get("errors") or []:
            outcome.failures.append(ItemFailure(email=_item_email(item),
                                                response_code=_int(item.get("responseCode")),
                                                message=_item_message(item)))
        return outcome


def batch_counts(api: BatchApi, batch_ids: Sequence[str]) -> tuple[bool, dict[str, dict[str, Any]]]:
    """(all terminal?, per-batch status and counts), confirmed in bulk through list pages.

    Lives here, below both the batch sensor and its trigger, so that neither imports the other.
    """
    summaries = BatchConfirmer(api).summaries(batch_ids)
    counts = {bid: {k: summaries[bid].get(k) for k in COUNT_KEYS} for bid in batch_ids}
    done = all(c["status"] in TERMINAL_STATUSES for c in counts.values())
    return done, counts


def _item_email(item: Mapping[str, Any]) -> str | None:
    request = item.get("request")
    if isinstance(request, Mapping):
        for ident in request.get("identifiers") or []:
            if isinstance(ident, Mapping) and ident.get("type") == "email":
                value = ident.get("id")
                return value if isinstance(value, str) else None
    return None


def _item_message(item: Mapping[str, Any]) -> str:
    response = item.get("response")
    if isinstance(response, Mapping):
        parts = [str(response.get(k)) for k in ("title", "detail") if response.get(k)]
        for err in response.get("errors") or []:
            if isinstance(err, Mapping):
                parts.append(f"{err.get('field')}: {err.get('message') or err.get('code')}")
        if parts:
            return "; ".join(parts)[:500]
    if isinstance(response, str) and response:
        return response[:500]
    code = item.get("responseCode")
    return f"Omnisend answered {code} for this item" if code else "not processed by Omnisend"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
