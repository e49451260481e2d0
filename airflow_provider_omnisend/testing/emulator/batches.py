"""Batches: accepted at once, processed in the background, one batch after another.

A batch goes ``pending`` -> ``inProgress`` -> ``finished`` (or ``stopped`` when the
``stop_next_batches`` fault hit it: it stops after half of its items, rounded down; the others are left
unprocessed and appear in neither ``responses`` nor ``errors``).

Items are processed in slices of at most ``SLICE`` items and the worker yields to the event loop after
each slice, so a big backlog never holds up request handling for long. With
``processing_items_per_s`` > 0 the worker paces itself to that many items per emulated second.

Memory: the request body is kept once per batch (zlib-compressed when processing ends) and is where
``request`` of each item comes from. Per processed item the batch keeps a response code and a contact
seq in arrays, and the response as bytes: for a written contact these are the stored record at that
moment (shared with the store, so they cost nothing until the contact changes again), rendered as a
ContactResponse on read; otherwise the Problem body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .config import Faults, Settings
from .problems import ProblemError, problem, validation_problem
from .schemas import Validators
from .store import ContactStore, fmt_ms, now_ms, pack

SLICE = 25
log = logging.getLogger("omnisend_emulator")
STATUSES = ("pending", "inProgress", "finished", "stopped")


@dataclass(slots=True)
class Batch:
    id: str
    endpoint: str
    method: str
    origin: str
    generation: str  # "2026", "v3" or "v5"
    total: int
    body: bytes  # the request body as received; zlib-compressed once processed
    created_ms: int
    status: str = "pending"
    started_ms: int | None = None
    ended_ms: int | None = None
    stop_after: int | None = None
    finished: int = 0
    errors: int = 0
    packed: bool = False
    codes: array = field(default_factory=lambda: array("H"))  # per processed item, in item order
    seqs: array = field(default_factory=lambda: array("q"))  # contact seq, -1 if none was written
    responses: list[bytes] = field(default_factory=list)

    def items(self) -> list[Any]:
        return orjson.loads(zlib.decompress(self.body) if self.packed else self.body)["items"]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "batchID": self.id,
            "endpoint": self.endpoint,
            "method": self.method,
            "origin": self.origin,
            "status": self.status,
            "createdAt": fmt_ms(self.created_ms),
        }
        if self.started_ms is not None:
            out["startedAt"] = fmt_ms(self.started_ms)
        if self.ended_ms is not None:
            out["endedAt"] = fmt_ms(self.ended_ms)
        out.update(totalCount=self.total, finishedCount=self.finished, errorsCount=self.errors)
        return out

    def item_id(self, index: int) -> str:
        return f"{self.id[:16]}{index:08x}"


def legacy_contact(item: Any, generation: str) -> Any:
    """v3/v5 contact bodies -> 2026 ContactRequest: ``statusDate`` -> ``statusChangedAt``,
    ``sendWelcomeEmail`` -> ``sendWelcomeMessage`` (v3 default false, so it is made explicit)."""
    if not isinstance(item, dict):
        return item
    out = dict(item)
    idents = out.get("identifiers")
    if isinstance(idents, list):
        new_idents = []
        for original in idents:
            ident = original
            if isinstance(original, dict):
                ident = dict(original)
                if "sendWelcomeEmail" in ident and "sendWelcomeMessage" not in ident:
                    ident["sendWelcomeMessage"] = ident.pop("sendWelcomeEmail")
                if generation == "v3":
                    ident.setdefault("sendWelcomeMessage", False)
                channels = ident.get("channels")
                if isinstance(channels, dict):
                    ident["channels"] = {
                        name: (
                            {
                                **{k: v for k, v in ch.items() if k != "statusDate"},
                                "statusChangedAt": ch.get("statusChangedAt", ch["statusDate"]),
                            }
                            if isinstance(ch, dict) and "statusDate" in ch
                            else ch
                        )
                        for name, ch in channels.items()
                    }
            new_idents.append(ident)
        out["identifiers"] = new_idents
    return out


class BatchStore:
    def __init__(
        self, store: ContactStore, validators: Validators, settings: Settings, faults: Faults
    ) -> None:
        self.store = store
        self.validators = validators
        self.settings = settings
        self.faults = faults
        self.batches: dict[str, Batch] = {}
        self.queue: asyncio.Queue[Batch] | None = None
        self.worker: asyncio.Task[None] | None = None
        self.on_item: Callable[[], None] | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.get_running_loop().create_task(self._run(), name="batch-worker")

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
            self.worker = None

    async def reset(self) -> None:
        await self.stop()
        self.batches.clear()
        self.start()

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for b in self.batches.values():
            out[b.status] += 1
        return out

    # ---------------------------------------------------------------- API

    def create(self, body: dict[str, Any], raw: bytes, generation: str) -> Batch:
        if body["endpoint"] != "contacts":
            raise ProblemError.invalid(
                [
                    {
                        "field": "endpoint",
                        "code": "unsupported",
                        "message": "The emulator only emulates contacts batches",
                    }
                ]
            )
        batch_id = secrets.token_hex(12)
        batch = Batch(
            id=batch_id,
            endpoint=body["endpoint"],
            method=body["method"],
            origin=body.get("origin", "api"),
            generation=generation,
            total=len(body["items"]),
            body=raw,
            created_ms=now_ms(),
        )
        if self.settings.stop_next_batches > 0:
            self.settings.stop_next_batches -= 1
            batch.stop_after = batch.total // 2
            self.faults.count("stopped_batch")
        self.batches[batch_id] = batch
        assert self.queue is not None
        self.queue.put_nowait(batch)
        return batch

    def get(self, batch_id: str) -> Batch:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise ProblemError.of(404, f"Batch {batch_id} not found")
        return batch

    def items_view(self, batch: Batch) -> dict[str, Any]:
        responses, errors = [], []
        requests = batch.items()
        for index, code in enumerate(batch.codes):
            seq, response = batch.seqs[index], batch.responses[index]
            item = {
                "itemID": batch.item_id(index),
                "request": requests[index],
                "response": self.store.render(seq, response) if seq >= 0 else orjson.Fragment(response),
                "responseCode": code,
                "status": "finished",
            }
            (responses if 200 <= code < 300 else errors).append(item)
        return {**batch.summary(), "responses": responses, "errors": errors}

    def list(
        self,
        *,
        endpoint: str,
        status: str | None,
        date_from: str | None,
        date_to: str | None,
        offset: int,
        limit: int,
    ) -> tuple[list[Batch], int]:
        chosen = []
        for b in reversed(self.batches.values()):  # newest first
            if b.endpoint != endpoint or (status is not None and b.status != status):
                continue
            day = fmt_ms(b.created_ms)[:10]
            if (date_from and day < date_from) or (date_to and day > date_to):
                continue
            chosen.append(b)
        return chosen[offset : offset + limit], len(chosen)

    # ---------------------------------------------------------------- worker

    def _process_item(self, index: int, item: Any, generation: str) -> tuple[int, int, bytes]:
        """(responseCode, contact seq or -1, response bytes) for one item."""
        body = legacy_contact(item, generation) if generation != "2026" else item
        errs = self.validators.contact.errors(body)
        if errs:
            return 400, -1, pack(validation_problem(errs))
        if self.faults.chance(self.settings.item_error_rate):
            self.faults.count("item_error")
            detail = "Transient error while processing the item; it was not applied. Retry it."
            return 500, -1, pack(problem(500, detail))
        try:
            created, seq, record = self.store.upsert(body)
        except ProblemError as err:
            return err.status, -1, pack(err.body)
        except Exception as err:  # an emulator bug must not stall every later batch
            log.exception("batch item %d failed unexpectedly", index)
            return 500, -1, pack(problem(500, f"Unexpected error: {type(err).__name__}"))
        return (201 if created else 200), seq, record

    async def _run(self) -> None:
        assert self.queue is not None
        while True:
            batch = await self.queue.get()
            batch.status = "inProgress"
            batch.started_ms = now_ms()
            items = batch.items()
            upto = len(items) if batch.stop_after is None else batch.stop_after
            i = 0
            while i < upto:
                rate = self.settings.processing_items_per_s / self.settings.time_scale
                size = SLICE if rate <= 0 else max(1, min(SLICE, int(rate * 0.05)))
                t0 = time.monotonic()
                for index in range(i, min(i + size, upto)):
                    code, seq, response = self._process_item(index, items[index], batch.generation)
                    batch.codes.append(code)
                    batch.seqs.append(seq)
                    batch.responses.append(response)
                    batch.finished += 1
                    if not 200 <= code < 300:
                        batch.errors += 1
                i = min(i + size, upto)
                if rate > 0:
                    await asyncio.sleep(max(size / rate - (time.monotonic() - t0), 0))
                else:
                    await asyncio.sleep(0)
            batch.body = zlib.compress(batch.body, 1)
            batch.packed = True
            batch.status = "stopped" if batch.stop_after is not None else "finished"
            batch.ended_ms = now_ms()
