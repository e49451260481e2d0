"""Operator extra link: the exported segment's contacts in the Omnisend app (filtered by its tag)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink
from airflow.sdk.bases.xcom import BaseXCom

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey

OMNISEND_APP_URL = "https://app.omnisend.com"


def segment_contacts_url(tag: str) -> str:
    """Omnisend's contact list filtered by ``tag``."""
    return f"{OMNISEND_APP_URL}/audience/contacts?tags={quote(tag, safe='')}"


class OmnisendSegmentLink(BaseOperatorLink):
    """The task pushes the URL to XCom at run time (the tag may be templated); the UI reads it back."""

    name = "Omnisend contacts"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        value = BaseXCom.get_value(ti_key=ti_key, key=self.xcom_key)
        return value if isinstance(value, str) else ""
