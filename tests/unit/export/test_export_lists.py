"""Array custom properties (lists.py): list columns and delimited text sent as JSON arrays of strings."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from airflow_provider_omnisend.export.lists import MAX_ITEM_LENGTH, MAX_LIST_ITEMS, json_arrays
from airflow_provider_omnisend.export.mapping import MappingError, MappingSpec
from airflow_provider_omnisend.export.normalize import normalize_batch
from airflow_provider_omnisend.export.payload import build_items

NASTY = 'q"u\\o\x01te'
LISTS = [
    [" vip ", None, "", "\t", NASTY, "émoji 🎉 عربى"],  # cleaned: trimmed, controls out, empties left out
    None,                                             # no list: not sent
    [],                                               # an empty list: not sent either (never blanks)
    [None, " "],                                      # nothing left: not sent
    ["x"] * MAX_LIST_ITEMS,                           # at the cap: sent
    ["x"] * (MAX_LIST_ITEMS + 1),                     # over it: left out, a field warning
    ["é" * MAX_ITEM_LENGTH],                          # 255 characters (510 bytes): sent
    ["ok", "y" * (MAX_ITEM_LENGTH + 1)],              # an item over it: left out, a field warning
]
EMAILS = [f"u{i}@example.com" for i in range(len(LISTS))]


def properties(table: pa.Table, spec: MappingSpec) -> list[dict | None]:
    result = normalize_batch(table, spec, row_offset=0)
    items = build_items(result.valid, spec).to_pylist()
    return [orjson.loads(item).get("customProperties") for item in items]


def list_spec(**options: object) -> MappingSpec:
    return MappingSpec.build({"email": "E"}, custom_properties={"interests": "T"},
                             source_types={"T": "list"}, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("typ", [pa.list_(pa.string()), pa.large_list(pa.string())])
def test_a_list_column_is_sent_as_a_json_array(typ) -> None:
    table = pa.table({"E": EMAILS, "T": pa.array(LISTS, typ)})
    spec = list_spec()
    assert spec.property_type("interests") == "list"  # from the source's declared type
    sent = properties(table, spec)
    assert sent[0] == {"interests": ["vip", 'q"u\\ote', "émoji 🎉 عربى"]}
    assert sent[1:4] == [None, None, None]
    assert sent[4] == {"interests": ["x"] * MAX_LIST_ITEMS}
    assert sent[5] is None  # over the cap
    assert sent[6] == {"interests": ["é" * MAX_ITEM_LENGTH]}
    assert sent[7] is None


def test_over_limit_lists_are_field_warnings_with_the_raw_list() -> None:
    table = pa.table({"E": EMAILS, "T": pa.array(LISTS)})
    result = normalize_batch(table, list_spec(), row_offset=100)
    assert result.valid.num_rows == len(LISTS)  # no contact lost
    assert result.warning_reasons == {"customProperties.interests": {"too_many_items": 1, "too_long": 1}}
    records = result.warnings.to_pylist()
    assert [(r["row"], r["reason"]) for r in records] == [(105, "too_many_items"), (107, "too_long")]
    assert records[0]["detail"] == (f"custom property 'interests' (column \"T\") has {MAX_LIST_ITEMS + 1} "
                                    f"items; at most {MAX_LIST_ITEMS} are sent")
    assert f"over {MAX_ITEM_LENGTH} characters" in records[1]["detail"]
    assert orjson.loads(records[1]["T"]) == ["ok", "y" * (MAX_ITEM_LENGTH + 1)]  # as read, to fix the lake


def test_reject_row_rejects_an_over_limit_list() -> None:
    table = pa.table({"E": EMAILS, "T": pa.array(LISTS)})
    result = normalize_batch(table, list_spec(on_invalid_field="reject_row"), row_offset=0)
    assert result.reasons == {"too_many_items": 1, "too_long": 1}
    assert orjson.loads(result.rejects.column("T")[0].as_py()) == LISTS[5]


@pytest.mark.parametrize(("kind", "text", "expected"), [
    ("list", " sport ; music;;  ", ["sport", "music"]),
    ("list", "a|b", ["a|b"]),
    ("list:|", "a| b |", ["a", "b"]),
    ("list:,", 'x,"y",z\\', ["x", '"y"', "z\\"]),
    ("list", " ; ", None),
])
def test_a_text_column_declared_list_is_split(kind, text, expected) -> None:
    table = pa.table({"E": ["a@example.com"], "T": [text]})
    spec = MappingSpec.build({"email": "E"}, custom_properties={"p": "T"}, custom_property_types={"p": kind})
    assert properties(table, spec) == [None if expected is None else {"p": expected}]


def test_split_text_follows_the_same_limits() -> None:
    table = pa.table({"E": ["a@example.com", "b@example.com"],
                      "T": [";".join(["x"] * (MAX_LIST_ITEMS + 1)), "ok;" + "y" * (MAX_ITEM_LENGTH + 1)]})
    spec = MappingSpec.build({"email": "E"}, custom_properties={"p": "T"},
                             custom_property_types={"p": "list"})
    result = normalize_batch(table, spec, row_offset=0)
    assert result.warning_reasons == {"customProperties.p": {"too_many_items": 1, "too_long": 1}}
    assert result.warnings.column("T").to_pylist()[0] == table.column("T")[0].as_py()  # the raw text


def test_json_arrays_of_a_slice_with_null_items() -> None:
    lists = pa.array([["a"], None, ["b", None, 'c"'], []]).slice(1)
    assert json_arrays(lists).to_pylist() == [None, '["b",null,"c\\""]', "[]"]


def test_mapping_problems_with_list_columns() -> None:
    with pytest.raises(MappingError, match=r"'list:ab' is not one of .* 'list:' followed by one delimiter"):
        MappingSpec.build({"email": "E"}, custom_properties={"p": "T"},
                          custom_property_types={"p": "list:ab"})
    with pytest.raises(MappingError, match=r"'list:\\n' is not one of .* not a line break"):
        MappingSpec.build({"email": "E"}, custom_properties={"p": "T"},
                          custom_property_types={"p": "list:\n"})
    with pytest.raises(MappingError, match=r"field 'firstName' use\(s\) a column holding lists"):
        MappingSpec.build({"email": "E", "firstName": "T"}, source_types={"T": "list"})
    with pytest.raises(MappingError, match=r"property 'p' \(declared 'number'\), email_status use\(s\)"):
        MappingSpec.build({"email": "E"}, custom_properties={"p": "T"},
                          custom_property_types={"p": "number"}, email_status="T", source_types={"T": "list"})
    # a list column whose property was not declared a list (no source types given): refused, not quoted
    table = pa.table({"E": ["a@example.com"], "T": pa.array([["a"]])})
    spec = MappingSpec.build({"email": "E"}, custom_properties={"p": "T"})
    with pytest.raises(MappingError, match=r"column 'T' holds lists.*custom property 'p'"):
        normalize_batch(table, spec, row_offset=0)


def test_the_list_type_is_part_of_the_digest() -> None:
    plain = MappingSpec.build({"email": "E"}, custom_properties={"p": "T"})
    assert list_spec().config_digest != MappingSpec.build(
        {"email": "E"}, custom_properties={"interests": "T"}).config_digest
    assert plain.config_digest != MappingSpec.build(
        {"email": "E"}, custom_properties={"p": "T"}, custom_property_types={"p": "list:|"}).config_digest
