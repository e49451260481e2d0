"""Country names, alpha-3 codes and common aliases to ISO 3166-1 alpha-2, vectorised.

Why: lakes hold "United States", "USA", "deu" or "Côte d'Ivoire" in columns users map to Omnisend's
``countryCode`` (alpha-2 only). We convert what maps cleanly and reject the rest instead of guessing.

The lookup table is built once from pycountry (alpha-2, alpha-3, name, official name, common name, each
also without accents) plus a short alias list. Keys are lower-cased with single spaces; a key that
would point at two different countries is dropped, so an ambiguous spelling is rejected, never guessed.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc
import pycountry

from airflow_provider_omnisend.export.text import value_bytes

#: Everyday spellings pycountry does not carry. England/Scotland/Wales/Northern Ireland → GB because
#: ISO 3166-1 has no separate codes for them.
ALIASES: dict[str, str] = {
    "usa": "US",
    "u.s.a.": "US",
    "u.s.": "US",
    "united states of america": "US",
    "america": "US",
    "uk": "GB",
    "u.k.": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "russia": "RU",
    "turkey": "TR",
    "macedonia": "MK",
    "ivory coast": "CI",
    "cape verde": "CV",
    "swaziland": "SZ",
    "burma": "MM",
    "vatican": "VA",
    "vatican city": "VA",
    "holy see": "VA",
    "palestine": "PS",
    "micronesia": "FM",
    "brunei": "BN",
    "dr congo": "CD",
    "drc": "CD",
    "democratic republic of the congo": "CD",
    "republic of the congo": "CG",
    "north korea": "KP",
    "holland": "NL",
    "the netherlands": "NL",
    "uae": "AE",
}


def _fold(text: str) -> str:
    return " ".join(text.lower().split())


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@lru_cache(maxsize=1)
def lookup_table() -> tuple[pa.StringArray, pa.StringArray]:
    """(keys, alpha-2 codes) aligned, keys lower-cased; ambiguous keys removed."""
    candidates: dict[str, set[str]] = {}
    for country in pycountry.countries:
        for attr in ("alpha_2", "alpha_3", "name", "official_name", "common_name"):
            value = getattr(country, attr, None)
            if value:
                for key in {_fold(value), _fold(_strip_accents(value))}:
                    candidates.setdefault(key, set()).add(country.alpha_2)
    for alias, code in ALIASES.items():
        candidates.setdefault(_fold(alias), set()).add(code)
    clean = sorted((key, codes.pop()) for key, codes in candidates.items() if len(codes) == 1)
    return pa.array([k for k, _ in clean], pa.string()), pa.array([c for _, c in clean], pa.string())


def to_alpha2(values: pa.StringArray) -> pa.StringArray:
    """Alpha-2 code per value; null where the input is null or does not map cleanly to one country."""
    keys, codes = lookup_table()
    folded = pc.utf8_lower(values)
    data = value_bytes(folded)
    if ((data >= 9) & (data <= 13)).any() or ((data[1:] == 32) & (data[:-1] == 32)).any():
        folded = pc.replace_substring_regex(folded, r"\s+", " ")
    return pc.take(codes, pc.index_in(folded, value_set=keys))
