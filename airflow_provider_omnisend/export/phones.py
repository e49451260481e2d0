"""National phone numbers to E.164 with Google's libphonenumber data (the ``phonenumbers`` package).

Why: Customer Insights exports hold numbers as people typed them, e.g. ``06 12 34 56 78`` in France,
while an Omnisend phone identifier must be E.164 (``+33612345678``). A national number only means
something with a region: the row's own country (its mapped ``countryCode``/``country``) or, when the
row has none, the export's ``default_phone_region``.

Only the values that need it are parsed: normalize.py keeps every value already in E.164 form
without calling this module, and a value reaches ``national_to_e164`` only when it is digits only
(after removing separators) and has a region. Each distinct (value, region) pair is parsed once. A
number that libphonenumber does not consider valid for its region is not converted (null): the caller
turns that into a field warning.
"""

from __future__ import annotations

import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

#: Regions libphonenumber has data for (ISO 3166-1 alpha-2, plus a few non-ISO ones it defines).
SUPPORTED_REGIONS: frozenset[str] = frozenset(phonenumbers.SUPPORTED_REGIONS)


def national_to_e164(values: pa.StringArray, regions: pa.StringArray) -> pa.StringArray:
    """E.164 of each national number in ``values`` for the aligned ``regions``; null when invalid."""
    pairs = pc.binary_join_element_wise(regions, values, "|")
    encoded = pc.dictionary_encode(pairs)
    converted = [_e164(pair) for pair in encoded.dictionary.to_pylist()]
    return pc.take(pa.array(converted, pa.string()), encoded.indices)


def _e164(pair: str | None) -> str | None:
    if pair is None:
        return None
    region, _, number = pair.partition("|")
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
