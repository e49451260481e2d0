"""The example DAG end to end with ``airflow dags test`` (as scripts/demo.sh runs it): real Airflow CLI,
the shipped sample lake, a real emulator process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_provider_omnisend.testing.airflow_cluster import (
    DAG_ID,
    log_tail,
    prepare_airflow_home,
    run_airflow,
)
from tests.e2e.helpers import (
    SEGMENTS,
    assert_emulator_holds,
    copy_sample_lake,
    expected_contacts,
    sample_env,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def test_dags_test_exports_both_segments_exactly(tmp_path: Path, e2e_emulator) -> None:
    export_dir = copy_sample_lake(tmp_path / "lake")
    logs = tmp_path / "logs"
    logs.mkdir()
    env = sample_env(tmp_path / "airflow", emulator=e2e_emulator, lake_dir=export_dir,
                     state_dir=tmp_path / "state")
    prepare_airflow_home(env, logs)

    log = logs / "dags-test.log"
    rc = run_airflow(["dags", "test", DAG_ID], env, log, timeout=300)
    assert rc == 0, f"airflow dags test failed ({rc})\n{log_tail(log)}"
    text = log.read_text(errors="replace")
    assert "Omnisend export summary" in text
    assert re.search(r"Rejects for \w+: \S+ \(\d+ rows; \w+=\d+", text), "no reasons per segment"
    assert e2e_emulator.api_key not in text, "the API key leaked into the task logs"

    expected = expected_contacts(export_dir, SEGMENTS)
    # The sample lake overlaps its two segments and breaks ~2% of rows on purpose: make sure the test
    # would notice both (contacts in two segments; rows dropped as invalid or duplicate).
    assert any(len(e["tags"]) == 2 for e in expected.values())
    assert 3_500 < len(expected) < 5_000
    assert_emulator_holds(e2e_emulator, expected)

    # On demand after the scheduled run exported (#16 item 1): without force the sensor would wait for a
    # new export; with force it hands over the same export at once, and the incremental diff sends none.
    forced = logs / "dags-test-force.log"
    rc = run_airflow(["dags", "test", DAG_ID, "-c", '{"force": true}'], env, forced, timeout=300)
    assert rc == 0, f"airflow dags test -c force failed ({rc})\n{log_tail(forced)}"
    text = forced.read_text(errors="replace")
    assert "force: exported again" in text and "Omnisend export summary" in text
    assert_emulator_holds(e2e_emulator, expected)

