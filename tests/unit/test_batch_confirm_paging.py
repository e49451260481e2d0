"""Bulk confirmation reads as many ``GET /batches`` pages as are cheaper than one GET per batch, and a
hook's ``rate_share`` is the fallback split of the connection's budget (the whole budget is shared
through the rate-limit store; ``rate_limit_store: static`` keeps the old division)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_omnisend.export.confirm import MIN_LIST_PAGES, BatchConfirmer
from airflow_provider_omnisend.hooks.omnisend import OmnisendHook


class ListedBatches:
    """``brand`` batches, newest first, 250 a page; counts the requests of each kind."""

    def __init__(self, brand: int) -> None:
        self.ids = [f"b{n:06d}" for n in range(brand)]
        self.pages = 0
        self.gets = 0

    def list_batches(self, *, endpoint: str = "contacts", offset: int = 0, limit: int = 250
                     ) -> dict[str, Any]:
        self.pages += 1
        return {"batches": [{"batchID": b, "status": "finished", "totalCount": 1, "finishedCount": 1}
                            for b in self.ids[offset:offset + limit]]}

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        self.gets += 1
        return {"batchID": batch_id, "status": "finished", "totalCount": 1, "finishedCount": 1}

    def get_batch_items(self, batch_id: str) -> dict[str, Any]:  # pragma: no cover - not reached
        raise AssertionError("no item lookups for finished batches")


def test_many_batches_deep_in_the_list_are_confirmed_from_pages() -> None:
    # 2,400 of one export's batches sit behind 7,200 newer ones of other exports (pages 29..38).
    api = ListedBatches(9_600)
    wanted = api.ids[7_200:]
    summaries = BatchConfirmer(api).summaries(wanted)
    assert set(summaries) == set(wanted)
    assert api.gets == 0 and api.pages == -(-9_600 // 250)  # 39 pages instead of 2,400 GETs


def test_a_few_old_batches_fall_back_to_one_get_each() -> None:
    api = ListedBatches(5_000)
    wanted = api.ids[-3:]  # at the very end of the list: 20 pages away
    summaries = BatchConfirmer(api).summaries(wanted)
    assert set(summaries) == set(wanted)
    assert api.pages == MIN_LIST_PAGES and api.gets == 3


def test_the_list_ending_stops_paging() -> None:
    api = ListedBatches(300)
    summaries = BatchConfirmer(api).summaries([*api.ids[:2], "gone-batch"])
    assert api.pages == 2 and api.gets == 1 and "gone-batch" in summaries


@pytest.mark.parametrize(("share", "rpm"), [(1, 400), (4, 100), (3, 133), (1000, 1)])
def test_rate_share_is_the_fallback_split_of_the_brand_budget(monkeypatch, tmp_path, share: int,
                                                              rpm: int) -> None:
    """With a shared store (the default) every hook draws on the whole budget, and budget ÷ rate_share
    is what it takes alone while the store is unreachable."""
    monkeypatch.setenv("AIRFLOW_CONN_OMNISEND_SHARE", json.dumps({
        "conn_type": "omnisend", "host": "http://127.0.0.1:9/api", "password": "k" * 12,
        "extra": {"privacy_acknowledged": True, "requests_per_minute": 400,
                  "rate_limit_path": str(tmp_path / "rl.sqlite")}}))
    client = OmnisendHook("omnisend_share", rate_share=share).client
    assert client.requests_per_minute == 400
    assert client.limiters["default"].fallback.limit == rpm
    assert client.limiters["default"].limit == 400


@pytest.mark.parametrize(("share", "rpm"), [(1, 400), (4, 100), (3, 133), (1000, 1)])
def test_rate_share_divides_the_budget_with_the_static_store(monkeypatch, share: int, rpm: int) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OMNISEND_SHARE", json.dumps({
        "conn_type": "omnisend", "host": "http://127.0.0.1:9/api", "password": "k" * 12,
        "extra": {"privacy_acknowledged": True, "requests_per_minute": 400, "rate_limit_store": "static"}}))
    assert OmnisendHook("omnisend_share", rate_share=share).client.requests_per_minute == rpm
    # an explicit lower figure still wins; a higher one never does
    lower = OmnisendHook("omnisend_share", rate_share=share, requests_per_minute=1)
    assert lower.client.requests_per_minute == 1
    capped = OmnisendHook("omnisend_share", rate_share=share, requests_per_minute=10_000)
    assert capped.client.requests_per_minute == rpm
