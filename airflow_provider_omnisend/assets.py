"""The ``omnisend://<brand>/<segment>`` Asset: what an export produces, for downstream DAGs to schedule on.

One Asset per Omnisend segment of a brand. ``brand`` is a non-secret name of the Omnisend store (the
connection's extra ``brand``, else the connection id), never anything derived from the API key. The
segment is percent-encoded as one path component, so names with spaces or slashes stay one segment.

The provider registers the scheme with Airflow (``asset-uris`` in ``get_provider_info``): Airflow then
checks every ``omnisend://`` URI with :func:`sanitize_uri`, and OpenLineage names the dataset with
:func:`convert_asset_to_openlineage` (namespace ``omnisend://<brand>``, name the segment).

The export operator adds an event to this Asset through an ``AssetAlias`` outlet (the segment is known
only when a mapped task runs), with the counts of the export summary as the event's extra: counts and
ids only, never a contact's data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, quote, unquote, urlsplit

if TYPE_CHECKING:
    from airflow.sdk import Asset

SCHEME = "omnisend"
#: The alias the example DAG's export tasks emit their segment Assets through.
SEGMENT_ASSETS_ALIAS = "omnisend_segment_exports"
#: Summary fields that go into the asset event's extra: counts and ids only.
EVENT_FIELDS = ("segment", "export_id", "rows_read", "valid", "rejected", "duplicates", "new", "changed",
                "unchanged", "removed", "sent", "batches", "api_rejected", "field_warnings", "dry_run")
_BRAND = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?$")


def check_brand(brand: object, *, where: str = "brand") -> str:
    """The brand, lower-cased; ValueError saying what is allowed otherwise."""
    value = str(brand or "").strip().lower()
    if not _BRAND.match(value):
        raise ValueError(
            f"{where} {brand!r} cannot name an Omnisend Asset: use 1-100 letters, digits, '.', '_' or '-' "
            "(starting and ending with a letter or digit), e.g. the store's name 'contoso-shop'. It is "
            "part of the Asset URI omnisend://<brand>/<segment>, so never put a key or secret there.")
    return value


def segment_asset_uri(brand: str, segment: str) -> str:
    """``omnisend://<brand>/<segment>`` (the segment percent-encoded as one path component)."""
    if not str(segment or "").strip():
        raise ValueError("segment must be a non-empty name")
    return f"{SCHEME}://{check_brand(brand)}/{quote(str(segment), safe='')}"


def omnisend_segment_asset(brand: str, segment: str, *, extra: Mapping[str, Any] | None = None) -> Asset:
    """The Asset of one Omnisend segment; a downstream DAG schedules on it with
    ``schedule=[omnisend_segment_asset("contoso-shop", "HighValueCustomers")]``."""
    from airflow.sdk import Asset

    return Asset(uri=segment_asset_uri(brand, segment), extra=dict(extra or {}))


def create_asset(*, brand: str, segment: str, extra: Mapping[str, Any] | None = None) -> Asset:
    """The asset factory Airflow registers for the scheme (``asset-uris`` ``factory``)."""
    return omnisend_segment_asset(brand, segment, extra=extra)


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's check of an ``omnisend://`` URI: a brand host and exactly one segment in the path."""
    if uri.username or uri.password or uri.port:
        raise ValueError(f"An omnisend:// Asset URI has no user, password or port: {uri.geturl()!r}")
    brand = check_brand(uri.netloc, where="The brand (host) of the Asset URI")
    parts = [p for p in uri.path.split("/") if p]
    if len(parts) != 1 or uri.query:
        raise ValueError(
            f"An omnisend:// Asset URI is omnisend://<brand>/<segment> with the segment percent-encoded "
            f"(quote(segment, safe='')), got {uri.geturl()!r}; build it with segment_asset_uri().")
    return uri._replace(netloc=brand, path="/" + parts[0])


def segment_of(uri: str) -> tuple[str, str]:
    """(brand, segment) of an ``omnisend://`` URI."""
    parts = urlsplit(uri)
    return parts.netloc, unquote(parts.path.lstrip("/"))


def event_extra(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The asset event's extra from an export summary: only :data:`EVENT_FIELDS`."""
    return {key: summary[key] for key in EVENT_FIELDS if key in summary}


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any = None) -> Any:
    """The OpenLineage dataset of an ``omnisend://`` Asset (needs the OpenLineage provider)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    brand, segment = segment_of(asset.uri)
    return Dataset(namespace=f"{SCHEME}://{brand}", name=segment)
