"""The baselines: the same export work done the way a straightforward integration does it, row by row.

A row becomes a Python dict (``pandas.iterrows`` for Parquet, ``csv.DictReader`` for CSV); the e-mail is
trimmed, lower-cased and checked with the provider's own regular expression; fields are trimmed and the
country converted with the provider's own lookup table; duplicates are dropped with a ``set``; every 100
contacts are serialised with ``json.dumps`` into a ``POST /batches`` body. It leaves out what the provider
does on top (keyed hashes, staging file, rejects file, control characters, length limits), so the
comparison flatters the baseline.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pyarrow.parquet as pq

from airflow_provider_omnisend.export.countries import lookup_table
from airflow_provider_omnisend.export.normalize import EMAIL_MAX_LENGTH, EMAIL_PATTERN
from airflow_provider_omnisend.lake.export import ResolvedExport
from airflow_provider_omnisend.testing.sample_data import DEMO_MAPPING

from .common import BATCH_ITEMS, SEGMENT

EMAIL = re.compile(EMAIL_PATTERN)
TAGS = [f"segment: {SEGMENT}"]


def countries() -> dict[str, str]:
    keys, codes = lookup_table()
    return dict(zip(keys.to_pylist(), codes.to_pylist(), strict=True))


def contact(row: Mapping[str, Any], country_codes: Mapping[str, str]) -> dict[str, Any] | None:
    """One row → a ContactRequest dict, or None when it is invalid."""
    email = (row.get(DEMO_MAPPING["email"]) or "").strip().lower()
    if len(email) > EMAIL_MAX_LENGTH or not EMAIL.match(email):
        return None
    out: dict[str, Any] = {"identifiers": [{"type": "email", "id": email, "sendWelcomeMessage": False}]}
    for name, column in DEMO_MAPPING.items():
        value = row.get(column)
        if name == "email" or not isinstance(value, str) or not (value := value.strip()):
            continue
        if name == "countryCode":
            code = country_codes.get(" ".join(value.lower().split()))
            if code is None:
                return None
            value = code
        out[name] = value
    out["tags"] = TAGS
    return out


def contacts(rows: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Valid, de-duplicated contacts (first occurrence wins)."""
    country_codes = countries()
    seen: set[str] = set()
    for row in rows:
        made = contact(row, country_codes)
        if made is None:
            continue
        email = made["identifiers"][0]["id"]
        if email not in seen:
            seen.add(email)
            yield made


def batch_bodies(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Build every ``POST /batches`` body; return counts (rows, contacts, bodies, bytes)."""
    counted = {"rows": 0}

    def counting() -> Iterator[Mapping[str, Any]]:
        for row in rows:
            counted["rows"] += 1
            yield row

    valid = bodies = size = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal bodies, size
        size += len(json.dumps({"method": "POST", "endpoint": "contacts", "items": batch}).encode())
        bodies += 1
        batch.clear()

    for made in contacts(counting()):
        valid += 1
        batch.append(made)
        if len(batch) == BATCH_ITEMS:
            flush()
    if batch:
        flush()
    return {"rows": counted["rows"], "contacts": valid, "bodies": bodies, "body_bytes": size}


def parquet_rows(export: ResolvedExport) -> Iterator[Mapping[str, Any]]:
    """Rows of a Parquet export through pandas ``iterrows``."""
    for path in export.files:
        frame = pq.read_table(path).to_pandas()
        for _, row in frame.iterrows():
            yield row


def csv_rows(export: ResolvedExport) -> Iterator[Mapping[str, Any]]:
    """Rows of a header-less CDM CSV export through ``csv.DictReader`` with the manifest's columns."""
    for path in export.files:
        with open(path, newline="", encoding="utf-8") as handle:
            yield from csv.DictReader(handle, fieldnames=list(export.columns))
