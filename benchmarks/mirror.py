"""Mirror mode's requests to untag who left: the sealed e-mails against listing the tag (#17 item 4).

A first, full run sends every member to the emulator (its rate limit lifted so the set-up is quick) with
a ``state_secret``, so its snapshot carries the sealed e-mails; the state folder is copied. Then 1% of
the members leave and the export runs again in ``mode="mirror"`` under the published limits (400
requests per emulated minute, 60 for ``/contacts/tags``), twice from the same state:

* ``mirror_scope="snapshot"`` (default): the leavers' e-mails are opened from the sealed e-mails and
  untagged by e-mail: ⌈leavers / 250⌉ ``DELETE /contacts/tags``, no listing;
* ``mirror_scope="tag"`` (what every mirror run cost before): every holder of the tag is listed,
  ⌈holders / 250⌉ ``GET /contacts``, then the same untag by contact id.

Between the two, the leavers get the tag back. Counted: requests per route from the client, and the
mirror step's time, projected to real time (the emulated minute is ``60 × time_scale`` seconds).
"""

from __future__ import annotations

import math
import shutil
import time
from typing import Any

import numpy as np
import pyarrow as pa

from airflow_provider_omnisend.lake import iter_batches

from .common import (
    BRAND_RPM,
    SEGMENT,
    Context,
    EngineRun,
    Figure,
    Section,
    at_most,
    emulator,
    make_client,
    run_engine,
)
from .data import lakes_before_after

SECRET = b"benchmark-state-secret"
UNLIMITED = 1_000_000
TAGS_PAGE = 250
LIST, UNTAG = "GET /contacts", "DELETE /contacts/tags"


def _leave(table: pa.Table, fraction: float, *, seed: int = 17) -> tuple[pa.Table, list[str]]:
    """``table`` without ``fraction`` of its rows (chosen at random), and the e-mails of those rows."""
    gone = np.random.default_rng(seed).random(table.num_rows) < fraction
    emails = table.column("EmailAddress").filter(pa.array(gone)).to_pylist()
    return table.filter(pa.array(~gone)), emails


def _facts(run: EngineRun, client: Any, scale: Any) -> dict[str, Any]:
    s = run.summary
    mirror_s = run.phases["mirror"]
    return {
        "seconds": run.seconds,
        "phases": run.phases,
        "removed": s.removed,
        "untagged": s.untagged,
        "mirror_via": s.mirror_via,
        "holders_listed": s.mirror_listed,
        "sent": s.sent,
        "requests": dict(client.routes),
        "mirror_requests": client.routes[LIST] + client.routes[UNTAG],
        "mirror_seconds": mirror_s,
        "mirror_real_minutes": round(scale.minutes(mirror_s), 2),
    }


def _wait_tags(emu: Any, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while emu.state()["tag_operations_pending"] and time.monotonic() < deadline:
        time.sleep(0.2)


def measure(ctx: Context) -> Section:
    rows, fraction = ctx.sizes["rows"], ctx.sizes["leavers"]
    scale = ctx.scale
    section = Section("mirror", f"8. Mirror: untag {fraction:.0%} leavers of {rows:,} members")
    first_lake, second_lake, leaver_rows = lakes_before_after(rows, ctx.work,
                                                              lambda table: _leave(table, fraction))
    columns = list(first_lake.columns)
    work_snapshot, work_tag = ctx.work / "engine-snapshot", ctx.work / "engine-tag"
    tag = f"segment: {SEGMENT}"
    with emulator(scale, log_dir=ctx.work) as emu:
        emu.configure(rpm=0)
        seed_client = make_client(emu.api_url, scale, UNLIMITED)
        seed = run_engine(client=seed_client, batches=iter_batches(first_lake, columns=columns),
                          columns=columns, work=work_snapshot, scale=scale, state_secret=SECRET)
        shutil.copytree(work_snapshot / "state", work_tag / "state")
        emu.configure(rpm=BRAND_RPM)
        time.sleep(scale.window_s)  # the set-up's requests leave the window

        def mirror_run(work: Any, scope: str) -> tuple[EngineRun, Any]:
            client = make_client(emu.api_url, scale, BRAND_RPM)
            run = run_engine(client=client, batches=iter_batches(second_lake, columns=columns),
                             columns=columns, work=work, scale=scale, state_secret=SECRET, mode="mirror",
                             mirror_scope=scope)
            _wait_tags(emu)
            return run, client

        cheap, cheap_client = mirror_run(work_snapshot, "snapshot")
        # The leavers get the tag back, so the listing run starts from the same Omnisend state.
        time.sleep(scale.window_s)  # a new client: the untag calls must leave the tags window first
        retag = make_client(emu.api_url, scale, BRAND_RPM)
        valid_leavers = sorted({e.strip().lower() for e in leaver_rows})
        retag.add_tags([tag], valid_leavers)
        _wait_tags(emu)
        time.sleep(scale.window_s)
        listing, listing_client = mirror_run(work_tag, "tag")
    a, b = _facts(cheap, cheap_client, scale), _facts(listing, listing_client, scale)
    section.details = {"members": seed.summary.valid, "leaver_rows": len(leaver_rows), "first_run": {
                           "seconds": seed.seconds, "phases": seed.phases, "sent": seed.summary.sent},
                       "snapshot_scope": a, "tag_scope": b}
    leavers = a["removed"]
    allowed = math.ceil(leavers / TAGS_PAGE)
    section.add(
        Figure(
            "leavers untagged (snapshot scope; tag scope)",
            a["untagged"],
            "",
            ratio=round(a["untagged"] / max(leavers, 1), 4),
            ratio_of=f"contacts that left ({leavers:,}); the tag scope untagged {b['untagged']:,}",
            target=f"= {leavers:,}",
            ok=a["untagged"] == leavers == b["untagged"],
        ),
        Figure(
            "mirror requests, sealed e-mails (snapshot scope)",
            a["mirror_requests"],
            "",
            ratio=round(a["mirror_requests"] / max(b["mirror_requests"], 1), 4),
            ratio_of=f"listing the tag ({b['mirror_requests']:,}: {b['requests'].get(LIST, 0):,} GET "
            f"/contacts for {b['holders_listed']:,} holders + {b['requests'].get(UNTAG, 0):,} DELETE)",
            target=f"≤ ⌈{leavers:,} / 250⌉ = {allowed:,}",
            ok=at_most(a["mirror_requests"], allowed) and a["requests"].get(LIST, 0) == 0,
        ),
        Figure(
            "mirror step, projected real time (snapshot scope)",
            a["mirror_real_minutes"],
            "min",
            ratio=round(a["mirror_seconds"] / max(b["mirror_seconds"], 1e-9), 4),
            ratio_of=f"listing the tag ({b['mirror_real_minutes']:g} min)",
        ),
        Figure(
            f"sealing {seed.summary.valid:,} e-mails beside the snapshot (every run)",
            round(cheap.phases["seal"], 3),
            "s",
            ratio=round(cheap.phases["seal"] / max(cheap.phases["snapshot"], 1e-9), 3),
            ratio_of="writing the snapshot itself",
        ),
    )
    return section
