"""RFC 9457 Problem Details, shaped like Omnisend's 2026-03-15 error bodies.

Body fields: ``type`` (``https://problems.omnisend.com/<slug>``), ``title``, ``status``, ``detail``,
``instance`` (``urn:omnisend:request:<uuid>``), plus ``errors[]`` (ValidationProblem) and ``retryAfter``
(RateLimitProblem). Omnisend's specs declare the media type as ``application/json``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

PROBLEM_TYPE_BASE = "https://problems.omnisend.com/"

# status -> (type slug, title)
_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("validation-failed", "Validation failed"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    410: ("api-version-retired", "API version has been retired"),
    413: ("payload-too-large", "Payload too large"),
    429: ("rate-limit-exceeded", "Too many requests"),
    500: ("internal-server-error", "Internal server error"),
    503: ("service-unavailable", "Service unavailable"),
    504: ("gateway-timeout", "Gateway timeout"),
}


def problem(
    status: int, detail: str, *, slug: str | None = None, title: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A Problem body; ``extra`` adds members such as ``errors`` or ``retryAfter``."""
    default_slug, default_title = _DEFAULTS.get(status, ("problem", "Problem"))
    return {
        "type": PROBLEM_TYPE_BASE + (slug or default_slug),
        "title": title or default_title,
        "status": status,
        "detail": detail,
        "instance": f"urn:omnisend:request:{uuid.uuid4()}",
        **extra,
    }


def validation_problem(errors: list[dict[str, str]], detail: str | None = None) -> dict[str, Any]:
    """A 400 ValidationProblem listing every invalid field at once."""
    detail = detail or f"The request has {len(errors)} invalid field(s); see errors[] for each one."
    return problem(400, detail, errors=list(errors))


def rate_limit_problem(retry_after: int, detail: str) -> dict[str, Any]:
    """A 429 RateLimitProblem: ``retryAfter`` in whole seconds."""
    return problem(429, detail, retryAfter=int(retry_after))


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


class ProblemError(Exception):
    """Raised by the store and the handlers to answer with a Problem body (status = ``body["status"]``)."""

    def __init__(self, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{body.get('status')} {body.get('title')}: {body.get('detail')}")
        self.status: int = int(body["status"])
        self.body = body
        self.headers = dict(headers) if headers else None

    @classmethod
    def of(
        cls,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> ProblemError:
        return cls(problem(status, detail, slug=slug, title=title, **extra), headers)

    @classmethod
    def invalid(cls, errors: list[dict[str, str]], detail: str | None = None) -> ProblemError:
        return cls(validation_problem(errors, detail))
