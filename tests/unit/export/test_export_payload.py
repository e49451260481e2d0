"""ContactRequest JSON items (checked against a slow dict-based reference), chunking and batch bodies."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest

from airflow_provider_omnisend.export.mapping import ChannelStatus, MappingSpec
from airflow_provider_omnisend.export.normalize import normalize_batch
from airflow_provider_omnisend.export.payload import (
    BODY_OVERHEAD_BYTES,
    batch_body,
    build_items,
    item_byte_lengths,
    json_escape,
    oversized_items,
    plan_chunks,
)

NASTY = [
    "Zoë",
    'He said "hi"',
    "back\\slash\\",
    "مرحبا بالعالم",
    "שָׁלוֹם",
    "👩‍👩‍👧‍👦🎉",
    "e\u0301\u0302\u0303",
    "\u2028line\u2029sep",
    "tab\tnew\nline\rcr",
    "\x00\x01\x1f",
    "</script>",
    '{"json": [1,2]}',
    "\\u0041",
    "\ud7ff\ue000\U0010fffd",
]


def reference_identifier(
    kind: str, channel: str, status: ChannelStatus | None, row: dict[str, Any], spec: MappingSpec
) -> dict[str, Any]:
    value = row[kind]
    identifier: dict[str, Any] = {"type": kind, "id": value, "sendWelcomeMessage": spec.send_welcome_message}
    if status is not None:
        mapped = status.constant if status.constant is not None else row.get(f"channels.{channel}")
        if mapped is not None:
            identifier["channels"] = {channel: {"status": mapped}}
    return identifier


def reference_item(row: dict[str, Any], spec: MappingSpec) -> dict[str, Any]:
    """The slow, obviously right way: a dict per row."""
    item: dict[str, Any] = {
        "identifiers": [reference_identifier("email", "email", spec.email_status, row, spec)]
    }
    if row.get("phone") is not None:
        item["identifiers"].append(reference_identifier("phone", "sms", spec.sms_status, row, spec))
    for name, _ in spec.fields:
        if name not in ("email", "phone") and row.get(name) is not None:
            item[name] = row[name]
    props = {
        n: row[f"customProperties.{n}"]
        for n, _ in spec.custom_properties
        if row.get(f"customProperties.{n}") is not None
    }
    if props:
        item["customProperties"] = props
    if spec.tags:
        item["tags"] = list(spec.tags)
    return item


def normalised_table(rows: list[dict[str, Any]], spec: MappingSpec) -> pa.Table:
    columns = {slot: [r.get(slot) for r in rows] for slot in rows[0]}
    return pa.table(
        {"row": list(range(len(rows))), **{k: pa.array(v, pa.string()) for k, v in columns.items()}}
    )


def check_against_reference(table: pa.Table, spec: MappingSpec) -> list[str]:
    items = build_items(table, spec).to_pylist()
    assert len(items) == table.num_rows
    for item, row in zip(items, table.to_pylist(), strict=True):
        assert orjson.loads(item) == reference_item(row, spec)
    return items


def test_json_escape_is_valid_for_nasty_strings() -> None:
    escaped = json_escape(pa.array(NASTY)).to_pylist()
    for raw, body in zip(NASTY, escaped, strict=True):
        assert orjson.loads(f'"{body}"') == raw


def test_items_match_reference_for_every_field_and_nasty_values() -> None:
    spec = MappingSpec.build(
        {
            "email": "E",
            "phone": "P",
            "firstName": "F",
            "lastName": "L",
            "address": "A",
            "city": "C",
            "state": "S",
            "postalCode": "Z",
            "country": "N",
            "countryCode": "CC",
            "gender": "G",
            "birthdate": "B",
            "createdAt": "T",
        },
        custom_properties={"tier": "X", 'we"ird\\name': "Y", "ünï": "F"},
        tags=["lake", 'quote"tag', "emoji 🎉"],
        segment="VIP \\ buyers",
        email_status="ES",
        sms_status="SS",
    )
    rng = np.random.default_rng(11)
    rows = []
    for i in range(300):

        def pick(p_null: float = 0.3) -> str | None:
            return None if rng.random() < p_null else str(rng.choice(NASTY))

        rows.append(
            {
                "email": f"user{i}@example.com",
                "phone": None if i % 3 else f"+1415555{i:04d}",
                "firstName": pick(),
                "lastName": pick(),
                "address": pick(),
                "city": pick(),
                "state": pick(),
                "postalCode": pick(),
                "country": pick(),
                "countryCode": None if i % 2 else "DE",
                "gender": ["m", "f", None][i % 3],
                "birthdate": None if i % 4 else "1990-01-02",
                "createdAt": None if i % 5 else "2024-01-31T12:00:00Z",
                "customProperties.tier": pick(0.5),
                'customProperties.we"ird\\name': pick(0.5),
                "customProperties.ünï": pick(0.5),
                "channels.email": [None, "subscribed", "unsubscribed", "nonSubscribed"][i % 4],
                "channels.sms": [None, "subscribed"][i % 2],
            }
        )
    check_against_reference(normalised_table(rows, spec), spec)


def test_all_null_optional_values_leave_a_minimal_item() -> None:
    spec = MappingSpec.build(
        {"email": "E", "phone": "P", "firstName": "F"}, custom_properties={"a": "A"}, segment_tag=None
    )
    rows = [{"email": "a@example.com", "phone": None, "firstName": None, "customProperties.a": None}]
    items = check_against_reference(normalised_table(rows, spec), spec)
    assert items == ['{"identifiers":[{"type":"email","id":"a@example.com","sendWelcomeMessage":false}]}']


def test_no_status_unless_mapped_and_welcome_false_by_default() -> None:
    spec = MappingSpec.build({"email": "E", "phone": "P"}, segment="S")
    rows = [{"email": "a@example.com", "phone": "+14155550123"}]
    item = build_items(normalised_table(rows, spec), spec)[0].as_py()
    assert "status" not in item and "channels" not in item
    parsed = orjson.loads(item)
    assert [i["sendWelcomeMessage"] for i in parsed["identifiers"]] == [False, False]
    assert parsed["tags"] == ["segment: S"]


def test_constant_status_and_welcome_when_asked() -> None:
    spec = MappingSpec.build(
        {"email": "E", "phone": "P"},
        email_status={"constant": "subscribed"},
        sms_status={"constant": "nonSubscribed"},
        send_welcome_message=True,
    )
    rows = [{"email": "a@example.com", "phone": "+14155550123"}, {"email": "b@example.com", "phone": None}]
    items = check_against_reference(normalised_table(rows, spec), spec)
    first = orjson.loads(items[0])
    assert first["identifiers"][0]["channels"] == {"email": {"status": "subscribed"}}
    assert first["identifiers"][1]["channels"] == {"sms": {"status": "nonSubscribed"}}
    assert first["identifiers"][0]["sendWelcomeMessage"] is True
    # no phone → no sms channel anywhere
    assert "sms" not in items[1]


def test_items_from_normalize_end_to_end() -> None:
    spec = MappingSpec.build({"email": "E", "firstName": "F"}, segment="VIP")
    batch = pa.record_batch({"E": [" Ann@Example.COM "], "F": [' Zoë "Z" ']})
    normalized = normalize_batch(batch, spec, row_offset=0)
    assert build_items(normalized.valid, spec).to_pylist() == [
        '{"identifiers":[{"type":"email","id":"ann@example.com","sendWelcomeMessage":false}],'
        '"firstName":"Zoë \\"Z\\"","tags":["segment: VIP"]}'
    ]


def test_empty_table_gives_no_items() -> None:
    spec = MappingSpec.build({"email": "E", "firstName": "F"})
    table = pa.table(
        {
            "row": pa.array([], pa.int64()),
            "email": pa.array([], pa.string()),
            "firstName": pa.array([], pa.string()),
        }
    )
    assert len(build_items(table, spec)) == 0


def test_plan_chunks_by_count() -> None:
    assert plan_chunks([50] * 250, max_items=100) == [(0, 100), (100, 200), (200, 250)]
    assert plan_chunks([50] * 2500, max_items=1000) == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert plan_chunks([], max_items=100) == []
    with pytest.raises(ValueError):
        plan_chunks([1], max_items=0)


def test_plan_chunks_by_bytes_and_bodies_stay_under_one_megabyte() -> None:
    rng = np.random.default_rng(5)
    lengths = rng.integers(5_000, 60_000, 400)
    items = ["x" * int(n) for n in lengths]  # sizes only matter here
    chunks = plan_chunks(lengths, max_items=100, max_body_bytes=1_000_000)
    # the plan budgets for the longest method/endpoint envelope; contacts/POST is a few bytes shorter
    slack = BODY_OVERHEAD_BYTES - (len(batch_body(["{}"])) - 2)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(items)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    for start, stop in chunks:
        body = batch_body(items[start:stop])
        assert len(body) <= 1_000_000
        # greedy: one more item would not have fitted (unless the count cap stopped it)
        if stop < len(items) and stop - start < 100:
            assert len(batch_body(items[start : stop + 1])) + slack > 1_000_000


def test_plan_chunks_exact_fit() -> None:
    # three items that fill the budget exactly, then one more byte does not fit
    per_item = (1000 - BODY_OVERHEAD_BYTES - 2) // 3
    fits = [per_item] * 3
    assert plan_chunks(fits, max_items=100, max_body_bytes=BODY_OVERHEAD_BYTES + 2 + 3 * per_item) == [(0, 3)]
    assert plan_chunks(fits, max_items=100, max_body_bytes=BODY_OVERHEAD_BYTES + 1 + 3 * per_item) == [
        (0, 2),
        (2, 3),
    ]


def test_oversized_item_is_isolated_and_reported() -> None:
    lengths = [100, 2_000_000, 100, 100]
    chunks = plan_chunks(lengths, max_items=100, max_body_bytes=1_000_000)
    assert chunks == [(0, 1), (1, 2), (2, 4)]
    assert oversized_items(lengths, max_body_bytes=1_000_000).tolist() == [1]


def test_batch_body_is_exact_json() -> None:
    items = pa.array(['{"identifiers":[{"type":"email","id":"a@example.com"}]}', '{"firstName":"Zoë"}'])
    body = batch_body(items)
    assert body == (
        b'{"method":"POST","endpoint":"contacts","items":[{"identifiers":[{"type":"email","id":"a@example.com"}]},'
        + '{"firstName":"Zoë"}'.encode()
        + b"]}"
    )
    assert orjson.loads(body)["items"][1] == {"firstName": "Zoë"}
    assert item_byte_lengths(items).tolist() == [len(v.encode()) for v in items.to_pylist()]
    with pytest.raises(ValueError):
        batch_body([])
    with pytest.raises(ValueError):
        batch_body(["{}"], endpoint="orders")
