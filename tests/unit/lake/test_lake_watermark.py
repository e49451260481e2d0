"""The watermark: last exported id per (connection, segment), written atomically."""

from __future__ import annotations

import pytest

from airflow_provider_omnisend.lake import LakeError, read_watermark, watermark_key, write_watermark


def test_read_before_any_write_is_none(tmp_path):
    assert read_watermark(tmp_path / "state", watermark_key("omnisend_default", "VIP")) is None


def test_write_then_read_and_replace(tmp_path):
    state = tmp_path / "state"
    key = watermark_key("omnisend_default", "VIP customers")
    write_watermark(state, key, "cdm:Customer:2026/01/14/0300")
    write_watermark(state, key, "cdm:Customer:2026/01/15/0300")
    assert read_watermark(state, key) == "cdm:Customer:2026/01/15/0300"
    assert [p.name for p in state.iterdir()] == [f"{key}.json"]  # no temp files left behind


def test_keys_are_filesystem_safe_and_distinct():
    a = watermark_key("omnisend_default", "VIP customers/EU")
    b = watermark_key("omnisend_default", "vip_customers-eu")
    assert a != b
    for key in (a, b):
        assert all(c.isalnum() or c in "._-" for c in key)
    assert a == watermark_key("omnisend_default", "VIP customers/EU")


def test_unsafe_key_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="watermark_key"):
        write_watermark(tmp_path, "../escape", "x")


def test_damaged_watermark_explains_how_to_recover(tmp_path):
    key = watermark_key("c", "s")
    (tmp_path / f"{key}.json").write_text("{not json")
    with pytest.raises(LakeError, match="Delete it"):
        read_watermark(tmp_path, key)
