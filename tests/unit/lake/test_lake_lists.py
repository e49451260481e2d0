"""List columns (Parquet and Delta arrays) are read as list<string> and declared ``list``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from airflow_provider_omnisend.lake import iter_batches, resolve_export
from airflow_provider_omnisend.lake.batches import as_strings, rebatch
from airflow_provider_omnisend.lake.errors import LakeError
from airflow_provider_omnisend.lake.export import arrow_property_type

ITEMS = [["vip", None, " b "], None, [], ["x"]]


def test_every_list_layout_is_a_list_type() -> None:
    layouts = [pa.list_(pa.string()), pa.large_list(pa.large_string()), pa.list_(pa.string(), 2),
               pa.list_view(pa.string()), pa.large_list_view(pa.string())]
    assert [arrow_property_type(t) for t in layouts] == ["list"] * 5


@pytest.mark.parametrize("typ", [pa.list_(pa.string()), pa.large_list(pa.large_string()),
                                 pa.list_(pa.dictionary(pa.int8(), pa.string())), pa.list_view(pa.string())])
def test_list_columns_become_lists_of_strings(typ) -> None:
    """Items as text (nulls and empties kept: the export cleans them), null lists null, slices honoured."""
    batch = pa.record_batch({"T": pa.array(ITEMS, typ), "E": ["a", "b", "c", "d"]})
    out = as_strings(batch.slice(1), ["E", "T"], where="w")
    assert out.schema.field("T").type == pa.list_(pa.string())
    assert out.column("T").to_pylist() == ITEMS[1:]
    assert as_strings(batch, ["T"], where="w").column("T").to_pylist() == ITEMS


def test_number_items_read_like_number_columns() -> None:
    batch = pa.record_batch({"N": pa.array([[1.0, 2.5, None], None], pa.list_(pa.float64())),
                             "I": pa.array([[48123456789], [0]], pa.large_list(pa.int64()))})
    out = as_strings(batch, ["N", "I"], where="w")
    assert out.column("N").to_pylist() == [["1", "2.5", None], None]
    assert out.column("I").to_pylist() == [["48123456789"], ["0"]]


def test_parquet_list_column_is_read_and_declared(tmp_path: Path, collect) -> None:
    pq.write_table(pa.table({"E": ["a@example.com", "b@example.com", "c@example.com", "d@example.com"],
                             "Tags": pa.array(ITEMS, pa.large_list(pa.string()))}), tmp_path / "p.parquet")
    export = resolve_export(str(tmp_path), format="parquet")
    assert export.column_types == (("Tags", "list"),)
    table = collect(iter_batches(export, columns=["E", "Tags"], batch_size=3))
    assert table["Tags"] == ITEMS


def test_delta_list_column_is_read_and_declared(tmp_path: Path, collect) -> None:
    """Delta declares its column types like Parquet (numbers, booleans and dates too)."""
    emails = ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]
    table = pa.table({"E": emails, "Tags": pa.array(ITEMS), "LTV": [1.5, 2.0, None, 4.25],
                      "VIP": [True, False, None, True]})
    write_deltalake(str(tmp_path), table)
    export = resolve_export(str(tmp_path), format="delta")
    assert dict(export.column_types) == {"Tags": "list", "LTV": "number", "VIP": "boolean"}
    table = collect(iter_batches(export, columns=["E", "Tags"]))
    assert sorted(table["Tags"], key=str) == sorted(ITEMS, key=str)


def test_a_column_that_is_a_list_in_one_file_and_text_in_another_is_named() -> None:
    lists = pa.record_batch({"T": pa.array([["a"]], pa.list_(pa.string()))})
    text = pa.record_batch({"T": pa.array(["a"])})
    with pytest.raises(LakeError, match=r"\['T'\] are lists in some files of the export and text in others"):
        list(rebatch([lists, text], 10))
