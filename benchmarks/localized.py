"""Pipeline throughput with localized data: countries in 12 languages and national phone numbers.

Issue 15 item 6: the same pipeline as ``pipeline.py`` (Parquet, read → map/validate/dedupe → batch
bodies), once on the default mapping and once on rows whose ``Country`` holds names in French, German,
Spanish, Italian, Portuguese, Dutch, Polish, Swedish, Danish, Norwegian, Finnish and Czech, with a
``Phone`` column of UNIQUE national numbers (``030 1234567``, ``06 12 34 56 78``...) mapped to ``phone``,
measured side by side in the same run. Countries are mapped through their distinct values; every
national phone number is parsed once by libphonenumber, which is the price of that column. A third run
adds a Parquet ``list<string>`` column mapped to a custom property (sent as JSON arrays, lists.py).
"""

from __future__ import annotations

import numpy as np
import phonenumbers
import pyarrow as pa

from .common import Context, Figure, Section, demo_spec
from .data import lake, profiles, write_parquet
from .pipeline import optimized

#: (region, localized country names): what a mixed-language European export holds.
NAMES = {
    "DE": ("Allemagne", "Deutschland", "Alemania", "Germania", "Niemcy", "Tyskland", "Saksa", "Německo"),
    "FR": ("France", "Frankreich", "Francia", "Frankrijk", "Francja", "Frankrike", "Ranska", "Francie"),
    "GB": ("Royaume-Uni", "Vereinigtes Königreich", "Reino Unido", "Regno Unito", "Wielka Brytania", "UK"),
    "US": ("États-Unis", "Vereinigte Staaten", "Estados Unidos", "Stati Uniti", "USA", "Yhdysvallat"),
    "ES": ("Espagne", "Spanien", "España", "Spagna", "Hiszpania", "Espanha", "Espanja", "Španělsko"),
    "IT": ("Italie", "Italien", "Italia", "Italië", "Włochy", "Itálie"),
    "NL": ("Pays-Bas", "Niederlande", "Países Bajos", "Nederland", "Holandia", "Alankomaat"),
    "PL": ("Pologne", "Polen", "Polonia", "Polska", "Polônia", "Puola"),
}


#: Valid national numbers per region: a 32k-row slice holds mostly distinct ones, so nearly every
#: row's number is parsed (the cost a real column of unique numbers has).
POOL = 10_000


def _national_numbers(region: str) -> list[str]:
    """Valid national numbers of ``region`` in its usual format: its example number with other endings."""
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    digits = str(example.national_number)
    found = []
    for ending in range(POOL * 3):
        number = phonenumbers.PhoneNumber(country_code=example.country_code,
                                          national_number=int(digits[:-5] + f"{ending:05d}"))
        if phonenumbers.is_valid_number(number):
            found.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))
            if len(found) == POOL:
                break
    return found


def localized(table: pa.Table, seed: int = 15) -> pa.Table:
    """``table`` with mixed-language country names and a column of (mostly distinct) national numbers."""
    rng = np.random.default_rng(seed)
    regions = list(NAMES)
    region_of = rng.integers(0, len(regions), table.num_rows)
    names = [NAMES[r] for r in regions]
    name_pick = rng.integers(0, 8, table.num_rows)
    picks = zip(region_of.tolist(), name_pick.tolist(), strict=True)
    countries = [names[r][k % len(names[r])] for r, k in picks]
    pools = [_national_numbers(r) for r in regions]
    picks = rng.integers(0, POOL, table.num_rows)
    phones = [pools[r][k % len(pools[r])] for r, k in zip(region_of.tolist(), picks.tolist(), strict=True)]
    table = table.set_column(table.schema.get_field_index("Country"), "Country", pa.array(countries))
    return table.append_column("Phone", pa.array(phones))


INTERESTS = ("running", "yoga", "cycling", "books", "travel", "wine", "cooking", "music & film")


def with_interests(table: pa.Table, seed: int = 4) -> pa.Table:
    """``table`` with an ``Interests`` list<string> column of 0 to 5 items per row (Parquet arrays)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 6, table.num_rows)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32())
    items = pa.array(INTERESTS).take(pa.array(rng.integers(0, len(INTERESTS), int(lengths.sum()))))
    return table.append_column("Interests", pa.ListArray.from_arrays(offsets, items))


def measure(ctx: Context) -> Section:
    rows = ctx.sizes["rows"]
    section = Section("localized", f"6. Localized countries and national phones ({rows:,} profiles, Parquet)")
    table = profiles(rows)
    plain = lake(write_parquet(table, ctx.work / "plain"))
    mixed = lake(write_parquet(localized(table), ctx.work / "localized"))
    arrays = lake(write_parquet(with_interests(table), ctx.work / "lists"))
    del table
    default = optimized(plain, ctx.work / "staging")
    countries = optimized(mixed, ctx.work / "staging")  # the demo mapping: countryCode, no phone
    spec = demo_spec(mixed.columns)
    spec = type(spec).build({**dict(spec.fields), "phone": "Phone"}, segment="VIP")
    local = optimized(mixed, ctx.work / "staging", spec=spec)
    listed = demo_spec(arrays.columns)
    listed = type(listed).build(dict(listed.fields), segment="VIP", source_types=dict(arrays.column_types),
                                custom_properties={"interests": "Interests"})
    lists = optimized(arrays, ctx.work / "staging", spec=listed)
    rate, base = rows / local["seconds"], rows / default["seconds"]
    section.add(
        Figure("default mapping (Parquet, same run)", round(base), "profiles/s"),
        Figure("mixed-language countries only (default mapping)", round(rows / countries["seconds"]),
               "profiles/s", ratio=round(default["seconds"] / countries["seconds"], 3),
               ratio_of="the default mapping in the same run"),
        Figure("mixed-language countries + unique national phones", round(rate), "profiles/s",
               ratio=round(rate / base, 3), ratio_of="the default mapping in the same run"),
        Figure("a list<string> custom property, 0–5 items per row (default mapping + Interests)",
               round(rows / lists["seconds"]), "profiles/s",
               ratio=round(default["seconds"] / lists["seconds"], 3),
               ratio_of="the default mapping in the same run"),
        Figure("CPU seconds per 1M rows: default / with the list property",
               f"{default['cpu_s'] * 1e6 / rows:.2f} / {lists['cpu_s'] * 1e6 / rows:.2f}", "CPU-s"),
        Figure("contacts sent (localized run)", local["contacts"], "contacts"),
        Figure("field warnings (numbers libphonenumber finds invalid)", local["field_warnings"], "warnings"),
    )
    return section
