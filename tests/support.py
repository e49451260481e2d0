"""Constants and helpers shared by the tests (import as ``tests.support``)."""

from __future__ import annotations

import json

#: API key the test emulator accepts; tests grep logs for it to prove it never leaks.
TEST_API_KEY = "test-key-7f3a9c1e5b"
#: The emulator runs a one-minute window in 0.6 s; clients get the same window in their extras.
TIME_SCALE = 0.01


def omnisend_conn_uri(api_url: str, *, api_key: str = TEST_API_KEY, **extra: object) -> str:
    """AIRFLOW_CONN_* JSON for an omnisend connection to ``api_url`` with a time-scaled rate window."""
    settings = {
        "privacy_acknowledged": True,
        "requests_per_minute": 300,
        "window_seconds": 60 * TIME_SCALE,
        "backoff_initial": 0.05,
        "backoff_max": 0.5,
        "timeout": 5,
        **extra,
    }
    return json.dumps({"conn_type": "omnisend", "host": api_url, "password": api_key, "extra": settings})




class FakeClock:
    """A clock that only moves when a limiter sleeps on it, so rate-limit tests are exact and instant."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


# ---------------------------------------------------------------- export runs against the emulator
COUNTRY_CODES = {"Lithuania": "LT", "United States": "US", "Germany": "DE", "France": "FR", "Japan": "JP",
                 "United Kingdom": "GB"}
#: Omnisend field -> source column of the synthetic profiles (testing.sample_data).
FIELD_COLUMNS = {"firstName": "FirstName", "lastName": "LastName", "address": "Address1", "city": "City",
                 "state": "StateOrProvince", "postalCode": "PostalCode", "countryCode": "Country"}


def expected_contacts(table) -> dict[str, dict[str, str]]:
    """What Omnisend should hold after exporting synthetic profiles, computed independently of the
    engine (plain Python): trimmed lower-cased e-mail, first valid occurrence wins, country names as
    ISO codes. Returns {email: {omnisend_field: value}}."""
    import re

    pattern = re.compile(r"^[a-z0-9_+-]+(\.[a-z0-9_+-]+)*@[a-z0-9-]+(\.[a-z0-9-]+)+$")
    rows = table.to_pylist()
    expected: dict[str, dict[str, str]] = {}
    for row in rows:
        email = (row["EmailAddress"] or "").strip().lower()
        if not pattern.match(email) or email in expected:
            continue
        values = {field: row[column] for field, column in FIELD_COLUMNS.items()}
        values["countryCode"] = COUNTRY_CODES.get(values["countryCode"], values["countryCode"])
        expected[email] = values
    return expected


def export_client(emulator, *, api_version: str | None = None, requests_per_minute: int = 300):
    """An OmnisendClient on the emulator with the emulator's time scale."""
    from airflow_provider_omnisend.api.client import OmnisendClient
    from airflow_provider_omnisend.api.versions import get_version

    version = get_version(api_version)
    return OmnisendClient(base_url=version.base_url(emulator.api_url), api_key=emulator.api_key,
                          version=version, requests_per_minute=requests_per_minute,
                          window_seconds=60 * emulator.time_scale, timeout=5, backoff_initial=0.05,
                          backoff_max=0.5)


def run_export(client, batches, *, tmp_path, segment: str = "VIP", mapping=None, state_dir=None,
               progress=None, run_name: str = "run", spec_kwargs=None, columns=None, state_secret=None,
               **options):
    """Run ExportEngine once; returns (summary, rejects table)."""
    import pyarrow.parquet as pq

    from airflow_provider_omnisend.export.engine import ExportEngine, ExportOptions
    from airflow_provider_omnisend.export.mapping import MappingSpec
    from airflow_provider_omnisend.export.progress import MemoryProgressStore
    from airflow_provider_omnisend.export.rejects import RejectsWriter
    from airflow_provider_omnisend.testing.sample_data import COLUMNS, DEMO_MAPPING

    spec = MappingSpec.build(mapping or DEMO_MAPPING, segment=segment, available_columns=columns or COLUMNS,
                             **(spec_kwargs or {}))
    rejects_path = str(tmp_path / f"{run_name}-rejects.parquet")
    rejects = RejectsWriter(rejects_path, source_columns=spec.source_columns)
    options.setdefault("segment_tag", f"segment: {segment}")
    options.setdefault("poll_interval", 0.05)
    options.setdefault("batch_item_cap", client.version.batch_item_cap)
    engine = ExportEngine(client=client, spec=spec, options=ExportOptions(segment=segment, **options),
                          state_dir=str(state_dir or tmp_path / "state"),
                          work_dir=tmp_path / f"{run_name}-work",
                          artifacts_dir=tmp_path / f"{run_name}-artifacts", rejects=rejects,
                          progress=progress if progress is not None else MemoryProgressStore(),
                          state_secret=state_secret)
    try:
        summary = engine.run(batches)
    finally:
        rejects.close()
    return summary, pq.read_table(rejects_path)
