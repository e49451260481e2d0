"""Test controls under ``/_emulator`` (no auth): health, state counters, stored contacts, reset, config.

A mixin of :class:`~airflow_provider_omnisend.testing.emulator.app.Emulator`. What it may touch of the
emulator is spelled out by the :class:`EmulatorCore` protocol, so this module never imports ``app`` (which
imports it): the imports point one way.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from typing import Any, Protocol

import orjson
from aiohttp import web

from .batches import BatchStore
from .config import API_VERSION, Faults, Settings, apply_changes
from .problems import ProblemError, json_response, problem
from .ratelimit import SlidingWindowLimiter
from .store import ContactStore


class EmulatorCore(Protocol):
    """The emulator's state as the controls see it: what they report and what a reset puts back."""

    settings: Settings
    initial_settings: Settings
    store: ContactStore
    batches: BatchStore
    limiter: SlidingWindowLimiter
    faults: Faults
    requests: Counter[str]
    responses: Counter[str]
    rate_limited: int
    tag_operations: int
    tag_handles: set[asyncio.TimerHandle]

    @staticmethod
    def _int_param(  # noqa: PLR0917 - mirrors the emulator's helper
        query: Any, name: str, default: int, lo: int, hi: int | None, errors: list[dict[str, str]]
    ) -> int: ...

    def state_dict(self) -> dict[str, Any]: ...


class ControlsMixin:
    async def health(self: EmulatorCore, request: web.Request) -> web.Response:
        return json_response({"status": "ok", "apiVersion": API_VERSION})

    def state_dict(self: EmulatorCore) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "responses": dict(self.responses),
            "rate_limited": self.rate_limited,
            "responses_429": self.responses.get("429", 0),
            "max_in_window": {
                "default": self.limiter.max_in_window.get("default", 0),
                "tags": self.limiter.max_in_window.get("tags", 0),
            },
            "contacts": len(self.store),
            "batches": self.batches.counts(),
            "welcome_messages": self.store.welcome_messages,
            "tag_operations": self.tag_operations,
            "tag_operations_pending": len(self.tag_handles),
            "tag_changes": self.store.tag_changes,
            "faults": dict(self.faults.injected),
            "config": self.settings.public(),
        }

    async def state(self: EmulatorCore, request: web.Request) -> web.Response:
        return json_response(self.state_dict())

    async def emulator_contacts(self: EmulatorCore, request: web.Request) -> web.Response:
        errors: list[dict[str, str]] = []
        offset = self._int_param(request.query, "offset", 0, 0, None, errors)
        limit = self._int_param(request.query, "limit", 100, 1, 10_000, errors)
        if errors:
            raise ProblemError.invalid(errors)
        seqs = range(offset, min(offset + limit, len(self.store)))
        return json_response(
            {
                "contacts": [self.store.render(s, emulator=True) for s in seqs],
                "total": len(self.store),
                "offset": offset,
                "limit": limit,
            }
        )

    async def export_contacts(self: EmulatorCore, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        total = len(self.store)
        prefix = self.store.prefix
        for start in range(0, total, 2000):
            if self.store.prefix != prefix:  # reset while streaming
                break
            chunk = b"".join(
                orjson.dumps(self.store.render(s, emulator=True)) + b"\n"
                for s in range(start, min(start + 2000, total))
            )
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def reset(self: EmulatorCore, request: web.Request) -> web.Response:
        for handle in self.tag_handles:
            handle.cancel()
        self.tag_handles.clear()
        await self.batches.reset()
        self.store.reset()
        self.limiter.reset()
        self.requests.clear()
        self.responses.clear()
        self.rate_limited = 0
        self.tag_operations = 0
        for f in dataclasses.fields(Settings):  # every setting back to its start-up value
            value = getattr(self.initial_settings, f.name)
            setattr(self.settings, f.name, list(value) if isinstance(value, list) else value)
        self.faults.injected = dict.fromkeys(Faults.KINDS, 0)
        self.faults.reseed(self.settings.seed)
        return json_response({"status": "reset"})

    async def get_config(self: EmulatorCore, request: web.Request) -> web.Response:
        return json_response(self.settings.public())

    async def set_config(self: EmulatorCore, request: web.Request) -> web.Response:
        try:
            changes = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            changes = None
        if not isinstance(changes, dict):
            return json_response(problem(400, "The body must be a JSON object of settings."), 400)
        errors = apply_changes(self.settings, changes)
        if errors:
            return json_response(problem(400, "Invalid settings; nothing was changed.", errors=errors), 400)
        if "seed" in changes:
            self.faults.reseed(self.settings.seed)
        return json_response(self.settings.public())
