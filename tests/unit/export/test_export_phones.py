"""National phone numbers become E.164 in the row's country (else default_phone_region)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from airflow_provider_omnisend.export.mapping import MappingError, MappingSpec
from airflow_provider_omnisend.export.normalize import normalize_batch


def normalized(phones: list[str | None], countries: list[str | None] | None, **options: object):
    columns = {"E": [f"u{i}@example.com" for i in range(len(phones))], "P": phones}
    mapping = {"email": "E", "phone": "P"}
    if countries is not None:
        columns["C"] = countries
        mapping["countryCode"] = "C"
    spec = MappingSpec.build(mapping, **options)  # type: ignore[arg-type]
    return normalize_batch(pa.table(columns), spec, row_offset=0)


def test_national_numbers_use_the_rows_country() -> None:
    result = normalized(
        ["06 12 34 56 78", "030 1234567", "(202) 555-0123", "+44 20 7946 0958", "0612345678", "06 12"],
        ["France", "Allemagne", "US", "FR", "Royaume-Uni", "FR"],
    )
    assert result.valid.column("phone").to_pylist() == [
        "+33612345678", "+49301234567", "+12025550123", "+442079460958", None, None]
    # a French mobile is no valid UK number, and "06 12" is no number at all: field warnings
    assert [(w["row"], w["reason"]) for w in result.warnings.to_pylist()] == [
        (4, "invalid_phone"), (5, "invalid_phone")]


def test_default_region_for_rows_without_a_country() -> None:
    result = normalized(["06 12 34 56 78", "0612345678", "+14155550123"], [None, "GB", None],
                        default_phone_region="fr")
    assert result.valid.column("phone").to_pylist() == ["+33612345678", None, "+14155550123"]


def test_without_any_region_only_e164_is_accepted() -> None:
    result = normalized(["06 12 34 56 78", "+33 6 12 34 56 78"], None)
    assert result.valid.column("phone").to_pylist() == [None, "+33612345678"]
    assert result.warning_reasons == {"phone": {"invalid_phone": 1}}


def test_unknown_default_region_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="default_phone_region 'Francia'"):
        MappingSpec.build({"email": "E", "phone": "P"}, default_phone_region="Francia")
