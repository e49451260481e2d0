"""The example DAG in a real Airflow: api-server, scheduler, dag-processor and triggerer (LocalExecutor,
SQLite, simple auth manager), driven through the REST API v2 and through the UI in a real browser.

All tests of this module share one cluster (``airflow_cluster``); ``clean_slate`` gives each of them an
empty emulator, no snapshots or watermarks and a fresh copy of the sample lake.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_omnisend.testing.airflow_cluster import DAG_ID, AirflowCluster
from tests.e2e.helpers import (
    CHROMIUM,
    SEGMENTS,
    assert_emulator_holds,
    expected_contacts,
    partition_files,
    partition_rows,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
UI_TIMEOUT_MS = 30_000
EXPORT_READY_TRIGGER = "airflow_provider_omnisend.triggers.export_ready.OmnisendExportReadyTrigger"


@pytest.fixture(autouse=True)
def clean_slate(airflow_cluster: AirflowCluster) -> AirflowCluster:
    airflow_cluster.reset()
    return airflow_cluster


def assert_emulator_untouched(cluster: AirflowCluster) -> None:
    state = cluster.emulator.state()
    assert state["requests"] == {} and state["contacts"] == 0, f"a dry run reached Omnisend: {state}"


# ------------------------------------------------------------------------------------------- REST API

def test_dry_run_from_params_sends_nothing(airflow_cluster: AirflowCluster) -> None:
    conf = {"segments": list(SEGMENTS), "dry_run": True}
    run = airflow_cluster.trigger(conf)
    assert run["conf"] == conf and run["run_type"] == "manual"
    airflow_cluster.wait_run(run["dag_run_id"], timeout=180)

    assert_emulator_untouched(airflow_cluster)
    tis = airflow_cluster.task_instances(run["dag_run_id"])
    exports = [t for t in tis if t["task_id"] == "segment.export"]
    assert sorted(t["map_index"] for t in exports) == [0, 1]
    assert all(t["state"] == "success" for t in exports)
    # A dry run writes no watermark: the same export is still "new" for the next (real) run.
    assert not list(airflow_cluster.state_dir.glob("*.json")), "a dry run wrote a watermark"


def test_sensor_defers_until_the_export_is_complete_then_exports(airflow_cluster: AirflowCluster) -> None:
    # The newest refresh of NewsletterFans is incomplete: one partition model.json lists is not there yet.
    missing = partition_files(airflow_cluster.export_dir, "NewsletterFans")[-1]
    held_back = missing.with_name(missing.name + ".uploading")
    missing.rename(held_back)

    conf = {"segments": list(SEGMENTS), "dry_run": False}
    run_id = airflow_cluster.trigger(conf)["dag_run_id"]
    newsletter = SEGMENTS.index("NewsletterFans")

    def sensor_state() -> dict[str, Any] | None:
        ti = airflow_cluster.task_instance(run_id, "segment.wait_for_export", newsletter)
        if ti and ti["state"] in {"success", "failed", "up_for_retry"}:
            pytest.fail(f"the sensor did not wait for the missing partition: {ti['state']}\n"
                        f"{airflow_cluster.task_log(ti)}")
        return ti if ti and ti["state"] == "deferred" else None

    ti = airflow_cluster.wait_until(sensor_state, timeout=120, what="the export-ready sensor to defer")
    assert ti["trigger"] and ti["trigger"]["classpath"] == EXPORT_READY_TRIGGER, ti["trigger"]
    # Let the triggerer pick the trigger up and look at the (still incomplete) lake: it keeps waiting.
    ti = airflow_cluster.wait_until(lambda: (t := sensor_state()) and t.get("triggerer_job") and t,
                                    timeout=60, what="a triggerer to run the trigger")
    time.sleep(5)
    assert sensor_state(), "the sensor stopped waiting although a partition is still missing"
    assert airflow_cluster.dag_run(run_id)["state"] == "running"

    held_back.rename(missing)  # the upload finishes; the triggerer notices on its next poll (30 s)
    airflow_cluster.wait_run(run_id, timeout=240)

    ti = airflow_cluster.task_instance(run_id, "segment.wait_for_export", newsletter)
    assert ti["state"] == "success" and ti["try_number"] == 1, "resumed by the triggerer, not retried"
    log = airflow_cluster.task_log(ti, lines=200)
    assert missing.name in log, log  # the wait names the missing partition
    assert "Trigger fired event" in log, log
    assert_emulator_holds(airflow_cluster.emulator, expected_contacts(airflow_cluster.export_dir, SEGMENTS))


def test_single_segment_run_from_params(airflow_cluster: AirflowCluster) -> None:
    """What the UI's Trigger form sends when one segment is picked (the common case)."""
    conf = {"segments": ["NewsletterFans"], "dry_run": False}
    run_id = airflow_cluster.trigger(conf)["dag_run_id"]
    airflow_cluster.wait_run(run_id, timeout=180)
    assert_emulator_holds(airflow_cluster.emulator,
                          expected_contacts(airflow_cluster.export_dir, ["NewsletterFans"]))


