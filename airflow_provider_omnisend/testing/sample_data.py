"""Synthetic Customer Insights profiles for the demo, tests and benchmarks (vectorised, deterministic).

Columns are named as Customer Insights names them in a segment export. A share of rows is broken on
purpose (invalid e-mails, e-mails that differ only in case or spaces, over-long names) so the demo
shows rejects with reasons.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

COLUMNS = ("CustomerId", "EmailAddress", "FirstName", "LastName", "Address1", "City", "StateOrProvince",
           "PostalCode", "Country")

#: The mapping the demo and the example DAG use, {omnisend_field: column}.
DEMO_MAPPING = {
    "email": "EmailAddress", "firstName": "FirstName", "lastName": "LastName", "address": "Address1",
    "city": "City", "state": "StateOrProvince", "postalCode": "PostalCode", "countryCode": "Country",
}

_FIRST = np.array(["Ann", "Jonas", "Marta", "Li", "Oğuz", "Zoë", "Rūta", "José", "Aiko", "Liam", "Noor",
                   "Émile", "Sven", "Amara", "Chen", "Ivan"])
_LAST = np.array(["Smith", "Kazlauskas", "García", "Wang", "Müller", "O'Brien", "Nowak", "Rossi", "Kim",
                  "Dubois", "Johansson", "Silva", "Yılmaz", "Novák", "Ito", "Haddad"])
_CITIES = np.array([("Vilnius", "Vilniaus", "LT", "Lithuania"), ("Austin", "TX", "US", "United States"),
                    ("Berlin", "Berlin", "DE", "Germany"), ("Lyon", "Auvergne-Rhône-Alpes", "FR", "France"),
                    ("Osaka", "Osaka", "JP", "Japan"), ("Leeds", "England", "GB", "United Kingdom")])
_BAD_EMAILS = np.array(["not-an-email", "a@@example.com", "john.doe@", "@example.com",
                        "ann smith@example.com", "x@example..com", ".lead@example.com"])


def synthetic_profiles(rows: int, *, seed: int = 7, start: int = 0, invalid_fraction: float = 0.02,
                       duplicate_fraction: float = 0.01, country_names: bool = True) -> pa.Table:
    """``rows`` profiles; row ``i`` has e-mail ``customer<start+i>@example.com`` unless broken on purpose.

    ``country_names`` writes "Germany"-style names half the time (the pipeline converts them to codes).
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + rows)
    id_text = pa.array(ids.astype(str))
    emails = pc.binary_join_element_wise("customer", id_text, "@example.com", "")
    first = _FIRST[rng.integers(0, len(_FIRST), rows)]
    last = _LAST[rng.integers(0, len(_LAST), rows)]
    place = _CITIES[rng.integers(0, len(_CITIES), rows)]
    country = np.where(country_names & (rng.random(rows) < 0.5), place[:, 3], place[:, 2])
    house = rng.integers(1, 300, rows).astype(str)
    postal = rng.integers(10000, 99999, rows).astype(str)
    emails_np = np.asarray(emails.to_numpy(zero_copy_only=False), dtype=object)
    broken = rng.random(rows) < invalid_fraction
    emails_np[broken] = _BAD_EMAILS[rng.integers(0, len(_BAD_EMAILS), int(broken.sum()))]
    dupes = (rng.random(rows) < duplicate_fraction) & ~broken & (ids > start)
    # A duplicate repeats an earlier row's e-mail with other case and stray spaces.
    dupes_idx = np.flatnonzero(dupes)
    emails_np[dupes_idx] = [f"  CUSTOMER{start + int(i) - 1}@Example.com " for i in dupes_idx]
    return pa.table({
        "CustomerId": pa.array(np.char.add("C", ids.astype(str))),
        "EmailAddress": pa.array(emails_np, pa.string()),
        "FirstName": pa.array(first),
        "LastName": pa.array(last),
        "Address1": pa.array(np.char.add(house, " Main St")),
        "City": pa.array(place[:, 0]),
        "StateOrProvince": pa.array(place[:, 1]),
        "PostalCode": pa.array(postal),
        "Country": pa.array(country),
    })
