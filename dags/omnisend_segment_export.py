"""Export Customer Insights segments from the lake into Omnisend, on the refresh schedule or on demand.

Per segment (dynamic task mapping over the ``segments`` param): wait for a complete new export in the
lake (deferrable) -> export it (map, validate, de-duplicate, send only what changed, confirm every
batch before the task succeeds). A summary task then logs one row of counts per segment.

No separate batch sensor follows the export: the operator has already confirmed each batch, and a
second confirmation would spend requests of the brand's budget the other exports are using (its
fresh limiter cannot know the export's last minute of requests). ``OmnisendBatchSensor`` is for batch
ids submitted some other way.

Configuration, nothing hard-coded. Parsing the DAG file reads no Variable and touches no database:

- Settings that shape the DAG (schedule, pool, params' defaults, retries, how the sensor waits) are
  environment variables, read at parse time;
- every other setting is read when a task runs, through the template macro ``var_or_env``: an Airflow
  Variable, else the environment variable of the same name, else the default below. A changed Variable
  applies to the next run without a re-parse or a redeploy. A value may itself be a template
  (``{{ run_id }}``...), rendered per task.

Environment only (parse time):

==============================  ==============================================================
OMNISEND_EXPORT_SCHEDULE        cron expression or preset (default ``@daily``); ``asset``: a
                                run per new complete export (an AssetWatcher on the lake
                                Asset, see below); ``none``: manual runs only
OMNISEND_WATCH_INTERVAL         ``asset`` schedule: seconds between looks at the lake (60)
OMNISEND_SEGMENTS               JSON list of segment names (default for the ``segments`` param)
OMNISEND_POOL                   an Airflow pool for the exports (default: none, see below)
OMNISEND_POOL_SLOTS             exports running at once (default 2): the cap on this DAG's
                                exports without ``OMNISEND_POOL``; they share the connection's
                                budget through the brand-wide limiter; budget ÷ this is the
                                fallback split
OMNISEND_DEFERRABLE             wait in the triggerer, not a worker slot (default true)
OMNISEND_SENSOR_TIMEOUT         seconds to wait for a new export (default 6 h)
OMNISEND_SKIP_NO_EXPORT         no new export by then: skip (default true) or fail (false)
OMNISEND_RETRIES                retries of each task (default 2); a retried export resumes where
                                the failed try stopped and re-sends at most the batches in flight
OMNISEND_RETRY_DELAY            seconds between tries (default 60)
==============================  ==============================================================

A Variable, else the environment (run time):

==============================  ==============================================================
OMNISEND_LAKE_PATH              the export folder (file://, abfs://, s3://, gs://); with the
                                ``asset`` schedule the Asset is the environment's value
OMNISEND_SOURCE_FORMAT          auto | cdm | parquet | csv | delta (default auto)
OMNISEND_MAPPING                JSON {omnisend_field: column} (default: Customer Insights' names)
OMNISEND_STATE_PATH             snapshots and watermarks (default $AIRFLOW_HOME/omnisend_state)
OMNISEND_REJECTS_PATH           rejected rows, a template rendered per task, e.g.
                                ``abfs://c/rejects/{{ run_id }}/{{ ti.map_index }}.parquet``
                                (default: in the state store, ``<state>/runs/<dag>/<day>/<run>/
                                <task>/rejects.parquet``, removed after the retention period).
                                With Celery or Kubernetes both paths must be storage every worker
                                sees (or OMNISEND_ALLOW_LOCAL_STATE=true for a shared mount)
OMNISEND_RETENTION_DAYS         run folders (the default rejects, the dry run's payload sample:
                                personal data) older than this are removed (default 30; 0 keeps)
OMNISEND_ALLOW_LOCAL_STATE      true: the local state/rejects paths are a mount every worker
                                shares (default false: refused under Celery/Kubernetes)
OMNISEND_CONN_ID                the Omnisend connection (default omnisend_default)
OMNISEND_LAKE_CONN_ID           the lake's connection, if it needs credentials
==============================  ==============================================================

The ``asset`` schedule: the lake Asset (``OMNISEND_LAKE_PATH``) has an AssetWatcher whose trigger looks
at the lake in the triggerer and fires once per new complete export of any segment of
``OMNISEND_SEGMENTS`` (complete and not yet exported, as the sensor decides; never twice for the same
export). The run it starts exports the segments its event names. The watcher is part of the schedule,
so it takes the environment's lake path, format, state path and connection ids (parse time), not
Variables: keep those in the environment when you use it.

What the DAG produces: each successful export adds an event to its segment's Asset
``omnisend://<brand>/<segment>`` (through the AssetAlias ``omnisend_segment_exports``; ``brand`` is
the connection's extra ``brand``, else its id) with the export's counts as the event's extra, so a
downstream DAG can run on ``schedule=[omnisend_segment_asset("<brand>", "<segment>")]``.

The pool: a task in a pool that does not exist is never scheduled, so the DAG needs none by default.
Its exports run in Airflow's ``default_pool``, at most ``OMNISEND_POOL_SLOTS`` of them at once
(``max_active_tis_per_dag``). To cap the exports of *several* DAGs to one brand together, create a pool
and name it: ``airflow pools set omnisend_api 2 "Omnisend exports at once per brand"``, then
``OMNISEND_POOL=omnisend_api`` (docker-compose does both).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, AssetAlias, AssetWatcher, Param, Variable, task, task_group
from jinja2 import pass_context
from jinja2.runtime import Context

from airflow_provider_omnisend.assets import SEGMENT_ASSETS_ALIAS
from airflow_provider_omnisend.hooks.lake import default_state_path
from airflow_provider_omnisend.hooks.omnisend import as_bool
from airflow_provider_omnisend.operators.export import OmnisendExportSegmentOperator
from airflow_provider_omnisend.sensors.export_ready import OmnisendSegmentExportSensor
from airflow_provider_omnisend.triggers.new_export import (
    OmnisendNewExportTrigger,
    segments_of_event_extras,
)

log = logging.getLogger("omnisend_segment_export")
CUSTOMER_INSIGHTS_MAPPING = {
    "email": "EmailAddress", "firstName": "FirstName", "lastName": "LastName", "address": "Address1",
    "city": "City", "state": "StateOrProvince", "postalCode": "PostalCode", "countryCode": "Country",
}


def setting(name: str, default: str) -> str:
    """The environment variable ``name``, else ``default``: for what shapes the DAG, read at parse time.

    Never a Variable here: parsing (every 30 s or so, by the dag-processor) must not reach the metadata
    database or the API server, and a Variable read at parse time only applies after the next parse.
    """
    value = os.environ.get(name)
    return default if value in (None, "") else str(value)


#: Settings the tasks read at run time (a Variable, else the environment, else this default, called if a
#: function; "" = unset).
RUN_TIME_DEFAULTS: dict[str, str | Callable[[], str]] = {
    "OMNISEND_LAKE_PATH": "file:///opt/airflow/lake/CustomerInsights_demo/OmnisendExport",
    "OMNISEND_SOURCE_FORMAT": "auto",
    "OMNISEND_MAPPING": json.dumps(CUSTOMER_INSIGHTS_MAPPING),
    "OMNISEND_STATE_PATH": default_state_path,  # the worker's $AIRFLOW_HOME/omnisend_state
    "OMNISEND_REJECTS_PATH": "",
    "OMNISEND_RETENTION_DAYS": "30",
    "OMNISEND_ALLOW_LOCAL_STATE": "false",
    "OMNISEND_CONN_ID": "omnisend_default",
    "OMNISEND_LAKE_CONN_ID": "",
}


@pass_context
def var_or_env(context: Context, name: str, kind: str = "text") -> Any:
    """Template macro: the Variable ``name``, else the environment variable, else its default (None when
    all are empty). Runs when a task renders its arguments, never at parse time. A value holding a
    template is rendered with the task's context; ``kind="json"`` parses it."""
    value = Variable.get(name, default=os.environ.get(name))
    if value in (None, ""):
        default = RUN_TIME_DEFAULTS[name]
        value = default() if callable(default) else default
    if value == "":
        return None
    value = str(value)
    if "{{" in value or "{%" in value:
        value = str(context.environment.from_string(value).render(context.get_all()))
    return json.loads(value) if kind == "json" else value


