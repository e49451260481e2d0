"""The emulator's fast schema checker must agree with jsonschema; ValidationProblem lists every field."""

from __future__ import annotations

import copy
import random

import pytest

from airflow_provider_omnisend.testing.emulator.schemas import (
    RequestValidator,
    Validators,
    compile_checker,
    looks_like_email,
    parse_rfc3339,
    request_schema,
)

VALID_CONTACT = {
    "identifiers": [
        {
            "type": "email",
            "id": "jane@example.com",
            "sendWelcomeMessage": False,
            "source": "lake",
            "channels": {"email": {"status": "subscribed", "statusChangedAt": "2026-03-15T10:00:00Z"}},
            "consent": {"source": "form", "createdAt": "2026-03-15T10:00:00+02:00", "ip": "127.0.0.1"},
        },
        {"type": "phone", "id": "+37060000001", "channels": {"sms": {"status": "nonSubscribed"}}},
    ],
    "firstName": "Jane",
    "lastName": "Doe",
    "gender": "f",
    "birthdate": "1990-02-28",
    "countryCode": "LT",
    "tags": ["a", "b"],
    "customProperties": {"ltv": 1.5, "nested": {"x": [1, 2]}},
}

# Values that exercise every JSON type, including the bool/int corner cases.
ODD_VALUES = [
    None,
    True,
    False,
    0,
    1,
    1.0,
    1.5,
    -3,
    "",
    "x",
    "subscribed",
    "email",
    "m",
    [],
    [1],
    ["a"],
    {},
    {"status": "subscribed"},
    {"id": "a@b.co", "type": "email"},
    ["x"] * 101,
]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _mutate(body, rng):
    body = copy.deepcopy(body)
    paths = [p for p in _paths(body) if p]
    path = rng.choice(paths)
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    action = rng.random()
    if action < 0.3 and isinstance(parent, dict):
        del parent[path[-1]]
    elif action < 0.4 and isinstance(parent, dict):
        parent[rng.choice(["extra", "tags", "identifiers", "channels", "status", "type", "id"])] = rng.choice(
            ODD_VALUES
        )
    else:
        parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
    return body


@pytest.mark.parametrize("schema_name", ["ContactRequest", "AddTagsRequest", "RemoveTagsRequest"])
def test_fast_checker_agrees_with_jsonschema(schema_name):
    validator = RequestValidator(request_schema("contacts", schema_name))
    assert validator.fast is not None, "the fast checker should support every keyword these schemas use"
    rng = random.Random(1234)
    seeds = [VALID_CONTACT, {"tags": ["t"], "emails": ["a@b.co"], "contactIDs": ["x"], "phones": ["+1"]}]
    checked = 0
    for _ in range(3000):
        body = rng.choice(seeds)
        for _ in range(rng.randint(1, 3)):
            body = _mutate(body, rng)
        fast = validator.fast(body)
        slow = validator.validator.is_valid(body)
        assert fast == slow, body
        checked += 1
    for odd in ODD_VALUES:
        assert validator.fast(odd) == validator.validator.is_valid(odd)
    assert checked == 3000


def test_batch_envelope_fast_checker_agrees():
    validator = Validators().batch
    assert validator.fast is not None
    ok = {"method": "POST", "endpoint": "contacts", "items": [{}] * 100}
    assert validator.errors(ok) == []
    for bad in (
        {**ok, "items": []},
        {**ok, "items": [{}] * 101},
        {**ok, "method": "GET"},
        {"items": [1]},
        {**ok, "endpoint": 5},
        [],
        {**ok, "origin": 1},
    ):
        assert not validator.fast(bad)
        assert validator.errors(bad)


def test_every_invalid_field_is_listed():
    body = copy.deepcopy(VALID_CONTACT)
    body["gender"] = "x"
    body["tags"] = ["t"] * 101
    body["identifiers"][0]["id"] = "not-an-email"
    body["identifiers"][1]["id"] = "0037060000001"
    body["identifiers"].append({"type": "fax"})
    body["birthdate"] = "1990-02-30"
    errors = Validators().contact.errors(body)
    fields = {(e["field"], e["code"]) for e in errors}
    assert ("gender", "invalid_value") in fields
    assert ("tags", "too_many_items") in fields
    assert ("identifiers.0.id", "invalid_format") in fields
    assert ("identifiers.1.id", "invalid_format") in fields
    assert ("identifiers.2.type", "invalid_value") in fields
    assert ("identifiers.2.id", "required") in fields
    assert ("birthdate", "invalid_format") in fields
    assert all(set(e) == {"field", "code", "message"} for e in errors)


def test_one_email_identifier_and_at_least_one_selector():
    v = Validators()
    two = {
        "identifiers": [{"type": "email", "id": "a@example.com"}, {"type": "email", "id": "b@example.com"}]
    }
    assert [e["field"] for e in v.contact.errors(two)] == ["identifiers"]
    assert v.add_tags.errors({"tags": ["x"]})[0]["code"] == "required"
    assert v.add_tags.errors({"tags": ["x"], "emails": []})[0]["code"] == "required"
    assert v.remove_tags.errors({"tags": ["x"], "segmentID": "abc"}) == []


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a@example.com", True),
        ("first.last+tag@sub.example.co.uk", True),
        ("a@b", False),
        ("a b@example.com", False),
        ("@example.com", False),
        ("a@example", False),
        ("a@@example.com", False),
        ("a@-x.com", False),
    ],
)
def test_email_shape(value, ok):
    assert looks_like_email(value) is ok


def test_rfc3339():
    assert parse_rfc3339("2026-03-15T10:00:00Z") is not None
    assert parse_rfc3339("2026-03-15T10:00:00.123+02:00") is not None
    assert parse_rfc3339("2026-03-15T10:00:00") is None  # no offset
    assert parse_rfc3339("2026-02-30T10:00:00Z") is None
    assert parse_rfc3339("yesterday") is None


def test_compile_checker_refuses_unknown_keywords():
    from airflow_provider_omnisend.testing.emulator.schemas import UnsupportedSchema

    with pytest.raises(UnsupportedSchema):
        compile_checker({"type": "string", "pattern": "^a"})
    # ...and RequestValidator then relies on jsonschema alone.
    v = RequestValidator({"type": "string", "pattern": "^a"})
    assert v.fast is None and v.errors("abc") == [] and v.errors("b")
