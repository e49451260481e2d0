"""normalize_batch: every cleaning and validation rule, and what a rejected row looks like."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from airflow_provider_omnisend.export.mapping import MappingError, MappingSpec
from airflow_provider_omnisend.export.normalize import PHONE_PATTERN, NormalizedBatch, normalize_batch


def run(columns: dict[str, list[Any]], mapping: dict[str, str], **options: Any) -> NormalizedBatch:
    """The checks' reasons are easiest to see with ``on_invalid_field="reject_row"`` (one reject record
    per row); test_export_field_warnings.py covers the default, ``drop_field``."""
    options.setdefault("on_invalid_field", "reject_row")
    spec = MappingSpec.build(mapping, **options)
    return normalize_batch(pa.table(columns), spec, row_offset=0)


def run_field(field: str, values: list[Any], **options: Any) -> NormalizedBatch:
    """One mapped field (column "V") next to a distinct valid e-mail per row."""
    emails = [f"u{i}@example.com" for i in range(len(values))]
    return run({"E": emails, "V": values}, {"email": "E", field: "V"}, **options)


def valid_values(result: NormalizedBatch, slot: str) -> list[Any]:
    return result.valid.column(slot).to_pylist()


def reasons_by_row(result: NormalizedBatch) -> dict[int, str]:
    return dict(
        zip(
            result.rejects.column("row").to_pylist(), result.rejects.column("reason").to_pylist(), strict=True
        )
    )


INVALID_EMAILS = [
    "plainaddress",
    "@example.com",
    "ann@",
    "ann@example",
    "ann@@example.com",
    "ann@exa mple.com",
    "an n@example.com",
    "ann.@example.com",
    ".ann@example.com",
    "an..n@example.com",
    "ann@example..com",
    "ann@.example.com",
    "ann@example.com.",
    "ann@-example.com",
    "ann@example-.com",
    "ann@example.c",
    "ann@example.123",
    '"ann"@example.com',
    "ann(comment)@example.com",
    "ann@exam_ple.com",
    "ann@[192.168.0.1]",
    "ann@example.com>",
    "<ann@example.com>",
    "ann,bob@example.com",
    "ann@example.com;bob@example.com",
    "ännä@example.com",
    "ann@exämple.com",
    "ann\\@example.com",
    "a" * 65 + "@example.com",
    "ann@" + "a" * 250 + ".com",
]

VALID_ODD_EMAILS = [
    "a@b.co",
    "first.last@example.com",
    "user+tag@example.com",
    "o'brien@example.ie",
    "x_y-z@sub.domain.example.co.uk",
    "1234567890@numbers.example",
    "ann@xn--mnchen-3ya.de",
    "ann@example.xn--p1ai",
    "{weird}!#$%&*=?^`|~@example.org",
    "a" * 64 + "@example.com",
    "UPPER.Case@EXAMPLE.COM",
]


def test_invalid_emails_are_rejected() -> None:
    assert len(INVALID_EMAILS) >= 20
    result = run({"E": INVALID_EMAILS}, {"email": "E"})
    assert result.valid.num_rows == 0
    assert set(reasons_by_row(result).values()) == {"invalid_email"}
    details = result.rejects.column("detail").to_pylist()
    for email, detail in zip(INVALID_EMAILS, details, strict=True):
        assert email.lower() not in detail.lower()  # never the address itself
        assert detail.startswith('email (column "E")')


def test_valid_odd_emails_are_accepted_and_lower_cased() -> None:
    result = run({"E": VALID_ODD_EMAILS}, {"email": "E"})
    assert result.rejects.num_rows == 0, result.rejects.to_pylist()
    assert valid_values(result, "email") == [e.lower() for e in VALID_ODD_EMAILS]


def test_email_length_details() -> None:
    result = run({"E": ["a" * 65 + "@example.com", "b@" + "c" * 300 + ".com"]}, {"email": "E"})
    details = result.rejects.column("detail").to_pylist()
    assert "local part (before the @) over 64 characters" in details[0]
    assert details[1] == 'email (column "E") is 306 characters; Omnisend accepts at most 254'


def test_missing_email() -> None:
    result = run({"E": [None, "", "  \u00a0 ", "ok@example.com"]}, {"email": "E"})
    assert reasons_by_row(result) == {0: "missing_email", 1: "missing_email", 2: "missing_email"}
    assert valid_values(result, "email") == ["ok@example.com"]


def test_trimming_and_empty_to_null() -> None:
    spaced = [" \t\u00a0Ann\u3000\u200b\ufeff", "\u2003Bob ", "   ", "", None, "Li\u00a0Na"]
    result = run(
        {"E": [f"u{i}@example.com" for i in range(6)], "F": spaced}, {"email": "E", "firstName": "F"}
    )
    # inner NBSP is content and stays; empty and blank become null (left out of the payload)
    assert valid_values(result, "firstName") == ["Ann", "Bob", None, None, None, "Li\u00a0Na"]


def test_control_characters_are_stripped() -> None:
    raw = ["Ann\x00ie", "Main St\r\nApt 4", "Tab\there", "Bell\x07\x1b[0m", "C1\u0085\u009fx", "Del\x7f"]
    result = run({"E": [f"u{i}@example.com" for i in range(6)], "A": raw}, {"email": "E", "address": "A"})
    assert valid_values(result, "address") == ["Annie", "Main St Apt 4", "Tab here", "Bell[0m", "C1 x", "Del"]


def test_unicode_names_round_trip_exactly() -> None:
    names = [
        "Zoë",
        "Łukasz",
        "مُحَمَّد",
        "שָׁלוֹם",
        "李小龍",
        "👩‍👩‍👧 Family",
        "e\u0301clair",
        "Ǆemal",
        'Ð\'Artagnan "the" \\',
    ]
    result = run_field("firstName", names)
    assert valid_values(result, "firstName") == names


def test_ten_kilobyte_strings_are_rejected_with_a_reason() -> None:
    big = "x" * 10_240
    result = run(
        {
            "E": ["a@example.com", "b@example.com", "c@example.com"],
            "F": [big, "Ann", "Ann"],
            "Z": ["1", "2" * 33, "3"],
        },
        {"email": "E", "firstName": "F", "postalCode": "Z"},
    )
    assert reasons_by_row(result) == {0: "too_long", 1: "too_long"}
    details = result.rejects.column("detail").to_pylist()
    assert details[0] == 'firstName (column "F") is 10240 characters; Omnisend accepts at most 255'
    assert details[1] == 'postalCode (column "Z") is 33 characters; Omnisend accepts at most 32'
    # the raw value is kept for the user to fix
    assert result.rejects.column("F").to_pylist()[0] == big


def test_length_counts_characters_not_bytes() -> None:
    result = run(
        {"E": ["a@example.com", "b@example.com"], "F": ["é" * 255, "é" * 256]},
        {"email": "E", "firstName": "F"},
    )
    assert reasons_by_row(result) == {1: "too_long"}
    assert "is 256 characters" in result.rejects.column("detail")[0].as_py()


def test_custom_property_length() -> None:
    result = run(
        {"E": ["a@example.com", "b@example.com"], "N": ["x" * 2048, "x" * 2049]},
        {"email": "E"},
        custom_properties={"notes": "N"},
    )
    assert reasons_by_row(result) == {1: "too_long"}
    assert (
        result.rejects.column("detail")[0]
        .as_py()
        .startswith("custom property 'notes' (column \"N\") is 2049")
    )


def test_phone_normalisation() -> None:
    phones = [
        "+1 (415) 555-0123",
        "+44.20.7946.0958",
        "+370 612 34567",
        None,
        "",
        "14155550123",
        "+0123456789",
        "+12345",
        "+1234567890123456",
        "+1 415 555 012a",
        "++14155550123",
    ]
    result = run_field("phone", phones)
    assert valid_values(result, "phone") == ["+14155550123", "+442079460958", "+37061234567", None, None]
    assert set(reasons_by_row(result)) == set(range(5, len(phones)))
    assert set(reasons_by_row(result).values()) == {"invalid_phone"}


def test_phone_check_matches_the_documented_pattern() -> None:
    rng = np.random.default_rng(7)
    alphabet = np.array(list("+0123456789a "))
    samples = ["".join(rng.choice(alphabet, size=rng.integers(1, 18))) for _ in range(3000)]
    samples += [
        "+" + "".join(rng.choice(list("0123456789"), size=k)) for k in range(4, 18) for _ in range(20)
    ]
    result = run_field("phone", samples)
    rejected = set(reasons_by_row(result))
    for row, sample in enumerate(samples):
        cleaned = re.sub(r"[ \t\-.()]", "", sample.strip())
        expected_ok = cleaned == "" or re.fullmatch(PHONE_PATTERN, cleaned) is not None
        assert (row not in rejected) == expected_ok, sample


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("DE", "DE"),
        ("de", "DE"),
        ("DEU", "DE"),
        ("Germany", "DE"),
        ("germany", "DE"),
        ("United States", "US"),
        ("USA", "US"),
        ("U.S.A.", "US"),
        ("United States of America", "US"),
        ("UK", "GB"),
        ("United Kingdom", "GB"),
        ("Great Britain", "GB"),
        ("Côte d'Ivoire", "CI"),
        ("Cote d'Ivoire", "CI"),
        ("Ivory Coast", "CI"),
        ("Russian Federation", "RU"),
        ("Russia", "RU"),
        ("Korea, Republic of", "KR"),
        ("South Korea", "KR"),
        ("Bolivia, Plurinational State of", "BO"),
        ("Bolivia", "BO"),
        ("Taiwan", "TW"),
        ("Türkiye", "TR"),
        ("Turkey", "TR"),
        ("  united   kingdom ", "GB"),
        ("Viet Nam", "VN"),
        ("Vietnam", "VN"),
        ("ltu", "LT"),
    ],
)
def test_country_code_conversion(raw: str, code: str) -> None:
    result = run({"E": ["a@example.com"], "C": [raw]}, {"email": "E", "countryCode": "C"})
    assert valid_values(result, "countryCode") == [code]


def test_unmappable_country_is_rejected() -> None:
    result = run(
        {"E": ["a@example.com", "b@example.com", "c@example.com"], "C": ["Atlantis", "XX", "Europe"]},
        {"email": "E", "countryCode": "C"},
    )
    assert reasons_by_row(result) == {0: "invalid_country", 1: "invalid_country", 2: "invalid_country"}


def test_country_name_field_is_free_text() -> None:
    result = run({"E": ["a@example.com"], "C": ["  Atlantis "]}, {"email": "E", "country": "C"})
    assert valid_values(result, "country") == ["Atlantis"]


def test_gender() -> None:
    values = ["m", "F", "Male", "FEMALE", None, "x", "unknown"]
    result = run_field("gender", values)
    assert valid_values(result, "gender") == ["m", "f", "m", "f", None]
    assert reasons_by_row(result) == {5: "invalid_gender", 6: "invalid_gender"}


def test_birthdate() -> None:
    values = [
        "1990-01-02",
        "2024-02-29",
        "1990-01-02T10:00:00Z",
        "1990-01-02T23:30:00.123-05:00",
        "1990-01-02 10:00",
        None,
        "2023-02-29",
        "1990-13-01",
        "1990-00-10",
        "1990-04-31",
        "1990-1-02",
        "19900102",
        "02/01/1990",
        "1990-01-02Tnonsense",
        "1900-02-29",
    ]
    result = run_field("birthdate", values)
    assert valid_values(result, "birthdate") == [
        "1990-01-02",
        "2024-02-29",
        "1990-01-02",
        "1990-01-02",
        "1990-01-02",
        None,
    ]
    assert set(reasons_by_row(result)) == set(range(6, len(values)))
    assert set(reasons_by_row(result).values()) == {"invalid_birthdate"}


def test_created_at_is_passed_through_when_rfc3339() -> None:
    values = [
        "2024-01-31T12:00:00Z",
        "2024-01-31T12:00:00.5+02:00",
        "2024-01-31 12:00:00",
        "2024-01-31",
        "yesterday",
    ]
    result = run_field("createdAt", values)
    assert valid_values(result, "createdAt") == values[:2]
    assert reasons_by_row(result) == {
        2: "invalid_created_at",
        3: "invalid_created_at",
        4: "invalid_created_at",
    }


def test_status_column_values() -> None:
    values = ["subscribed", "NONSUBSCRIBED", "Unsubscribed", None, "yes", "opted-in"]
    result = run(
        {"E": [f"u{i}@example.com" for i in range(len(values))], "S": values},
        {"email": "E"},
        email_status="S",
    )
    assert valid_values(result, "channels.email") == ["subscribed", "nonSubscribed", "unsubscribed", None]
    assert reasons_by_row(result) == {4: "invalid_status", 5: "invalid_status"}


def test_first_problem_wins_in_documented_order() -> None:
    result = run(
        {
            "E": ["bad", "a@example.com", "b@example.com"],
            "P": ["x", "x", "+14155550123"],
            "F": ["y" * 300] * 3,
            "G": ["q"] * 3,
        },
        {"email": "E", "phone": "P", "firstName": "F", "gender": "G"},
    )
    assert reasons_by_row(result) == {0: "invalid_email", 1: "invalid_phone", 2: "too_long"}


def test_rejects_carry_raw_values_and_row_numbers() -> None:
    spec = MappingSpec.build({"email": "E", "firstName": "F"})
    batch = pa.record_batch({"E": ["  ok@example.com", "nope"], "F": [" Ann ", " Bob "], "Other": ["1", "2"]})
    result = normalize_batch(batch, spec, row_offset=1000)
    assert result.valid.column("row").to_pylist() == [1000]
    assert result.valid_positions.tolist() == [0]
    assert result.rejects.to_pylist() == [
        {
            "row": 1001,
            "kind": "row_rejected",
            "reason": "invalid_email",
            "field": "email",
            "detail": result.rejects.column("detail")[0].as_py(),
            "E": "nope",
            "F": " Bob ",
        }
    ]
    assert result.reasons == {"invalid_email": 1}


def test_non_string_columns_are_read_as_text() -> None:
    spec = MappingSpec.build({"email": "E", "postalCode": "Z"})
    batch = pa.record_batch(
        {"E": pa.array(["a@example.com", "b@example.com"]).dictionary_encode(), "Z": pa.array([1234, None])}
    )
    result = normalize_batch(batch, spec, row_offset=0)
    assert valid_values(result, "postalCode") == ["1234", None]


def test_missing_batch_column_is_a_mapping_error() -> None:
    spec = MappingSpec.build({"email": "E", "city": "City"})
    with pytest.raises(MappingError, match="has no column\\(s\\) 'City'; it has 'E'"):
        normalize_batch(pa.record_batch({"E": ["a@example.com"]}), spec, row_offset=0)
