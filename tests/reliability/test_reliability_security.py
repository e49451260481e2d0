"""Security: hostile servers (real processes on 127.0.0.1) and hostile inputs get a clear error, and the
API key leaks through none of them (issue 14).

The key holds a quote and a backslash, so that its escaped forms (JSON, repr) differ from the raw one:
Airflow's masker would miss those. Every test scans everything it can capture for every form of the key.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_omnisend.api.client import OmnisendClient
from airflow_provider_omnisend.api.errors import (
    OmnisendApiError,
    OmnisendConfigError,
    OmnisendRateLimitError,
    secret_forms,
)
from airflow_provider_omnisend.api.versions import get_version
from airflow_provider_omnisend.hooks.omnisend import OmnisendHook
from airflow_provider_omnisend.testing.servers import ServerProcess, free_port
from tests.support import omnisend_conn_uri

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SECRET = "omni'SECRET\\k3y-7f3a9c"
ROOT = Path(__file__).resolve().parents[2]
_TRIED: dict[str, str] = {}


@pytest.fixture(scope="module")
def hostile() -> Iterator[ServerProcess]:
    port = free_port()
    argv = [sys.executable, "-m", "tests.reliability.hostile_server", str(port)]
    with ServerProcess(argv, port=port, name="hostile-server", cwd=ROOT, startup_timeout=20) as server:
        yield server


def _leaks(*texts: str) -> list[str]:
    """Any piece of the key, in any escaped form: its head and its tail are distinctive on their own."""
    pieces = ("SECRET", "7f3a9c", *secret_forms(SECRET))
    return [piece for piece in pieces for text in texts if piece in text]


def _client(url: str, version: str = "2026-03-15", **kwargs) -> OmnisendClient:
    options = {"max_attempts": 2, "backoff_initial": 0.01, "backoff_max": 0.05, "timeout": 10, **kwargs}
    return OmnisendClient(base_url=url, api_key=SECRET, version=get_version(version), **options)


def _hook(monkeypatch, url: str, *, api_key: str = SECRET, **extra) -> OmnisendHook:
    monkeypatch.setenv("AIRFLOW_CONN_OMNISEND_HOSTILE", omnisend_conn_uri(url, api_key=api_key, **extra))
    return OmnisendHook("omnisend_hostile", dag_id="omnisend_security")


def _sink_hits(server: ServerProcess) -> int:
    with urllib.request.urlopen(f"{server.base_url}/_hits", timeout=5) as answer:
        return json.load(answer)["sink"]


@pytest.mark.parametrize("version", ["2026-03-15", "v5", "v3"])
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_never_followed(hostile, caplog, version, status):
    caplog.set_level(logging.DEBUG)
    before = _sink_hits(hostile)
    client = _client(f"{hostile.base_url}/redirect/{status}", version)
    with pytest.raises(OmnisendApiError) as err:
        client.create_batch([{"email": "ann@example.com"}])
    message = str(err.value)
    assert f"HTTP {status}" in message and "'localhost'" in message and "never followed" in message
    assert _sink_hits(hostile) == before  # neither the key header nor the contacts reached the other host
    assert not _leaks(message, caplog.text)
    _TRIED[f"redirect {status} {version}"] = "error naming status and host"


@pytest.mark.parametrize("status", [400, 401, 500, 200])
def test_echoed_headers_are_redacted(hostile, caplog, status):
    caplog.set_level(logging.DEBUG)
    for version in ("2026-03-15", "v3"):
        client = _client(f"{hostile.base_url}/echo/{status}", version)
        if status == 200:
            answer = client.create_batch([{"email": "ann@example.com"}])
            texts = [repr(answer), json.dumps(answer)]
            assert "***" in answer["echo"]
        else:
            with pytest.raises(OmnisendApiError) as err:
                client.create_batch([{"email": "ann@example.com"}])
            texts = [str(err.value), repr(err.value.__dict__), repr(getattr(err.value, "errors", None))]
        assert not _leaks(*texts, caplog.text), texts
    _TRIED[f"echo {status}"] = "key and header values redacted"


@pytest.mark.parametrize("forged", ["abc'def-TAIL-9d1", 'abc"d,e}f]-TAIL-9d1', "\"abc'de\\f\" TAIL-9d1"])
def test_echoed_header_values_are_redacted_to_their_end(hostile, caplog, forged):
    """A header value the client does not know as a secret (an extra X-API-KEY, a proxy's Authorization)
    echoed raw, as a repr and as JSON in JSON: the pattern hides it whole, quotes inside and all."""
    caplog.set_level(logging.DEBUG)
    for status in (400, 200):
        client = _client(f"{hostile.base_url}/echo/{status}")
        client.session.headers.update({"X-API-KEY": forged, "Proxy-Authorization": forged})
        if status == 200:
            answer = client.create_batch([{"email": "ann@example.com"}])  # still parsed as JSON
            texts = [repr(answer), json.dumps(answer)]
        else:
            with pytest.raises(OmnisendApiError) as err:
                client.create_batch([{"email": "ann@example.com"}])
            texts = [str(err.value), repr(err.value.__dict__), repr(getattr(err.value, "errors", None))]
        joined = "".join([*texts, caplog.text])
        assert "TAIL-9d1" not in joined and "***" in joined and not _leaks(joined), texts
    _TRIED[f"echo of a forged header {forged[:8]!r}"] = "redacted to its end"


def test_key_with_whitespace_is_stripped_and_control_characters_refused(hostile, monkeypatch):
    hook = _hook(monkeypatch, f"{hostile.base_url}/echo/200", api_key=f"  {SECRET}\n")
    assert hook.client.session.headers["Authorization"] == f"Omnisend-API-Key {SECRET}"
    bad = _hook(monkeypatch, f"{hostile.base_url}/echo/200", api_key=f"{SECRET[:5]}\r\n{SECRET[5:]}")
    ok, message = bad.test_connection()
    assert not ok and "control character" in message
    with pytest.raises(OmnisendConfigError) as err:
        bad.get_conn()
    assert not _leaks(message, str(err.value)) and SECRET[5:] not in message + str(err.value)
    _TRIED["key with newline / CR inside"] = "stripped / refused without the key"


def test_huge_retry_after_fails_instead_of_sleeping(hostile):
    client = _client(f"{hostile.base_url}/wait/1000000000")
    started = time.monotonic()
    with pytest.raises(OmnisendRateLimitError) as err:
        client.create_batch([{"email": "ann@example.com"}])
    assert time.monotonic() - started < 10
    assert "max_retry_wait" in str(err.value) and "1000000000" in str(err.value)
    _TRIED["retryAfter 1e9"] = "fails at once naming max_retry_wait"


def test_plain_http_to_a_remote_host_and_userinfo_are_refused(monkeypatch, caplog):
    with pytest.raises(OmnisendConfigError, match="allow_insecure_http"):
        _client("http://api.example.com/api")
    _client("http://api.example.com/api", allow_insecure_http=True)  # explicitly allowed
    _client("http://localhost:1/api")
    _client("http://[::1]:1/api")
    hook = _hook(monkeypatch, "http://api.example.com/api")
    ok, message = hook.test_connection()
    assert not ok and "allow_insecure_http" in message
    with pytest.raises(OmnisendConfigError) as err:
        _client("https://user:pa55word@api.example.com/api")
    assert "pa55word" not in str(err.value) and "credentials" in str(err.value)
    hook = _hook(monkeypatch, "https://user:pa55word@api.example.com/api")
    ok, message = hook.test_connection()
    assert not ok and "pa55word" not in message
    caplog.set_level(logging.WARNING)
    _hook(monkeypatch, "http://127.0.0.1:1/api", verify="false").get_conn()
    assert "verification off" in caplog.text
    _TRIED["http to remote host / user:pass@ URL"] = "refused, password not shown"


def test_huge_response_body_is_capped(hostile):
    client = _client(f"{hostile.base_url}/huge/40")
    with pytest.raises(OmnisendApiError, match="max_response_bytes") as err:
        client.get_batch("b1")
    assert str(16 * 1024 * 1024) in str(err.value)
    small = _client(f"{hostile.base_url}/huge/2", max_response_bytes=1024 * 1024)
    with pytest.raises(OmnisendApiError, match="over 1048576 bytes"):
        small.get_batch("b1")
    _TRIED["200 MB-class body"] = "fails past the cap"


def test_a_dripping_body_meets_the_timeout(hostile):
    client = _client(f"{hostile.base_url}/drip/0.1", timeout=1)  # 10,000 bytes at 10/s: 1,000 s
    started = time.monotonic()
    with pytest.raises(OmnisendApiError, match="timed out"):
        client.get_batch("b1")
    assert time.monotonic() - started < 8  # 2 attempts of 1 s and a short backoff; 1,000 s without
    _TRIED["body dripped a byte every 0.1 s"] = "times out after timeout per attempt"


@pytest.mark.parametrize("extra", [
    {"privacy_acknowledged": ["false"]}, {"privacy_acknowledged": {"v": False}}, {"privacy_acknowledged": 2},
    {"allowed_dag_ids": " , "}, {"allowed_dag_ids": 5}, {"allowed_dag_ids": ["a", 5]},
])
def test_odd_gate_values_are_refused(monkeypatch, extra):
    hook = _hook(monkeypatch, "http://127.0.0.1:1/api", **extra)
    with pytest.raises(OmnisendConfigError, match=next(iter(extra))):
        hook.check_can_send()
    _TRIED[f"gate {extra}"] = "refused"


def test_list_contacts_needs_privacy_acknowledged(monkeypatch):
    hook = _hook(monkeypatch, "http://127.0.0.1:1/api", privacy_acknowledged="false")
    with pytest.raises(OmnisendConfigError, match="privacy"):
        next(iter(hook.list_contacts()))
    hook = _hook(monkeypatch, "http://127.0.0.1:1/api", privacy_acknowledged="TRUE")
    assert hook.settings.privacy_acknowledged


# ---------------------------------------------------------------------------------- hostile lake folders
PII = "victim@example.org,Secret,Person"


def _hostile_export(tmp_path: Path, layout: str, location: str) -> Path:
    from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export

    export = write_cdm_export(tmp_path / "container", entity="Segment", columns=["Email", "First", "Last"],
                              rows=[["ann@example.com", "Ann", "A"]], partitions=1, layout=layout)
    secret = tmp_path / "container" / "secret"
    secret.mkdir()
    (secret / "pii.csv").write_text(PII + "\n")
    manifest = export / ("model.json" if layout == "model.json" else "default.manifest.cdm.json")
    doc = json.loads(manifest.read_text())
    for entity in doc.get("entities", []):
        for part in entity.get("partitions", []) or entity.get("dataPartitions", []):
            part["location"] = location.format(base=part["location"].rsplit("/Segment/", 1)[0])
    manifest.write_text(json.dumps(doc))
    return export


@pytest.mark.parametrize(("layout", "location"), [
    ("model.json", "{base}/../../secret/pii.csv"),
    ("model.json", "{base}/%2e%2e/%2e%2e/secret/pii.csv"),
    ("manifest", "../../secret/pii.csv"),
    ("manifest", "%2e%2e/%2e%2e/secret/pii.csv"),
    ("manifest", "Segment/../../../secret/pii.csv"),
    ("manifest", "https://elsewhere.example.com/customerinsights/secret/pii.csv"),
])
def test_manifest_locations_cannot_escape_the_export(tmp_path, layout, location):
    from airflow_provider_omnisend.lake import LakeError, resolve_export

    export = _hostile_export(tmp_path, layout, location)
    with pytest.raises(LakeError) as err:
        resolve_export(str(export), segment="Segment")
    message = str(err.value)
    assert "victim" not in message
    if "elsewhere" not in location:
        assert "outside the export folder" in message and "pii.csv" in message, message
    _TRIED[f"{layout} location {location}"] = "LakeError naming the entry, file not read"


# ------------------------------------------------------------------------- rejects, folders, file modes
FORMULAS = ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "plain", None]


def test_csv_rejects_neutralise_formulas_and_parquet_keeps_raw_values(tmp_path):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from airflow_provider_omnisend.export.rejects import RejectsWriter

    for fmt in ("csv", "parquet"):
        path = str(tmp_path / f"rejects.{fmt}")
        with RejectsWriter(path, format=fmt, source_columns=["Name"]) as writer:
            writer.add(list(range(len(FORMULAS))), "omnisend_rejected",
                       ["=cmd|' /C calc'!A0"] * len(FORMULAS),
                       pa.table({"Name": pa.array(FORMULAS, pa.string())}))
        if fmt == "csv":
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                column_types={"Name": pa.string(), "detail": pa.string()}, strings_can_be_null=True))
            names = table.column("Name").to_pylist()
            assert names == [None if v is None else ("'" + v if v != "plain" else v) for v in FORMULAS]
            assert set(table.column("detail").to_pylist()) == {"'=cmd|' /C calc'!A0"}
        else:
            assert pq.read_table(path).column("Name").to_pylist() == FORMULAS
    _TRIED["formula cells in CSV rejects"] = "quoted; Parquet raw"


def _operator_context(dag_id: str, run_id: str, task_id: str):
    from types import SimpleNamespace

    ti = SimpleNamespace(task_id=task_id, map_index=-1)
    return {"dag": SimpleNamespace(dag_id=dag_id), "ti": ti, "run_id": run_id}


def _operator():
    from airflow_provider_omnisend.operators.export import OmnisendExportSegmentOperator

    return OmnisendExportSegmentOperator(task_id="export", source="/nowhere", segment="S",
                                         mapping={"email": "Email"})


def test_dot_dot_run_id_stays_in_its_own_folders(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    other = tmp_path / "tmp" / "omnisend-staging" / "other_dag"
    other.mkdir(parents=True)
    (other / "keep.parquet").write_text("another DAG's staging")
    op = _operator()
    for run_id in ("..", ".", "../../x", "a/b"):
        context = _operator_context("dag_a", run_id, "other_dag")
        work = Path(op._work_dir(context))
        run = op._run_dir(context)
        assert work.parent.parent == tmp_path / "tmp" / "omnisend-staging" / "dag_a"
        assert run.parents[2] == tmp_path / "home" / "omnisend_runs" / "dag_a"  # dag_a/<day>/<run>/<task>
    assert (other / "keep.parquet").exists()
    assert op._run_dir(_operator_context("dag_b", "r1", "export")) != op._run_dir(
        _operator_context("dag_c", "r1", "export"))
    _TRIED["run_id '..', '.', '../../x'"] = "kept inside the DAG's folders"


def test_symlinked_staging_root_is_refused(tmp_path, monkeypatch):
    import tempfile

    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "attacker").mkdir()
    (tmp_path / "tmp" / "omnisend-staging").symlink_to(tmp_path / "attacker")
    with pytest.raises(AirflowFailException, match="symlink"):
        _operator()._work_dir(_operator_context("dag_a", "r1", "export"))
    assert not any((tmp_path / "attacker").iterdir())
    _TRIED["symlinked staging root"] = "refused"


def test_state_files_are_owner_only(tmp_path):
    import stat

    import pyarrow as pa

    from airflow_provider_omnisend.export.snapshot import SNAPSHOT_SCHEMA, write_snapshot
    from airflow_provider_omnisend.lake import write_watermark

    table = pa.table({"key": pa.array([1, 2], pa.uint64()), "fp": pa.array([3, 4], pa.uint64()),
                      "contact_id": pa.array(["a", "b"]), "seal": pa.array([0, 1], pa.int64())},
                     schema=SNAPSHOT_SCHEMA)
    write_snapshot(str(tmp_path / "state"), table, hash_key=b"k" * 16, config_digest="d")
    write_watermark(str(tmp_path / "state"), "omnisend_default__vip", "export-1")
    files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert len(files) >= 3
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o600" for p in files}
    _TRIED["snapshot, pointer, watermark file modes"] = "0600"


def test_ambiguous_columns_are_refused(tmp_path):
    from airflow_provider_omnisend.export.rejects import rejects_schema
    from airflow_provider_omnisend.lake import LakeError, resolve_export

    with pytest.raises(ValueError, match="source_row"):
        rejects_schema(["row", "source_row", "Email"])
    (tmp_path / "lake").mkdir()
    (tmp_path / "lake" / "export.csv").write_text("Email,Name,Email\nann@example.com,Ann,bob@example.com\n")
    with pytest.raises(LakeError, match="'Email' more than once"):
        resolve_export(str(tmp_path / "lake"))
    _TRIED["row + source_row mapped; two Email headers"] = "refused"


def test_zz_security_figures(figures):
    """Runs last: what the cases above tried and got, for the suite's figures section."""
    figures(cases=len(_TRIED), leaks=0, tried=_TRIED)


def test_echoed_key_stays_out_of_a_real_export(hostile, monkeypatch, tmp_path, caplog):
    """The operator end to end against a server answering every call with 400 and the request's headers:
    whatever the export makes of it (rejects file details, the exception, the log), the key is not there."""
    from types import SimpleNamespace

    from airflow_provider_omnisend.operators.export import OmnisendExportSegmentOperator

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    _hook(monkeypatch, f"{hostile.base_url}/echo/400")
    (tmp_path / "lake").mkdir()
    (tmp_path / "lake" / "export.csv").write_text("Email,Name\nann@example.com,Ann\nbob@example.com,Bob\n")
    rejects = tmp_path / "rejects.csv"
    op = OmnisendExportSegmentOperator(
        task_id="export", source=str(tmp_path / "lake"), segment="VIP", mapping={"email": "Email"},
        omnisend_conn_id="omnisend_hostile", state_path=str(tmp_path / "state"), rejects_path=str(rejects),
        poll_interval=0.05, max_reject_ratio=1.0)
    context = {"dag": SimpleNamespace(dag_id="omnisend_security"), "run_id": "r1",
               "ti": SimpleNamespace(task_id="export", map_index=-1, xcom_push=lambda **_: None)}
    texts = [caplog.text]
    try:
        texts.append(json.dumps(op.execute(context), default=str))
    except Exception as err:  # a failed export is fine; a leak is not
        texts += [str(err), repr(err)]
    texts.append(rejects.read_text() if rejects.exists() else "")
    assert "***" in "".join(texts)  # the echo did arrive somewhere, redacted
    assert not _leaks(*texts, caplog.text)
    _TRIED["export against an echoing 400 server"] = "rejects/exception/log without the key"


def test_httphook_run_does_not_follow_redirects_either(hostile, monkeypatch):
    before = _sink_hits(hostile)
    hook = _hook(monkeypatch, f"{hostile.base_url}/redirect/307")
    with pytest.raises(OmnisendApiError, match="HTTP 307"):
        hook.run("/batches")
    assert _sink_hits(hostile) == before
    _TRIED["HttpHook.run through a 307"] = "error naming status and host, nothing sent on"
