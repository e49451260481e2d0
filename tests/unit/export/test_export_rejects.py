"""RejectsWriter: file contents in both formats, permissions, empty runs, later additions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from airflow_provider_omnisend.export.rejects import RejectsWriter, make_rejects_table, rejects_schema


def read(path: Path, fmt: str) -> pa.Table:
    if fmt == "parquet":
        return pq.read_table(path)
    # the writer leaves nulls unquoted-empty and quotes "" so both survive the round trip
    options = pa_csv.ConvertOptions(
        column_types=rejects_schema(["E", "F"]), strings_can_be_null=True, quoted_strings_can_be_null=False
    )
    return pa_csv.read_csv(path, convert_options=options)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_contents_and_permissions(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "deep" / "folder" / f"rejects.{fmt}"
    writer = RejectsWriter(str(path), format=fmt, source_columns=["E", "F"], buffer_rows=2)
    writer.write(
        make_rejects_table(
            [3, 7],
            ["invalid_email", "too_long"],
            ["email is bad", "firstName too long"],
            pa.table({"E": ["x", "y@example.com"], "F": ['Zoë, "the" one\nline 2', None]}),
            ["E", "F"],
            field=["email", "firstName"],
        )
    )
    writer.write(make_rejects_table([7], "too_long", ["lastName too long"], None, ["E", "F"],
                                    kind="field_dropped", field="lastName"))
    writer.add([12], "omnisend_rejected", ["Omnisend answered 400: invalid phone"])
    assert writer.count == 4
    assert writer.close() == 4
    assert writer.close() == 4  # idempotent
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    table = read(path, fmt)
    assert table.column_names == ["row", "kind", "reason", "field", "detail", "E", "F"]
    assert table.to_pylist() == [
        {
            "row": 3,
            "kind": "row_rejected",
            "reason": "invalid_email",
            "field": "email",
            "detail": "email is bad",
            "E": "x",
            "F": 'Zoë, "the" one\nline 2',
        },
        {"row": 7, "kind": "row_rejected", "reason": "too_long", "field": "firstName",
         "detail": "firstName too long", "E": "y@example.com", "F": None},
        {"row": 7, "kind": "field_dropped", "reason": "too_long", "field": "lastName",
         "detail": "lastName too long", "E": None, "F": None},
        {
            "row": 12,
            "kind": "row_rejected",
            "reason": "omnisend_rejected",
            "field": None,
            "detail": "Omnisend answered 400: invalid phone",
            "E": None,
            "F": None,
        },
    ]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_empty_run_still_writes_a_valid_file(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"rejects.{fmt}"
    with RejectsWriter(str(path), format=fmt, source_columns=["E", "F"]) as writer:
        pass
    assert writer.count == 0
    table = read(path, fmt)
    assert table.num_rows == 0
    assert table.column_names == ["row", "kind", "reason", "field", "detail", "E", "F"]


def test_existing_file_is_tightened_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "rejects.parquet"
    path.write_text("old")
    path.chmod(0o644)
    RejectsWriter(str(path), source_columns=["E"]).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert pq.read_table(path).num_rows == 0


def test_source_columns_named_like_base_columns_get_a_prefix() -> None:
    schema = rejects_schema(["row", "E"])
    assert schema.names == ["row", "kind", "reason", "field", "detail", "source_row", "E"]


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="use one of parquet, csv"):
        RejectsWriter(str(tmp_path / "r.xlsx"), format="xlsx", source_columns=["E"])
    writer = RejectsWriter(str(tmp_path / "r.parquet"), source_columns=["E"])
    with pytest.raises(ValueError, match="does not match"):
        writer.write(make_rejects_table([1], "x", ["y"], None, ["F"]))
    with pytest.raises(ValueError, match="one per rejected row"):
        writer.add([1, 2], "x", ["only one"])
    writer.close()
    with pytest.raises(ValueError, match="already closed"):
        writer.add([1], "x", ["y"])


def test_memory_filesystem_url() -> None:
    import fsspec

    url = "memory://rejects-test/out/rejects.parquet"
    with RejectsWriter(url, source_columns=["E"]) as writer:
        writer.add([0], "invalid_email", ["bad"], pa.table({"E": ["nope"]}))
    with fsspec.open(url, "rb") as handle:
        assert pq.read_table(handle).column("E").to_pylist() == ["nope"]
