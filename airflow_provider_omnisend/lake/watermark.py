"""The id of the last export pushed to Omnisend, per (Omnisend connection, segment).

The export operator writes it after a successful export; the sensor reads it to wait for a *new*
export. It lives in a small JSON file per key (not XCom, which is cleared on retries and per run), and
is written atomically (temp file, then rename) so a crash never leaves a half-written watermark that
would make the sensor re-fire or stall.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from airflow_provider_omnisend.export.files import open_private
from airflow_provider_omnisend.lake.errors import LakeAccessError, LakeError, safe_reason
from airflow_provider_omnisend.lake.fs import Location, resolve_location

_SLUG = re.compile(r"[^a-z0-9]+")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def watermark_key(conn_id: str, segment: str) -> str:
    """A filesystem-safe key for one (connection, segment) pair.

    Readable slugs plus a short hash of the exact pair, so 'VIP customers' and 'vip_customers' (same
    slug) never share a watermark.
    """
    digest = hashlib.sha256(f"{conn_id}\0{segment}".encode()).hexdigest()[:10]

    def slug(text: str) -> str:
        return _SLUG.sub("-", text.lower()).strip("-")[:60] or "x"

    return f"{slug(conn_id)}__{slug(segment)}__{digest}"


def _file(state_path: Any, key: str, storage_options: Mapping[str, Any] | None) -> Location:
    if not _KEY.match(key):
        raise ValueError(
            f"Watermark key {key!r} is not filesystem-safe (letters, digits, '.', '_', '-'); build it with "
            "watermark_key(conn_id, segment)."
        )
    return resolve_location(state_path, storage_options=storage_options).child(f"{key}.json")


def read_watermark(
    state_path: Any, key: str, *, storage_options: Mapping[str, Any] | None = None
) -> str | None:
    """The export id last written for ``key``, or None when nothing was exported yet."""
    loc = _file(state_path, key, storage_options)
    try:
        with loc.fs.open(loc.path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    except Exception as err:
        raise LakeAccessError(loc.url, action="read the watermark", reason=safe_reason(err)) from err
    try:
        doc = json.loads(raw)
        export_id = doc["export_id"]
    except (ValueError, KeyError, TypeError) as err:
        raise LakeError(
            f"The watermark file {loc.url!r} is damaged (not JSON with an 'export_id'). Delete it to let "
            "the next export run (the snapshot diff keeps it from re-sending unchanged contacts)."
        ) from err
    return str(export_id) if export_id is not None else None


def write_watermark(
    state_path: Any, key: str, export_id: str, *, storage_options: Mapping[str, Any] | None = None,
    failure: str | None = None,
) -> None:
    """Record ``export_id`` as handled for ``key`` (atomic replace).

    ``failure`` records why a handled export did not succeed (e.g. too many rejects): the data was sent
    and the snapshot written, so the export is not re-sent at every schedule; a re-run needs ``force``.
    """
    loc = _file(state_path, key, storage_options)
    doc: dict[str, Any] = {"export_id": export_id, "key": key, "written_at": datetime.now(UTC).isoformat()}
    if failure:
        doc["failure"] = failure
    body = json.dumps(doc, sort_keys=True).encode()
    tmp = loc.parent().child(f".{key}.{uuid.uuid4().hex}.tmp")
    try:
        loc.fs.makedirs(loc.parent().path, exist_ok=True)
        with open_private(loc.fs, tmp.path) as fh:  # state files are owner-only, like the snapshots
            fh.write(body)
        loc.fs.mv(tmp.path, loc.path)
    except Exception as err:
        with contextlib.suppress(Exception):  # the temp file may not exist; the first error matters
            loc.fs.rm(tmp.path)
        raise LakeAccessError(loc.url, action="write the watermark", reason=safe_reason(err)) from err
