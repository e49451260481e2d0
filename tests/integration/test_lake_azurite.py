"""Read a Customer Insights CDM export from Azure Blob Storage (Azurite, a real local process).

The same model.json (absolute https://<account>.dfs.core.windows.net locations) must read identically
through abfs://, az:// and from the local copy, and the sensor must find it through an Airflow
connection whose extra holds the storage options.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_omnisend.lake import iter_batches, resolve_export, watermark_key, write_watermark
from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export
from airflow_provider_omnisend.testing.servers import ServerProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER = "customerinsights"
EXPORT = "CustomerInsights_00000000-0000-0000-0000-000000000001/OmnisendExport"
COLUMNS = ("CustomerId", "Email", "FirstName")
ROWS = [(str(i), f"user{i}@example.com", f"Name {i}" if i % 7 else 'Quote "q", comma\nnewline')
        for i in range(1, 251)]
REFRESHES = ["2026-01-14T03:00:00Z", "2026-01-15T03:00:00Z"]


@pytest.fixture(scope="module")
def azurite(tmp_path_factory) -> Iterator[str]:
    """A running Azurite blob service; yields its connection string."""
    if not AZURITE.exists():
        pytest.fail(f"{AZURITE} is missing: run `npm ci` in the repository root")
    port = free_port()
    data = tmp_path_factory.mktemp("azurite")
    argv = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data),
            "--skipApiVersionCheck", "--silent", "--loose"]
    with ServerProcess(argv, port=port, name="azurite", log_dir=data):
        yield (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={DEV_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )


def _upload(fs, local_root: Path, remote_root: str) -> None:
    for path in sorted(p for p in local_root.rglob("*") if p.is_file()):
        fs.put_file(str(path), f"{remote_root}/{path.relative_to(local_root).as_posix()}")


@pytest.fixture(scope="module")
def uploaded(azurite, tmp_path_factory) -> tuple[str, Path]:
    """A two-refresh CDM export written locally and uploaded to the container; (conn string, local)."""
    from adlfs import AzureBlobFileSystem

    local_root = tmp_path_factory.mktemp("lake")
    local_export = write_cdm_export(local_root, entity="Customer", columns=COLUMNS, rows=ROWS,
                                    partitions=3, refresh_times=REFRESHES, container=CONTAINER,
                                    account="devstoreaccount1")
    fs = AzureBlobFileSystem(connection_string=azurite)
    fs.mkdir(CONTAINER)
    _upload(fs, local_root, CONTAINER)
    return azurite, local_export


def _rows(export, **kwargs) -> list[tuple]:
    out: list[tuple] = []
    for batch in iter_batches(export, columns=list(COLUMNS), batch_size=64, **kwargs):
        out.extend(zip(*(batch.column(c).to_pylist() for c in COLUMNS), strict=True))
    return out


@pytest.mark.parametrize("scheme", ["abfs", "az"])
def test_cdm_export_reads_the_same_through_adlfs_as_locally(uploaded, scheme):
    conn_string, local_export = uploaded
    options = {"connection_string": conn_string}
    local = resolve_export(str(local_export))
    remote = resolve_export(f"{scheme}://{CONTAINER}/{EXPORT}", storage_options=options)

    assert remote.export_id == local.export_id == "cdm:Customer:2026/01/15/0300"
    assert remote.columns == local.columns == COLUMNS
    assert len(remote.files) == 3
    newest = f"{scheme}://{CONTAINER}/{EXPORT}/Customer/2026/01/15/0300/"
    assert all(f.startswith(newest) for f in remote.files)
    assert conn_string not in json.dumps(remote.to_dict())

    remote_rows = _rows(remote, storage_options=options)
    assert remote_rows == _rows(local)
    assert remote_rows == [(a, b, c) for a, b, c in ROWS]


def test_sensor_finds_the_export_through_an_airflow_connection(uploaded, tmp_path, monkeypatch):
    from airflow_provider_omnisend.sensors.export_ready import OmnisendSegmentExportSensor

    conn_string, _ = uploaded
    monkeypatch.setenv("AIRFLOW_CONN_LAKE_AZURITE", json.dumps(
        {"conn_type": "generic", "extra": {"connection_string": conn_string}}))
    sensor = OmnisendSegmentExportSensor(
        task_id="wait", source=f"abfs://{CONTAINER}/{EXPORT}", segment="customer",
        lake_conn_id="lake_azurite", omnisend_conn_id="omnisend_test", state_path=str(tmp_path),
    )
    result = sensor.poke({})
    assert result.is_done is True
    assert result.xcom_value["export_id"] == "cdm:Customer:2026/01/15/0300"
    assert conn_string not in json.dumps(result.xcom_value)

    write_watermark(tmp_path, watermark_key("omnisend_test", "customer"), result.xcom_value["export_id"])
    assert sensor.poke({}).is_done is False


def test_export_keeps_state_and_rejects_on_the_lake_with_its_connection(
        azurite, omnisend_conn, emulator, tmp_path, monkeypatch):
    """State (snapshot, watermark) and rejects on the lake's store are written with the lake
    connection's credentials, not fsspec's anonymous defaults; the sensor reads the watermark back."""
    from types import SimpleNamespace

    import pyarrow.parquet as pq
    from adlfs import AzureBlobFileSystem

    from airflow_provider_omnisend.operators.export import OmnisendExportSegmentOperator
    from airflow_provider_omnisend.sensors.export_ready import OmnisendSegmentExportSensor

    instance = "00000000-0000-0000-0000-000000000002"
    rows = [(str(i), f"remote{i}@example.com", f"Name {i}") for i in range(40)]
    rows += [("bad1", "not-an-email", "X"), ("bad2", "", "Y"), ("dup", "remote3@example.com", "Z")]
    local_root = tmp_path / "lake"
    write_cdm_export(local_root, entity="Customer", columns=COLUMNS, rows=rows, partitions=2,
                     instance_id=instance, container=CONTAINER, account="devstoreaccount1")
    fs = AzureBlobFileSystem(connection_string=azurite)
    if not fs.exists(CONTAINER):
        fs.mkdir(CONTAINER)
    _upload(fs, local_root, CONTAINER)
    monkeypatch.setenv("AIRFLOW_CONN_LAKE_AZURITE", json.dumps(
        {"conn_type": "generic", "extra": {"connection_string": azurite}}))
    source = f"abfs://{CONTAINER}/CustomerInsights_{instance}/OmnisendExport"
    state = f"abfs://{CONTAINER}/omnisend-state"
    rejects = f"abfs://{CONTAINER}/omnisend-rejects/customer.parquet"
    pushed: list[tuple[str, object]] = []
    context = {"dag": SimpleNamespace(dag_id="omnisend_azurite"), "run_id": "manual__azurite",
               "ti": SimpleNamespace(task_id="export", map_index=-1,
                                     xcom_push=lambda key, value: pushed.append((key, value)))}

    summary = OmnisendExportSegmentOperator(
        task_id="export", source=source, segment="Customer", lake_conn_id="lake_azurite",
        mapping={"email": "Email", "firstName": "FirstName"}, omnisend_conn_id=omnisend_conn(),
        state_path=state, rejects_path=rejects, max_reject_ratio=0.5, poll_interval=0.05,
    ).execute(context)

    assert (summary["valid"], summary["rejected"], summary["sent"]) == (40, 3, 40)
    emulator.wait_batches_done(timeout=30)
    assert len(emulator.contacts()) == 40
    with fs.open(f"{CONTAINER}/omnisend-rejects/customer.parquet", "rb") as fh:
        rejected = pq.read_table(fh).to_pylist()
    assert sorted(r["FirstName"] for r in rejected) == ["X", "Y", "Z"]
    assert all(r["reason"] for r in rejected)
    key = watermark_key("omnisend_test", "Customer")
    assert fs.exists(f"{CONTAINER}/omnisend-state/{key}.json")
    assert fs.exists(f"{CONTAINER}/omnisend-state/{key}/CURRENT.json")
    assert azurite not in json.dumps(summary)

    sensor = OmnisendSegmentExportSensor(
        task_id="wait", source=source, segment="Customer", lake_conn_id="lake_azurite",
        omnisend_conn_id="omnisend_test", state_path=state)
    assert sensor.poke({}).is_done is False  # the watermark, read from the lake, says: exported
