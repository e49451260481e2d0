"""Mirror mode against the emulator process: who left loses the segment tag, by e-mail from the sealed
e-mails (⌈leavers / 250⌉ DELETE calls, no listing), or by listing the tag where that cannot be trusted;
a hand-made tag and every other field stay as they were; the state folder reveals no e-mail."""

from __future__ import annotations

import math
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_omnisend.testing.sample_data import synthetic_profiles
from tests.support import export_client, run_export

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
TAG = "segment: VIP"
HAND_TAG = "vip: hand-made"
SECRET = b"state-secret-A"
#: What a tag change may alter on a contact besides its tags.
IGNORED = {"tags", "updatedAt"}
MEMBERS = 3_000
#: Rows 1,000-1,519 leave the segment: 520 leavers, 3 DELETE calls of at most 250 e-mails.
LEAVING = range(1_000, 1_520)
DELETE_TAGS, LIST_CONTACTS = "DELETE /api/contacts/tags", "GET /api/contacts"


def email(i: int) -> str:
    return f"customer{i}@example.com"


def members(seed: int = 11) -> pa.Table:
    return synthetic_profiles(MEMBERS, seed=seed, invalid_fraction=0, duplicate_fraction=0)


def without(table: pa.Table, leaving: range) -> pa.Table:
    return table.filter(pa.array([i not in leaving for i in range(table.num_rows)]))


def requests(emulator) -> dict[str, int]:
    return dict(emulator.state()["requests"])


def calls_since(emulator, before: dict[str, int], route: str) -> int:
    return requests(emulator).get(route, 0) - before.get(route, 0)


