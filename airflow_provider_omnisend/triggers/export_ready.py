"""Wait in the triggerer for a complete, not yet exported export in the lake.

The check itself (``ExportWatch.check``) is shared with the sensor's ``poke`` so both decide "new export"
the same way. Lake listings are blocking fsspec calls, so the trigger runs them in a worker thread
(``asyncio.to_thread``) and never blocks the triggerer's event loop. Trigger kwargs hold only names and
paths: credentials are looked up from the Airflow connection inside the triggerer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_omnisend.hooks.lake import companion_storage_options, lake_filesystem
from airflow_provider_omnisend.lake import (
    ExportNotReady,
    LakeError,
    LakePathNotFound,
    ResolvedExport,
    read_watermark,
    resolve_export,
)
from airflow_provider_omnisend.lake.errors import safe_reason


@dataclass(frozen=True)
class ExportCheck:
    """The outcome of one look at the lake: a new export, or why there is none."""

    export: ResolvedExport | None
    reason: str
    path_missing: bool = False


@dataclass(frozen=True)
class ExportWatch:
    """What the sensor and its trigger watch: where the export lands and where its watermark is.

    Only names and paths (JSON-serialisable, secret-free): it is part of the trigger's kwargs.
    """

    source: str
    segment: str | None
    state_path: str
    watermark_key: str
    source_format: str = "auto"
    entity: str | None = None
    lake_conn_id: str | None = None
    #: Return the newest complete export even when it was already exported (a re-run on demand).
    force: bool = False

    def check(self, *, last_export_id: str | None = None) -> ExportCheck:
        """Resolve the newest complete export; it is new when its id differs from the watermark.

        With ``force`` the newest complete export is returned whatever the watermark says.
        Not-ready and missing-path are outcomes (keep waiting); other lake errors (unknown entity, bad
        manifest, no access) raise, because waiting will not fix them.
        """
        fs = lake_filesystem(self.source, self.lake_conn_id)
        try:
            export = resolve_export(self.source, format=self.source_format, entity=self.entity,
                                    segment=self.segment, filesystem=fs)
        except ExportNotReady as err:
            return ExportCheck(export=None, reason=str(err))
        except LakePathNotFound as err:
            return ExportCheck(export=None, reason=str(err), path_missing=True)
        if self.force:
            return ExportCheck(export=export, reason=f"export {export.export_id!r} (force: exported again "
                               "even if it was already)")
        done = self.last_exported()
        if export.export_id in {done, last_export_id}:
            return ExportCheck(
                export=None,
                reason=f"the newest complete export {export.export_id!r} in {self.source!r} was already "
                "exported",
            )
        return ExportCheck(export=export, reason=f"new export {export.export_id!r} (last exported: {done!r})")

    def last_exported(self) -> str | None:
        """The watermark: the export id last pushed to Omnisend (a state folder on the lake's store is
        read with the lake connection's credentials, as the export operator wrote it)."""
        options = companion_storage_options(self.state_path, lake_source=self.source,
                                            lake_conn_id=self.lake_conn_id)
        return read_watermark(self.state_path, self.watermark_key, storage_options=options)


class OmnisendExportReadyTrigger(BaseTrigger):
    """Poll the lake every ``poll_interval`` seconds until a new complete export appears.

    Yields one event: ``{"status": "success", "export": ResolvedExport.to_dict()}`` or
    ``{"status": "error", "message": ...}``. Keyword arguments: the fields of :class:`ExportWatch`,
    ``last_export_id`` (the watermark when the sensor deferred) and ``poll_interval``.
    """

    def __init__(self, *, last_export_id: str | None = None, poll_interval: float = 60.0,
                 **watch: Any) -> None:
        super().__init__()
        self.watch = ExportWatch(**watch)
        self.last_export_id = last_export_id
        self.poll_interval = float(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {**asdict(self.watch), "last_export_id": self.last_export_id,
             "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                check = await asyncio.to_thread(self.watch.check, last_export_id=self.last_export_id)
            except LakeError as err:
                yield TriggerEvent({"status": "error", "message": str(err)})
                return
            except Exception as err:  # report anything else as an event instead of killing the trigger
                yield TriggerEvent({
                    "status": "error",
                    "message": f"Checking {self.watch.source!r} for a new export failed: {safe_reason(err)}",
                })
                return
            if check.export is not None:
                yield TriggerEvent({"status": "success", "export": check.export.to_dict()})
                return
            self.log.info("Waiting %.0fs: %s", self.poll_interval, check.reason)
            await asyncio.sleep(self.poll_interval)
