"""Typed custom properties: text values cast to JSON numbers, booleans or ISO-8601 dates, vectorised.

Why: Omnisend segments compare custom properties by type ("LTV > 100" needs the number 120.5, not the
string "120.5"). Values reach the export as text (the lake reader reads every flat column as text), so a
property declared ``number``, ``boolean`` or ``date`` (``custom_property_types``, or the type a CDM
folder declares for the attribute) is cast here. A value that does not fit its type is reported by the
caller (a field warning with ``on_invalid_field="drop_field"``), never sent as something else.

- ``number``: JSON number grammar (``-12``, ``12.5``, ``1e3``); a decimal comma (``12,5``) and a
  leading ``+`` are accepted and rewritten. Sent unquoted, digits exactly as given (no float rounding).
- ``boolean``: ``true``/``false``, ``1``/``0``, ``yes``/``no`` in any case. Sent as ``true``/``false``.
- ``date``: ``YYYY-MM-DD``, optionally with a time (``T`` or a space) and a zone. Sent as an ISO-8601
  string with ``T`` between date and time.
- ``string``: unchanged (the default).
- ``list`` / ``list:<delimiter>``: a JSON array of strings (see lists.py): a list column as it is, a
  text column split on ``;`` (or the one-character delimiter given).
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_omnisend.export.lists import LIST_DELIMITER

PROPERTY_TYPES: tuple[str, ...] = ("string", "number", "boolean", "date", "list")
TYPE_EXAMPLES = {
    "number": "e.g. 12, -3.5, 12,5 or 1e3",
    "boolean": "true/false, 1/0 or yes/no",
    "date": "YYYY-MM-DD, optionally with a time, e.g. 2024-01-31T12:00:00Z",
}
#: Types whose values are JSON literals (sent without quotes).
UNQUOTED_TYPES = frozenset({"number", "boolean", "list"})


def base_type(kind: str) -> str:
    """``list`` for ``list:<delimiter>``, else ``kind``."""
    return "list" if kind.startswith("list:") else kind


def list_delimiter(kind: str) -> str:
    """What a text column is split on for a ``list`` / ``list:<delimiter>`` property."""
    return kind[len("list:"):] if kind.startswith("list:") else LIST_DELIMITER


def is_property_type(kind: object) -> bool:
    """One of ``PROPERTY_TYPES``, or ``list:`` followed by one delimiter character that cleaning keeps (a
    value's line breaks and control characters are gone before it is split)."""
    if not isinstance(kind, str):
        return False
    if kind.startswith("list:") and len(kind) == 6:
        return unicodedata.category(kind[-1]) != "Cc"
    return kind in PROPERTY_TYPES

_NUMBER = r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$"
_DECIMAL_COMMA = r"^([+-]?[0-9]+),([0-9]+)$"
_BOOLEANS = (
    pa.array(["true", "false", "1", "0", "yes", "no"]),
    pa.array(["true", "false", "true", "false", "true", "false"]),
)
_DATE = (
    r"^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"(?:[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]+)?)?(?:[Zz]|[+-][0-9]{2}:?[0-9]{2})?)?$"
)


def cast_property(values: pa.StringArray, kind: str) -> tuple[pa.StringArray, np.ndarray]:
    """(JSON-ready text per value, mask of the present values that fit ``kind``)."""
    if kind == "string":
        return values, present_mask(values)
    if kind == "number":
        values = pc.replace_substring_regex(values, _DECIMAL_COMMA, r"\1.\2")
        values = pc.replace_substring_regex(values, r"^\+", "")
        return values, _matches(values, _NUMBER)
    if kind == "boolean":
        accepted, canonical = _BOOLEANS
        converted = pc.take(canonical, pc.index_in(pc.utf8_lower(values), value_set=accepted))
        return converted, present_mask(converted)
    if kind == "date":
        ok = _matches(values, _DATE)
        return pc.replace_substring_regex(values, r"^([0-9-]{10}) ", r"\1T"), ok
    raise ValueError(f"unknown custom property type {kind!r}; use one of {', '.join(PROPERTY_TYPES)}")


def present_mask(values: pa.Array) -> np.ndarray:
    return pc.is_valid(values).to_numpy(zero_copy_only=False)


def _matches(values: pa.StringArray, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(values, pattern).fill_null(False).to_numpy(zero_copy_only=False)