def test_a_variable_changed_after_parsing_applies_to_the_next_run_and_no_pool_is_needed(
        airflow_cluster: AirflowCluster, tmp_path: Path) -> None:
    """The DAG reads its settings when the tasks run: a Variable set after the DAG was parsed applies to
    the very next run. Nobody created a pool, and the exports still run. By default the rejects go to
    the state store, and the dry run's payload sample is in XCom, masked."""
    pools = [p["name"] for p in airflow_cluster.api("GET", "pools")["pools"]]
    assert pools == ["default_pool"], pools
    key = "OMNISEND_REJECTS_PATH"
    conf = {"segments": ["HighValueCustomers"], "dry_run": True}

    def dry_run() -> tuple[dict[str, Any], dict[str, Any]]:
        run_id = airflow_cluster.trigger(conf)["dag_run_id"]
        airflow_cluster.wait_run(run_id, timeout=180)
        ti = airflow_cluster.task_instance(run_id, "segment.export", 0)
        assert ti is not None and ti["pool"] == "default_pool"
        return ti, airflow_cluster.xcom(ti)

    ti, summary = dry_run()  # 1. no Variable: the defaults
    runs = airflow_cluster.state_dir / "runs" / DAG_ID
    assert summary["rejected"] > 0 and Path(summary["rejects_path"]).is_file()
    assert Path(summary["rejects_path"]).is_relative_to(runs), summary["rejects_path"]
    sample = airflow_cluster.xcom(ti, "payload_sample")  # the REST API parses the JSON text
    sample = json.loads(sample) if isinstance(sample, str) else sample
    email = sample["items"][0]["identifiers"][0]["id"]
    assert re.fullmatch(r"[^@]\*\*\*@[^@]+", email), email  # j***@example.com: masked
    try:  # 2. a Variable set after parsing: the next run writes where it says (a template per task)
        value = str(tmp_path / "by-variable" / "{{ ti.map_index }}.parquet")
        airflow_cluster.api("POST", "variables", json={"key": key, "value": value}, expect=201)
        _, summary = dry_run()
        assert summary["rejects_path"] == str(tmp_path / "by-variable" / "0.parquet")
        assert (tmp_path / "by-variable" / "0.parquet").is_file()
    finally:
        airflow_cluster.api("DELETE", f"variables/{key}", expect=(204, 404))


# -------------------------------------------------------------------------------------------- browser

@pytest.fixture(scope="module")
def browser_context(airflow_cluster: AirflowCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (Debian package chromium); the UI tests need a real browser"
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"{missing}. Under CI they must run: install chromium (scripts/setup.sh --test).")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS, headless=True, viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def ui(browser_context, airflow_cluster: AirflowCluster, artifacts: Path,
       request: pytest.FixtureRequest) -> Iterator:
    """A logged-in page on the Airflow UI (a failing test leaves a screenshot of where it stopped)."""
    page = browser_context.new_page()
    page.goto(f"{airflow_cluster.base_url}/")
    username = page.get_by_label("Username")
    username.or_(page.get_by_role("button", name="Admin")).first.wait_for()  # login page, or logged in
    if username.is_visible():
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(airflow_cluster.password)
        page.screenshot(path=artifacts / "00-login.png")
        page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Admin").wait_for()
    try:
        yield page
    finally:
        page.screenshot(path=artifacts / f"zz-{request.node.name}-last-page.png", full_page=True)
        page.close()


