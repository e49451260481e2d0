"""Delta tables: the export is one table version, pinned for reading."""

from __future__ import annotations

import sys

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from airflow_provider_omnisend.lake import (
    ExportNotReady,
    MissingExtra,
    count_rows,
    iter_batches,
    resolve_export,
)


def _write(path, emails, mode="append"):
    table = pa.table({"email": pa.array(emails), "visits": pa.array(range(len(emails)), pa.int64())})
    write_deltalake(str(path), table, mode=mode)


def test_delta_table_version_is_the_export_and_reads_are_pinned(tmp_path, collect):
    table_dir = tmp_path / "contacts"
    _write(table_dir, ["a@example.com", "b@example.com"])
    _write(table_dir, ["c@example.com"])

    export = resolve_export(str(table_dir))
    assert export.format == "delta"
    assert (export.export_id, export.delta_version, export.files) == ("delta:1", 1, ())
    assert export.columns == ("email", "visits")
    assert export.refresh_time and export.refresh_time.endswith("Z")
    assert count_rows(export) == 3

    _write(table_dir, ["z@example.com"], mode="overwrite")  # version 2 replaces everything
    assert resolve_export(str(table_dir)).export_id == "delta:2"

    data = collect(iter_batches(export, columns=["visits", "email"], batch_size=2))
    assert sorted(data["email"]) == ["a@example.com", "b@example.com", "c@example.com"]
    assert sorted(data["visits"]) == ["0", "0", "1"]  # int64 comes out as text


def test_empty_delta_log_is_not_ready(tmp_path):
    (tmp_path / "_delta_log").mkdir()
    with pytest.raises(ExportNotReady, match="no committed version"):
        resolve_export(str(tmp_path))


def test_missing_deltalake_names_the_extra(tmp_path, monkeypatch):
    _write(tmp_path / "t", ["a@example.com"])
    monkeypatch.setitem(sys.modules, "deltalake", None)  # what `import deltalake` sees when not installed
    with pytest.raises(MissingExtra) as err:
        resolve_export(str(tmp_path / "t"))
    assert "pip install 'airflow-provider-omnisend[delta]'" in str(err.value)
