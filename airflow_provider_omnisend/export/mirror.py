"""Mirror mode: contacts that left the segment lose the segment tag, and nothing else.

Two ways to find them (``mirror_scope``):

* ``"snapshot"`` (default): who left is known from the diff (in the last snapshot, not in this export);
  their e-mails are opened from the sealed e-mails of the last snapshot
  (:mod:`~airflow_provider_omnisend.export.sealed`) and the tag is removed by e-mail, 250 per
  ``DELETE /contacts/tags``: ⌈leavers / 250⌉ calls and no listing. Where that cannot be trusted (a
  snapshot written before e-mails were sealed, no secret to open them, a damaged file) the listing below
  is used once instead, for those same leavers, and the log says why.
* ``"tag"``: every holder of the tag is listed (``GET /contacts?tag=``, 250 per page: ⌈holders / 250⌉
  calls) and whoever is not in this export loses it, including contacts tagged outside this product.
  Also the fallback when the last snapshot was hashed under another secret (who left is then unknown).

Every e-mail used is the one hashed to the leaver's key (opened e-mails are re-hashed and compared;
listed ones are hashed and matched), so a wrong key can only lead to the listing, never to a wrong untag.
Tags are removed with ``DELETE /contacts/tags``, which touches no other tag or field
(docs/omnisend-api.md, section 6).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)

MIRROR_SCOPES = ("snapshot", "tag")
#: Listed holders are hashed and matched this many at a time.
LISTING_PAGE = 1000


class TagApi(Protocol):
    def list_contacts(self, *, page_size: int = ..., **filters: Any) -> Any: ...
    def remove_tags(self, tags: Any, emails: Any = (), *, contact_ids: Any = ()) -> int: ...


@dataclass(frozen=True)
class Mirrored:
    """What a mirror step did: contacts untagged, how they were found, and the calls it made."""

    untagged: int
    how: str  # "sealed" | "listing" | "none"
    untag_calls: int = 0
    listed: int = 0


class TagMirror:
    """Removes ``tag`` from contacts, found by e-mail or by listing the tag's holders."""

    def __init__(self, *, client: TagApi, tag: str, email_keys: Callable[[list[str]], np.ndarray]) -> None:
        self.client = client
        self.tag = tag
        #: keys of e-mails as Omnisend returns them, hashed as staging hashed the export's
        self.email_keys = email_keys

    def by_email(self, emails: pa.Array, keys: np.ndarray) -> Mirrored:
        """Untag the contacts with these opened ``emails``, 250 per call. If any e-mail does not hash to
        its expected key, nothing is untagged and ``how`` is ``"mismatch"``."""
        listed = emails.to_pylist()
        if not np.array_equal(self.email_keys(listed), np.asarray(keys, dtype=np.uint64)):
            return Mirrored(0, "mismatch")
        calls = self.client.remove_tags([self.tag], listed) if listed else 0
        return Mirrored(len(listed), "sealed", untag_calls=calls)

    def by_listing(self, select: Callable[[np.ndarray], np.ndarray]) -> Mirrored:
        """List the tag's holders and untag (by contact id) those whose e-mail key ``select`` marks True."""
        ids: list[str] = []
        page: list[dict[str, Any]] = []
        listed = 0

        def flush() -> None:
            hit = select(self.email_keys([c.get("email") or "" for c in page])).tolist()
            ids.extend(c["id"] for c, h in zip(page, hit, strict=True) if h and c.get("id"))
            page.clear()

        for contact in self.client.list_contacts(tag=self.tag):
            page.append(contact)
            listed += 1
            if len(page) >= LISTING_PAGE:
                flush()
        flush()
        calls = self.client.remove_tags([self.tag], contact_ids=ids) if ids else 0
        return Mirrored(len(ids), "listing", untag_calls=calls, listed=listed)


def in_sorted(sorted_keys: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A selector: True for keys found in ``sorted_keys`` (ascending uint64)."""
    def select(keys: np.ndarray) -> np.ndarray:
        if not sorted_keys.size:
            return np.zeros(keys.size, dtype=bool)
        at = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
        return sorted_keys[at] == keys
    return select


def not_in_sorted(sorted_keys: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A selector: True for keys not in ``sorted_keys`` (ascending uint64)."""
    found = in_sorted(sorted_keys)
    return lambda keys: ~found(keys)
