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


