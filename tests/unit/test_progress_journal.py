"""The journal of confirmed chunks survives a crash in the middle of writing a part."""

from __future__ import annotations

from airflow_provider_omnisend.export.progress import Journal


def test_torn_part_is_ignored_and_complete_parts_are_read(tmp_path):
    journal = Journal(str(tmp_path), "plan1")
    journal.append([0, 1], failed_pos=[5], reasons=["omnisend_rejected"], details=["bad"], transient=[False],
                   failed_chunk=[1])
    (tmp_path / "runs" / "plan1" / "part-999999-deadbeef.parquet").write_bytes(b"")  # a crash mid-write
    state = Journal(str(tmp_path), "plan1").load()
    assert state.confirmed_chunks == {0, 1}
    assert state.failures == {1: {5: ("omnisend_rejected", "bad", False)}}
    assert not [p for p in (tmp_path / "runs" / "plan1").iterdir() if p.name.endswith(".tmp")]
