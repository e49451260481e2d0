"""5. Scale-out: several segments exported at once through the example DAG, sharing one brand's budget.

A real Airflow (``airflow_provider_omnisend.testing.airflow_cluster``: api-server, scheduler,
dag-processor, triggerer; LocalExecutor on SQLite) runs ``dags/omnisend_segment_export.py`` over one
Customer Insights export (CDM, header-less CSV) holding ``segments`` entities of ``rows`` profiles. The
DAG maps one ``segment.export`` task per segment, all running at once (``OMNISEND_POOL_SLOTS``); they
share the connection's 400 requests per minute through the host's limiter store (SQLite, the default
without Redis). The whole export should take little more than the brand's rate floor, and the brand
must never see more than 400 requests in a window. The floor follows the limiter's own rule
(:meth:`~benchmarks.common.Scale.window_floor`: N requests need ``ceil(N / 400) - 1`` cycles of one
window plus one round trip); contacts ÷ the ceiling (400 × 100 per minute) is reported beside it, but
is no floor: it charges the first window's burst.

Wall time is Airflow's own: from the first export task's start to the last one's end (each includes
reading and preparing its segment and confirming every batch). The DAG run's wall time (with the
deferred export-ready sensors and the summary task) is reported beside it.

5b. ``scale_out_celery``: the same DAG on a distributed Airflow (CeleryExecutor, PostgreSQL, Redis, two
workers) with *unequal* segments -- one of 60% of the rows and three of about 13% -- the case a static
split (budget ÷ pool slots) handles worst: the big segment keeps its quarter after the small ones end.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow_provider_omnisend.api.sharedlimit import LimitStore, RedisStore, SQLiteStore, brand_key
from airflow_provider_omnisend.hooks.omnisend import OmnisendConnSettings
from airflow_provider_omnisend.testing import services
from airflow_provider_omnisend.testing.airflow_cluster import EXPORT_TASK, AirflowCluster
from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export
from airflow_provider_omnisend.testing.sample_data import COLUMNS

from .common import API_KEY, BATCH_ITEMS, BRAND_RPM, Context, Figure, Scale, Section, at_most, emulator
from .data import ROWS_PER_FILE, profiles
from .shared_limit import open_buckets

MAX_OVER_FLOOR = 1.1


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def measure(ctx: Context) -> Section:
    segments, rows = ctx.sizes["segments"], ctx.sizes["rows"]
    section = Section(
        "scale_out",
        f"5. Scale-out: {segments} segments × {rows:,} through the DAG's mapped tasks (LocalExecutor), "
        f"sharing {BRAND_RPM}/min through the host's limiter store (SQLite)",
    )
    return _measure(ctx, section, [rows] * segments, executor="local")


def measure_celery(ctx: Context) -> Section:
    """Side by side in one run: today's static split, then the brand-wide limiter in Redis."""
    total = ctx.sizes["rows"]
    small = round(total * 0.4 / 3)
    sizes = [total - 3 * small, small, small, small]
    section = Section(
        "scale_out_celery",
        f"5b. Scale-out on Celery (2 workers, PostgreSQL, Redis): unequal segments "
        f"{' + '.join(f'{n:,}' for n in sizes)}, static split ({BRAND_RPM // len(sizes)}/min each) "
        "vs the shared limiter in Redis",
    )
    _measure(ctx, section, sizes, executor="celery", label="static split",
             limit_extra={"rate_limit_store": "static"}, target=False)
    with services.redis_service(ctx.work) as redis_base:
        shared = {"rate_limit_store": "redis",
                  "redis_url": services.redis_db_url(redis_base, services.random_redis_db()),
                  "redis_prefix": f"omnisend:rl:bench-{secrets.token_hex(4)}"}
        _measure(ctx, section, sizes, executor="celery", label="shared limiter", limit_extra=shared)
    return section


