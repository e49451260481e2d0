"""OmnisendExportSegmentOperator: Customer Insights' "Export segments to Omnisend", as an Airflow task.

Thin glue: it renders the arguments, turns the connection into a client, resolves the lake export and
hands everything to :class:`~airflow_provider_omnisend.export.engine.ExportEngine`. Progress lives in the
task state store (kept across retries, unlike XCom), so a retry after a crash continues.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from airflow.sdk import Asset, AssetAlias, BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_provider_omnisend.api.client import OmnisendClient
from airflow_provider_omnisend.api.errors import (
    OmnisendAuthError,
    OmnisendConfigError,
    OmnisendVersionRetiredError,
)
from airflow_provider_omnisend.api.versions import ApiVersion
from airflow_provider_omnisend.assets import check_brand, event_extra, omnisend_segment_asset
from airflow_provider_omnisend.export.engine import (
    ExportEngine,
    ExportLimitError,
    ExportOptions,
    RejectRatioExceeded,
)
from airflow_provider_omnisend.export.mapping import MappingError, MappingSpec
from airflow_provider_omnisend.export.progress import MemoryProgressStore
from airflow_provider_omnisend.export.redact import redact_payload
from airflow_provider_omnisend.export.rejects import RejectsWriter, rejects_schema
from airflow_provider_omnisend.export.retention import day_folder, prune_day_folders
from airflow_provider_omnisend.export.scratch import FolderLock, hold, remove_abandoned
from airflow_provider_omnisend.hooks.lake import (
    companion_storage_options,
    default_state_path,
    lake_filesystem,
)
from airflow_provider_omnisend.hooks.omnisend import OmnisendHook, bool_arg
from airflow_provider_omnisend.hooks.placement import check_shared_paths
from airflow_provider_omnisend.lake import LakeError, ResolvedExport, iter_batches, resolve_export
from airflow_provider_omnisend.lake.errors import safe_reason
from airflow_provider_omnisend.lake.watermark import read_watermark, watermark_key, write_watermark
from airflow_provider_omnisend.lineage import ExportLineage
from airflow_provider_omnisend.links import OmnisendSegmentLink, segment_contacts_url

#: Customer Insights documents at most 1 million profiles per Omnisend export.
DEFAULT_MAX_PROFILES = 1_000_000
#: Run folders (rejects, payload samples: personal data) are removed after this many days.
DEFAULT_RETENTION_DAYS = 30
DEFAULT_SEGMENT_TAG = "segment: {segment}"


class OmnisendExportSegmentOperator(BaseOperator):
    """Export one segment from the lake into Omnisend.

    :param source: the export: a URL (``file://``, ``abfs://``, ``s3://`` ...), an ``ObjectStoragePath``,
        or the dict the export-ready sensor returns (pass ``sensor.output``).
    :param source_format: ``auto``, ``cdm``, ``parquet``, ``csv`` or ``delta``.
    :param segment: the segment's name (picks the CDM entity and names the segment tag).
    :param mapping: ``{omnisend_field: source_column}``; ``email`` is required.
    :param custom_properties: ``{omnisend_property: source_column}``.
    :param custom_property_types: ``{omnisend_property: "number"|"boolean"|"date"|"string"|"list"}``:
        send those properties as JSON numbers, booleans, ISO-8601 dates or arrays of strings (a text
        column split on ``;``, or on ``x`` with ``"list:x"``; list columns are arrays already)
        (default: strings, or the type the source declares); a value that does not fit is a field
        warning.
    :param tags: static tags added to every contact.
    :param segment_tag: the segment tag (default ``segment: <segment>``); ``None`` turns it off.
    :param email_status: / :param sms_status: a channel status column or ``{"constant": "subscribed"}``.
        Unmapped (the default), no status is sent, so nobody is ever resubscribed.
    :param status_changed_at: when a mapped status changed: a column or ``{"constant": "<RFC 3339>"}``,
        sent as ``statusChangedAt`` so Omnisend can tell a stale status from a newer one.
    :param consent: ``{"createdAt"|"source"|"ip"|"userAgent": column or {"constant": text}}``, sent as
        the e-mail identifier's ``consent``.
    :param send_welcome_message: Omnisend defaults to sending one; we send ``false`` unless this is True.
    :param on_invalid_field: ``drop_field`` (default): a contact with an invalid optional field (phone,
        country, birthdate, a custom property...) is sent without it and the problem is listed in the
        rejects file as a field warning; ``reject_row``: such a row is rejected. A missing or invalid
        e-mail always rejects the row.
    :param default_phone_region: ISO alpha-2 region (e.g. ``FR``) of national phone numbers
        (``06 12 34 56 78``) in rows without a mapped country; a row's mapped country wins.
    :param incremental: send only new and changed contacts (vs. the last snapshot).
    :param full_refresh: ignore the snapshot and send everything (implies ``force``).
    :param force: export even when this export was already exported. Only matters for a ``source``
        given as a URL: the operator then skips an export its watermark already names unless forced
        (with the sensor's output, the sensor's own ``force`` decides).
    :param mode: ``upsert`` (default) or ``mirror`` (also remove the segment tag from who left).
    :param mirror_scope: who loses the tag in ``mirror`` mode. ``snapshot`` (default): who left since the
        last run, untagged by e-mail from the e-mails sealed in the state (⌈leavers / 250⌉ calls, no
        listing). ``tag``: every holder of the tag is listed (⌈holders / 250⌉ GETs) and whoever is not in
        this export loses it, including contacts tagged outside this product.
    :param max_profiles: fail before sending when the export holds more valid profiles.
    :param max_reject_ratio: fail when rejected ÷ rows read is above this (default 0.05).
    :param rejects_path: where rejected rows go, with reasons (Parquet or CSV by extension). Default:
        ``rejects.parquet`` in this try's run folder below ``runs_path``.
    :param runs_path: root (any fsspec URL) of the run folders ``<dag>/<YYYY-MM-DD>/<run>/<task>``
        that hold the default rejects file (default ``$AIRFLOW_HOME/omnisend_runs`` on the worker, which
        also always holds the dry run's payload sample).
    :param retention_days: run folders of this DAG (below ``runs_path`` and the local one) from days
        longer ago are removed when an export starts, because they hold personal data (default 30;
        0 keeps them). Only day folders this operator created are removed (see
        :mod:`~airflow_provider_omnisend.export.retention`); a ``rejects_path`` you give is yours to clean.
    :param state_path: folder (any fsspec URL) for snapshots and the last-export watermark.
        ``rejects_path`` and ``state_path`` on the lake's store (e.g. abfs:// beside an abfs:// lake)
        are reached with ``lake_conn_id``'s credentials. Under an executor that spans hosts (Celery,
        Kubernetes) both must be where every worker sees them; a local path is refused there unless
        ``allow_local_state`` (or ``OMNISEND_ALLOW_LOCAL_STATE=true``) says it is shared storage.
    :param requests_per_minute: use at most this many of the connection's requests per minute.
    :param rate_share: how many exports share the connection's budget at once (the DAG passes the
        ``omnisend_api`` pool's slots): the fallback split (budget ÷ rate_share) used only while the
        brand-wide limiter's store is unreachable, or always with ``rate_limit_store: static``.
    :param brand: the store's non-secret name in the segment Asset ``omnisend://<brand>/<segment>``
        (default: the connection's extra ``brand``, else the connection id). A successful export adds
        an event to that Asset through each ``AssetAlias`` in ``outlets`` (a dry run does not), and sets
        the counts of its summary as the extra of an outlet that is that Asset itself.

    With the OpenLineage provider installed, :meth:`get_openlineage_facets_on_complete` reports the lake
    export as the input and the Omnisend segment as the output, with their row counts.
    """

    template_fields: Sequence[str] = (
        "source", "source_format", "segment", "entity", "mapping", "custom_properties",
        "custom_property_types", "tags",
        "segment_tag", "email_status", "sms_status", "on_invalid_field", "default_phone_region",
        "status_changed_at", "consent",
        "omnisend_conn_id", "lake_conn_id",
        "rejects_path", "state_path", "dry_run", "incremental", "full_refresh", "mode", "mirror_scope",
        "max_profiles",
        "max_reject_ratio", "requests_per_minute", "send_welcome_message", "rate_share", "force",
        "allow_local_state", "brand", "runs_path", "retention_days",
    )
    template_fields_renderers = {
        "mapping": "json", "custom_properties": "json", "custom_property_types": "json",
    }
    operator_extra_links = (OmnisendSegmentLink(),)
    ui_color = "#ffd7c2"
    #: the running export's cancel event (see ``on_kill``)
    _cancel: threading.Event | None = None
    #: what the last export read and sent, for OpenLineage (set by ``execute``)
    _lineage: ExportLineage | None = None
    #: this try's hold on its staging folder (see ``_work_dir``)
    _staging_lock: FolderLock | None = None
    #: today's date for the run folders and their retention (a test replaces it)
    clock: Callable[[], datetime] = staticmethod(lambda: datetime.now(UTC))

    def __init__(
        self,
        *,
        source: Any,
        segment: str,
        mapping: Mapping[str, str],
        source_format: str = "auto",
        entity: str | None = None,
        omnisend_conn_id: str = OmnisendHook.default_conn_name,
        lake_conn_id: str | None = None,
        custom_properties: Mapping[str, str] | None = None,
        tags: Sequence[str] = (),
        segment_tag: str | None = DEFAULT_SEGMENT_TAG,
        email_status: str | Mapping[str, str] | None = None,
        sms_status: str | Mapping[str, str] | None = None,
        send_welcome_message: bool = False,
        on_invalid_field: str = "drop_field",
        default_phone_region: str | None = None,
        custom_property_types: Mapping[str, str] | None = None,
        status_changed_at: str | Mapping[str, str] | None = None,
        consent: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        incremental: bool = True,
        full_refresh: bool = False,
        force: bool = False,
        mode: str = "upsert",
        mirror_scope: str = "snapshot",
        max_profiles: int | None = DEFAULT_MAX_PROFILES,
        max_reject_ratio: float = 0.05,
        rejects_path: str | None = None,
        runs_path: str | None = None,
        retention_days: int | str = DEFAULT_RETENTION_DAYS,
        state_path: str | None = None,
        requests_per_minute: int | None = None,
        rate_share: int = 1,
        allow_local_state: bool = False,
        confirm_timeout: float = 3600.0,
        poll_interval: float = 2.0,
        brand: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.segment = segment
        self.mapping = mapping
        self.source_format = source_format
        self.entity = entity
        self.omnisend_conn_id = omnisend_conn_id
        self.lake_conn_id = lake_conn_id
        self.custom_properties = custom_properties
        self.tags = tags
        self.segment_tag = segment_tag
        self.email_status = email_status
        self.sms_status = sms_status
        self.send_welcome_message = send_welcome_message
        self.on_invalid_field = on_invalid_field
        self.default_phone_region = default_phone_region
        self.custom_property_types = custom_property_types
        self.status_changed_at = status_changed_at
        self.consent = consent
        self.dry_run = dry_run
        self.incremental = incremental
        self.full_refresh = full_refresh
        self.force = force
        self.mode = mode
        self.mirror_scope = mirror_scope
        self.max_profiles = max_profiles
        self.max_reject_ratio = max_reject_ratio
        self.rejects_path = rejects_path
        self.runs_path = runs_path
        self.retention_days = retention_days
        self.state_path = state_path
        self.requests_per_minute = requests_per_minute
        self.rate_share = rate_share
        self.allow_local_state = allow_local_state
        self.confirm_timeout = confirm_timeout
        self.poll_interval = poll_interval
        self.brand = brand

    # ------------------------------------------------------------------ run
    def execute(self, context: Context) -> dict[str, Any]:
        dag_id = context["dag"].dag_id
        try:
            flags = self._flags()
            dry_run = flags["dry_run"]
            hook = OmnisendHook(self.omnisend_conn_id, dag_id=dag_id, rate_share=int(self.rate_share),
                                requests_per_minute=_opt_int(self.requests_per_minute))
            settings = hook.settings
            if not dry_run:
                hook.check_can_send()  # before a byte is read: privacy, allowed DAGs
            export = self._resolve()
            lake_fs = lake_filesystem(export.source, self.lake_conn_id)
            spec = MappingSpec.build(
                dict(self.mapping), custom_properties=self.custom_properties, tags=list(self.tags or ()),
                segment=self.segment, segment_tag=self.segment_tag or None, email_status=self.email_status,
                sms_status=self.sms_status, send_welcome_message=flags["send_welcome_message"],
                on_invalid_field=str(self.on_invalid_field),
                default_phone_region=self.default_phone_region or None,
                custom_property_types=self.custom_property_types, status_changed_at=self.status_changed_at,
                consent=self.consent, available_columns=export.columns,
                source_types=dict(export.column_types))
            rejects_schema(spec.source_columns)  # refuses columns the rejects file could not tell apart
            options = ExportOptions(
                segment=self.segment, segment_tag=spec.segment_tag, max_profiles=_opt_int(self.max_profiles),
                max_reject_ratio=float(self.max_reject_ratio), incremental=flags["incremental"],
                full_refresh=flags["full_refresh"], mode=str(self.mode), dry_run=dry_run,
                mirror_scope=str(self.mirror_scope),
                batch_item_cap=settings.version.batch_item_cap, max_in_flight=settings.max_in_flight,
                poll_interval=float(self.poll_interval), confirm_timeout=float(self.confirm_timeout))
            _check_mode_supported(options, settings.version)
            brand = check_brand(self.brand, where="brand") if self.brand else settings.brand
            retention_days = _retention_days(self.retention_days)
            client = hook.get_client()
        except (OmnisendConfigError, MappingError, LakeError, ValueError) as err:
            raise AirflowFailException(str(err)) from None  # a retry cannot fix a setting

        run_dir = self._run_dir(context)
        state_path = self.state_path or default_state_path()
        key = watermark_key(self.omnisend_conn_id, self.segment)
        runs_path = str(self.runs_path or local_runs_root()).rstrip("/")
        rejects_path = self.rejects_path or "/".join([runs_path, *_run_parts(context, self.clock()),
                                                      "rejects.parquet"])
        try:
            check_shared_paths({"state_path": state_path, "rejects_path": rejects_path},
                               allow_local=flags["allow_local_state"])
        except OmnisendConfigError as err:
            raise AirflowFailException(str(err)) from None
        runs_options = companion_storage_options(runs_path, lake_source=export.source,
                                                 lake_conn_id=self.lake_conn_id)
        self._apply_retention(context, retention_days, {local_runs_root(): None, runs_path: runs_options})
        if not self.rejects_path:
            self._day_folder(runs_path, context, runs_options)
        work_dir = self._work_dir(context)  # before the rejects file: it fails clearly, leaving nothing open
        # State and rejects on the lake's store are reached with the lake connection's credentials.
        state_options = companion_storage_options(state_path, lake_source=export.source,
                                                  lake_conn_id=self.lake_conn_id)
        if not isinstance(self.source, Mapping) and not (flags["force"] or flags["full_refresh"]):
            self._skip_if_exported(export, state_path, key, state_options)
        try:
            rejects = RejectsWriter(
                rejects_path, format="csv" if rejects_path.endswith(".csv") else "parquet",
                source_columns=spec.source_columns,
                storage_options=companion_storage_options(rejects_path, lake_source=export.source,
                                                          lake_conn_id=self.lake_conn_id))
        except Exception as err:
            raise AirflowFailException(
                f"Cannot create the rejects file {rejects_path!r}: {safe_reason(err)}. Check that the folder "
                "can be written; on the lake's store it is reached with `lake_conn_id`'s credentials, on "
                "another store with that store's default credentials (environment).") from None
        progress = context.get("task_state_store") or MemoryProgressStore()
        engine = ExportEngine(
            client=self._cancellable(client), spec=spec, options=options,
            state_dir=f"{state_path.rstrip('/')}/{key}",
            work_dir=work_dir, artifacts_dir=run_dir, rejects=rejects, progress=progress,
            export_id=export.export_id, storage_options=state_options, state_secret=hook.state_secret())
        self.log.info("Exporting segment %r from %s (%s, export %s) to Omnisend %s%s", self.segment,
                      export.source, export.format, export.export_id, settings.version.name,
                      " [dry run]" if dry_run else "")
        try:
            summary = engine.run(iter_batches(export, columns=spec.source_columns, filesystem=lake_fs))
        except (ExportLimitError, LakeError, MappingError) as err:  # the data does not fit the mapping
            raise AirflowFailException(str(err)) from None
        except (OmnisendAuthError, OmnisendVersionRetiredError, OmnisendConfigError) as err:
            raise AirflowFailException(str(err)) from None  # a retry cannot fix a key, version or setting
        except RejectRatioExceeded as err:
            # Sent and snapshotted: mark the export handled, with its failure, so the schedule does not
            # fail on it again until a new export lands; a re-run of the same export needs force.
            if not dry_run:
                write_watermark(state_path, key, export.export_id, storage_options=state_options,
                                failure=str(err))
            self.log.error("%s", err)
            raise AirflowFailException(
                f"{err} Export {export.export_id!r} is marked as handled (the failure is recorded in its "
                "watermark), so the next scheduled run waits for a new export; fix the data and trigger "
                "with force=true to export it again.") from None
        finally:
            rejects.close()
            shutil.rmtree(work_dir, ignore_errors=True)
            if self._staging_lock is not None:
                self._staging_lock.release()
        if not dry_run:
            write_watermark(state_path, key, export.export_id, storage_options=state_options)
        if spec.segment_tag:
            link = segment_contacts_url(spec.segment_tag)
            context["ti"].xcom_push(key=OmnisendSegmentLink().xcom_key, value=link)
        result = summary.to_dict()
        result["export_id"] = export.export_id
        if dry_run and summary.sample_path:  # what would be sent, in the UI's XCom tab: masked (no PII)
            context["ti"].xcom_push(key="payload_sample", value=_masked_sample(summary.sample_path))
        self._emit_segment_asset(context, omnisend_segment_asset(brand, self.segment), event_extra(result))
        self._lineage = ExportLineage(export=export, brand=brand, summary=event_extra(result))
        self._log_summary(result)
        if result["rejected"]:
            self.log.warning("%d rows were rejected; reasons: %s. Details: %s", result["rejected"],
                             result["reasons"], result["rejects_path"])
        if result["field_warnings"]:
            self.log.warning("%d invalid optional fields were left out of contacts that were sent: %s. "
                             "Details (kind field_dropped): %s", result["field_warnings"],
                             result["field_warning_reasons"], result["rejects_path"])
        return result

    def _emit_segment_asset(self, context: Context, asset: Asset, extra: dict[str, Any]) -> None:
        """The segment Asset's event with the summary's counts: added through each ``AssetAlias``
        outlet (not for a dry run: nothing changed in Omnisend), set on an outlet that is the Asset."""
        events = context.get("outlet_events")
        if events is None:
            return
        for outlet in self.outlets or ():
            if isinstance(outlet, AssetAlias) and not extra.get("dry_run"):
                events[outlet].add(asset, extra=extra)
            elif isinstance(outlet, Asset) and outlet.uri == asset.uri:
                events[outlet].extra.update(extra)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Lake export in, Omnisend segment out, with row counts (the OpenLineage provider calls it)."""
        return self._lineage.facets() if self._lineage is not None else None

    def _cancellable(self, client: OmnisendClient) -> OmnisendClient:
        """Keep the client's cancel event for :meth:`on_kill` (set in ``execute``: an Event cannot be
        deep-copied with the operator)."""
        self._cancel = client.cancel
        return client

    def on_kill(self) -> None:
        """SIGTERM (the task is stopped, or timed out): stop sending at once. The client's waits and
        retry sleeps raise ``OmnisendCancelled``, the engine records what the sends in flight got back and
        checkpoints, so the next run confirms the submitted batches and re-sends only those in flight."""
        if self._cancel is not None:
            self.log.warning("Killed: stopping the export; the next run resumes from the checkpoint")
            self._cancel.set()

    def _skip_if_exported(self, export: ResolvedExport, state_path: str, key: str,
                          state_options: Mapping[str, Any]) -> None:
        """A source given as a URL (no sensor before) whose newest export was already handled: skip."""
        if read_watermark(state_path, key, storage_options=state_options) == export.export_id:
            raise AirflowSkipException(
                f"Export {export.export_id!r} of segment {self.segment!r} was already exported (watermark "
                f"{key!r} in {state_path!r}); nothing new to send. Set force=True (or full_refresh=True) "
                "to export it again.")

    def _resolve(self) -> ResolvedExport:
        source = self.source
        if isinstance(source, Mapping):
            return ResolvedExport.from_dict(dict(source))
        source = str(source)
        return resolve_export(source, format=self.source_format or "auto", entity=self.entity,
                              segment=self.segment, filesystem=lake_filesystem(source, self.lake_conn_id))

    def _run_dir(self, context: Context) -> Path:
        """Local folder for this try's artefacts (rejects by default, payload sample, batch ids):
        ``$AIRFLOW_HOME/omnisend_runs/<dag>/<day>/<run>/<task>``."""
        day_dir = self._day_folder(local_runs_root(), context, None)
        path = Path(day_dir, *_run_parts(context, self.clock())[2:])
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _day_folder(self, root: str, context: Context, options: Mapping[str, Any] | None) -> str:
        """Today's folder of this DAG below ``root``, with the marker that lets retention remove it."""
        dag, day = _task_instance_parts(context)[0], self.clock().date()
        try:
            return day_folder(root, dag, day, storage_options=options)
        except Exception as err:
            raise AirflowFailException(
                f"Cannot create the run folder {root}/{dag}/{day.isoformat()}: {safe_reason(err)}. It holds "
                "the rejects and artefacts of each try: check that it can be written (on the lake's "
                "store with `lake_conn_id`'s credentials).") from None

    def _apply_retention(self, context: Context, keep_days: int,
                         roots: Mapping[str, Mapping[str, Any] | None]) -> None:
        """Remove this DAG's day folders older than ``keep_days`` below each root; a failure only warns
        (the export matters more than the clean-up, which the next export tries again)."""
        dag, today = _task_instance_parts(context)[0], self.clock().date()
        for root, options in roots.items():
            try:
                removed = prune_day_folders(root, dag, keep_days=keep_days, today=today,
                                            storage_options=options)
            except Exception as err:
                self.log.warning("Could not remove run folders older than %d days below %s: %s",
                                 keep_days, root, safe_reason(err))
                continue
            if removed:
                self.log.info("Removed %d run folder(s) older than %d days (they hold personal data): %s",
                              len(removed), keep_days, ", ".join(removed))

    def _work_dir(self, context: Context) -> str:
        """Local scratch folder of this task instance (the staged export: e-mails, owner-only).

        One fixed folder per task instance, emptied when a try starts: a try killed without clean-up
        (SIGKILL, OOM, a lost node) leaves its staging behind, and the next try removes it instead of
        leaving customer data in the temp folder for good. The try holds a lock on its folder while it
        runs, and removes the folders of other runs whose try died (``export.scratch``): a killed run
        followed by a new DAG run leaves nothing behind either.
        """
        root = Path(tempfile.gettempdir(), "omnisend-staging")
        path = root.joinpath(*_task_instance_parts(context))
        try:
            _own_private_dir(root)
            if path.exists():
                self.log.info("Removing the staging a previous try left behind: %s", path)
                shutil.rmtree(path)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.mkdir(mode=0o700)
            self._staging_lock = hold(path)
            abandoned = remove_abandoned(root, depth=len(_task_instance_parts(context)), keep=path)
        except OSError as err:
            raise AirflowFailException(
                f"Cannot prepare the local staging folder {path}: {err.strerror or err}. It holds customer "
                "e-mails while the export runs: check that the task's user owns it and can write to the "
                "temp folder (TMPDIR), remove what a previous try left there, and clear the task.") from None
        if abandoned:
            self.log.info("Removed the staging %d killed run(s) left behind: %s", len(abandoned),
                          ", ".join(str(f) for f in abandoned))
        return str(path)

    def _flags(self) -> dict[str, bool]:
        """The boolean arguments, strictly parsed (after templates are rendered)."""
        names = ("dry_run", "incremental", "full_refresh", "force", "send_welcome_message",
                 "allow_local_state")
        return {name: bool_arg(getattr(self, name), name) for name in names}

    def _log_summary(self, result: Mapping[str, Any]) -> None:
        """One line of counts (no e-mail, no value): field warnings with their reasons per field."""
        keys = ("rows_read", "valid", "rejected", "duplicates", "field_warnings", "new", "changed",
                "unchanged", "removed", "sent", "batches", "untagged", "duration_s")
        line = ", ".join(f"{k}={result[k]}" for k in keys)
        per_field = result.get("field_warning_reasons") or {}
        if per_field:
            line += " (field warnings: " + "; ".join(
                f"{field} " + ", ".join(f"{reason}={count}" for reason, count in reasons.items())
                for field, reasons in per_field.items()) + ")"
        self.log.info("Segment %r summary: %s", self.segment, line)


def _check_mode_supported(options: ExportOptions, version: ApiVersion) -> None:
    """Refuse ``mode="mirror"`` on a legacy connection before any request: it removes the segment tag
    through /contacts/tags, which only API 2026-03-15 has (docs/omnisend-api.md, section 1)."""
    if options.mode == "mirror" and version.legacy:
        raise OmnisendConfigError(
            f"mode='mirror' removes the segment tag through /contacts/tags, which API {version.name} does "
            "not have. Set the connection's API version to 2026-03-15, or use mode='upsert'.")


def local_runs_root() -> str:
    """``$AIRFLOW_HOME/omnisend_runs``: the worker's run folders."""
    home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    return str(Path(home, "omnisend_runs"))


def _run_parts(context: Context, now: datetime) -> list[str]:
    """dag / day / run / task of this try's run folder."""
    dag, run, task = _task_instance_parts(context)
    return [dag, now.date().isoformat(), run, task]


def _task_instance_parts(context: Context) -> list[str]:
    """dag id / run id / task id[-map index], safe as folder names."""
    ti = context["ti"]
    task = ti.task_id
    if getattr(ti, "map_index", -1) not in (None, -1):
        task += f"-{ti.map_index}"
    return [_slug(str(context["dag"].dag_id)), _slug(str(context.get("run_id") or "manual")), _slug(task)]


def _slug(value: str) -> str:
    """A single safe folder name: no separator, and never "." or ".." (Airflow accepts a run_id "..",
    which would otherwise climb out of the run and staging folders)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", value)[:120]
    return re.sub(r"^\.", "_", slug) or "_"


def _own_private_dir(root: Path) -> None:
    """Create the shared staging root (mode 0700), or check that the existing one is a real folder of
    ours (then made owner-only): a symlink or a folder planted by another user of the machine would
    receive (or expose) customer e-mails."""
    root.mkdir(mode=0o700, exist_ok=True)
    info = root.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError(errno.EPERM, f"{root} is a symlink or not a folder of this user; remove it")
    if info.st_mode & 0o077:
        root.chmod(0o700)


def _masked_sample(path: str) -> str:
    """The dry run's payload sample for XCom: field names and shapes, e-mails masked (``j***@x.com``);
    the unmasked sample stays in the private file on the worker."""
    body = redact_payload(orjson.loads(Path(path).read_bytes()))
    body["note"] = f"Values are masked; the unmasked sample is {path} on the worker that ran the task."
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()


def _retention_days(value: Any) -> int:
    """``retention_days`` as a whole number of days (0 or empty: keep the run folders)."""
    try:
        days = int(str(value).strip() or 0) if value is not None else 0
    except ValueError:
        days = -1
    if days < 0:
        raise OmnisendConfigError(
            f"retention_days must be a whole number of days >= 0 (0 keeps the run folders), got {value!r}; "
            "in the example DAG it is OMNISEND_RETENTION_DAYS.")
    return days


def _opt_int(value: Any) -> int | None:
    if value in (None, "", "None"):
        return None
    return int(value)