def test_connection_form_offers_omnisend_with_its_fields(ui, airflow_cluster: AirflowCluster,
                                                         artifacts: Path) -> None:
    from playwright.sync_api import expect

    ui.get_by_role("button", name="Admin").click()
    ui.get_by_role("menuitem", name="Connections").click()
    ui.get_by_role("button", name="Add Connection").click()
    dialog = ui.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Add Connection")).to_be_visible()
    dialog.get_by_label("Connection ID").fill("omnisend_ui")
    conn_type = dialog.get_by_role("combobox", name="Connection Type")
    conn_type.click()
    conn_type.fill("Omni")
    option = ui.get_by_role("option", name="Omnisend", exact=True)
    expect(option).to_be_visible()
    ui.screenshot(path=artifacts / "01-connection-type-offered.png", full_page=True)
    option.click()

    # Standard fields: the password relabelled "API key", login/schema/port hidden, placeholders shown.
    expect(dialog.get_by_text("API key", exact=True)).to_be_visible()
    expect(dialog.get_by_placeholder("Omnisend API key (Store settings > API keys)")).to_be_visible()
    expect(dialog.get_by_placeholder("https://api.omnisend.com/api")).to_be_visible()
    for hidden in ("Password", "Login", "Schema", "Port"):
        expect(dialog.get_by_text(hidden, exact=True)).to_have_count(0)
    dialog.get_by_label("Base URL").fill(airflow_cluster.emulator.api_url)
    dialog.get_by_label("API key").fill("ui-typed-key-0042")
    ui.screenshot(path=artifacts / "02-omnisend-standard-fields.png", full_page=True)

    # The provider's custom fields, with their defaults.
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    api_version = dialog.get_by_role("combobox", name="API version")
    expect(api_version).to_be_visible()
    expect(dialog.get_by_text("2026-03-15", exact=True)).to_be_visible()
    privacy = dialog.get_by_role("checkbox", name=re.compile(r"I agree: data privacy and compliance"))
    expect(privacy).not_to_be_checked()
    allowed = dialog.get_by_role("group").filter(has_text="Allowed DAG ids").get_by_role("textbox")
    expect(allowed).to_have_value("")
    brand = dialog.get_by_role("group").filter(has=ui.get_by_text("Brand", exact=True)).get_by_role("textbox")
    expect(brand).to_have_value("")
    rpm = dialog.get_by_role("spinbutton", name=re.compile("Requests per minute"))
    expect(rpm).to_have_value("300")
    ui.screenshot(path=artifacts / "03-omnisend-custom-fields.png", full_page=True)

    # Fill in the custom fields as a user would and save: they land in the connection's extra.
    api_version.click()
    expect(ui.get_by_role("option")).to_have_text(["2026-03-15", "v5", "v3"])
    ui.get_by_role("option", name="v5", exact=True).click()
    dialog.locator("label[data-scope=switch]").filter(
        has=ui.get_by_role("checkbox", name=re.compile("I agree"))).click()
    expect(privacy).to_be_checked()
    allowed.fill("omnisend_*")
    brand.fill("contoso-shop")
    rpm.fill("120")
    ui.screenshot(path=artifacts / "04-omnisend-filled.png", full_page=True)
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0)
    ui.screenshot(path=artifacts / "05-connection-saved.png", full_page=True)

    conn = airflow_cluster.api("GET", "connections/omnisend_ui")
    assert conn["conn_type"] == "omnisend"
    assert conn["host"] == airflow_cluster.emulator.api_url
    assert conn["password"] != "ui-typed-key-0042"  # masked in the API
    assert json.loads(conn["extra"]) == {"api_version": "v5", "privacy_acknowledged": True,
                                         "allowed_dag_ids": "omnisend_*", "requests_per_minute": 120,
                                         "brand": "contoso-shop"}
    airflow_cluster.api("DELETE", "connections/omnisend_ui", expect=204)