def _measure(ctx: Context, section: Section, sizes: list[int], *, executor: str, label: str = "",
             limit_extra: dict[str, Any] | None = None, target: bool = True) -> Section:
    scale = ctx.scale
    segments = len(sizes)
    names = [f"Segment{n}" for n in range(segments)]
    starts = [sum(sizes[:n]) for n in range(segments)]
    tables = {name: profiles(rows, start=start)
              for name, rows, start in zip(names, sizes, starts, strict=True)}
    work = ctx.work / (label.replace(" ", "-") or "run")
    lake_root = work / "lake"
    export_dir = write_cdm_export(
        lake_root, entity=names[0], columns=COLUMNS, rows=tables[names[0]],
        partitions=max(1, -(-sizes[0] // ROWS_PER_FILE)),
        more_entities={name: tables[name] for name in names[1:]},
    )
    del tables
    with emulator(scale, log_dir=work) as emu:
        conn = json.dumps({
            "conn_type": "omnisend", "host": emu.api_url, "password": API_KEY,
            "extra": {"privacy_acknowledged": True, "requests_per_minute": BRAND_RPM,
                      "window_seconds": scale.window_s, **(limit_extra or {})},
        })
        cluster = AirflowCluster(
            work / "airflow", emu, conn_uri=conn, lake_root=lake_root,
            export_subdir=export_dir.relative_to(lake_root), segments=names, pool_slots=segments,
            parallelism=2 * segments + 2, executor=executor, workers=2, worker_concurrency=segments,
            env={"OMNISEND_RETRIES": "0", "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
                 "OMNISEND_ALLOW_LOCAL_STATE": "true"},
        )
        first_use = _open_store(conn, scale, cluster.home)
        with cluster:
            run_id = cluster.trigger({"segments": names, "max_profiles": 10 * max(sizes)})["dag_run_id"]
            run = cluster.wait_run(run_id, timeout=max(1800.0, 20 * scale.window_s))
            tis = cluster.task_instances(run_id)
            exports = [t for t in tis if t["task_id"] == EXPORT_TASK]
            summaries = [cluster.xcom(t) for t in exports]
        state = emu.state()

    contacts = state["contacts"]
    requests = sum(state["requests"].values())
    budgeted = sum(n for route, n in state["requests"].items() if "/tags" not in route)
    wall = _seconds(min(t["start_date"] for t in exports), max(t["end_date"] for t in exports))
    run_wall = _seconds(run["start_date"], run["end_date"])
    floor_s = scale.window_floor(budgeted, BRAND_RPM)
    steady_s = contacts / (BRAND_RPM * BATCH_ITEMS) * scale.window_s
    max_window = state["max_in_window"]["default"]
    prefix = f"{label}: " if label else ""
    section.details[label or "run"] = {
        "exports": [{k: t[k] for k in ("map_index", "start_date", "end_date", "duration", "try_number")}
                    for t in exports],
        "summaries": [_brief(s) for s in summaries],
        "wall_s": round(wall, 2),
        "dag_run_s": round(run_wall, 2),
        "floor_s": round(floor_s, 2),
        "contacts_at_ceiling_s": round(steady_s, 2),
        "first_use_s": first_use,
        "emulator": {k: state[k] for k in ("requests", "responses_429", "max_in_window", "contacts")},
    }
    section.add(
        Figure(
            f"{prefix}wall time, first export task start to last export task end ({segments} mapped tasks)",
            round(wall, 1),
            "s",
            ratio=round(wall / floor_s, 3),
            ratio_of=f"the brand's rate floor ({budgeted:,} requests at {BRAND_RPM} per sliding window, "
            f"each slot held until a window after its response = {floor_s:.1f} s)",
            target=f"≤ {MAX_OVER_FLOOR} × floor" if target else "",
            ok=at_most(wall, MAX_OVER_FLOOR * floor_s) if target else None,
        ),
        Figure(f"{prefix}the same wall time against {contacts:,} contacts at the ceiling "
               f"({BRAND_RPM}×{BATCH_ITEMS}/min, {steady_s:.1f} s)", round(wall, 1), "s",
               ratio=round(wall / steady_s, 3), ratio_of="contacts ÷ ceiling (ignores the first burst)"),
        Figure(f"{prefix}DAG run wall time (sensors, exports, summary)", round(run_wall, 1), "s",
               ratio=round(run_wall / floor_s, 3), ratio_of="the rate floor"),
        Figure(
            f"{prefix}max requests in one window (whole brand)",
            max_window,
            "",
            ratio=round(max_window / BRAND_RPM, 3),
            ratio_of="the brand's limit",
            target=f"≤ {BRAND_RPM}",
            ok=at_most(max_window, BRAND_RPM),
        ),
        Figure(f"{prefix}429 responses", state["responses_429"], "", target="0",
               ok=state["responses_429"] == 0),
        Figure(f"{prefix}contacts in Omnisend", contacts, "",
               ratio=round(contacts / sum(s["valid"] for s in summaries), 4),
               ratio_of="valid profiles of all segments", target="= valid",
               ok=contacts == sum(s["valid"] for s in summaries)),
        Figure(
            f"{prefix}requests per contact",
            round(requests / contacts, 4),
            "",
            ratio=round(requests / contacts * BATCH_ITEMS, 3),
            ratio_of="one request per 100 contacts",
        ),
    )
    if first_use is not None:
        section.add(Figure(f"{prefix}opening the new store before the run (a new store waits one window "
                           "once; not in the wall time)", first_use, "s",
                           ratio=round(first_use / scale.window_s, 3), ratio_of="one window"))
    if section.notes:
        return section
    section.notes.append(
        f"Time scale {scale.time_scale} (an emulated minute lasts {scale.window_s:g} s), latency "
        f"{scale.latency_ms:g} ms. Each export task's time includes reading and preparing its segment "
        f"(real time, not scaled, {segments} processes on the machine's cores) and confirming its batches; "
        "at a time scale below 1 that unscaled share weighs more against the floor than it would for real."
    )
    return section


def _open_store(conn: str, scale: Scale, airflow_home: Path) -> float | None:
    """Open the brand's buckets in the run's new shared store before the DAG starts; the seconds it took
    (None without a shared store).

    A store the limiter has never seen waits one window before its first lease (requests sent before it
    existed are not in it): a deployment pays that once, when its store is new, not on every run. Every
    measurement here starts with a new store (a new Redis prefix, a new ``$AIRFLOW_HOME``), so that wait
    is taken, and reported, outside the timed run.
    """
    from airflow.models.connection import Connection

    settings = OmnisendConnSettings.from_connection(Connection.from_json(conn, conn_id="omnisend_default"))
    store: LimitStore
    if settings.redis_url:
        store = RedisStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
    elif settings.rate_limit_store in ("auto", "local"):
        store = SQLiteStore(settings.rate_limit_path or airflow_home / "omnisend" / "ratelimit.sqlite")
    else:
        return None
    brand = brand_key(settings.base_url, API_KEY)
    return open_buckets(store, [f"{brand}:default", f"{brand}:tags"], scale.window_s)


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("segment", "rows_read", "valid", "rejected", "sent", "batches", "duration_s")
    return {k: summary.get(k) for k in keys}
