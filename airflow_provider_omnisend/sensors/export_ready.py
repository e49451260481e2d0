"""Wait until the lake holds a complete export of a segment that has not been sent to Omnisend yet.

The sensor keeps no state between pokes (so ``mode="reschedule"`` works): "already exported" comes
from the watermark the export operator writes after a successful export. Its XCom value is the
resolved export (``ResolvedExport.to_dict()``), so the operator reads exactly the refresh seen here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

from airflow_provider_omnisend.api.errors import OmnisendConfigError
from airflow_provider_omnisend.hooks.lake import default_state_path
from airflow_provider_omnisend.hooks.omnisend import bool_arg
from airflow_provider_omnisend.lake import watermark_key
from airflow_provider_omnisend.triggers.export_ready import ExportWatch, OmnisendExportReadyTrigger


class ExportWaitError(RuntimeError):
    """The trigger stopped on an error waiting cannot fix (no access, unknown entity, bad manifest)."""


class OmnisendSegmentExportSensor(BaseSensorOperator):
    """Succeed when a complete, new export of ``segment`` is in the lake; push it to XCom.

    :param source: the export folder or file (local, file://, abfs://, az://, s3://, gs://).
    :param segment: the Omnisend segment this export feeds; also picks the CDM entity by name.
    :param source_format: "auto", "cdm", "parquet", "csv" or "delta".
    :param entity: the CDM entity, when it is not named like the segment.
    :param lake_conn_id: Airflow connection with the lake credentials (none: fsspec defaults/env).
    :param omnisend_conn_id: the Omnisend connection the export goes to (part of the watermark key).
    :param state_path: folder of the watermark files (default ``$AIRFLOW_HOME/omnisend_state``).
    :param deferrable: wait in the triggerer instead of a worker slot (after one poke); default:
        Airflow's ``[operators] default_deferrable``.
    :param poll_interval: seconds between looks at the lake.
    :param force: return the newest complete export even when it was already exported (a manual
        re-run); templated, e.g. ``"{{ params.force or params.full_refresh }}"``.
    :param soft_fail: a day without a new export ends as a *skip* with a message saying what was
        expected (default True); False makes the timeout a failure. Errors waiting cannot fix (no
        access, unknown entity, bad manifest) fail either way.
    """

    template_fields: Sequence[str] = (
        "source", "source_format", "segment", "entity", "state_path", "lake_conn_id", "omnisend_conn_id",
        "force",
    )
    ui_color = "#c6e7f0"

    def __init__(
        self,
        *,
        source: str,
        segment: str,
        source_format: str = "auto",
        entity: str | None = None,
        lake_conn_id: str | None = None,
        omnisend_conn_id: str = "omnisend_default",
        state_path: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 60.0,
        force: bool | str = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        kwargs.setdefault("soft_fail", True)
        super().__init__(**kwargs)
        self.source = source
        self.segment = segment
        self.source_format = source_format
        self.entity = entity
        self.lake_conn_id = lake_conn_id
        self.omnisend_conn_id = omnisend_conn_id
        self.state_path = state_path
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.force = force

    @property
    def _state_path(self) -> str:
        return self.state_path or default_state_path()

    @property
    def _watermark_key(self) -> str:
        return watermark_key(self.omnisend_conn_id, self.segment)

    def _watch(self) -> ExportWatch:
        return ExportWatch(
            source=self.source, segment=self.segment, state_path=self._state_path,
            watermark_key=self._watermark_key, source_format=self.source_format, entity=self.entity,
            lake_conn_id=self.lake_conn_id, force=bool_arg(self.force, "force"),
        )

    def poke(self, context: Any) -> PokeReturnValue:
        check = self._watch().check()
        if check.export is None:
            (self.log.warning if check.path_missing else self.log.info)("Not yet: %s", check.reason)
            return PokeReturnValue(is_done=False)
        self.log.info("Ready: %s, %d file(s).", check.reason, len(check.export.files))
        return PokeReturnValue(is_done=True, xcom_value=check.export.to_dict())

    def execute(self, context: Any) -> Any:
        try:
            bool_arg(self.force, "force")
        except OmnisendConfigError as err:
            raise AirflowFailException(str(err)) from None  # a setting: no retry can fix it
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout as err:
                raise AirflowSensorTimeout(self._timeout_message(err)) from err
            except AirflowSkipException as err:  # soft_fail: the base sensor's timeout, as a skip
                raise AirflowSkipException(self._timeout_message(err)) from err
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        watch = self._watch()
        self.defer(
            trigger=OmnisendExportReadyTrigger(
                **asdict(watch), last_export_id=watch.last_exported(),
                poll_interval=self.poll_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: return the export, or fail with the trigger's message."""
        if event and event.get("status") == "success" and isinstance(event.get("export"), dict):
            return event["export"]
        message = (event or {}).get("message", "the trigger returned no event")
        # A plain error, not an AirflowException: soft_fail must not turn a lake error into a skip.
        raise ExportWaitError(f"Waiting for a new export of segment {self.segment!r} failed: {message}")

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSensorTimeout as err:
            raise AirflowSensorTimeout(self._timeout_message(err)) from err
        except AirflowSkipException as err:  # soft_fail: only the deferral's timeout becomes a skip
            raise AirflowSkipException(self._timeout_message(err)) from err

    def _timeout_message(self, err: BaseException) -> str:
        try:
            last = repr(self._watch().last_exported())
        except Exception as read_err:  # the timeout message must not be masked by a second failure
            last = f"unknown ({type(read_err).__name__})"
        entity = f" of entity {self.entity!r}" if self.entity else ""
        return (
            f"No new complete export appeared in time: expected a {self.source_format!r} export{entity} for "
            f"segment {self.segment!r} in {self.source!r}, different from the last exported one ({last}, "
            f"watermark {self._watermark_key!r} in {self._state_path!r}). Check that the lake export ran "
            "and finished (every partition its manifest lists must exist) or raise `timeout`; to export "
            "the last one again, trigger with force=true. "
            f"({err})"
        )
