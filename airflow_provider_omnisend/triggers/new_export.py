"""Start a DAG when a new complete export lands in the lake: the event trigger of an ``AssetWatcher``.

``schedule=[Asset(lake_url, watchers=[AssetWatcher(name=..., trigger=OmnisendNewExportTrigger(...))])]``
makes Airflow run this trigger in the triggerer for as long as the DAG is deployed; every event it yields
becomes an asset event of the lake Asset, which queues one DAG run.

"New" means what the export-ready sensor means by it (:meth:`ExportWatch.check`, shared, not copied): the
newest complete export of a segment, different from the watermark the export operator writes after a
successful export. On top of that the trigger must not announce the same export twice while the run it
started is still exporting (the watermark moves only at the end), nor after a triggerer restart. So it
remembers the export id it announced per segment in Airflow's asset state store (the watched Asset's
``asset_state_store``, kept in the metadata DB), and compares with both. It writes that record after the
event is handed to the triggerer: a crash in between can announce an export twice (the second run's
sensors find nothing new and skip), never lose one.

The kwargs are configuration only (no watermark, no time): Airflow identifies an asset trigger by
``BaseEventTrigger.hash(classpath, kwargs)``, so a kwarg that changed at every parse would replace the
trigger, and its memory, at every parse. Lake errors are logged and retried at the next poll instead of
ending the trigger: an event trigger that exits stops the schedule.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_omnisend.hooks.lake import default_state_path
from airflow_provider_omnisend.lake import watermark_key
from airflow_provider_omnisend.lake.errors import safe_reason
from airflow_provider_omnisend.triggers.export_ready import ExportWatch

#: Key prefix of the announced export ids in the watched Asset's state store (one key per segment).
ANNOUNCED_PREFIX = "omnisend_announced:"


@dataclass(frozen=True)
class NewExport:
    """One segment's export announced by an event (JSON-safe, no data, no secret)."""

    segment: str
    export_id: str
    refresh_time: str | None
    files: int

    def to_dict(self) -> dict[str, Any]:
        return {"segment": self.segment, "export_id": self.export_id, "refresh_time": self.refresh_time,
                "files": self.files}


def segments_of_event_extras(extras: Sequence[Any]) -> list[str]:
    """The segments named by the events of this trigger, from the asset events' ``extra`` (as Airflow
    stores them: ``{"from_trigger": True, "payload": {...}}``), in order, without repeats."""
    out: list[str] = []
    for extra in extras:
        payload = (extra or {}).get("payload") if isinstance(extra, dict) else None
        exports = payload.get("exports") if isinstance(payload, dict) else None
        for item in exports if isinstance(exports, list) else ():
            segment = item.get("segment") if isinstance(item, dict) else None
            if isinstance(segment, str) and segment and segment not in out:
                out.append(segment)
    return out


