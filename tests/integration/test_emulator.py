"""The Omnisend emulator as a real process on 127.0.0.1, driven over HTTP with ``requests``.

Uses the shared ``emulator`` fixture (tests/conftest.py: one process for the session, reset before each
test, time scale 0.01 so that a one-minute rate window lasts 0.6 s). Tests that need start-up flags
start their own process.
"""

from __future__ import annotations

import time

import pytest
import requests

from airflow_provider_omnisend.testing.emulator import EmulatorServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

T = 10  # seconds: timeout of every HTTP call


def call(emu, method, path, *, headers=None, **kw):
    """An API request with this emulator's key and version header unless ``headers`` is given."""
    return requests.request(
        method,
        f"{emu.base_url}{path}",
        headers=emu.headers() if headers is None else headers,
        timeout=kw.pop("timeout", T),
        **kw,
    )


def person(email, **fields):
    ident = {"type": "email", "id": email}
    ident.update(fields.pop("ident", {}))
    return {"identifiers": [ident], **fields}


def assert_problem(resp, status):
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body["status"] == status
    assert body["type"].startswith("https://problems.omnisend.com/")
    assert body["title"] and body["detail"]
    assert body["instance"].startswith("urn:omnisend:request:")
    return body


def wait_for(predicate, timeout=10.0, poll=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("condition not met in time")


def make_batch(emu, items, *, path="/api/batches", headers=None):
    resp = call(
        emu, "POST", path, headers=headers, json={"method": "POST", "endpoint": "contacts", "items": items}
    )
    assert resp.status_code in (200, 201), resp.text
    return resp.json()["batchID"]


# ---------------------------------------------------------------------------------------------- gateway


def test_auth_401(emulator):
    version = {"Omnisend-Version": "2026-03-15"}
    assert_problem(call(emulator, "GET", "/api/contacts", headers=version), 401)
    assert_problem(
        call(emulator, "GET", "/api/contacts", headers={**version, "Authorization": "Omnisend-API-Key nope"}),
        401,
    )
    assert_problem(
        call(emulator, "GET", "/api/contacts", headers={**version, "X-API-KEY": emulator.api_key}), 401
    )  # legacy header on /api
    ok = call(
        emulator, "GET", "/api/contacts", headers={**version, "Authorization": f"Bearer {emulator.api_key}"}
    )
    assert ok.status_code == 200
    # the key never appears in a response
    assert emulator.api_key not in call(emulator, "GET", "/api/contacts", headers=version).text


def test_version_header_400(emulator):
    auth = {"Authorization": f"Omnisend-API-Key {emulator.api_key}"}
    body = assert_problem(call(emulator, "GET", "/api/contacts", headers=auth), 400)
    assert body["errors"][0]["field"] == "Omnisend-Version" and body["errors"][0]["code"] == "required"
    body = assert_problem(
        call(emulator, "GET", "/api/contacts", headers={**auth, "Omnisend-Version": "v5"}), 400
    )
    assert body["errors"][0]["code"] == "invalid_value"
    assert call(emulator, "GET", "/api/contacts", headers={**auth, "Omnisend-Version": "2026-preview"}).ok


def test_retired_version_410():
    with EmulatorServer(
        api_key="k",
        time_scale=0.01,
        extra_args=["--retired-version", "2026-03-15", "--retired-version", "v3"],
    ) as emu:
        body = assert_problem(call(emu, "POST", "/api/contacts", json=person("a@example.com")), 410)
        assert body["title"] == "API version has been retired"
        assert_problem(
            call(emu, "POST", "/v3/contacts", headers={"X-API-KEY": "k"}, json=person("a@example.com")), 410
        )
        assert call(emu, "POST", "/v5/contacts", headers={"X-API-KEY": "k"}, json=person("a@example.com")).ok
        assert emu.state()["contacts"] == 1
        # the start-up line names the URL, never the key
        assert f"http://127.0.0.1:{emu.port}" in emu.log_tail()
    # ...and at run time
    emu_cfg = {"retired_versions": ["2026-preview"]}
    with EmulatorServer(time_scale=0.01) as emu:
        emu.configure(**emu_cfg)
        assert_problem(call(emu, "GET", "/api/contacts", headers=emu.headers(version="2026-preview")), 410)
        assert call(emu, "GET", "/api/contacts").ok


def test_unknown_routes_and_ids_404(emulator):
    assert_problem(call(emulator, "GET", "/api/batches/5f92cbf10cf217478ba93561"), 404)
    assert_problem(call(emulator, "GET", "/api/batches/nope/items"), 404)
    assert_problem(call(emulator, "GET", "/api/contacts/60a6170920d91c215e949b5c"), 404)
    assert_problem(call(emulator, "GET", "/api/products"), 404)
    assert_problem(call(emulator, "PUT", "/api/batches"), 405)


# ---------------------------------------------------------------------------------------------- contacts


def test_validation_400_lists_every_field(emulator):
    body = {
        "identifiers": [{"type": "email", "id": "not-an-email"}, {"type": "sms", "id": 5}],
        "gender": "x",
        "tags": ["t"] * 101,
        "birthdate": "31/12/1990",
    }
    problem = assert_problem(call(emulator, "POST", "/api/contacts", json=body), 400)
    fields = {e["field"] for e in problem["errors"]}
    assert {
        "identifiers.0.id",
        "identifiers.1.type",
        "identifiers.1.id",
        "gender",
        "tags",
        "birthdate",
    } <= fields
    assert problem["type"] == "https://problems.omnisend.com/validation-failed"
    assert_problem(call(emulator, "POST", "/api/contacts", data=b"{not json"), 400)
    assert_problem(call(emulator, "POST", "/api/contacts", json={"firstName": "NoIdentifiers"}), 400)
    assert emulator.state()["contacts"] == 0


def test_upsert_201_then_200_with_merge_semantics(emulator):
    first = call(
        emulator,
        "POST",
        "/api/contacts",
        json=person(
            "jane@example.com",
            firstName="Jane",
            tags=["vip"],
            customProperties={"ltv": 10},
            ident={
                "channels": {"email": {"status": "subscribed", "statusChangedAt": "2026-03-01T00:00:00Z"}},
                "sendWelcomeMessage": False,
            },
        ),
    )
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["email"] == "jane@example.com" and created["status"] == "subscribed"
    second = call(
        emulator,
        "POST",
        "/api/contacts",
        json=person(
            "jane@example.com",
            lastName="Doe",
            tags=["lake"],
            customProperties={"tier": "gold"},
            ident={"sendWelcomeMessage": False},
        ),
    )
    assert second.status_code == 200, second.text
    merged = second.json()
    assert merged["id"] == created["id"]
    assert (merged["firstName"], merged["lastName"]) == ("Jane", "Doe")  # not sent = kept
    assert merged["tags"] == ["vip", "lake"]  # union
    assert merged["customProperties"] == {"ltv": 10, "tier": "gold"}
    assert merged["status"] == "subscribed"  # no channel sent: unchanged
    assert merged["statuses"][0]["statusChangedAt"] == "2026-03-01T00:00:00Z"
    other = call(emulator, "POST", "/api/contacts", json=person("john@example.com")).json()
    assert other["status"] == "nonSubscribed"  # new without a status

    fetched = call(emulator, "GET", f"/api/contacts/{created['id']}")
    assert fetched.status_code == 200 and fetched.json()["lastName"] == "Doe"
    patched = call(
        emulator,
        "PATCH",
        "/api/contacts",
        params={"email": "jane@example.com"},
        json={
            "firstName": "Janet",
            "identifiers": [
                {"type": "email", "id": "jane@example.com", "channels": {"email": {"status": "unsubscribed"}}}
            ],
        },
    )
    assert patched.status_code == 200 and patched.json()["status"] == "unsubscribed"
    assert (
        call(emulator, "PATCH", f"/api/contacts/{created['id']}", json={"city": "Vilnius"}).json()["city"]
        == "Vilnius"
    )
    conflict = call(
        emulator,
        "PATCH",
        f"/api/contacts/{created['id']}",
        json={"identifiers": [{"type": "email", "id": "john@example.com"}]},
    )
    assert_problem(conflict, 409)
    assert_problem(
        call(
            emulator,
            "PATCH",
            "/api/contacts",
            params={"email": "nobody@example.com"},
            json={"firstName": "x"},
        ),
        404,
    )
    assert emulator.state()["contacts"] == 2


def test_emails_are_matched_exactly_as_sent(emulator):
    assert call(emulator, "POST", "/api/contacts", json=person("Case@Example.com")).status_code == 201
    assert call(emulator, "POST", "/api/contacts", json=person("case@example.com")).status_code == 201
    assert emulator.state()["contacts"] == 2


def test_welcome_counter(emulator):
    call(
        emulator, "POST", "/api/contacts", json=person("no@example.com", ident={"sendWelcomeMessage": False})
    )
    assert emulator.state()["welcome_messages"] == 0
    call(emulator, "POST", "/api/contacts", json=person("default@example.com"))
    call(
        emulator, "POST", "/api/contacts", json=person("yes@example.com", ident={"sendWelcomeMessage": True})
    )
    assert emulator.state()["welcome_messages"] == 2
    call(emulator, "POST", "/api/contacts", json=person("default@example.com"))  # not a new identifier
    assert emulator.state()["welcome_messages"] == 2
    by_email = {c["email"]: c for c in emulator.contacts()}
    assert by_email["no@example.com"]["sendWelcomeMessage"] is False
    assert by_email["no@example.com"]["identifiers"][0]["sendWelcomeMessage"] is False
    assert by_email["default@example.com"]["sendWelcomeMessage"] is None
    assert by_email["yes@example.com"]["sendWelcomeMessage"] is True


def test_list_paging_cursors_and_filters(emulator):
    items = [
        person(
            f"u{i:02d}@example.com",
            tags=["even" if i % 2 == 0 else "odd"],
            ident={"channels": {"email": {"status": "subscribed" if i < 4 else "nonSubscribed"}}},
        )
        for i in range(12)
    ]
    make_batch(emulator, items)
    emulator.wait_batches_done(10)

    def page(**params):
        resp = call(emulator, "GET", "/api/contacts", params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    seen, cursor, pages = [], None, 0
    while True:
        body = page(limit=5, **({"after": cursor} if cursor else {}))
        pages += 1
        assert body["paging"]["limit"] == 5
        seen += [c["email"] for c in body["contacts"]]
        if not body["paging"]["hasMore"]:
            assert body["paging"]["cursors"]["after"] is None
            break
        cursor = body["paging"]["cursors"]["after"]
    assert pages == 3
    assert seen == [f"u{i:02d}@example.com" for i in range(11, -1, -1)]  # createdAt desc by default
    p1 = page(limit=5)
    p2 = page(limit=5, after=p1["paging"]["cursors"]["after"])
    assert [c["id"] for c in page(limit=5, before=p2["paging"]["cursors"]["before"])["contacts"]] == [
        c["id"] for c in p1["contacts"]
    ]
    asc = page(limit=3, direction="asc", sort="updatedAt")
    assert [c["email"] for c in asc["contacts"]] == ["u00@example.com", "u01@example.com", "u02@example.com"]

    assert [c["email"] for c in page(email="u03@example.com")["contacts"]] == ["u03@example.com"]
    assert len(page(tag="even", limit=250)["contacts"]) == 6
    assert len(page(status="subscribed")["contacts"]) == 4
    assert page(segmentID="60a6170920d91c215e949b5c")["contacts"] == []
    assert len(page(updatedAtFrom="2000-01-01T00:00:00Z")["contacts"]) == 12
    assert page(updatedAtFrom="2999-01-01T00:00:00Z")["contacts"] == []

    for params, field in [
        ({"tag": "even", "status": "subscribed"}, "status"),
        ({"updatedAtFrom": "2000-01-01T00:00:00Z", "email": "u03@example.com"}, "updatedAtFrom"),
        ({"updatedAtFrom": "2000-01-01T00:00:00Z", "tag": "even"}, "updatedAtFrom"),
        ({"limit": 0}, "limit"),
        ({"limit": 251}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"status": "gone"}, "status"),
        ({"after": "garbage"}, "after"),
        ({"updatedAtFrom": "yesterday"}, "updatedAtFrom"),
    ]:
        problem = assert_problem(call(emulator, "GET", "/api/contacts", params=params), 400)
        assert field in {e["field"] for e in problem["errors"]}, (params, problem)


def test_tags_add_and_remove_are_async(emulator):
    emulator.configure(tags_delay_s=30)  # 0.3 s at time scale 0.01
    ids = [
        call(emulator, "POST", "/api/contacts", json=person(f"t{i}@example.com")).json()["id"]
        for i in range(3)
    ]
    resp = call(
        emulator,
        "POST",
        "/api/contacts/tags",
        json={
            "tags": ["segment: vip"],
            "emails": ["t0@example.com", "ghost@example.com"],
            "contactIDs": [ids[1]],
        },
    )
    assert resp.status_code == 202 and resp.content == b""
    assert call(emulator, "GET", f"/api/contacts/{ids[0]}").json()["tags"] == []  # not yet
    emulator.wait_idle(10)
    tagged = call(emulator, "GET", "/api/contacts", params={"tag": "segment: vip"}).json()["contacts"]
    assert sorted(c["id"] for c in tagged) == sorted(ids[:2])
    resp = call(
        emulator, "DELETE", "/api/contacts/tags", json={"tags": ["segment: vip"], "contactIDs": [ids[0]]}
    )
    assert resp.status_code == 202
    emulator.wait_idle(10)
    assert [
        c["id"]
        for c in call(emulator, "GET", "/api/contacts", params={"tag": "segment: vip"}).json()["contacts"]
    ] == [ids[1]]
    state = emulator.state()
    assert state["tag_operations"] == 2 and state["tag_changes"] == 3
    assert_problem(call(emulator, "POST", "/api/contacts/tags", json={"tags": ["x"]}), 400)  # no selector
    assert_problem(call(emulator, "POST", "/api/contacts/tags", json={"tags": [], "emails": ["a@b.co"]}), 400)
    assert_problem(
        call(
            emulator, "DELETE", "/api/contacts/tags", json={"tags": ["x"], "emails": ["a@example.com"] * 251}
        ),
        400,
    )


# ---------------------------------------------------------------------------------------------- batches


def test_batch_lifecycle_with_item_error(emulator):
    # 5 items per real second at time scale 0.01: the batch stays inProgress ~1.8 s, long enough to be
    # seen by a poll even on a loaded machine
    emulator.configure(processing_items_per_s=0.05)
    items = [person(f"b{i}@example.com", ident={"sendWelcomeMessage": False}) for i in range(8)]
    items.insert(3, person("broken-address"))
    resp = call(
        emulator, "POST", "/api/batches", json={"method": "POST", "endpoint": "contacts", "items": items}
    )
    assert resp.status_code == 201
    created = resp.json()
    assert set(created) == {"batchID", "totalCount"} and created["totalCount"] == 9
    statuses = set()

    def finished():
        batch = call(emulator, "GET", f"/api/batches/{created['batchID']}").json()
        statuses.add(batch["status"])
        return batch if batch["status"] == "finished" else None

    batch = wait_for(finished, timeout=30, poll=0.05)
    assert "inProgress" in statuses
    for key in (
        "batchID",
        "endpoint",
        "method",
        "origin",
        "status",
        "createdAt",
        "startedAt",
        "endedAt",
        "totalCount",
        "finishedCount",
        "errorsCount",
    ):
        assert key in batch
    assert (batch["totalCount"], batch["finishedCount"], batch["errorsCount"]) == (9, 9, 1)
    detail = call(emulator, "GET", f"/api/batches/{created['batchID']}/items").json()
    assert len(detail["responses"]) == 8 and len(detail["errors"]) == 1
    assert all(
        r["responseCode"] == 201 and r["response"]["email"] == r["request"]["identifiers"][0]["id"]
        for r in detail["responses"]
    )
    error = detail["errors"][0]
    assert error["responseCode"] == 400 and error["request"]["identifiers"][0]["id"] == "broken-address"
    assert error["response"]["errors"][0]["field"] == "identifiers.0.id"
    assert {"itemID", "request", "response", "responseCode", "status"} <= set(error)

    again = make_batch(emulator, items[:2])
    emulator.wait_batches_done(10)
    codes = [
        r["responseCode"] for r in call(emulator, "GET", f"/api/batches/{again}/items").json()["responses"]
    ]
    assert codes == [200, 200]
    listed = call(emulator, "GET", "/api/batches", params={"endpoint": "contacts", "limit": 1}).json()
    assert listed["batches"][0]["batchID"] == again and "next" in listed["paging"]
    page2 = call(
        emulator, "GET", "/api/batches", params={"endpoint": "contacts", "limit": 1, "offset": 1}
    ).json()
    assert page2["batches"][0]["batchID"] == created["batchID"] and "previous" in page2["paging"]
    assert_problem(call(emulator, "GET", "/api/batches"), 400)  # endpoint is required
    assert emulator.state()["welcome_messages"] == 0


def test_batch_item_bounds(emulator):
    def post(n, **extra):
        body = {
            "method": "POST",
            "endpoint": "contacts",
            "items": [person(f"n{i}@example.com") for i in range(n)],
            **extra,
        }
        return call(emulator, "POST", "/api/batches", json=body)

    assert post(100).status_code == 201
    assert post(1).status_code == 201
    assert "items" in {e["field"] for e in assert_problem(post(0), 400)["errors"]}
    assert "items" in {e["field"] for e in assert_problem(post(101), 400)["errors"]}
    assert "method" in {e["field"] for e in assert_problem(post(1, method="GET"), 400)["errors"]}
    assert_problem(call(emulator, "POST", "/api/batches", json={"items": [{}]}), 400)
    assert emulator.wait_batches_done(20)["contacts"] == 100


def test_legacy_v3_and_v5(emulator):
    v3 = {"X-API-KEY": emulator.api_key}
    assert_problem(call(emulator, "POST", "/v3/batches", headers={}, json={}), 401)
    assert_problem(
        call(
            emulator,
            "POST",
            "/v3/contacts",
            headers={"Authorization": f"Bearer {emulator.api_key}"},
            json=person("a@example.com"),
        ),
        401,
    )
    items = [
        {
            "identifiers": [
                {
                    "type": "email",
                    "id": f"v3-{i}@example.com",
                    "channels": {"email": {"status": "subscribed", "statusDate": "2026-01-01T00:00:00Z"}},
                }
            ]
        }
        for i in range(1000)
    ]
    resp = call(
        emulator,
        "POST",
        "/v3/batches",
        headers=v3,
        json={"method": "POST", "endpoint": "contacts", "items": items},
    )
    assert resp.status_code == 200, resp.text
    batch_id = resp.json()["batchID"]
    assert resp.json()["totalCount"] == 1000 and "X-Rate-Limit-Remaining" in resp.headers
    too_many = call(
        emulator,
        "POST",
        "/v3/batches",
        headers=v3,
        json={"method": "POST", "endpoint": "contacts", "items": [*items, items[0]]},
    )
    body = assert_problem(too_many, 400)
    assert body["error"]  # the legacy error string rides along
    emulator.wait_batches_done(30)
    done = call(emulator, "GET", f"/v3/batches/{batch_id}", headers=v3).json()
    assert (done["status"], done["finishedCount"], done["errorsCount"]) == ("finished", 1000, 0)
    detail = call(emulator, "GET", f"/v3/batches/{batch_id}/items", headers=v3).json()
    assert detail["responses"][0]["response"]["statuses"][0]["statusChangedAt"] == "2026-01-01T00:00:00Z"
    state = emulator.state()
    assert (
        state["contacts"] == 1000 and state["welcome_messages"] == 0
    )  # v3 sendWelcomeEmail defaults to false
    v5 = call(emulator, "POST", "/v5/contacts", headers=v3, json=person("v5@example.com"))
    assert v5.status_code == 200 and v5.json()["contactID"] == v5.json()["id"]
    assert emulator.state()["welcome_messages"] == 1
    bad = assert_problem(call(emulator, "POST", "/v5/contacts", headers=v3, json=person("nope")), 400)
    assert bad["fields"] == bad["errors"]


# ---------------------------------------------------------------------------------------------- rate limits


def test_rate_limit_429_retry_after_and_max_in_window(emulator):
    emulator.configure(rpm=5, tags_rpm=2, time_scale=0.05)  # windows of 3 s
    codes = [call(emulator, "GET", "/api/contacts").status_code for _ in range(5)]
    assert codes == [200] * 5
    limited = call(emulator, "GET", "/api/contacts")
    body = assert_problem(limited, 429)
    assert isinstance(body["retryAfter"], int) and 1 <= body["retryAfter"] <= 3
    assert body["type"] == "https://problems.omnisend.com/rate-limit-exceeded"
    assert "Retry-After" not in limited.headers
    for _ in range(2):
        assert (
            call(
                emulator, "POST", "/api/contacts/tags", json={"tags": ["x"], "emails": ["a@b.co"]}
            ).status_code
            == 202
        )
    assert_problem(
        call(emulator, "DELETE", "/api/contacts/tags", json={"tags": ["x"], "emails": ["a@b.co"]}), 429
    )
    state = emulator.state()
    assert state["max_in_window"] == {"default": 5, "tags": 2}
    assert state["rate_limited"] == 2 and state["responses_429"] == 2
    emulator.configure(time_scale=0.005)  # window 0.3 s: slots free quickly
    time.sleep(0.35)
    assert call(emulator, "GET", "/api/contacts").status_code == 200
    assert emulator.state()["max_in_window"]["default"] == 5  # a maximum, not the current count

    emulator.configure(send_retry_after_header=True, time_scale=0.05)
    for _ in range(5):
        call(emulator, "GET", "/api/contacts")
    limited = call(emulator, "GET", "/api/contacts")
    assert limited.status_code == 429
    assert float(limited.headers["Retry-After"]) == limited.json()["retryAfter"]


def test_rate_limit_is_per_api_key():
    with EmulatorServer(
        api_key="brand-a", time_scale=0.05, extra_args=["--api-key", "brand-b", "--rpm", "2"]
    ) as emu:

        def get(key):
            return call(
                emu,
                "GET",
                "/api/contacts",
                headers={"Authorization": f"Omnisend-API-Key {key}", "Omnisend-Version": "2026-03-15"},
            )

        assert [get("brand-a").status_code for _ in range(3)] == [200, 200, 429]
        assert get("brand-b").status_code == 200
        assert "brand-a" not in emu.log_tail() and "brand-b" not in emu.log_tail()


# ---------------------------------------------------------------------------------------------- faults


def test_fault_error_rate(emulator):
    emulator.configure(error_rate=1.0, seed=7)
    resp = call(emulator, "POST", "/api/contacts", json=person("e@example.com"))
    assert resp.status_code in (500, 503)
    assert_problem(resp, resp.status_code)
    state = emulator.state()
    assert state["contacts"] == 0 and state["faults"]["error"] == 1


def test_fault_timeout(emulator):
    # Held 4 s, the client gives up after 0.3 s: the margin absorbs a loaded CI machine.
    emulator.configure(timeout_rate=1.0, timeout_s=4.0)
    t0 = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        call(emulator, "POST", "/api/contacts", json=person("t@example.com"), timeout=0.3)
    assert time.monotonic() - t0 < 3.0
    emulator.configure(timeout_s=0.2)
    assert_problem(call(emulator, "POST", "/api/contacts", json=person("t@example.com")), 504)
    time.sleep(max(0.0, t0 + 4.2 - time.monotonic()))  # let the first held request end
    state = emulator.state()
    assert state["faults"]["timeout"] == 2 and state["contacts"] == 0


def test_fault_drop_applies_half_of_the_writes(emulator):
    emulator.configure(drop_rate=1.0, seed=3)
    for i in range(30):
        with pytest.raises(requests.exceptions.ConnectionError):
            call(emulator, "POST", "/api/contacts", json=person(f"d{i}@example.com"))
    state = emulator.state()
    assert state["faults"]["drop"] == 30
    assert 5 <= state["faults"]["drop_applied"] <= 25
    assert state["contacts"] == state["faults"]["drop_applied"]
    assert state["responses"]["dropped"] == 30


def test_fault_burst_429(emulator):
    emulator.configure(burst_429=3)
    statuses = [call(emulator, "GET", "/api/contacts").status_code for _ in range(4)]
    assert statuses == [429, 429, 429, 200]
    state = emulator.state()
    assert state["faults"]["burst_429"] == 3 and state["max_in_window"]["default"] == 1


def test_fault_stopped_batch(emulator):
    emulator.configure(stop_next_batches=1)
    stopped = make_batch(emulator, [person(f"s{i}@example.com") for i in range(10)])
    normal = make_batch(emulator, [person("n@example.com")])
    emulator.wait_batches_done(10)
    detail = call(emulator, "GET", f"/api/batches/{stopped}/items").json()
    assert detail["status"] == "stopped"
    assert detail["finishedCount"] == 5 and len(detail["responses"]) + len(detail["errors"]) == 5
    assert call(emulator, "GET", f"/api/batches/{normal}").json()["status"] == "finished"
    state = emulator.state()
    assert state["contacts"] == 6 and state["faults"]["stopped_batch"] == 1
    assert state["batches"]["stopped"] == 1


def test_fault_item_error_rate(emulator):
    emulator.configure(item_error_rate=1.0)
    batch_id = make_batch(emulator, [person(f"i{i}@example.com") for i in range(4)])
    emulator.wait_batches_done(10)
    detail = call(emulator, "GET", f"/api/batches/{batch_id}/items").json()
    assert detail["status"] == "finished" and detail["errorsCount"] == 4
    assert {e["responseCode"] for e in detail["errors"]} == {500}
    assert emulator.state()["contacts"] == 0 and emulator.state()["faults"]["item_error"] == 4


def test_faults_are_reproducible_with_a_seed(emulator):
    def run():
        emulator.reset()
        emulator.configure(seed=42, error_rate=0.5)
        return [call(emulator, "GET", "/api/contacts").status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert 200 in first and ({500, 503} & set(first))


# ---------------------------------------------------------------------------------------------- controls


def test_reset_and_config(emulator):
    call(emulator, "POST", "/api/contacts", json=person("r@example.com"))
    make_batch(emulator, [person("r2@example.com")])
    emulator.wait_batches_done(10)
    config = emulator.configure(latency_ms=50, rpm=1000)
    assert config["latency_ms"] == 50 and config["rpm"] == 1000 and "api_keys" not in config
    t0 = time.monotonic()
    call(emulator, "GET", "/api/contacts")
    assert time.monotonic() - t0 >= 0.05
    with pytest.raises(ValueError, match="error_rate"):
        emulator.configure(error_rate=2)
    with pytest.raises(ValueError, match="nonsense"):
        emulator.configure(nonsense=1)
    state = emulator.state()
    assert state["contacts"] == 2 and state["batches"]["finished"] == 1
    assert state["requests"]["POST /api/contacts"] == 1 and state["requests"]["POST /api/batches"] == 1
    assert state["responses"]["201"] == 2
    emulator.reset()
    state = emulator.state()
    assert state["contacts"] == 0 and sum(state["batches"].values()) == 0 and state["requests"] == {}
    assert state["config"]["latency_ms"] == 0 and state["config"]["rpm"] == 400  # start-up values
    health = requests.get(f"{emulator.base_url}/_emulator/health", timeout=T)
    assert health.status_code == 200


def test_emulator_contact_views(emulator):
    make_batch(emulator, [person(f"v{i}@example.com", tags=["t"]) for i in range(30)])
    emulator.wait_batches_done(10)
    exported = emulator.contacts()
    assert [c["email"] for c in exported] == [f"v{i}@example.com" for i in range(30)]
    page = requests.get(
        f"{emulator.base_url}/_emulator/contacts", params={"offset": 10, "limit": 5}, timeout=T
    ).json()
    assert page["total"] == 30 and [c["email"] for c in page["contacts"]] == [
        f"v{i}@example.com" for i in range(10, 15)
    ]
    assert page["contacts"][0] == exported[10]
    assert {"tags", "statuses", "status", "sendWelcomeMessage", "identifiers"} <= set(exported[0])