def open_trigger_form(page) -> Any:
    """Open the DAG's Trigger dialog. The DAG page re-renders once shortly after it loads, which closes a
    dialog opened too early, or moves the grid under a click (which then opens a task instance, whose
    Trigger button is a menu): open it, give it a moment, and go back to the DAG page and open it again if
    it went away."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.get_by_role("link", name="Dags").first.click()
    page.get_by_role("link", name=DAG_ID).first.click()
    origin = re.match(r"https?://[^/]+", page.url)[0]  # type: ignore[index]
    on_dag_page = re.compile(rf"/dags/{DAG_ID}/?(\?.*)?$")
    dialog = page.get_by_role("dialog")
    for _ in range(5):
        if not dialog.count() and not on_dag_page.search(page.url):
            page.keyboard.press("Escape")
            page.goto(f"{origin}/dags/{DAG_ID}")
        page.get_by_text("segments_to_export").first.wait_for()
        page.wait_for_load_state("networkidle")
        if not dialog.count():
            page.get_by_role("button", name="Trigger Dag").first.click()
        try:
            dialog.get_by_text("Run Parameters").wait_for(timeout=10_000)
        except PlaywrightTimeout:
            continue
        page.wait_for_timeout(3_000)
        if dialog.count():
            return dialog
    raise AssertionError(f"the Trigger dialog did not stay open (at {page.url})")


def read_summary(page, segments: list[str]) -> dict[str, dict[str, str]]:
    """The summary table as the UI's task log shows it: {segment: {column: value}} of ``segments``'
    rows (each line of the log is an element whose text ends with the printed line)."""
    header = page.get_by_text(re.compile(r"segment\s+rows_read\s+valid")).first
    header.wait_for()
    columns = header.inner_text().split(" - ", 1)[-1].split()
    table = {}
    for segment in segments:
        line = page.get_by_text(re.compile(rf"(^|\s){segment}\s+\d+\s")).first.inner_text()
        values = line.split(" - ", 1)[-1].split()
        table[values[0]] = dict(zip(columns, values, strict=True))
    return table


def test_trigger_form_with_params_runs_and_the_task_log_shows_the_summary(
        ui, airflow_cluster: AirflowCluster, artifacts: Path) -> None:
    from playwright.sync_api import expect

    dialog = open_trigger_form(ui)
    segments = dialog.get_by_placeholder("Enter each string on a new line")  # the array param
    expect(segments).to_have_value("\n".join(SEGMENTS))  # default: OMNISEND_SEGMENTS
    dry_run = dialog.get_by_role("checkbox", name="dry_run")
    expect(dry_run).not_to_be_checked()
    ui.screenshot(path=artifacts / "06-trigger-form.png", full_page=True)

    segments.fill("HighValueCustomers")  # one of the two
    dialog.locator("label[data-scope=switch]").filter(has=ui.get_by_role("checkbox", name="dry_run")).click()
    expect(dry_run).to_be_checked()
    ui.screenshot(path=artifacts / "07-trigger-form-filled.png", full_page=True)
    with ui.expect_response(lambda r: r.request.method == "POST"
                            and r.url.endswith(f"/api/v2/dags/{DAG_ID}/dagRuns")) as posted:
        dialog.get_by_role("button", name="Trigger", exact=True).click()
    response = posted.value
    assert response.ok, response.text()
    sent = response.request.post_data_json
    assert sent["conf"] == {"segments": ["HighValueCustomers"], "dry_run": True,
                            "full_refresh": False, "force": False, "max_profiles": 1_000_000,
                            "mode": "upsert", "mirror_scope": "snapshot"}
    run_id = response.json()["dag_run_id"]

    # The UI opens the new run; its task instances appear as the scheduler creates them.
    ui.wait_for_url(re.compile(r"/runs/"))
    expect(ui.get_by_text(run_id).first).to_be_visible()
    expect(ui.get_by_text("segments_to_export").first).to_be_visible()
    ui.screenshot(path=artifacts / "08-run-appeared.png", full_page=True)

    run = airflow_cluster.wait_run(run_id, timeout=180)
    assert run["conf"] == sent["conf"]
    assert_emulator_untouched(airflow_cluster)
    ui.reload()  # the run (already checked through REST) is still shown once the page has reloaded
    expect(ui.get_by_text(run_id).first).to_be_visible(timeout=30_000)
    ui.screenshot(path=artifacts / "09-run-succeeded.png", full_page=True)

    # The summary, as an operator reads it: the run's task instances -> summarize -> its log.
    ui.get_by_role("table").get_by_role("link", name="summarize", exact=True).click()
    ui.wait_for_url(re.compile(r"/tasks/summarize"))
    expect(ui.get_by_text("Omnisend export summary").first).to_be_visible()
    ui.screenshot(path=artifacts / "10-summary-in-task-log.png", full_page=True)
    row = read_summary(ui, ["HighValueCustomers"])["HighValueCustomers"]
    rows_read = partition_rows(airflow_cluster.export_dir, "HighValueCustomers")
    valid = len(expected_contacts(airflow_cluster.export_dir, ["HighValueCustomers"]))
    counts = ("rows_read", "valid", "rejected", "new", "changed", "unchanged", "removed", "sent", "batches")
    # a dry run on an empty state: every valid contact is new, nothing is sent
    assert {k: int(row[k]) for k in counts} == {
        "rows_read": rows_read, "valid": valid, "rejected": rows_read - valid, "new": valid, "changed": 0,
        "unchanged": 0, "removed": 0, "sent": 0, "batches": 0}, row
    assert 0 <= int(row["duplicates"]) <= rows_read - valid, row
    expect(ui.get_by_text(re.compile(rf"Rejects for HighValueCustomers: .* \({rows_read - valid} rows; "))
           .first).to_be_visible()
    expect(ui.get_by_text(re.compile(r"(^|\s)NewsletterFans\s+\d+\s"))).to_have_count(0)  # not picked
