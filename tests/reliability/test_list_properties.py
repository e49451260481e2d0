"""list<string> columns end to end: a Parquet export with an array column goes through the operator into
the emulator (a real process on 127.0.0.1); every contact arrives, its list as a JSON array. Null and
empty lists are not sent, an over-limit list is left out with a field warning, a delimited text column
declared ``list`` is split; a list column the source did not declare fails the task clearly."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_omnisend.export.lists import MAX_ITEM_LENGTH, MAX_LIST_ITEMS
from airflow_provider_omnisend.lake import resolve_export
from airflow_provider_omnisend.operators.export import OmnisendExportSegmentOperator
from tests.reliability.test_reliability_bad_inputs import _context, accounted, rejects, run, stored

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROWS = [  # e-mail, interests (a Parquet large_list<string>), sizes (text, split on ";")
    ("ann@example.com", ["running", " yoga ", None, ""], "S;M"),
    ("bob@example.com", None, None),
    ("cid@example.com", [], " ; "),
    ("dee@example.com", ["x"] * (MAX_LIST_ITEMS + 1), "L"),
    ("eve@example.com", ["ok", "y" * (MAX_ITEM_LENGTH + 1)], "XL;XXL"),
    ("fay@example.com", ['quote " and \\ backslash', "émoji 🎉"], "M"),
]


def test_a_parquet_list_column_arrives_as_an_array(emulator, omnisend_conn, tmp_path: Path):
    lake = tmp_path / "lake"
    lake.mkdir()
    emails, interests, sizes = zip(*ROWS, strict=True)
    table = pa.table({"Email": list(emails), "Interests": pa.array(interests, pa.large_list(pa.string())),
                      "Sizes": list(sizes)})
    pq.write_table(table, lake / "part-0.parquet")
    result = run(omnisend_conn(), lake, tmp_path, mapping={"email": "Email"},
                 custom_properties={"interests": "Interests", "sizes": "Sizes"},
                 custom_property_types={"sizes": "list"})
    assert isinstance(result, dict), result
    assert (result["rows_read"], result["sent"], result["rejected"]) == (6, 6, 0)
    got = {email: contact.get("customProperties", {}) for email, contact in stored(emulator).items()}
    assert got == {
        "ann@example.com": {"interests": ["running", "yoga"], "sizes": ["S", "M"]},
        "bob@example.com": {},
        "cid@example.com": {},
        "dee@example.com": {"sizes": ["L"]},
        "eve@example.com": {"sizes": ["XL", "XXL"]},
        "fay@example.com": {"interests": ['quote " and \\ backslash', "émoji 🎉"], "sizes": ["M"]},
    }
    warnings = [r for r in rejects(tmp_path) if r["kind"] == "field_dropped"]
    assert [(r["row"], r["field"], r["reason"]) for r in warnings] == [
        (3, "customProperties.interests", "too_many_items"), (4, "customProperties.interests", "too_long")]
    assert orjson.loads(warnings[0]["Interests"]) == ["x"] * (MAX_LIST_ITEMS + 1)  # the list as read
    assert result["field_warning_reasons"] == {
        "customProperties.interests": {"too_long": 1, "too_many_items": 1}}
    accounted(result, emulator, tmp_path)


def test_a_list_column_the_source_did_not_declare_fails_clearly(emulator, omnisend_conn, tmp_path: Path):
    """A sensor output without column types (an older sensor, a CDM entity with Parquet partitions): the
    list column meets a text property at read time; the task fails naming the column and the fix, before
    anything is sent, instead of a traceback and retries."""
    pq.write_table(pa.table({"Email": ["ann@example.com"], "Interests": pa.array([["yoga"]])}),
                   tmp_path / "part-0.parquet")
    described = resolve_export(str(tmp_path)).to_dict()
    described.pop("column_types")
    op = OmnisendExportSegmentOperator(
        task_id="export", source=described, segment="VIP", omnisend_conn_id=omnisend_conn(),
        mapping={"email": "Email"}, custom_properties={"interests": "Interests"},
        state_path=str(tmp_path / "state"), rejects_path=str(tmp_path / "rejects.parquet"))
    with pytest.raises(AirflowFailException, match=r"column 'Interests' holds lists.*type 'list'"):
        op.execute(_context())
    assert stored(emulator) == {}
