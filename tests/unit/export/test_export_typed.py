"""custom_property_types: text cast to JSON numbers, booleans and ISO dates; misfits are field warnings."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from airflow_provider_omnisend.export.mapping import MappingError, MappingSpec
from airflow_provider_omnisend.export.normalize import normalize_batch
from airflow_provider_omnisend.export.payload import build_items

PROPS = {"ltv": "L", "vip": "V", "since": "S", "note": "N"}
TYPES = {"ltv": "number", "vip": "boolean", "since": "date", "note": "string"}


def items(columns: dict[str, list[str | None]], **options: object) -> tuple[list[dict], object]:
    n = len(next(iter(columns.values())))
    table = pa.table({"E": [f"u{i}@example.com" for i in range(n)], **columns})
    spec = MappingSpec.build({"email": "E"}, custom_properties=PROPS, custom_property_types=TYPES, **options)
    result = normalize_batch(table, spec, row_offset=0)
    return [orjson.loads(item) for item in build_items(result.valid, spec).to_pylist()], result


def test_values_are_sent_with_their_types() -> None:
    got, result = items({
        "L": ["12.5", "-3", "12,5", "+7", "1e3", "abc", "007"],
        "V": ["True", "no", "1", "0", "YES", "maybe", None],
        "S": ["2024-01-31", "2024-01-31 12:00:00", "2024-01-31T12:00:00Z", "31/01/2024", "2024-13-01",
              None, "2024-02-29"],
        "N": ["12", None, None, None, None, None, None],
    })
    props = [item.get("customProperties", {}) for item in got]
    assert props[0] == {"ltv": 12.5, "vip": True, "since": "2024-01-31", "note": "12"}
    assert props[1] == {"ltv": -3, "vip": False, "since": "2024-01-31T12:00:00"}
    assert props[2] == {"ltv": 12.5, "vip": True, "since": "2024-01-31T12:00:00Z"}
    assert props[3] == {"ltv": 7, "vip": False}
    assert props[4] == {"ltv": 1000.0, "vip": True}
    assert props[5] == {}
    assert props[6] == {"since": "2024-02-29"}
    assert result.warning_reasons == {
        "customProperties.ltv": {"invalid_property": 2},
        "customProperties.vip": {"invalid_property": 1},
        "customProperties.since": {"invalid_property": 2},
    }
    # numbers keep the digits given (no float rounding)
    spec = MappingSpec.build({"email": "E"}, custom_properties={"ltv": "L"},
                             custom_property_types={"ltv": "number"})
    table = pa.table({"E": ["a@example.com"], "L": ["12345678901234567890.25"]})
    item = build_items(normalize_batch(table, spec, row_offset=0).valid, spec)[0].as_py()
    assert item.endswith('"customProperties":{"ltv":12345678901234567890.25}}')


def test_types_change_the_mapping_digest_only_when_declared() -> None:
    plain = MappingSpec.build({"email": "E"}, custom_properties=PROPS)
    typed = MappingSpec.build({"email": "E"}, custom_properties=PROPS, custom_property_types=TYPES)
    only_strings = MappingSpec.build({"email": "E"}, custom_properties=PROPS,
                                     custom_property_types={"note": "string"})
    assert plain.config_digest == only_strings.config_digest != typed.config_digest


@pytest.mark.parametrize(
    ("types", "message"),
    [({"ltv": "money"}, "type 'money' is not one of"), ({"other": "number"}, "not a mapped custom property")],
)
def test_bad_declarations(types: dict[str, str], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        MappingSpec.build({"email": "E"}, custom_properties=PROPS, custom_property_types=types)
