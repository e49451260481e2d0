"""on_invalid_field: a bad optional field drops the field (with a warning), never the contact."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from airflow_provider_omnisend.export.mapping import MappingError, MappingSpec
from airflow_provider_omnisend.export.normalize import normalize_batch
from airflow_provider_omnisend.export.payload import build_items

MAPPING = {"email": "E", "phone": "P", "countryCode": "C", "birthdate": "B"}
BATCH = pa.table({
    "E": ["a@example.com", "bad", "c@example.com", "d@example.com"],
    "P": ["+14155550123", "+14155550124", "12", "+14155550125"],
    "C": ["DE", "XX", "Narnia", "FR"],
    "B": ["1990-01-31", "1990-02-30", "2001-02-29", "1985-12-01"],
    "S": ["subscribed", "subscribed", "maybe", "unsubscribed"],
})


def spec(**options: object) -> MappingSpec:
    return MappingSpec.build(MAPPING, email_status="S", **options)  # type: ignore[arg-type]


def test_default_drops_fields_and_keeps_the_contact() -> None:
    result = normalize_batch(BATCH, spec(), row_offset=10)
    assert result.valid.column("row").to_pylist() == [10, 12, 13]
    assert result.reasons == {"invalid_email": 1}
    assert result.rejects.column("field").to_pylist() == ["email"]
    assert result.valid.column("phone").to_pylist() == ["+14155550123", None, "+14155550125"]
    assert result.valid.column("countryCode").to_pylist() == ["DE", None, "FR"]
    assert result.valid.column("birthdate").to_pylist() == ["1990-01-31", None, "1985-12-01"]
    assert result.valid.column("channels.email").to_pylist() == ["subscribed", None, "unsubscribed"]
    warnings = result.warnings
    assert warnings is not None
    # one record per row and field, in row order; the rejected row 11 gets none
    assert [(r["row"], r["kind"], r["field"], r["reason"]) for r in warnings.to_pylist()] == [
        (12, "field_dropped", "phone", "invalid_phone"),
        (12, "field_dropped", "countryCode", "invalid_country"),
        (12, "field_dropped", "birthdate", "invalid_birthdate"),
        (12, "field_dropped", "channels.email", "invalid_status"),
    ]
    assert warnings.column("C").to_pylist()[1] == "Narnia"  # the raw value, to fix in the lake
    assert result.warning_reasons == {
        "phone": {"invalid_phone": 1}, "countryCode": {"invalid_country": 1},
        "birthdate": {"invalid_birthdate": 1}, "channels.email": {"invalid_status": 1}}
    item = orjson.loads(build_items(result.valid, spec()).to_pylist()[1])
    assert item["identifiers"] == [{"type": "email", "id": "c@example.com", "sendWelcomeMessage": False}]
    assert set(item) == {"identifiers"}


def test_reject_row_keeps_the_old_behaviour() -> None:
    result = normalize_batch(BATCH, spec(on_invalid_field="reject_row"), row_offset=0)
    assert result.valid.column("row").to_pylist() == [0, 3]
    assert result.reasons == {"invalid_email": 1, "invalid_phone": 1}
    assert result.warnings is None and not result.warning_reasons


def test_unknown_choice_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="on_invalid_field must be one of 'drop_field', 'reject_row'"):
        spec(on_invalid_field="skip")


def test_status_changed_at_and_consent() -> None:
    table = pa.table({"E": ["a@example.com", "b@example.com"], "S": ["subscribed", "unsubscribed"],
                      "T": ["2026-03-01T10:00:00Z", "yesterday"], "IP": [None, "203.0.113.7"]})
    spec = MappingSpec.build({"email": "E"}, email_status="S", status_changed_at="T",
                             consent={"createdAt": "T", "ip": "IP", "source": {"constant": "CI"}})
    result = normalize_batch(table, spec, row_offset=0)
    first, second = (orjson.loads(i)["identifiers"][0] for i in build_items(result.valid, spec).to_pylist())
    assert first["channels"] == {"email": {"status": "subscribed", "statusChangedAt": "2026-03-01T10:00:00Z"}}
    assert first["consent"] == {"createdAt": "2026-03-01T10:00:00Z", "source": "CI"}
    # a bad date drops the date and the status it dates (undated, it could overwrite a newer
    # unsubscribe), with a warning for each
    assert "channels" not in second
    assert second["consent"] == {"source": "CI", "ip": "203.0.113.7"}
    assert result.warning_reasons == {"channels.statusChangedAt": {"invalid_status_changed_at": 1},
                                      "channels.email": {"invalid_status_changed_at": 1},
                                      "consent.createdAt": {"invalid_consent": 1}}


def test_an_undated_status_is_not_sent() -> None:
    """Constant and column statuses, e-mail and SMS: only the rows with a bad date lose them; a row
    without a status (or an SMS status without a phone) gets no warning for it; reject_row rejects the
    row."""
    table = pa.table({"E": ["a@example.com", "b@example.com", "c@example.com", "d@example.com"],
                      "P": ["+14155550123", "+14155550124", None, "+14155550126"],
                      "S": ["subscribed", "subscribed", "subscribed", None],
                      "T": ["2026-03-01T10:00:00Z", "2026-13-01T10:00:00Z", "01/03/2026", "never"]})
    spec = MappingSpec.build({"email": "E", "phone": "P"}, email_status={"constant": "subscribed"},
                             sms_status="S", status_changed_at="T")
    result = normalize_batch(table, spec, row_offset=0)
    items = [orjson.loads(i)["identifiers"] for i in build_items(result.valid, spec).to_pylist()]
    dated = {"status": "subscribed", "statusChangedAt": "2026-03-01T10:00:00Z"}
    assert (items[0][0]["channels"]["email"], items[0][1]["channels"]["sms"]) == (dated, dated)
    for identifiers in items[1:]:
        assert all("channels" not in identifier for identifier in identifiers), identifiers
    warnings = [(r["row"], r["field"], r["reason"]) for r in result.warnings.to_pylist()]
    undated = [(row, field) for row, field, reason in warnings
               if reason == "invalid_status_changed_at" and field != "channels.statusChangedAt"]
    assert undated == [(1, "channels.email"), (1, "channels.sms"), (2, "channels.email"),
                       (3, "channels.email")]
    detail = result.warnings.filter(pa.compute.equal(result.warnings.column("field"), "channels.sms"))
    assert "newer unsubscribe" in detail.column("detail")[0].as_py()
    strict = MappingSpec.build({"email": "E", "phone": "P"}, email_status={"constant": "subscribed"},
                               sms_status="S", status_changed_at="T", on_invalid_field="reject_row")
    rejected = normalize_batch(table, strict, row_offset=0)
    assert rejected.valid.column("row").to_pylist() == [0]
    assert rejected.reasons == {"invalid_status_changed_at": 3}


def test_status_changed_at_needs_a_status() -> None:
    with pytest.raises(MappingError, match="status_changed_at is set but no email_status"):
        MappingSpec.build({"email": "E"}, status_changed_at={"constant": "2026-03-01T00:00:00Z"})
