"""Plain Parquet and CSV sources: single files, folders, hive partitions; detection and errors."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from airflow_provider_omnisend.lake import (
    ColumnNotFound,
    CsvOptions,
    ExportNotReady,
    LakeError,
    LakePathNotFound,
    MissingExtra,
    PartitionUnreadable,
    UnsupportedFormat,
    count_rows,
    iter_batches,
    resolve_export,
)


def _contacts(n: int, start: int = 0) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table({
        "email": pa.array([f"user{i}@example.com" for i in ids]),
        "phone": pa.array([48_600_000_000.0 + i for i in ids]),  # a phone number stored as a double
        "score": pa.array([i + 0.5 for i in ids]),
        "customer_id": pa.array(ids, pa.int64()),
    })


def test_parquet_file_streams_projected_columns_as_strings(tmp_path, collect):
    path = tmp_path / "contacts.parquet"
    pq.write_table(_contacts(10), path, row_group_size=4)
    export = resolve_export(str(path))
    assert export.format == "parquet"
    assert export.columns == ("email", "phone", "score", "customer_id")
    assert export.export_id.startswith("parquet:")
    assert count_rows(export) == 10

    batches = list(iter_batches(export, columns=["customer_id", "phone", "score"], batch_size=3))
    assert [b.num_rows for b in batches] == [3, 3, 3, 1]
    assert all(b.schema == pa.schema([(c, pa.string()) for c in ("customer_id", "phone", "score")])
               for b in batches)
    data = collect(batches)
    assert data["customer_id"][:2] == ["0", "1"]
    assert data["phone"][:2] == ["48600000000", "48600000001"]  # not "4.86e+10"
    assert data["score"][:2] == ["0.5", "1.5"]


def test_email_stored_as_int_becomes_text(tmp_path, collect):
    pq.write_table(pa.table({"Email": pa.array([1, None, 3], pa.int32())}), tmp_path / "x.parquet")
    export = resolve_export(str(tmp_path))
    assert collect(iter_batches(export, columns=["Email"])) == {"Email": ["1", None, "3"]}


def test_parquet_folder_ignores_side_files_and_fingerprints_its_files(tmp_path, collect):
    pq.write_table(_contacts(3), tmp_path / "part-0.parquet")
    pq.write_table(_contacts(2, start=3), tmp_path / "part-1.parquet")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".part-0.parquet.crc").write_text("x")
    first = resolve_export(str(tmp_path))
    assert [Path(f).name for f in first.files] == ["part-0.parquet", "part-1.parquet"]
    assert resolve_export(str(tmp_path)).export_id == first.export_id  # stable while unchanged
    assert collect(iter_batches(first, columns=["email"]))["email"][-1] == "user4@example.com"
    assert count_rows(first) == 5

    pq.write_table(_contacts(1, start=5), tmp_path / "part-2.parquet")
    assert resolve_export(str(tmp_path)).export_id != first.export_id


def test_hive_partition_keys_are_string_columns(tmp_path, collect):
    for country, zip_code, start in (("PL", "01234", 0), ("DE", "10115", 2)):
        folder = tmp_path / f"country={country}" / f"zip={zip_code}"
        folder.mkdir(parents=True)
        pq.write_table(_contacts(2, start=start), folder / "data.parquet")
    export = resolve_export(str(tmp_path))
    assert {"country", "zip"} <= set(export.columns)
    data = collect(iter_batches(export, columns=["email", "country", "zip"]))
    rows = sorted(zip(data["email"], data["country"], data["zip"], strict=True))
    assert rows[0] == ("user0@example.com", "PL", "01234")  # the leading zero survives
    assert rows[-1] == ("user3@example.com", "DE", "10115")


def test_parquet_column_not_found_lists_columns(tmp_path):
    pq.write_table(_contacts(1), tmp_path / "c.parquet")
    export = resolve_export(str(tmp_path))
    with pytest.raises(ColumnNotFound) as err:
        iter_batches(export, columns=["email", "first_name"])
    assert "'first_name'" in str(err.value) and "'customer_id'" in str(err.value)


def test_corrupt_parquet_file_is_named(tmp_path):
    pq.write_table(_contacts(2), tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(PartitionUnreadable) as err:
        export = resolve_export(str(tmp_path))
        list(iter_batches(export, columns=["email"]))
    assert "b.parquet" in str(err.value)


def test_csv_with_header_bom_semicolons_quotes_and_newlines(tmp_path, collect):
    text = (
        "\ufeffEmail;First Name;Note\r\n"
        'ann@example.com;Ann;"said ""hi""; twice"\r\n'
        'bob@example.com;;"two\nlines"\r\n'
    )
    (tmp_path / "contacts.csv").write_bytes(text.encode("utf-8"))
    export = resolve_export(str(tmp_path))
    assert export.format == "csv"
    assert export.columns == ("Email", "First Name", "Note")
    assert export.csv == CsvOptions(header=True, delimiter=";")
    assert count_rows(export) is None
    data = collect(iter_batches(export, columns=["Note", "First Name", "Email"]))
    assert data == {
        "Note": ['said "hi"; twice', "two\nlines"],
        "First Name": ["Ann", None],
        "Email": ["ann@example.com", "bob@example.com"],
    }


def test_csv_options_override_sniffing(tmp_path, collect):
    (tmp_path / "c.csv").write_text("Email|Name\na@example.com|A,B\n")
    export = resolve_export(str(tmp_path / "c.csv"), csv_options=CsvOptions(header=True, delimiter="|"))
    assert collect(iter_batches(export, columns=["Name"])) == {"Name": ["A,B"]}


def test_csv_file_missing_a_column_in_its_header_is_named(tmp_path):
    (tmp_path / "a.csv").write_text("Email,Name\na@example.com,A\n")
    (tmp_path / "b.csv").write_text("Mail,Name\nb@example.com,B\n")
    export = resolve_export(str(tmp_path))
    with pytest.raises(ColumnNotFound) as err:
        list(iter_batches(export, columns=["Email"]))
    assert "b.csv" in str(err.value) and "'Mail'" in str(err.value)


def test_other_encodings_are_decoded(tmp_path, collect):
    (tmp_path / "c.csv").write_bytes("Email,Name\nz@example.com,Zoë\n".encode("cp1252"))
    export = resolve_export(str(tmp_path), csv_options=CsvOptions(header=True, encoding="cp1252"))
    assert collect(iter_batches(export, columns=["Name"])) == {"Name": ["Zoë"]}


def test_mixed_folder_needs_an_explicit_format(tmp_path):
    pq.write_table(_contacts(1), tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text("email\nx@example.com\n")
    with pytest.raises(UnsupportedFormat, match="source_format='parquet' or 'csv'"):
        resolve_export(str(tmp_path))
    assert resolve_export(str(tmp_path), format="csv").format == "csv"


def test_empty_folder_is_not_ready(tmp_path):
    (tmp_path / "_SUCCESS").write_text("")
    with pytest.raises(ExportNotReady, match=r"no model\.json"):
        resolve_export(str(tmp_path))


def test_missing_path_and_unknown_format_are_explained(tmp_path):
    with pytest.raises(LakePathNotFound) as err:
        resolve_export(str(tmp_path / "nope"))
    assert "nope" in str(err.value) and "case-sensitive" in str(err.value)
    with pytest.raises(UnsupportedFormat, match="one of auto, cdm, parquet, csv, delta"):
        resolve_export(str(tmp_path), format="excel")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(UnsupportedFormat, match="source_format"):
        resolve_export(str(tmp_path / "x.xlsx"))


def test_uninstalled_filesystem_names_the_extra():
    with pytest.raises(MissingExtra) as err:
        resolve_export("s3://bucket/exports/")
    assert "pip install 'airflow-provider-omnisend[s3]'" in str(err.value)


def test_objectstoragepath_like_source_and_explicit_filesystem(tmp_path, collect):
    pq.write_table(_contacts(2), tmp_path / "a.parquet")
    fs = LocalFileSystem()
    path_like = SimpleNamespace(fs=fs, path=str(tmp_path), protocol="file")
    export = resolve_export(path_like)
    assert export.files == (os.path.join(str(tmp_path), "a.parquet"),)
    assert collect(iter_batches(export, columns=["email"], filesystem=fs))["email"] == [
        "user0@example.com", "user1@example.com"]


def test_unsupported_nested_column_type_is_explained(tmp_path):
    """A struct or a list of lists cannot be sent (a list of strings can: test_lake_lists.py)."""
    pq.write_table(pa.table({"tags": pa.array([{"a": "b"}]), "deep": pa.array([[["a"]]])}),
                   tmp_path / "n.parquet")
    export = resolve_export(str(tmp_path))
    with pytest.raises(LakeError, match=r"'tags'.*cannot be read as text"):
        list(iter_batches(export, columns=["tags"]))
    with pytest.raises(LakeError, match=r"'deep \(its items\)'.*list<.*cannot be read as text"):
        list(iter_batches(export, columns=["deep"]))
