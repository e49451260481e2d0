"""Mask the personal data of a payload sample before it leaves the worker (XCom, logs, the UI).

The dry run writes the first items a real run would send to a private file on the worker; the UI gets
this masked copy instead, because XCom and logs are readable by every Airflow user and kept with the
run's history. It keeps what a reviewer needs to check the mapping -- which fields are sent, their JSON
types, the identifier kinds, channel statuses, ``sendWelcomeMessage`` and the tags -- and replaces
every personal value: an e-mail becomes ``j***@example.com`` (first character and domain), any other
text ``<text, N chars>``, a number ``<number>``, a boolean ``<boolean>``.
"""

from __future__ import annotations

from typing import Any

#: Keys whose values are settings of the export, not data about a person: kept as they are.
KEPT_KEYS = frozenset({"type", "sendWelcomeMessage", "status", "tags", "method", "endpoint"})


def mask_email(value: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``; anything without one ``@`` is masked whole."""
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return mask_value(value)
    return f"{local[0]}***@{domain}"


def mask_value(value: Any) -> Any:
    """The JSON type of ``value`` instead of the value (recursing into lists and objects)."""
    if isinstance(value, dict):
        return {key: mask_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_value(item) for item in value]
    if isinstance(value, bool):
        return "<boolean>"
    if isinstance(value, int | float):
        return "<number>"
    if value is None:
        return None
    return f"<text, {len(str(value))} chars>"


def redact_payload(body: Any) -> Any:
    """``body`` (a batch body, an item, or a list of them) with every personal value masked."""
    if isinstance(body, list):
        return [redact_payload(item) for item in body]
    if not isinstance(body, dict):
        return mask_value(body)
    email_identifier = body.get("type") == "email"
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in KEPT_KEYS:
            out[key] = value
        elif key == "id" and email_identifier and isinstance(value, str):
            out[key] = mask_email(value)
        elif key == "customProperties":  # names are the user's mapping, values are the person's
            out[key] = mask_value(value)
        elif isinstance(value, dict | list):
            out[key] = redact_payload(value)
        else:
            out[key] = mask_value(value)
    return out