def run_time(name: str, kind: str = "text") -> str:
    """The template that reads setting ``name`` when the task runs."""
    return f"{{{{ var_or_env({name!r}, {kind!r}) }}}}"


def schedule_from(setting_value: str, lake_path: str, segments: list[str]) -> Any:
    """A cron/preset as given; ``none``: manual runs only; ``asset``: the lake Asset with its watcher."""
    kind = setting_value.strip().lower()
    if kind == "none":
        return None
    if kind != "asset":
        return setting_value
    # a computed default (the state path) is left to the trigger, which computes the same in the triggerer
    env = {name: setting(name, default if isinstance(default, str) else "")
           for name, default in RUN_TIME_DEFAULTS.items()}
    trigger = OmnisendNewExportTrigger(
        source=lake_path, segments=segments, omnisend_conn_id=env["OMNISEND_CONN_ID"],
        state_path=env["OMNISEND_STATE_PATH"] or None, source_format=env["OMNISEND_SOURCE_FORMAT"],
        lake_conn_id=env["OMNISEND_LAKE_CONN_ID"] or None,
        poll_interval=float(setting("OMNISEND_WATCH_INTERVAL", "60")),
    )
    return [Asset(lake_path, watchers=[AssetWatcher(name="omnisend_new_export", trigger=trigger)])]


