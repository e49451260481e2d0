"""Country codes, English and localized names, and common aliases to ISO 3166-1 alpha-2, vectorised.

Why: lakes hold "United States", "USA", "deu", "276", "Allemagne" or "Royaume-Uni" in the column users
map to Omnisend's ``countryCode`` (alpha-2 only), and Customer Insights runs in many languages. We
convert what maps to exactly one country and leave the rest out (or reject it) instead of guessing.

Data: pycountry (ISO 3166-1 codes and names) and the iso-codes gettext translations pycountry ships,
for the languages Customer Insights' UI ships in Europe and the Americas (``LANGUAGES``), plus a short
alias list for everyday spellings neither carries (UK, USA, EE. UU., ...). Nothing is hand-typed
beyond those aliases.

Matching ignores case, diacritics, spacing and punctuation: "ÉTATS-UNIS", "etats unis" and
"États-Unis" are one key. Keys come in tiers: codes (alpha-2, alpha-3, numeric), then English names and
aliases, then localized names. A key keeps the country of its highest tier; a key that points at two
countries within its tier is dropped, so an ambiguous spelling is never guessed.

The table is built once per process (about 15k keys). A batch is mapped through its DISTINCT values
only (dictionary encoding): Python folds the few hundred distinct spellings of a slice, Arrow does the
per-row work.
"""

from __future__ import annotations

import gettext
import os
import re
import unicodedata
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc
import pycountry

#: gettext locales of pycountry's iso3166-1 translations: French, German, Spanish, Italian, Portuguese
#: (Portugal and Brazil), Dutch, Polish, Swedish, Danish, Norwegian (Bokmål), Finnish and Czech.
LANGUAGES: tuple[str, ...] = (
    "fr", "de", "es", "it", "pt", "pt_BR", "nl", "pl", "sv", "da", "nb_NO", "fi", "cs",
)

#: Everyday spellings the ISO data does not carry (matched after folding like every key).
#: England/Scotland/Wales/Northern Ireland → GB because ISO 3166-1 has no separate codes for them.
ALIASES: dict[str, str] = {
    "usa": "US",
    "u.s.a.": "US",
    "united states of america": "US",
    "america": "US",
    "ee. uu.": "US",
    "eua": "US",
    "uk": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "grande-bretagne": "GB",
    "angleterre": "GB",
    "großbritannien": "GB",
    "england (uk)": "GB",
    "iso-britannia": "GB",
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
    "south korea": "KR",
    "holland": "NL",
    "the netherlands": "NL",
    "nederlandene": "NL",
    "tchéquia": "CZ",
    "czechia": "CZ",
    "uae": "AE",
}

_NOT_ALNUM = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """The matching key of a spelling: lower case, no diacritics, no spaces or punctuation."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return _NOT_ALNUM.sub("", "".join(c for c in decomposed if not unicodedata.combining(c)))


def _names(country: object) -> list[str]:
    return [v for a in ("name", "official_name", "common_name") if (v := getattr(country, a, None))]


def _tiers() -> list[dict[str, set[str]]]:
    codes: dict[str, set[str]] = {}
    english: dict[str, set[str]] = {}
    localized: dict[str, set[str]] = {}
    locales = os.path.join(os.path.dirname(pycountry.__file__), "locales")
    translations = [gettext.translation("iso3166-1", locales, languages=[lang]) for lang in LANGUAGES]
    for country in pycountry.countries:
        code = country.alpha_2
        numeric = country.numeric
        for key in (code, country.alpha_3, numeric, str(int(numeric))):
            codes.setdefault(fold(key), set()).add(code)
        for name in _names(country):
            english.setdefault(fold(name), set()).add(code)
            for translation in translations:
                localized.setdefault(fold(translation.gettext(name)), set()).add(code)
    for alias, code in ALIASES.items():
        english.setdefault(fold(alias), set()).add(code)
    return [codes, english, localized]


@lru_cache(maxsize=1)
def lookup_table() -> tuple[pa.StringArray, pa.StringArray]:
    """(folded keys, alpha-2 codes) aligned; a key keeps its highest tier, ambiguous keys are removed."""
    table: dict[str, str] = {}
    for tier in _tiers():
        for key, countries in tier.items():
            if key and key not in table and len(countries) == 1:
                table[key] = next(iter(countries))
        taken = set(table)
        # a key ambiguous in this tier must not be resolved by a lower tier either
        table.update({key: "" for key in tier if key and key not in taken})
    clean = sorted((key, code) for key, code in table.items() if code)
    return pa.array([k for k, _ in clean], pa.string()), pa.array([c for _, c in clean], pa.string())


def to_alpha2(values: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """Alpha-2 code per value; null where the input is null or does not map to exactly one country."""
    keys, codes = lookup_table()
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values.cast(pa.string()))
    distinct = pa.array([fold(value) for value in encoded.dictionary.to_pylist()], pa.string())
    mapped = pc.take(codes, pc.index_in(distinct, value_set=keys))
    return pc.take(mapped, encoded.indices)
