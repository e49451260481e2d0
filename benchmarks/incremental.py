"""4. Incremental refresh: the next run after a complete one, with a share of the profiles changed.

A first, full run sends every contact to the emulator (its rate limit lifted so this set-up is quick) and
leaves its snapshot. Then ``FirstName`` changes on 1% of the rows and the export runs again under the
published limit (400 requests per emulated minute): only new and changed contacts may be sent.
"""

from __future__ import annotations

import time
from typing import Any

from airflow_provider_omnisend.lake import iter_batches

from .common import (
    BATCH_ITEMS,
    BRAND_RPM,
    Context,
    EngineRun,
    Figure,
    Section,
    at_most,
    demo_spec,
    emulator,
    make_client,
    run_engine,
)
from .data import change_first_names, lakes_before_after

MAX_DIFF_S = 10.0
MAX_BATCH_FACTOR = 1.1
UNLIMITED = 1_000_000


def _facts(run: EngineRun, client: Any) -> dict[str, Any]:
    s = run.summary
    return {
        "seconds": run.seconds,
        "phases": run.phases,
        "rows": s.rows_read,
        "valid": s.valid,
        "new": s.new,
        "changed": s.changed,
        "unchanged": s.unchanged,
        "sent": s.sent,
        "batches": s.batches,
        "requests": dict(client.routes),
        "api_rejected": s.api_rejected,
    }


def measure(ctx: Context) -> Section:
    rows, fraction = ctx.sizes["rows"], ctx.sizes["changed"]
    scale = ctx.scale
    section = Section("incremental", f"4. Incremental refresh ({rows:,} rows, {fraction:.0%} changed)")
    first_lake, second_lake, rows_changed = lakes_before_after(
        rows, ctx.work, lambda table: change_first_names(table, fraction))
    columns = demo_spec(first_lake.columns).source_columns
    work = ctx.work / "engine"
    with emulator(scale, log_dir=ctx.work) as emu:
        emu.configure(rpm=0)
        seed_client = make_client(emu.api_url, scale, UNLIMITED)
        seed = run_engine(
            client=seed_client,
            batches=iter_batches(first_lake, columns=columns),
            columns=first_lake.columns,
            work=work,
            scale=scale,
        )
        emu.configure(rpm=BRAND_RPM)
        time.sleep(scale.window_s)  # the next refresh comes later: the set-up's requests leave the window
        before = emu.state()
        client = make_client(emu.api_url, scale, BRAND_RPM)
        again = run_engine(
            client=client,
            batches=iter_batches(second_lake, columns=columns),
            columns=second_lake.columns,
            work=work,
            scale=scale,
        )
        after = emu.state()
    first, second = _facts(seed, seed_client), _facts(again, client)
    second["responses_429"] = after["responses_429"] - before["responses_429"]
    section.details = {"rows_changed": rows_changed, "first_run": first, "incremental_run": second}
    to_send = second["new"] + second["changed"]
    posts = client.routes["POST /batches"]
    allowed = MAX_BATCH_FACTOR * to_send / BATCH_ITEMS
    diff_s = again.phases["diff"]
    push_s = again.phases["push"]
    projected = (again.seconds - push_s) / 60 + scale.minutes(push_s)
    section.add(
        Figure(
            "contacts detected as new or changed",
            to_send,
            "",
            ratio=round(to_send / rows_changed, 3),
            ratio_of=f"rows whose FirstName changed ({rows_changed:,}; invalid and duplicate rows "
            "among them are not contacts)",
        ),
        Figure(
            f"diff against the {first['valid']:,}-row snapshot",
            round(diff_s, 3),
            "s",
            ratio=round(diff_s / again.phases["prepare"], 3),
            ratio_of="reading and preparing the same rows",
            target=f"≤ {MAX_DIFF_S:g}",
            ok=at_most(diff_s, MAX_DIFF_S),
        ),
        Figure(
            "snapshot read + diff + snapshot write",
            round(again.phases["load_state"] + diff_s + again.phases["snapshot"], 3),
            "s",
        ),
        Figure(
            "POST /batches sent",
            posts,
            "",
            ratio=round(posts / seed_client.routes["POST /batches"], 4),
            ratio_of="the first, full run",
            target=f"≤ {allowed:,.1f} (1.1 × changed ÷ 100)",
            ok=at_most(posts, allowed),
        ),
        Figure(
            "all requests (batches + confirmation)",
            client.total,
            "",
            ratio=round(client.total / seed_client.total, 4),
            ratio_of="the first, full run",
        ),
        Figure("429 responses", second["responses_429"], "", target="0", ok=second["responses_429"] == 0),
        Figure(
            "whole incremental run",
            round(again.seconds, 2),
            "s",
            ratio=round(again.seconds / seed.seconds, 3),
            ratio_of="the first run (its rate limit lifted)",
        ),
        Figure(
            f"projected real time at {BRAND_RPM}/min",
            round(projected, 2),
            "min",
            ratio=round(projected / (rows / (BRAND_RPM * BATCH_ITEMS)), 3),
            ratio_of=f"a full send at {BRAND_RPM}/min ({rows / (BRAND_RPM * BATCH_ITEMS):g} min)",
        ),
    )
    return section
