"""MappingSpec: validation before any I/O, and what the reader and fingerprints get from it."""

from __future__ import annotations

import pytest

from airflow_provider_omnisend.export.mapping import (
    FIELDS,
    MAX_TAGS,
    ChannelStatus,
    MappingError,
    MappingSpec,
)


def test_minimal_mapping_and_source_columns() -> None:
    spec = MappingSpec.build(
        {"firstName": "First", "email": "Email", "phone": "Mobile"},
        custom_properties={"tier": "Tier", "vip": "First"},
        email_status="EmailStatus",
    )
    # catalogue order, each column once, then custom properties and status columns
    assert spec.source_columns == ("Email", "Mobile", "First", "Tier", "EmailStatus")
    assert spec.fields == (("email", "Email"), ("phone", "Mobile"), ("firstName", "First"))
    assert spec.column_for("phone") == "Mobile"
    assert spec.column_for("city") is None
    assert spec.email_status == ChannelStatus(column="EmailStatus")
    assert spec.send_welcome_message is False


def test_email_must_be_mapped() -> None:
    with pytest.raises(MappingError, match="'email' field is not mapped"):
        MappingSpec.build({"firstName": "First"})


def test_unknown_field_lists_the_valid_ones() -> None:
    with pytest.raises(MappingError) as error:
        MappingSpec.build({"email": "E", "first_name": "F"})
    message = str(error.value)
    assert "'first_name'" in message
    for field in FIELDS:
        assert repr(field) in message
    assert "custom_properties" in message


def test_missing_source_column_lists_available_columns() -> None:
    with pytest.raises(MappingError) as error:
        MappingSpec.build(
            {"email": "Email", "city": "Town"},
            custom_properties={"tier": "Level"},
            available_columns=["Email", "City", "Tier"],
        )
    message = str(error.value)
    assert "'Town'" in message and "'Level'" in message
    assert "available columns are 'Email', 'City', 'Tier'" in message


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(MappingError) as error:
        MappingSpec.build({"nope": "x"}, tags=[""], email_status={"constant": "yes"})
    message = str(error.value)
    assert "unknown Omnisend field" in message
    assert "'email' field is not mapped" in message
    assert "tag '' is empty" in message
    assert "constant 'yes' is not one of 'subscribed', 'nonSubscribed', 'unsubscribed'" in message


def test_segment_tag_substitution_and_switching_off() -> None:
    spec = MappingSpec.build({"email": "E"}, tags=["lake"], segment="VIP buyers")
    assert spec.tags == ("lake", "segment: VIP buyers")
    assert spec.segment_tag == "segment: VIP buyers"  # what the mirror untags and the extra link shows
    off = MappingSpec.build({"email": "E"}, segment="VIP", segment_tag=None)
    assert off.tags == () and off.segment_tag is None
    custom = MappingSpec.build({"email": "E"}, segment="VIP", segment_tag=" aud-{segment} ")
    assert custom.tags == ("aud-VIP",) and custom.segment_tag == "aud-VIP"
    # a template needs a segment; without one no tag is invented
    assert MappingSpec.build({"email": "E"}).tags == ()
    assert MappingSpec.build({"email": "E"}).segment_tag is None
    # duplicates collapse, order kept
    assert MappingSpec.build({"email": "E"}, tags=["a", "a", "b"], segment_tag=None).tags == ("a", "b")


def test_too_many_tags() -> None:
    tags = [f"t{i}" for i in range(MAX_TAGS)]
    MappingSpec.build({"email": "E"}, tags=tags, segment_tag=None)
    with pytest.raises(MappingError, match="101 tags configured"):
        MappingSpec.build({"email": "E"}, tags=tags, segment="VIP")


def test_overlong_and_blank_tags() -> None:
    with pytest.raises(MappingError, match="is 256 characters; the limit is 255"):
        MappingSpec.build({"email": "E"}, tags=["x" * 256])
    with pytest.raises(MappingError, match="is empty"):
        MappingSpec.build({"email": "E"}, tags=["   "])
    with pytest.raises(MappingError, match="list of strings"):
        MappingSpec.build({"email": "E"}, tags="vip")  # type: ignore[arg-type]


def test_channel_status_forms() -> None:
    spec = MappingSpec.build(
        {"email": "E", "phone": "P"}, email_status={"constant": "subscribed"}, sms_status="SmsStatus"
    )
    assert spec.email_status == ChannelStatus(constant="subscribed")
    assert spec.sms_status == ChannelStatus(column="SmsStatus")
    assert "SmsStatus" in spec.source_columns
    with pytest.raises(MappingError, match="map 'phone' too"):
        MappingSpec.build({"email": "E"}, sms_status={"constant": "subscribed"})
    with pytest.raises(MappingError, match="column name or"):
        MappingSpec.build({"email": "E"}, email_status={"value": "subscribed"})


def test_bad_column_names_and_property_names() -> None:
    with pytest.raises(MappingError, match="must name a source column"):
        MappingSpec.build({"email": ""})
    with pytest.raises(MappingError, match="custom property name"):
        MappingSpec.build({"email": "E"}, custom_properties={"": "X"})


def test_config_digest_is_stable_and_covers_everything() -> None:
    base = {"email": "E", "firstName": "F"}
    digest = MappingSpec.build(base, tags=["a"], segment="S").config_digest
    assert digest == MappingSpec.build(dict(reversed(base.items())), tags=["a"], segment="S").config_digest
    variants = [
        MappingSpec.build({"email": "E", "firstName": "G"}, tags=["a"], segment="S"),
        MappingSpec.build({"email": "E", "lastName": "F"}, tags=["a"], segment="S"),
        MappingSpec.build(base, tags=["b"], segment="S"),
        MappingSpec.build(base, tags=["a"], segment="T"),
        MappingSpec.build(base, tags=["a"], segment="S", send_welcome_message=True),
        MappingSpec.build(base, tags=["a"], segment="S", email_status={"constant": "subscribed"}),
        MappingSpec.build(base, tags=["a"], segment="S", custom_properties={"x": "F"}),
    ]
    digests = {v.config_digest for v in variants}
    assert digest not in digests and len(digests) == len(variants)
