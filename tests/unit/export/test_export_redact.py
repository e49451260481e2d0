"""The payload sample that goes to XCom: shapes and settings kept, personal values masked."""

from __future__ import annotations

import json

from airflow_provider_omnisend.export.redact import mask_email, redact_payload

ITEM = {
    "identifiers": [
        {"type": "email", "id": "jane.doe@example.com", "sendWelcomeMessage": False,
         "channels": {"email": {"status": "subscribed", "statusChangedAt": "2026-01-02T03:04:05Z"}},
         "consent": {"source": "form", "ip": "192.0.2.7", "userAgent": "Mozilla/5.0"}},
        {"type": "phone", "id": "+33612345678", "sendWelcomeMessage": False},
    ],
    "firstName": "Jane", "lastName": "Doe", "birthdate": "1990-01-02",
    "customProperties": {"type": "VIP", "lifetimeValue": 1234.5, "optIn": True},
    "tags": ["segment: VIP"],
}
PERSONAL = ("jane.doe", "Jane", "Doe", "1990", "612345678", "192.0.2.7", "Mozilla", "VIP", "1234.5")


def test_a_sample_keeps_its_shape_and_loses_every_personal_value() -> None:
    body = redact_payload({"method": "POST", "endpoint": "contacts", "items": [ITEM]})
    text = json.dumps(body)
    assert [word for word in PERSONAL if word in text.replace("segment: VIP", "")] == []
    (item,) = body["items"]
    email, phone = item["identifiers"]
    assert body["method"] == "POST" and body["endpoint"] == "contacts"
    assert email == {"type": "email", "id": "j***@example.com", "sendWelcomeMessage": False,
                     "channels": {"email": {"status": "subscribed", "statusChangedAt": "<text, 20 chars>"}},
                     "consent": {"source": "<text, 4 chars>", "ip": "<text, 9 chars>",
                                 "userAgent": "<text, 11 chars>"}}
    assert phone == {"type": "phone", "id": "<text, 12 chars>", "sendWelcomeMessage": False}
    assert item["firstName"] == "<text, 4 chars>" and item["birthdate"] == "<text, 10 chars>"
    # A custom property named like a kept key is still the person's value.
    assert item["customProperties"] == {"type": "<text, 3 chars>", "lifetimeValue": "<number>",
                                        "optIn": "<boolean>"}
    assert item["tags"] == ["segment: VIP"]
    assert list(item) == list(ITEM) and list(email) == list(ITEM["identifiers"][0])


def test_an_email_keeps_only_its_first_character_and_domain() -> None:
    assert mask_email("a@b.co") == "a***@b.co"
    assert mask_email("x@y@example.com") == "x***@example.com"
    assert mask_email("no-at-sign") == "<text, 10 chars>"
    assert mask_email("@example.com") == "<text, 12 chars>"
