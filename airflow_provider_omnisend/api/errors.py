"""Typed Omnisend errors built from RFC 9457 Problem Details bodies.

Every message carries the HTTP status, Omnisend's title and detail and the ``instance`` trace id (the
thing to quote to Omnisend support), never a request header, so the API key cannot leak through one.
Server text is untrusted: :func:`redact` removes the key and header values a server may echo back.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote


class OmnisendError(Exception):
    """Base class for everything this provider raises about Omnisend.

    A plain ``Exception``: the API client and the export core do not import Airflow (seconds and about
    75 MB per process). In a task, Airflow retries it like any failure; the operator turns the ones a
    retry cannot fix (a bad key, a retired version, a bad setting) into ``AirflowFailException``.
    """


class OmnisendConfigError(OmnisendError):
    """The connection or the task is set up in a way that must be fixed by the user before a run."""


class OmnisendCancelled(OmnisendError):
    """The caller's cancel event was set (e.g. the task is being killed): nothing more was sent.

    Raised promptly from the limiter's waits and the retry sleeps, so a killed task lets go of its
    threads within a fraction of a second instead of sleeping out a back-off.
    """


class OmnisendApiError(OmnisendError):
    """Omnisend answered with an error (or did not answer: ``status`` is None for network failures)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        title: str | None = None,
        detail: str | None = None,
        instance: str | None = None,
        problem_type: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.detail = detail
        self.instance = instance
        self.problem_type = problem_type
        self.method = method
        self.path = path


class OmnisendAuthError(OmnisendApiError):
    """401/403: the API key is wrong, revoked, or lacks a scope."""


class OmnisendVersionRetiredError(OmnisendApiError):
    """410: the connection's API version has been retired by Omnisend."""


class OmnisendRateLimitError(OmnisendApiError):
    """429: the brand's rate budget is used up; ``retry_after`` is Omnisend's hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class OmnisendValidationError(OmnisendApiError):
    """400: the request was invalid; ``errors`` holds Omnisend's per-field errors."""

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.errors = errors or []


_HINTS = {
    401: "Check the API key in the Omnisend connection (Omnisend app: Store settings > API keys).",
    403: "The API key lacks a permission this call needs (e.g. contacts.write); create a key with it.",
    404: "The resource does not exist (or belongs to another brand).",
    410: "Switch the connection's API version to 2026-03-15.",
    429: "The brand's rate budget is exhausted; lower the connection's requests per minute.",
}


def error_from_response(status: int, body: Any, *, method: str, path: str, retry_after: float | None = None
                        ) -> OmnisendApiError:
    """Build the matching typed error from an HTTP status and its (parsed, possibly non-JSON) body."""
    problem = body if isinstance(body, dict) else {}
    title = _text(problem.get("title")) or _text(problem.get("error"))
    detail = _text(problem.get("detail"))
    instance = _text(problem.get("instance"))
    field_errors = problem.get("errors") if isinstance(problem.get("errors"), list) else []
    parts = [f"Omnisend {method} {path} failed: HTTP {status}"]
    if title:
        parts.append(title)
    if detail:
        parts.append(detail)
    for err in field_errors[:10]:
        if isinstance(err, dict):
            parts.append(f"{err.get('field', '?')}: {err.get('message') or err.get('code')}")
    if len(field_errors) > 10:
        parts.append(f"... and {len(field_errors) - 10} more field errors")
    if instance:
        parts.append(f"instance {instance}")
    if status in _HINTS:
        parts.append(_HINTS[status])
    message = " | ".join(parts)
    common = {"status": status, "title": title, "detail": detail, "instance": instance,
              "problem_type": _text(problem.get("type")), "method": method, "path": path}
    if status in (401, 403):
        return OmnisendAuthError(message, **common)
    if status == 410:
        return OmnisendVersionRetiredError(message, **common)
    if status == 429:
        hint = problem.get("retryAfter")
        if isinstance(hint, int | float) and hint >= 0:
            retry_after = float(hint)
        return OmnisendRateLimitError(message, retry_after=retry_after, **common)
    if status in (400, 422):
        return OmnisendValidationError(message, errors=field_errors, **common)
    return OmnisendApiError(message, **common)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None



# ------------------------------------------------------------------------------------------ redaction
#: Where a quoted header value plausibly ends: its closing quote followed by the end of the line (raw or
#: JSON-escaped), the end of the text, or what closes or separates members of a JSON/repr/HTML structure.
_VALUE_END = r"""[ \t]*(?:[,;)}\]<]|\\[rn]|[\r\n]|\Z)"""
#: A header's value as a server may echo it: ``Authorization: Omnisend-API-Key k``, ``"X-API-KEY": "k"``,
#: ``'x-api-key': "k'k"`` (a repr), ``{\"X-API-KEY\": \"k\"}`` (JSON inside JSON) or ``x-api-key=k``.
#: A quoted value runs to its own closing quote (the same run of backslashes and quote character, not
#: escaped, where a value can end): a quote of the other kind or an escaped one inside it is part of the
#: value, an unescaped ``"`` (the end of an enclosing JSON string) is not. An unquoted value runs to the
#: end of the line (a JSON ``\r``/``\n`` escape counts) or to an unescaped ``"`` that closes a JSON
#: string (an escaped one, ``\"``, is part of the value). Better to hide the rest of a line than a key's
#: tail.
_HEADER_VALUE = re.compile(
    r"""(?i)(?P<name>authorization|x-api-key)(?P<sep>\\*["']?\s*[:=][ \t]*)"""
    r"""(?:(?P<open>\\*["'])(?:\\[^\r\n]|[^\r\n\\"])*?(?<!\\)(?P=open)(?=""" + _VALUE_END + ")"
    r"""|(?:[^\r\n\\"]|\\(?![rn])[^\r\n]?|"(?!""" + _VALUE_END + "))+)")
REDACTED = "***"


@functools.lru_cache(maxsize=8)
def secret_forms(secret: str) -> tuple[str, ...]:
    """``secret`` as it may appear in a server's text: raw, JSON-escaped, repr-escaped (either quote),
    URL-encoded, and two such layers deep (a repr inside a JSON string is what an echoing server sends)."""
    if not secret:
        return ()
    forms = {secret}
    for _ in range(2):
        forms |= {escaped for form in forms for escaped in _escaped(form)}
    return tuple(sorted(forms, key=len, reverse=True))


def _escaped(text: str) -> set[str]:
    backslashed = text.replace("\\", "\\\\")
    return {json.dumps(text)[1:-1], backslashed, backslashed.replace("'", "\\'"),
            backslashed.replace('"', '\\"'), quote(text, safe="")}


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` without the secrets (in every escaped form) and without any Authorization/X-API-KEY
    header value. Airflow's log masker only sees the raw form, and only in logs: a server echoing the
    request's headers into an error body must not carry the key into an exception, a log or a file."""
    for secret in secrets:
        for form in secret_forms(secret):
            if form in text:
                text = text.replace(form, REDACTED)
    return _HEADER_VALUE.sub(_redacted_value, text)


def _redacted_value(match: re.Match[str]) -> str:
    quote = match.group("open") or ""
    return f"{match.group('name')}{match.group('sep')}{quote}{REDACTED}{quote}"