def wait_tags_applied(emulator, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while emulator.state()["tag_operations_pending"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not emulator.state()["tag_operations_pending"]


def contacts(emulator) -> dict[str, dict]:
    return {c["email"]: c for c in emulator.contacts()}


def hand_tag(client, emulator) -> set[str]:
    """A tag made outside this product on some leavers and some stayers."""
    tagged = {email(i) for i in (*range(1_000, 1_060), *range(2_000, 2_060))}
    client.add_tags([HAND_TAG], sorted(tagged))
    wait_tags_applied(emulator)
    return tagged


def export(client, table: pa.Table, tmp_path: Path, name: str, *, secret: bytes | None = SECRET, **options):
    summary, _ = run_export(client, table.to_batches(), tmp_path=tmp_path, state_dir=tmp_path / "state",
                            run_name=name, state_secret=secret, **options)
    return summary


def assert_only_segment_tag_removed(emulator, before: dict[str, dict], leavers: set[str],
                                    hand_tagged: set[str]) -> None:
    """Exactly ``leavers`` lack the segment tag; their other tags, fields and status are as they were."""
    wait_tags_applied(emulator)
    now = contacts(emulator)
    assert {e for e, c in now.items() if TAG not in c.get("tags", [])} == leavers
    assert {e for e, c in now.items() if HAND_TAG in c.get("tags", [])} == hand_tagged
    for address in leavers:
        was, is_ = before[address], now[address]
        assert set(is_["tags"]) == set(was["tags"]) - {TAG}, address
        assert {k: v for k, v in is_.items() if k not in IGNORED} == {
            k: v for k, v in was.items() if k not in IGNORED}, address
    assert len(now) == len(before)  # untagged, still contacts


def test_leavers_are_untagged_by_email_in_ceil_leavers_over_250_calls(emulator, tmp_path, caplog):
    client = export_client(emulator)
    table = members()
    assert export(client, table, tmp_path, "r1").sent == MEMBERS
    hand_tagged = hand_tag(client, emulator)
    before_state, before = contacts(emulator), requests(emulator)
    leavers = {email(i) for i in LEAVING}

    with caplog.at_level("INFO"):
        s2 = export(client, without(table, LEAVING), tmp_path, "r2", mode="mirror")
    assert (s2.removed, s2.untagged, s2.mirror_via, s2.mirror_listed) == (520, 520, "sealed", 0)
    assert calls_since(emulator, before, DELETE_TAGS) == math.ceil(520 / 250) == 3
    assert calls_since(emulator, before, LIST_CONTACTS) == 0  # no listing of the tag
    assert_only_segment_tag_removed(emulator, before_state, leavers, hand_tagged)
    assert not any(e in caplog.text for e in leavers)  # e-mails are not logged

    # Nobody else left: no tag call at all.
    before = requests(emulator)
    s3 = export(client, without(table, LEAVING), tmp_path, "r3", mode="mirror")
    assert (s3.removed, s3.untagged, s3.mirror_via) == (0, 0, None)
    assert calls_since(emulator, before, DELETE_TAGS) == calls_since(emulator, before, LIST_CONTACTS) == 0


def test_a_snapshot_from_before_sealing_falls_back_to_the_listing_once(emulator, tmp_path, caplog):
    client = export_client(emulator)
    table = members()
    export(client, table, tmp_path, "r1")
    make_old_format(tmp_path / "state")
    hand_tagged = hand_tag(client, emulator)
    before_state, before = contacts(emulator), requests(emulator)
    with caplog.at_level("INFO"):
        s2 = export(client, without(table, LEAVING), tmp_path, "r2", mode="mirror")
    assert "the last snapshot was written before e-mails were sealed" in caplog.text
    assert (s2.untagged, s2.mirror_via, s2.mirror_listed) == (520, "listing", MEMBERS)
    assert calls_since(emulator, before, LIST_CONTACTS) == math.ceil(MEMBERS / 250)
    assert calls_since(emulator, before, DELETE_TAGS) == 3
    assert_only_segment_tag_removed(emulator, before_state, {email(i) for i in LEAVING}, hand_tagged)

    # The snapshot r2 wrote carries the sealed e-mails: the next leavers cost no listing.
    before = requests(emulator)
    later = range(1_000, 1_620)
    s3 = export(client, without(table, later), tmp_path, "r3", mode="mirror")
    assert (s3.removed, s3.untagged, s3.mirror_via) == (100, 100, "sealed")
    assert calls_since(emulator, before, LIST_CONTACTS) == 0
    assert calls_since(emulator, before, DELETE_TAGS) == 1
    wait_tags_applied(emulator)
    assert {e for e, c in contacts(emulator).items() if TAG not in c["tags"]} == {email(i) for i in later}


def test_a_rotated_secret_lists_the_tag_with_a_warning_and_untags_nobody_wrong(emulator, tmp_path, caplog):
    client = export_client(emulator)
    table = members()
    export(client, table, tmp_path, "r1", secret=b"state-secret-A")
    hand_tagged = hand_tag(client, emulator)
    before_state, before = contacts(emulator), requests(emulator)
    with caplog.at_level("WARNING"):
        s2 = export(client, without(table, LEAVING), tmp_path, "r2", secret=b"state-secret-B", mode="mirror")
    assert "hashed under another secret" in caplog.text and "listing every holder" in caplog.text
    assert (s2.untagged, s2.mirror_via, s2.mirror_listed) == (520, "listing", MEMBERS)
    assert calls_since(emulator, before, LIST_CONTACTS) == math.ceil(MEMBERS / 250)
    assert_only_segment_tag_removed(emulator, before_state, {email(i) for i in LEAVING}, hand_tagged)


def test_full_refresh_does_not_compare_the_snapshot_so_it_lists_the_tag(emulator, tmp_path, caplog):
    client = export_client(emulator)
    table = members()
    export(client, table, tmp_path, "r1")
    with caplog.at_level("WARNING"):
        s2 = export(client, without(table, LEAVING), tmp_path, "r2", mode="mirror", full_refresh=True)
    assert "not compared (full_refresh" in caplog.text
    assert (s2.sent, s2.untagged, s2.mirror_via) == (MEMBERS - 520, 520, "listing")
    wait_tags_applied(emulator)
    assert {e for e, c in contacts(emulator).items() if TAG not in c["tags"]} == {email(i) for i in LEAVING}


def test_sealed_emails_that_do_not_open_fall_back_with_a_warning(emulator, tmp_path, caplog):
    """Same secret, but the sealed file was altered (one byte of ciphertext): GCM refuses it, the leavers
    are found by listing, and nobody is untagged by a wrong e-mail."""
    client = export_client(emulator)
    table = members()
    export(client, table, tmp_path, "r1")
    pointer = orjson.loads((tmp_path / "state" / "CURRENT.json").read_bytes())
    sealed_path = tmp_path / "state" / pointer["emails"]["file"]
    sealed = pq.read_table(sealed_path)
    altered = [bytes([block[0] ^ 1]) + block[1:] for block in sealed.column("sealed").to_pylist()]
    pq.write_table(sealed.set_column(3, "sealed", pa.array(altered, pa.binary())), sealed_path)
    before_state = contacts(emulator)
    with caplog.at_level("WARNING"):
        s2 = export(client, without(table, LEAVING), tmp_path, "r2", mode="mirror")
    assert "the sealed e-mails cannot be opened" in caplog.text
    assert (s2.untagged, s2.mirror_via) == (520, "listing")
    assert_only_segment_tag_removed(emulator, before_state, {email(i) for i in LEAVING}, set())


def test_scope_tag_also_untags_holders_tagged_outside_this_product(emulator, tmp_path):
    client = export_client(emulator)
    table = members()
    export(client, table, tmp_path, "r1")
    outsiders = [f"outsider{i}@example.com" for i in range(30)]
    client.create_batch([{"identifiers": [{"type": "email", "id": e}], "tags": [TAG]} for e in outsiders])
    deadline = time.monotonic() + 20
    while len(contacts(emulator)) < MEMBERS + 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    s2 = export(client, without(table, LEAVING), tmp_path, "r2", mode="mirror")  # default: snapshot
    wait_tags_applied(emulator)
    assert s2.untagged == 520 and all(TAG in contacts(emulator)[e]["tags"] for e in outsiders)
    before = requests(emulator)
    s3 = export(client, without(table, LEAVING), tmp_path, "r3", mode="mirror", mirror_scope="tag")
    wait_tags_applied(emulator)
    assert (s3.untagged, s3.mirror_via, s3.mirror_listed) == (30, "listing", MEMBERS - 520 + 30)
    assert calls_since(emulator, before, LIST_CONTACTS) == math.ceil((MEMBERS - 520 + 30) / 250)
    now = contacts(emulator)
    assert {e for e, c in now.items() if TAG not in c.get("tags", [])} == (
        {email(i) for i in LEAVING} | set(outsiders))


def test_the_state_folder_reveals_no_email(emulator, tmp_path):
    client = export_client(emulator)
    table = members()
    export(client, table, tmp_path, "r1")
    export(client, without(table, LEAVING), tmp_path, "r2", mode="mirror")
    state = tmp_path / "state"
    files = [p for p in state.rglob("*") if p.is_file()]
    assert any(p.name.startswith("emails-") for p in files)  # the e-mails are there, sealed
    addresses = [email(i).encode() for i in range(MEMBERS)]
    for path in files:
        raw = path.read_bytes()
        assert b"example.com" not in raw and b"customer" not in raw and SECRET not in raw, path
        if path.suffix == ".parquet":  # compressed columns: look at the decoded values too
            for column in pq.read_table(path).columns:
                if pa.types.is_string(column.type) or pa.types.is_binary(column.type):
                    values = [v if isinstance(v, bytes) else str(v).encode() for v in column.to_pylist()]
                    assert not any(b"example.com" in v for v in values), path
    assert not any(a in (state / "CURRENT.json").read_bytes() for a in addresses)


def make_old_format(state: Path) -> None:
    """Turn the state into what a provider version before sealing wrote: no seal column, no e-mails."""
    pointer = orjson.loads((state / "CURRENT.json").read_bytes())
    (state / pointer.pop("emails")["file"]).unlink()
    path = state / pointer["snapshot"]
    pq.write_table(pq.read_table(path).drop_columns(["seal"]), path)
    (state / "CURRENT.json").write_bytes(orjson.dumps(pointer))


def test_mirror_scope_is_checked_and_templated():
    from airflow_provider_omnisend.export.engine import ExportOptions
    from airflow_provider_omnisend.operators.export import OmnisendExportSegmentOperator

    assert "mirror_scope" in OmnisendExportSegmentOperator.template_fields
    assert ExportOptions(segment="VIP", segment_tag=TAG, mode="mirror").mirror_scope == "snapshot"
    with pytest.raises(ValueError, match="mirror_scope must be 'snapshot' or 'tag', got 'all'"):
        ExportOptions(segment="VIP", segment_tag=TAG, mode="mirror", mirror_scope="all")
