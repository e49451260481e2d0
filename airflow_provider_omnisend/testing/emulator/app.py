"""The aiohttp application: Omnisend API routes, the gateway middleware, and the test controls."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from .batches import STATUSES, BatchStore, legacy_contact
from .config import API_VERSION, KNOWN_VERSIONS, Faults, Settings
from .controls import ControlsMixin
from .problems import ProblemError, json_response, rate_limit_problem
from .ratelimit import SlidingWindowLimiter, retry_after_seconds
from .schemas import Validators, parse_rfc3339
from .store import STATUS_CODES, ContactStore, decode_cursor, encode_cursor

log = logging.getLogger("omnisend_emulator")

LEGACY = ("v3", "v5")


EMULATOR_KEY = web.AppKey("emulator", object)


class _Dropped(Exception):
    """The connection was closed on purpose; there is no response."""


class Emulator(ControlsMixin):
    """State and handlers of one emulator process (one shared contact store for all API keys)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.initial_settings = dataclasses.replace(
            settings, api_keys=list(settings.api_keys), retired_versions=list(settings.retired_versions)
        )
        self.validators = Validators()
        self.store = ContactStore()
        self.faults = Faults(settings.seed)
        self.limiter = SlidingWindowLimiter()
        self.batches = BatchStore(self.store, self.validators, settings, self.faults)
        self.requests: Counter[str] = Counter()
        self.responses: Counter[str] = Counter()
        self.rate_limited = 0
        self.tag_operations = 0
        self.tag_handles: set[asyncio.TimerHandle] = set()

    # ================================================================ app wiring

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_post("/api/contacts/tags", self.tags)
        r.add_delete("/api/contacts/tags", self.tags)
        r.add_post("/api/contacts", self.create_contact)
        r.add_patch("/api/contacts", self.patch_contact_by_email)
        r.add_get("/api/contacts", self.list_contacts)
        r.add_get("/api/contacts/{id}", self.get_contact)
        r.add_patch("/api/contacts/{id}", self.patch_contact_by_id)
        r.add_post("/api/batches", self.create_batch)
        r.add_get("/api/batches", self.list_batches)
        r.add_get("/api/batches/{batchID}", self.get_batch)
        r.add_get("/api/batches/{batchID}/items", self.get_batch_items)
        for gen in LEGACY:
            r.add_post(f"/{gen}/contacts", self.legacy_create_contact)
            r.add_post(f"/{gen}/batches", self.create_batch)
            r.add_get(f"/{gen}/batches/{{batchID}}", self.get_batch)
            r.add_get(f"/{gen}/batches/{{batchID}}/items", self.get_batch_items)
        r.add_get("/_emulator/health", self.health)
        r.add_get("/_emulator/state", self.state)
        r.add_get("/_emulator/contacts", self.emulator_contacts)
        r.add_get("/_emulator/contacts/export", self.export_contacts)
        r.add_post("/_emulator/reset", self.reset)
        r.add_get("/_emulator/config", self.get_config)
        r.add_post("/_emulator/config", self.set_config)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self.batches.start()

    async def _on_cleanup(self, app: web.Application) -> None:
        await self.batches.stop()
        for handle in self.tag_handles:
            handle.cancel()

    # ================================================================ the gateway

    @staticmethod
    def _generation(path: str) -> str | None:
        if path.startswith("/api/"):
            return "2026"
        for gen in LEGACY:
            if path.startswith(f"/{gen}/"):
                return gen
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await handler(request)
        resource = getattr(request.match_info.route, "resource", None)
        template = resource.canonical if resource is not None else "<unmatched>"
        self.requests[f"{request.method} {template}"] += 1
        gen = self._generation(request.path)
        try:
            resp = await self._gateway(request, handler, gen)
        except ProblemError as err:
            resp = self._problem_response(err.body, gen, err.headers)
        except _Dropped:
            self.responses["dropped"] += 1
            return web.Response(status=500)  # goes nowhere: the transport is closed
        if gen in LEGACY:
            self._legacy_headers(request, resp)
        self.responses[str(resp.status)] += 1
        return resp

    def _problem_response(
        self, body: dict[str, Any], gen: str | None, headers: dict[str, str] | None = None
    ) -> web.Response:
        if gen in LEGACY:  # Problem JSON plus the legacy fields: v3 {error}, v5 {error, fields}
            body = {**body, "error": body.get("detail", body.get("title"))}
            if gen == "v5" and "errors" in body:
                body["fields"] = body["errors"]
        return json_response(body, body["status"], headers)

    def _legacy_headers(self, request: web.Request, resp: web.StreamResponse) -> None:
        brand = request.get("brand")
        if brand is None:
            return
        limit = self.settings.rpm
        remaining, reset = self.limiter.usage(
            brand, "default", limit, self.settings.window_s, time.monotonic()
        )
        resp.headers["X-Rate-Limit-Limit"] = str(limit)
        resp.headers["X-Rate-Limit-Remaining"] = str(remaining)
        resp.headers["X-Rate-Limit-Reset"] = str(reset)

    def _authenticate(self, request: web.Request, gen: str) -> str:
        keys = self.settings.api_keys
        if gen in LEGACY:
            token = request.headers.get("X-API-KEY", "").strip()
            if not token and gen == "v5":
                scheme, _, token = request.headers.get("Authorization", "").partition(" ")
                token = token.strip() if scheme.lower() == "bearer" else ""
            hint = "Send the API key in the X-API-KEY header."
        else:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            token = token.strip() if scheme.lower() in ("omnisend-api-key", "bearer") else ""
            hint = "Send 'Authorization: Omnisend-API-Key <key>'."
        if not token:
            raise ProblemError.of(401, f"Authentication is missing. {hint}")
        if token not in keys:
            raise ProblemError.of(401, "The API key is not valid.")
        return token

    def _check_version(self, request: web.Request, gen: str) -> None:
        retired = self.settings.retired_versions
        if gen in LEGACY:
            if gen in retired:
                raise ProblemError.of(410, f"API version {gen} has been retired.")
            return
        version = request.headers.get("Omnisend-Version")
        if version is None or not version.strip():
            raise ProblemError.invalid(
                [
                    {
                        "field": "Omnisend-Version",
                        "code": "required",
                        "message": f"The Omnisend-Version header is required, e.g. {API_VERSION}",
                    }
                ],
                "The Omnisend-Version header is missing.",
            )
        version = version.strip()
        if version in retired:
            raise ProblemError.of(410, f"API version {version} has been retired.")
        if version not in KNOWN_VERSIONS:
            raise ProblemError.invalid(
                [
                    {
                        "field": "Omnisend-Version",
                        "code": "invalid_value",
                        "message": f"Unknown API version {version!r}; supported: {', '.join(KNOWN_VERSIONS)}",
                    }
                ],
                f"Unknown API version {version!r}.",
            )

    def _too_many(self, retry_after: int, detail: str) -> ProblemError:
        headers = {"Retry-After": str(float(retry_after))} if self.settings.send_retry_after_header else None
        return ProblemError(rate_limit_problem(retry_after, detail), headers)

    async def _gateway(self, request: web.Request, handler: Any, gen: str | None) -> web.StreamResponse:
        s = self.settings
        if s.latency_ms > 0:
            await asyncio.sleep(s.latency_ms / 1000.0)
        if gen is None:
            raise ProblemError.of(404, f"No such endpoint: {request.method} {request.path}")
        brand = self._authenticate(request, gen)
        request["brand"] = brand
        self._check_version(request, gen)
        if s.burst_429 > 0:
            s.burst_429 -= 1
            self.faults.count("burst_429")
            raise self._too_many(retry_after_seconds(s.time_scale), "Too many requests (burst).")
        tags = request.path == "/api/contacts/tags" and request.method in ("POST", "DELETE")
        bucket, limit = ("tags", s.tags_rpm) if tags else ("default", s.rpm)
        wait = self.limiter.acquire(brand, bucket, limit, s.window_s, time.monotonic())
        if wait is not None:
            self.rate_limited += 1
            retry = retry_after_seconds(wait)
            raise self._too_many(
                retry, f"Rate limit of {limit} requests per minute exceeded ({bucket}). Retry in {retry} s."
            )
        # Faults strike after the gateway accepted (and counted) the request.
        if self.faults.chance(s.error_rate):
            self.faults.count("error")
            status = self.faults.rng.choice((500, 503))
            raise ProblemError.of(status, "Injected server error; nothing was applied.")
        if self.faults.chance(s.timeout_rate):
            self.faults.count("timeout")
            await asyncio.sleep(s.timeout_s)
            raise ProblemError.of(504, "Injected timeout; nothing was applied.")
        if self.faults.chance(s.drop_rate):
            self.faults.count("drop")
            if request.method != "GET" and self.faults.rng.random() < 0.5:
                self.faults.count("drop_applied")
                with contextlib.suppress(ProblemError):
                    await self._call(request, handler)
            if request.transport is not None:
                request.transport.close()
            raise _Dropped
        return await self._call(request, handler)

    async def _call(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except ProblemError:
            raise
        except web.HTTPMethodNotAllowed as err:
            raise ProblemError.of(
                405,
                f"{request.method} is not allowed here; allowed: {', '.join(sorted(err.allowed_methods))}",
            ) from err
        except web.HTTPNotFound as err:
            raise ProblemError.of(404, f"No such endpoint: {request.method} {request.path}") from err
        except web.HTTPRequestEntityTooLarge as err:
            raise ProblemError.of(413, "The request body is too large.") from err
        except web.HTTPException:
            raise
        except Exception as err:
            log.exception("unexpected error in %s %s", request.method, request.path)
            raise ProblemError.of(500, f"Unexpected error: {type(err).__name__}") from err

    # ================================================================ helpers

    @staticmethod
    async def _json_body(request: web.Request) -> tuple[Any, bytes]:
        raw = await request.read()
        if not raw.strip():
            raise ProblemError.invalid(
                [{"field": "body", "code": "required", "message": "A JSON body is required"}]
            )
        try:
            return orjson.loads(raw), raw
        except orjson.JSONDecodeError as err:
            raise ProblemError.invalid(
                [{"field": "body", "code": "invalid_json", "message": f"The body is not valid JSON: {err}"}]
            ) from err

    def _contact_body(self, body: Any) -> dict[str, Any]:
        errs = self.validators.contact.errors(body)
        if errs:
            raise ProblemError.invalid(errs)
        return body

    def _seq(self, contact_id: str) -> int:
        seq = self.store.seq_of(contact_id)
        if seq is None:
            raise ProblemError.of(404, f"Contact {contact_id} not found")
        return seq

    @staticmethod
    def _int_param(  # noqa: PLR0917 - a private helper called with positional bounds
        query: Any, name: str, default: int, lo: int, hi: int | None, errors: list[dict[str, str]]
    ) -> int:
        raw = query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            errors.append({"field": name, "code": "invalid_type", "message": "Must be an integer"})
            return default
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            errors.append({"field": name, "code": "out_of_range", "message": f"Must be {bound}"})
        return value

    @staticmethod
    def _enum_param(
        query: Any, name: str, allowed: tuple[str, ...], default: str | None, errors: list[dict[str, str]]
    ) -> str | None:
        value = query.get(name)
        if value is None or value == "":
            return default
        if value not in allowed:
            errors.append(
                {"field": name, "code": "invalid_value", "message": f"Must be one of {', '.join(allowed)}"}
            )
        return value

    # ================================================================ contacts

    async def create_contact(self, request: web.Request) -> web.Response:
        body = self._contact_body((await self._json_body(request))[0])
        created, seq, record = self.store.upsert(body)
        return json_response(self.store.render(seq, record), 201 if created else 200)

    async def legacy_create_contact(self, request: web.Request) -> web.Response:
        gen = self._generation(request.path) or "v3"
        body = self._contact_body(legacy_contact((await self._json_body(request))[0], gen))
        _, seq, record = self.store.upsert(body)
        out = self.store.render(seq, record)
        out["contactID"] = out["id"]
        return json_response(out, 200)

    async def patch_contact_by_email(self, request: web.Request) -> web.Response:
        email = request.query.get("email")
        if not email:
            raise ProblemError.invalid(
                [{"field": "email", "code": "required", "message": "The email query parameter is required"}]
            )
        body = self._contact_body((await self._json_body(request))[0])
        seq = self.store.by_email.get(email)
        if seq is None:
            raise ProblemError.of(404, f"No contact has the email {email}")
        return json_response(self.store.render(seq, self.store.patch(seq, body)))

    async def get_contact(self, request: web.Request) -> web.Response:
        seq = self._seq(request.match_info["id"])
        return json_response(self.store.render(seq))

    async def patch_contact_by_id(self, request: web.Request) -> web.Response:
        seq = self._seq(request.match_info["id"])
        body = self._contact_body((await self._json_body(request))[0])
        return json_response(self.store.render(seq, self.store.patch(seq, body)))

    async def list_contacts(self, request: web.Request) -> web.Response:
        q = request.query
        errors: list[dict[str, str]] = []
        limit = self._int_param(q, "limit", 100, 1, 250, errors)
        sort = self._enum_param(q, "sort", ("createdAt", "updatedAt"), "createdAt", errors)
        direction = self._enum_param(q, "direction", ("asc", "desc"), "desc", errors)
        status = self._enum_param(q, "status", tuple(STATUS_CODES), None, errors)
        filters = {
            name: q.get(name) or None for name in ("email", "phone", "segmentID", "tag", "updatedAtFrom")
        }
        updated_from_ms = None
        if filters["updatedAtFrom"] is not None:
            parsed = parse_rfc3339(filters["updatedAtFrom"])
            if parsed is None:
                errors.append(
                    {
                        "field": "updatedAtFrom",
                        "code": "invalid_format",
                        "message": "Must be an RFC 3339 date-time",
                    }
                )
            else:
                updated_from_ms = int(parsed.timestamp() * 1000)
            combined = [n for n in ("email", "phone", "segmentID", "tag") if filters[n]] + (
                ["status"] if status else []
            )
            if combined:
                errors.append(
                    {
                        "field": "updatedAtFrom",
                        "code": "invalid_combination",
                        "message": f"updatedAtFrom cannot be combined with {', '.join(combined)}",
                    }
                )
        if filters["tag"] and status:
            errors.append(
                {
                    "field": "status",
                    "code": "invalid_combination",
                    "message": "tag and status cannot be used together",
                }
            )
        cursors: dict[str, Any] = {}
        for name in ("after", "before"):
            raw = q.get(name)
            if raw and not errors:
                try:
                    cursors[name] = decode_cursor(raw, sort or "createdAt")
                except ValueError as err:
                    errors.append(
                        {"field": name, "code": "invalid_value", "message": f"Invalid cursor: {err}"}
                    )
        if len(cursors) == 2:
            errors.append(
                {
                    "field": "before",
                    "code": "invalid_combination",
                    "message": "after and before cannot be used together",
                }
            )
        if errors:
            raise ProblemError.invalid(errors)
        assert sort is not None and direction is not None
        seqs, more, after_key, before_key = self.store.list_contacts(
            limit=limit,
            sort=sort,
            direction=direction,
            after=cursors.get("after"),
            before=cursors.get("before"),
            email=filters["email"],
            phone=filters["phone"],
            status=status,
            tag=filters["tag"],
            updated_from_ms=updated_from_ms,
            segment_id=filters["segmentID"],
        )
        return json_response(
            {
                "contacts": [self.store.render(seq) for seq in seqs],
                "paging": {
                    "limit": limit,
                    "hasMore": more,
                    "cursors": {
                        "after": encode_cursor(sort, after_key) if after_key is not None else None,
                        "before": encode_cursor(sort, before_key) if before_key is not None else None,
                    },
                },
            }
        )

    async def tags(self, request: web.Request) -> web.Response:
        add = request.method == "POST"
        body = (await self._json_body(request))[0]
        errs = (self.validators.add_tags if add else self.validators.remove_tags).errors(body)
        if errs:
            raise ProblemError.invalid(errs)
        delay = self.settings.tags_delay_s * self.settings.time_scale
        handle: asyncio.TimerHandle | None = None

        def apply() -> None:
            self.tag_handles.discard(handle)  # type: ignore[arg-type]
            seqs = self.store.select(
                body.get("contactIDs", ()), body.get("emails", ()), body.get("phones", ())
            )
            self.store.change_tags(add, body["tags"], seqs)
            self.tag_operations += 1

        handle = asyncio.get_running_loop().call_later(delay, apply)
        self.tag_handles.add(handle)
        return web.Response(status=202)

    # ================================================================ batches

    async def create_batch(self, request: web.Request) -> web.Response:
        gen = self._generation(request.path) or "2026"
        body, raw = await self._json_body(request)
        validator = self.validators.batch if gen == "2026" else self.validators.legacy_batch
        errs = validator.errors(body)
        if errs:
            raise ProblemError.invalid(errs)
        batch = self.batches.create(body, raw, gen)
        if gen == "2026":
            return json_response({"batchID": batch.id, "totalCount": batch.total}, 201)
        return json_response(batch.summary(), 200)

    async def get_batch(self, request: web.Request) -> web.Response:
        return json_response(self.batches.get(request.match_info["batchID"]).summary())

    async def get_batch_items(self, request: web.Request) -> web.Response:
        return json_response(self.batches.items_view(self.batches.get(request.match_info["batchID"])))

    async def list_batches(self, request: web.Request) -> web.Response:
        q = request.query
        errors: list[dict[str, str]] = []
        endpoint = self._enum_param(q, "endpoint", ("products", "contacts", "events"), None, errors)
        if endpoint is None:
            errors.append(
                {"field": "endpoint", "code": "required", "message": "The endpoint parameter is required"}
            )
        status = self._enum_param(q, "status", STATUSES, None, errors)
        offset = self._int_param(q, "offset", 0, 0, None, errors)
        limit = self._int_param(q, "limit", 100, 1, 250, errors)
        dates = {}
        for name in ("dateFrom", "dateTo"):
            value = q.get(name)
            if value:
                try:
                    dt.date.fromisoformat(value)
                    dates[name] = value
                except ValueError:
                    errors.append({"field": name, "code": "invalid_format", "message": "Must be yyyy-mm-dd"})
        if errors:
            raise ProblemError.invalid(errors)
        assert endpoint is not None
        page, total = self.batches.list(
            endpoint=endpoint,
            status=status,
            date_from=dates.get("dateFrom"),
            date_to=dates.get("dateTo"),
            offset=offset,
            limit=limit,
        )
        base = f"{request.scheme}://{request.host}{request.path}?"
        params = {k: v for k, v in q.items() if k not in ("offset", "limit")}
        paging: dict[str, Any] = {"limit": limit, "offset": offset}
        if offset + limit < total:
            paging["next"] = base + urlencode({**params, "limit": limit, "offset": offset + limit})
        if offset > 0:
            paging["previous"] = base + urlencode(
                {**params, "limit": limit, "offset": max(offset - limit, 0)}
            )
        return json_response({"batches": [b.summary() for b in page], "paging": paging})


def create_app(settings: Settings | None = None) -> web.Application:
    """A ready-to-run emulator application (its ``Emulator`` is ``app[EMULATOR_KEY]``)."""
    emulator = Emulator(settings or Settings())
    app = emulator.build_app()
    app[EMULATOR_KEY] = emulator
    return app
