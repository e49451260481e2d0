"""Load: five segments exported at once through the example DAG (mapped tasks on the LocalExecutor),
sharing one brand.

One Customer Insights export holds five segments of 20,000 profiles; neighbouring segments share 2,000
people (as real segments overlap). Each segment needs ~200 batch requests, more than two windows of its
share: were the budget not shared, the five would together send ~1,000 requests in the first window.
The ``omnisend_api`` pool has five slots, so the five export tasks run at the same time, each with a
fifth of the connection's budget, which is the brand's whole limit (400 requests per emulated minute).
The brand must never see more than its limit in a window, nobody gets a 429, and every segment arrives
complete: each contact with its fields and every segment's tag.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_omnisend.testing.airflow_cluster import EXPORT_TASK, AirflowCluster
from airflow_provider_omnisend.testing.emulator import EmulatorServer
from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export
from airflow_provider_omnisend.testing.sample_data import COLUMNS, synthetic_profiles
from tests.reliability.helpers import expected_state, posts
from tests.support import omnisend_conn_uri

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

API_KEY = "load-test-key-91e2"
#: An emulated minute lasts 15 s: the five exports together may send 400 / 15 s = 27 requests/s, which
#: the shared 2-core CI machine sustains with room to spare (so the limit, not the CPU, sets the pace).
TIME_SCALE = 0.25
BRAND_LIMIT = 400
#: The emulator's own limit, looser than the brand budget asserted: the limiter, not a 429, keeps to it.
EMULATOR_RPM = 2 * BRAND_LIMIT
SEGMENTS = [f"Load{n}" for n in range(5)]
ROWS, OVERLAP = 20_000, 2_000
PEOPLE = synthetic_profiles(len(SEGMENTS) * (ROWS - OVERLAP) + OVERLAP, seed=5)
TABLES = {name: PEOPLE.slice(n * (ROWS - OVERLAP), ROWS) for n, name in enumerate(SEGMENTS)}


def expected_brand() -> dict[str, dict[str, Any]]:
    """{email: {"tags": {...}, "candidates": [fields, ...]}} over all segments (fields of any segment)."""
    out: dict[str, dict[str, Any]] = {}
    for name, table in TABLES.items():
        for email, fields in expected_state(table, tag=None).contacts.items():
            entry = out.setdefault(email, {"tags": set(), "candidates": []})
            entry["tags"].add(f"segment: {name}")
            entry["candidates"].append(fields)
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    root = tmp_path_factory.mktemp("airflow-load")
    lake_root = root / "lake-source"
    export_dir = write_cdm_export(lake_root, entity=SEGMENTS[0], columns=COLUMNS, rows=TABLES[SEGMENTS[0]],
                                  more_entities={name: TABLES[name] for name in SEGMENTS[1:]})
    with EmulatorServer(api_key=API_KEY, time_scale=TIME_SCALE, log_dir=root / "emulator",
                        extra_args=["--rpm", str(EMULATOR_RPM)]) as emu:
        conn = omnisend_conn_uri(emu.api_url, api_key=API_KEY, window_seconds=60 * TIME_SCALE,
                                 requests_per_minute=BRAND_LIMIT)
        airflow = AirflowCluster(root / "cluster", emu, conn_uri=conn, lake_root=lake_root,
                                 export_subdir=export_dir.relative_to(lake_root), segments=SEGMENTS,
                                 pool_slots=len(SEGMENTS), parallelism=12)
        with airflow:
            yield airflow


def test_five_segments_at_once_share_the_brand_and_arrive_complete(cluster: AirflowCluster, figures) -> None:
    run_id = cluster.trigger({"segments": SEGMENTS})["dag_run_id"]
    cluster.wait_run(run_id, timeout=420)
    exports = [t for t in cluster.task_instances(run_id) if t["task_id"] == EXPORT_TASK]
    assert sorted(t["map_index"] for t in exports) == list(range(len(SEGMENTS)))
    assert all(t["state"] == "success" and t["try_number"] == 1 for t in exports), exports
    # They really ran at once: every export started before any of them ended.
    assert max(t["start_date"] for t in exports) < min(t["end_date"] for t in exports), exports

    state = cluster.emulator.wait_batches_done(timeout=60)
    assert state["max_in_window"]["default"] <= BRAND_LIMIT, state["max_in_window"]
    # ... and pushed at the same time: a window saw more than two exports' shares.
    assert state["max_in_window"]["default"] > 2 * BRAND_LIMIT // len(SEGMENTS), state["max_in_window"]
    assert state["responses_429"] == 0 and state["welcome_messages"] == 0, state

    expected = expected_brand()
    assert any(len(e["tags"]) == 2 for e in expected.values())  # the overlap is really there
    by_email = {c["email"]: c for c in cluster.emulator.contacts()}
    missing = sorted(set(expected) - set(by_email))
    extra = sorted(set(by_email) - set(expected))
    assert not missing and not extra, f"missing {len(missing)}, extra {len(extra)}"
    wrong = []
    for email, want in expected.items():
        got = by_email[email]
        fields = {k: got[k] for k in ("firstName", "lastName", "address", "city", "state", "postalCode",
                                      "countryCode") if got.get(k) not in (None, "")}
        if fields not in want["candidates"] or set(got.get("tags") or ()) != want["tags"]:
            wrong.append((email, fields, got.get("tags")))
    assert not wrong, f"{len(wrong)} contacts differ, e.g. {wrong[:3]}"

    summaries = [cluster.xcom(t) for t in exports]
    for summary in summaries:
        rows = TABLES[summary["segment"]].num_rows
        assert summary["rows_read"] == rows == summary["valid"] + summary["rejected"], summary
    figures(segments=len(SEGMENTS), rows_per_segment=ROWS, contacts=len(expected),
            max_in_window=state["max_in_window"]["default"], brand_limit=BRAND_LIMIT,
            responses_429=state["responses_429"], batch_posts=posts(state),
            export_seconds=[round(s["duration_s"], 1) for s in summaries])