LAKE_PATH = setting("OMNISEND_LAKE_PATH", RUN_TIME_DEFAULTS["OMNISEND_LAKE_PATH"])  # the Asset's URI
SEGMENTS = json.loads(setting("OMNISEND_SEGMENTS", '["HighValueCustomers"]'))
DEFERRABLE = as_bool(setting("OMNISEND_DEFERRABLE", "true"))
POOL = setting("OMNISEND_POOL", "default_pool")
POOL_SLOTS = max(1, int(setting("OMNISEND_POOL_SLOTS", "2")))

with DAG(
    dag_id="omnisend_segment_export",
    description="Customer Insights segments -> Omnisend (incremental, confirmed, resumable)",
    schedule=schedule_from(setting("OMNISEND_EXPORT_SCHEDULE", "@daily"), LAKE_PATH, SEGMENTS),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": int(setting("OMNISEND_RETRIES", "2")),
                  "retry_delay": timedelta(seconds=float(setting("OMNISEND_RETRY_DELAY", "60")))},
    tags=["omnisend", "customer-insights"],
    params={
        "segments": Param(SEGMENTS, type="array", items={"type": "string", "minLength": 1}, minItems=1,
                          description="Segments to export (entities of the Customer Insights export)."),
        "dry_run": Param(False, type="boolean",
                         description="Read, map and validate; write rejects and a sample; send nothing."),
        "full_refresh": Param(False, type="boolean",
                              description="Ignore the last snapshot and send every contact (implies force)."),
        "force": Param(False, type="boolean",
                       description="Export the latest complete export even if it was already exported."),
        "max_profiles": Param(1_000_000, type="integer", minimum=1,
                              description="Fail before sending when a segment has more valid profiles."),
        "mode": Param("upsert", type="string", enum=["upsert", "mirror"],
                      description="mirror also removes the segment tag from contacts who left."),
        "mirror_scope": Param("snapshot", type="string", enum=["snapshot", "tag"],
                              description="mirror: snapshot untags who left since the last run, by e-mail; "
                                          "tag lists every holder of the tag and untags who is not in "
                                          "the export (also contacts tagged outside this product)."),
    },
    render_template_as_native_obj=True,
    user_defined_macros={"var_or_env": var_or_env},
) as dag:

    @task
    def segments_to_export(params: dict[str, Any] | None = None,
                           triggering_asset_events: Any = None) -> list[str]:
        """The ``segments`` param; in a run the lake watcher started, those of them its event names."""
        wanted = list((params or {})["segments"])
        extras = [e.extra for events in (triggering_asset_events or {}).values() for e in events]
        announced = segments_of_event_extras(extras)
        return [s for s in wanted if s in announced] or wanted

    @task_group(group_id="segment")
    def export_segment(segment: str) -> Any:
        ready = OmnisendSegmentExportSensor(
            task_id="wait_for_export",
            source=run_time("OMNISEND_LAKE_PATH"),
            source_format=run_time("OMNISEND_SOURCE_FORMAT"),
            segment=segment,
            lake_conn_id=run_time("OMNISEND_LAKE_CONN_ID"),
            omnisend_conn_id=run_time("OMNISEND_CONN_ID"),
            state_path=run_time("OMNISEND_STATE_PATH"),
            deferrable=DEFERRABLE,
            poll_interval=30,
            timeout=int(setting("OMNISEND_SENSOR_TIMEOUT", str(6 * 3600))),
            mode="reschedule" if not DEFERRABLE else "poke",
            force="{{ params.force or params.full_refresh }}",
            soft_fail=as_bool(setting("OMNISEND_SKIP_NO_EXPORT", "true")),
        )
        exported = OmnisendExportSegmentOperator(
            task_id="export",
            source=ready.output,
            segment=segment,
            mapping=run_time("OMNISEND_MAPPING", "json"),
            omnisend_conn_id=run_time("OMNISEND_CONN_ID"),
            lake_conn_id=run_time("OMNISEND_LAKE_CONN_ID"),
            state_path=run_time("OMNISEND_STATE_PATH"),
            rejects_path=run_time("OMNISEND_REJECTS_PATH"),
            # the default rejects go to the state store, which every worker sees
            runs_path="{{ var_or_env('OMNISEND_STATE_PATH').rstrip('/') }}/runs",
            retention_days=run_time("OMNISEND_RETENTION_DAYS"),
            allow_local_state=run_time("OMNISEND_ALLOW_LOCAL_STATE"),
            dry_run="{{ params.dry_run }}",
            full_refresh="{{ params.full_refresh }}",
            max_profiles="{{ params.max_profiles }}",
            mode="{{ params.mode }}",
            mirror_scope="{{ params.mirror_scope }}",
            rate_share=POOL_SLOTS,
            pool=POOL,
            max_active_tis_per_dag=POOL_SLOTS,
            # each successful export adds an event to its segment's Asset, omnisend://<brand>/<segment>
            outlets=[AssetAlias(SEGMENT_ASSETS_ALIAS)],
        )
        ready >> exported
        return exported.output

    @task
    def summarize(summaries: list[dict[str, Any]]) -> dict[str, Any]:
        """Log one row of counts per segment, and where the rejects went."""
        if isinstance(summaries, dict):  # one mapped segment: Airflow hands over its summary alone
            summaries = [summaries]
        columns = ("segment", "rows_read", "valid", "rejected", "duplicates", "new", "changed",
                   "unchanged", "removed", "sent", "batches", "duration_s")
        rows = [[str(s.get(c, "")) for c in columns] for s in summaries if s]
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
        line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
        table = [line, "-" * len(line)]
        table += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        # Logged line by line, not printed: the task log shows them in order, in its body (stdout would
        # reach it whenever the pipe is read, possibly inside the collapsed "Post Execute" group).
        for text in ["Omnisend export summary", *table]:
            log.info("%s", text)
        for s in summaries:
            if s and s.get("rejected"):
                reasons = ", ".join(f"{k}={v}" for k, v in sorted((s.get("reasons") or {}).items()))
                log.info("Rejects for %s: %s (%s rows; %s)", s["segment"], s["rejects_path"], s["rejected"],
                         reasons)
        return {"segments": len(rows), "sent": sum(int(s.get("sent", 0)) for s in summaries if s)}

    summarize(export_segment.expand(segment=segments_to_export()))