class OmnisendNewExportTrigger(BaseEventTrigger):
    """Poll the lake every ``poll_interval`` seconds; yield one event per new complete export.

    One event may announce several segments (those new at the same poll). Payload::

        {"status": "new_export", "source": ..., "exports": [{"segment", "export_id", "refresh_time",
         "files"}, ...]}

    :param source: the export folder (the lake Asset's URL).
    :param segments: the segments (CDM entities) to watch.
    :param omnisend_conn_id: the connection the exports go to (part of each watermark key).
    :param state_path: folder of the watermarks; None: ``$AIRFLOW_HOME/omnisend_state`` of the triggerer.
    :param source_format: / :param lake_conn_id: as for the export-ready sensor.
    """

    def __init__(self, *, source: str, segments: Sequence[str], omnisend_conn_id: str = "omnisend_default",
                 state_path: str | None = None, source_format: str = "auto", lake_conn_id: str | None = None,
                 poll_interval: float = 60.0) -> None:
        super().__init__()
        if isinstance(segments, str) or not segments:
            raise ValueError(f"segments must be a non-empty list of segment names, got {segments!r}")
        self.source = source
        self.segments = [str(s) for s in segments]
        self.omnisend_conn_id = omnisend_conn_id
        self.state_path = state_path
        self.source_format = source_format
        self.lake_conn_id = lake_conn_id
        self.poll_interval = float(poll_interval)
        #: announced export id per watermark key (loaded from the asset state store when run)
        self.announced: dict[str, str] = {}
        #: the last lake error per segment, logged once
        self._errors: dict[str, str] = {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"source": self.source, "segments": list(self.segments),
             "omnisend_conn_id": self.omnisend_conn_id, "state_path": self.state_path,
             "source_format": self.source_format, "lake_conn_id": self.lake_conn_id,
             "poll_interval": self.poll_interval},
        )

    def watches(self) -> list[ExportWatch]:
        state_path = self.state_path or default_state_path()
        return [ExportWatch(source=self.source, segment=segment, state_path=state_path,
                            watermark_key=watermark_key(self.omnisend_conn_id, segment),
                            source_format=self.source_format, lake_conn_id=self.lake_conn_id)
                for segment in self.segments]

    def new_exports(self) -> list[NewExport]:
        """One look at the lake (blocking): the exports neither exported nor announced yet."""
        found = []
        for watch in self.watches():
            try:
                check = watch.check(last_export_id=self.announced.get(watch.watermark_key))
            except Exception as err:  # a lake error must not end the schedule: log it, look again later
                self._report_error(str(watch.segment), safe_reason(err))
                continue
            self._errors.pop(str(watch.segment), None)
            if check.export is None:
                self.log.debug("Segment %r: %s", watch.segment, check.reason)
                continue
            found.append(NewExport(segment=str(watch.segment), export_id=check.export.export_id,
                                   refresh_time=check.export.refresh_time, files=len(check.export.files)))
        return found

    def _report_error(self, segment: str, reason: str) -> None:
        """Log a lake error at ERROR when it first appears (then at DEBUG, not once a poll for days)."""
        seen = self._errors.get(segment) == reason
        self._errors[segment] = reason
        (self.log.debug if seen else self.log.error)(
            "Cannot check %r for a new export of segment %r (checked again every %.0fs): %s",
            self.source, segment, self.poll_interval, reason)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await self._load_announced()
        while True:
            fresh = await asyncio.to_thread(self.new_exports)
            if fresh:
                self.log.info("New export(s) in %r: %s", self.source,
                              ", ".join(f"{e.segment}={e.export_id}" for e in fresh))
                yield TriggerEvent({"status": "new_export", "source": self.source,
                                    "exports": [e.to_dict() for e in fresh]})
                await self._remember(fresh)
            await asyncio.sleep(self.poll_interval)

    async def _load_announced(self) -> None:
        store = self.asset_state_store
        if store is None:  # not run as an asset watcher (a test, a plain trigger): memory only
            return
        for watch in self.watches():
            try:
                value = await store.aget(ANNOUNCED_PREFIX + watch.watermark_key)
            except Exception as err:
                self.log.warning("Cannot read the announced export of segment %r from the asset state "
                                 "store (%s); the watermark alone decides", watch.segment, safe_reason(err))
                continue
            if isinstance(value, str) and value:
                self.announced[watch.watermark_key] = value

    async def _remember(self, exports: Sequence[NewExport]) -> None:
        keys = {e.segment: watermark_key(self.omnisend_conn_id, e.segment) for e in exports}
        for export in exports:
            self.announced[keys[export.segment]] = export.export_id
        store = self.asset_state_store
        if store is None:
            return
        for export in exports:
            try:
                await store.aset(ANNOUNCED_PREFIX + keys[export.segment], export.export_id)
            except Exception as err:  # kept in memory: only a triggerer restart could announce it again
                self.log.warning("Cannot record the announced export %r in the asset state store: %s",
                                 export.export_id, safe_reason(err))
