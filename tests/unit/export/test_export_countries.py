"""Countries: codes, English and localized names (12 languages) and aliases map to exactly one alpha-2.

The corpus comes from Babel's CLDR territory names, a source independent of the iso-codes
translations the lookup uses, so it checks that what people actually write maps exactly.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from babel import Locale

from airflow_provider_omnisend.export.countries import fold, lookup_table, to_alpha2

#: Customer Insights UI languages in Europe and the Americas (CLDR locale names).
CLDR_LANGUAGES = ("fr", "de", "es", "it", "pt", "nl", "pl", "sv", "da", "nb", "fi", "cs")
COUNTRIES = ("DE", "FR", "GB", "US", "ES", "IT", "PT", "NL", "BE", "CH", "AT", "PL", "SE", "DK", "NO",
             "FI", "CZ", "IE", "GR", "HU", "RO", "BG", "HR", "SK", "SI", "LU", "CA", "MX", "BR", "AR")


def test_a_corpus_of_360_localized_names_maps_exactly() -> None:
    names, expected = [], []
    for language in CLDR_LANGUAGES:
        territories = Locale.parse(language).territories
        for code in COUNTRIES:
            names.append(territories[code])
            expected.append(code)
    assert len(names) >= 300
    got = to_alpha2(pa.array(names)).to_pylist()
    assert [(n, g) for n, g, e in zip(names, got, expected, strict=True) if g != e] == []


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("Allemagne", "DE"), ("ALLEMAGNE", "DE"), ("Royaume-Uni", "GB"), ("royaume uni", "GB"),
        ("États-Unis", "US"), ("Etats Unis", "US"), ("Deutschland", "DE"), ("UK", "GB"), ("USA", "US"),
        ("EE. UU.", "US"), ("Österreich", "AT"), ("osterreich", "AT"), ("Česko", "CZ"),
        ("276", "DE"), ("040", "AT"), ("40", "AT"), ("deu", "DE"), ("de", "DE"),
        ("Suisse", "CH"), ("Zwitserland", "CH"), ("Szwajcaria", "CH"), ("Sveitsi", "CH"),
    ],
)
def test_spellings(raw: str, code: str) -> None:
    assert to_alpha2(pa.array([raw])).to_pylist() == [code]


def test_ambiguous_or_unknown_names_are_never_guessed() -> None:
    # "Korea" and "Virgin Islands" name two countries each; the Portuguese name is shared by two in the data
    values = ["Korea", "Virgin Islands", "República Islâmica do Paquistão", "Narnia", "Europe", None]
    assert to_alpha2(pa.array(values)).to_pylist() == [None] * len(values)


def test_folding_and_table() -> None:
    assert fold(" Côte  d'Ivoire ") == fold("COTE DIVOIRE") == "cotedivoire"
    keys, codes = lookup_table()
    assert len(keys) == len(codes) > 4000
    assert keys.to_pylist() == sorted(keys.to_pylist())


def test_many_rows_are_mapped_through_their_distinct_values() -> None:
    values = pa.array(["Allemagne", "Niemcy", None, "Narnia"] * 50_000)
    assert to_alpha2(values).value_counts().to_pylist() == [
        {"values": "DE", "counts": 100_000}, {"values": None, "counts": 100_000}]
