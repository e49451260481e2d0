"""A local emulator of Omnisend's API 2026-03-15 (and a minimal v3/v5), a real HTTP server on aiohttp.

Run it with ``python -m airflow_provider_omnisend.testing.emulator --port 8999`` (see ``--help``), or
from Python with :class:`EmulatorServer`. The default API key is ``test-key``. It follows
the repository's ``docs/omnisend-api.md`` and the official specs in ``testing/openapi/``.

Modules: ``app`` (routes, gateway middleware, API handlers), ``controls`` (test controls), ``store``
(contacts), ``batches``, ``schemas`` (request validation), ``ratelimit``, ``problems`` (error bodies),
``config`` (settings, faults), ``server`` (``EmulatorServer``), ``__main__`` (CLI).

API (under ``/api``)
    ``POST/PATCH/GET /contacts``, ``GET/PATCH /contacts/{id}``, ``POST/DELETE /contacts/tags``,
    ``POST/GET /batches``, ``GET /batches/{id}``, ``GET /batches/{id}/items``.
    Legacy: ``POST /v3|v5/contacts``, ``POST /v3|v5/batches`` (up to 1000 items),
    ``GET /v3|v5/batches/{id}`` and ``.../items``.

Gateway, in this order, for every API request (``/api``, ``/v3``, ``/v5``)
    1. ``--latency-ms`` (real milliseconds).
    2. Auth: ``Authorization: Omnisend-API-Key <key>`` or ``Bearer <key>`` on ``/api``; ``X-API-KEY``
       on ``/v3`` and ``/v5`` (``/v5`` also takes ``Bearer``). Missing or unknown key -> 401.
    3. ``Omnisend-Version`` on ``/api``: missing or unknown -> 400 ValidationProblem (known:
       2026-03-15 and 2026-preview); listed by ``--retired-version`` -> 410 "API version has been
       retired". ``--retired-version v3`` / ``v5`` retires a legacy path the same way (what Omnisend
       will answer there is UNCERTAIN in the notes).
    4. Fault ``burst_429``, then the rate limiter: per brand (= API key), sliding windows over the last
       ``60 s x time_scale``: bucket ``tags`` (POST/DELETE /contacts/tags, ``--tags-rpm``) and bucket
       ``default`` (every other API request, legacy paths included, since Omnisend says all of a brand's
       integrations share one budget; ``--rpm``). Only accepted requests count. 429 RateLimitProblem
       with ``retryAfter`` = whole seconds until a slot frees (ceil, at least 1); no HTTP
       ``Retry-After`` header unless ``--send-retry-after-header`` (then as a float string, "3.0").
       Legacy responses carry ``X-Rate-Limit-Limit/Remaining/Reset`` as documented for v3.
    5. Faults on accepted requests: ``error_rate`` (500 or 503, nothing applied), ``timeout_rate`` (held
       ``timeout_s`` real seconds, then 504, nothing applied), ``drop_rate`` (the TCP connection is
       closed without a response; for writes, half of the drops apply the request first: a lost
       response).

Errors are RFC 9457 Problem JSON (``type`` https://problems.omnisend.com/<slug>, ``title``, ``status``,
``detail``, ``instance`` urn:omnisend:request:<uuid>), sent as ``application/json`` as the specs
declare; 400 adds ``errors[]`` of ``{field, code, message}`` listing every invalid field (dot paths
such as ``identifiers.0.id``); 429 adds ``retryAfter``. Legacy paths send the same JSON plus the
legacy ``error`` string (and on v5 ``fields``, a copy of ``errors``) instead of the exact v3/v5 shapes.

Validation: bodies are checked against the official schemas (``schemas`` module), plus: an email
identifier must look like an e-mail address, a phone identifier must be E.164, ``birthdate`` a real
YYYY-MM-DD date, ``countryCode`` two letters, ``statusChangedAt`` and ``consent.createdAt`` RFC 3339
(with an offset or Z), at most one email identifier per contact, and at least one identifier (a
contact without one cannot be created). Tag requests need at least one non-empty selector.

Contact semantics (assumptions where Omnisend's docs are silent or uncertain)
    * Upsert key: ``POST /contacts`` matches the email identifier exactly as sent (no lower-casing:
      the client normalises); with no email identifier, the first phone identifier. 201 when created,
      200 when updated.
    * An identifier that already belongs to another contact is silently ignored on POST (and in
      batches); ``PATCH`` answers 409 instead and changes nothing. ``PATCH`` with a different email
      replaces the contact's email.
    * Profile fields sent overwrite the stored ones; fields not sent are kept. ``customProperties``
      are merged key by key; ``createdAt`` is stored as the custom property ``externalCreated``;
      ``country`` without ``countryCode`` also sets ``countryCode`` when pycountry knows the name.
    * ``tags`` on an upsert are added to the existing tags (union, order kept); only
      ``DELETE /contacts/tags`` removes tags.
    * Channel status is set only when the request sends one (``channels.email`` / ``channels.sms``).
      A new identifier without channels gets ``nonSubscribed`` on its default channel (email -> email,
      phone -> sms); an existing status never changes unless sent. ``statusChangedAt`` is the value
      sent, else now when the status changes. Becoming ``subscribed`` adds an opt-in; a ``consent``
      adds a consent record (both keep the last 20).
    * Welcome messages: each NEW identifier (a new contact's, or one added to an existing contact)
      whose ``sendWelcomeMessage`` is absent or true counts one welcome message (API default true;
      on v3 the field is ``sendWelcomeEmail``, default false). ``GET /_emulator/state`` shows the
      count, so a test can prove that the client sends ``false``. The emulator's contact view also
      shows the last ``sendWelcomeMessage`` seen (``null`` when the last request did not send it), per
      identifier and for the contact.
    * One contact store for all API keys; segments are not emulated (``segmentID`` matches nothing).
    * ``GET /contacts``: cursors are opaque and bound to the sort; ``hasMore`` says whether more
      contacts follow in the direction of travel; ``tag``+``status`` and ``updatedAtFrom`` with
      email/phone/status/segmentID/tag answer 400 as the spec says.

Batches
    ``POST /batches`` validates the envelope (``CreateBatchRequest``: 1-100 items, 1000 on legacy),
    answers 201 ``{batchID, totalCount}`` (legacy: 200 with the Batch object) and queues it. Only the
    ``contacts`` endpoint is emulated (others: 400). ``PUT`` is applied like ``POST``. A background
    worker processes queued batches one at a time, ``pending`` -> ``inProgress`` -> ``finished``: each
    item is validated as a ContactRequest and upserted like ``POST /contacts``; an invalid item gets
    responseCode 400 and a ValidationProblem (an item error, never a failed batch). Per item:
    ``{itemID, request, response, responseCode, status: "finished"}``; 2xx items are listed in
    ``responses[]``, the others in ``errors[]``; ``finishedCount`` counts processed items (errors
    included), ``errorsCount`` the failed ones. Faults: ``stop_next_batches`` (the next N batches end
    ``stopped`` after half of their items; the rest have no response), ``item_error_rate`` (a valid
    item fails with 500, not applied). ``--processing-items-per-s`` paces the worker (per emulated
    second; 0 = as fast as possible).

Tags
    ``POST``/``DELETE /contacts/tags`` answer 202 with no body and apply ``tags_delay_s x time_scale``
    later (default 0.5 emulated s); unknown emails, phones and IDs are silently ignored.

Test controls (no auth)
    ``GET /_emulator/health``, ``GET /_emulator/state`` (counters),
    ``GET /_emulator/contacts?offset=&limit=``,
    ``GET /_emulator/contacts/export`` (JSON lines), ``POST /_emulator/reset`` (clears contacts, batches,
    counters, rate windows and faults, and puts every setting back to its start-up value),
    ``GET/POST /_emulator/config`` (settings:
    ``latency_ms, time_scale, rpm, tags_rpm, processing_items_per_s, tags_delay_s, retired_versions,
    send_retry_after_header, seed, error_rate, timeout_rate, timeout_s, drop_rate, burst_429,
    stop_next_batches, item_error_rate``). Faults draw from one ``random.Random(seed)``.
"""

from __future__ import annotations

from .config import API_VERSION, DEFAULT_API_KEY, KNOWN_VERSIONS, Settings
from .server import EmulatorServer

__all__ = ["API_VERSION", "DEFAULT_API_KEY", "KNOWN_VERSIONS", "EmulatorServer", "Settings", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
