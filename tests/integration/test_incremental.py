"""Incremental refresh and segment mirror over three refreshes in a row, against the emulator."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from airflow_provider_omnisend.export import engine as engine_module
from airflow_provider_omnisend.export.progress import MemoryProgressStore
from airflow_provider_omnisend.testing.sample_data import synthetic_profiles
from tests.support import expected_contacts, export_client, run_export

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
TAG = "segment: VIP"
HAND_TAG = "vip: hand-made"
#: What a tag change may alter on a contact besides its tags.
IGNORED = {"tags", "updatedAt"}


def posted(emulator) -> int:
    return emulator.state()["requests"].get("POST /api/batches", 0)


def wait_tags_applied(emulator, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while emulator.state()["tag_operations_pending"] and time.monotonic() < deadline:
        time.sleep(0.05)


def refreshes() -> tuple[pa.Table, pa.Table]:
    """First 50k contacts; then 500 changed (new first name), 300 new, 200 removed."""
    first = synthetic_profiles(50_000, seed=5, invalid_fraction=0, duplicate_fraction=0)
    changed_idx = pa.array(range(1_000, 1_500))
    names = pc.replace_with_mask(first.column("FirstName").combine_chunks(),
                                 pa.array([1_000 <= i < 1_500 for i in range(50_000)]),
                                 pa.array(["Renamed"] * 500))
    second = first.set_column(first.schema.get_field_index("FirstName"), "FirstName", names)
    keep = pa.array([not (10_000 <= i < 10_200) for i in range(50_000)])  # 200 leave the segment
    second = second.filter(keep)
    new = synthetic_profiles(300, seed=6, start=50_000, invalid_fraction=0, duplicate_fraction=0)
    assert changed_idx is not None
    return first, pa.concat_tables([second, new])


def assert_state(emulator, table: pa.Table) -> None:
    expected = expected_contacts(table)
    stored = {c["email"]: c for c in emulator.contacts()}
    assert set(expected) <= set(stored)
    wrong = [e for e, values in expected.items() for f, v in values.items() if stored[e].get(f) != v]
    assert wrong == []


def test_three_refreshes_send_only_changes_and_mirror_removes_exactly_the_leavers(emulator, tmp_path):
    client = export_client(emulator)
    first, second = refreshes()
    state = tmp_path / "state"

    s1, _ = run_export(client, first.to_batches(), tmp_path=tmp_path, state_dir=state, run_name="r1")
    assert (s1.new, s1.changed, s1.unchanged, s1.removed, s1.sent) == (50_000, 0, 0, 0, 50_000)
    assert_state(emulator, first)
    # A tag made by hand (outside this product) on some leavers and some stayers: mirror must remove
    # the segment's tag only, and touch nothing else of a leaver.
    hand_tagged = [f"customer{i}@example.com" for i in (*range(10_000, 10_050), *range(20_000, 20_050))]
    client.add_tags([HAND_TAG], hand_tagged)
    wait_tags_applied(emulator)
    leavers = {f"customer{i}@example.com" for i in range(10_000, 10_200)}
    before_mirror = {c["email"]: c for c in emulator.contacts() if c["email"] in leavers}

    before = posted(emulator)
    s2, _ = run_export(client, second.to_batches(), tmp_path=tmp_path, state_dir=state, run_name="r2",
                       mode="mirror")
    assert (s2.new, s2.changed, s2.unchanged, s2.removed) == (300, 500, 49_300, 200)
    assert s2.sent == 800
    assert posted(emulator) - before == 800 // 100
    wait_tags_applied(emulator)
    assert_state(emulator, second)
    stored = {c["email"]: c for c in emulator.contacts()}
    untagged = {e for e, c in stored.items() if TAG not in c["tags"]}
    assert untagged == leavers
    assert s2.untagged == 200
    assert {e for e, c in stored.items() if HAND_TAG in c["tags"]} == set(hand_tagged)
    for email, was in before_mirror.items():  # fields, status and the other tags as they were
        now = stored[email]
        assert set(now["tags"]) == set(was["tags"]) - {TAG}, email
        assert {k: v for k, v in now.items() if k not in IGNORED} == {
            k: v for k, v in was.items() if k not in IGNORED}, email
    assert len(stored) == 50_300  # leavers lose the tag, nothing more: they are still contacts

    before = posted(emulator)
    s3, _ = run_export(client, second.to_batches(), tmp_path=tmp_path, state_dir=state, run_name="r3",
                       mode="mirror")
    assert (s3.new, s3.changed, s3.unchanged, s3.removed, s3.sent) == (0, 0, 50_100, 0, 0)
    assert posted(emulator) == before  # zero contact batches


def test_upsert_mode_leaves_leavers_alone_and_full_refresh_sends_all(emulator, tmp_path):
    client = export_client(emulator)
    table = synthetic_profiles(2_000, invalid_fraction=0, duplicate_fraction=0)
    run_export(client, table.to_batches(), tmp_path=tmp_path, run_name="r1")
    smaller = table.slice(0, 1_500)
    s2, _ = run_export(client, smaller.to_batches(), tmp_path=tmp_path, run_name="r2")
    assert (s2.removed, s2.untagged, s2.sent) == (500, 0, 0)
    assert all(TAG in c["tags"] for c in emulator.contacts())
    s3, _ = run_export(client, smaller.to_batches(), tmp_path=tmp_path, run_name="r3", full_refresh=True)
    assert s3.sent == 1_500


def test_mapping_change_counts_every_contact_as_changed(emulator, tmp_path):
    client = export_client(emulator)
    table = synthetic_profiles(1_000, invalid_fraction=0, duplicate_fraction=0)
    run_export(client, table.to_batches(), tmp_path=tmp_path, run_name="r1",
               mapping={"email": "EmailAddress", "firstName": "FirstName"})
    s2, _ = run_export(client, table.to_batches(), tmp_path=tmp_path, run_name="r2",
                       mapping={"email": "EmailAddress", "firstName": "FirstName", "city": "City"})
    assert (s2.changed, s2.unchanged, s2.sent) == (1_000, 0, 1_000)


def test_crash_between_pushes_and_snapshot_loses_nothing(emulator, tmp_path, monkeypatch):
    client = export_client(emulator)
    table = synthetic_profiles(5_000, invalid_fraction=0, duplicate_fraction=0)
    progress = MemoryProgressStore()  # stands in for Airflow's task state store across the retry

    def crash(state_dir, batches, **kwargs):
        # The new snapshot is streamed by write_snapshot_batches after every batch was confirmed (the
        # first run's empty snapshot, written before any push, goes through write_snapshot).
        raise RuntimeError("worker died before the snapshot was written")

    with monkeypatch.context() as patch:
        patch.setattr(engine_module, "write_snapshot_batches", crash)
        with pytest.raises(RuntimeError, match="worker died"):
            run_export(client, table.to_batches(), tmp_path=tmp_path, run_name="r1", progress=progress)
    first_posts = posted(emulator)
    assert first_posts >= 50 and emulator.state()["contacts"] == 5_000
    assert emulator.state()["contacts"] == 5_000

    retry, _ = run_export(client, table.to_batches(), tmp_path=tmp_path, run_name="r2", progress=progress)
    assert retry.resumed  # the journal of confirmed batches spared re-sending them
    assert posted(emulator) == first_posts
    assert_state(emulator, table)
    after, _ = run_export(client, table.to_batches(), tmp_path=tmp_path, run_name="r3")
    assert after.sent == 0 and after.unchanged == 5_000


def test_state_hashes_are_bound_to_a_secret_kept_outside_the_state_folder(emulator, tmp_path, caplog):
    """The state folder alone (its stored random key included) does not let anyone test e-mails against
    the snapshot; a changed secret (a rotated API key) makes one full send, never a wrong diff."""
    import orjson
    import pyarrow.parquet as pq

    from airflow_provider_omnisend.export.hashing import hash_strings, state_key

    client = export_client(emulator)
    table = synthetic_profiles(2_000, seed=9, invalid_fraction=0, duplicate_fraction=0)
    state = tmp_path / "state"

    def run(name: str, secret: bytes):
        return run_export(client, table.to_batches(), tmp_path=tmp_path, state_dir=state, run_name=name,
                          state_secret=secret)[0]

    assert run("a1", b"api-key-A").sent == 2_000
    pointer_text = (state / "CURRENT.json").read_text()
    assert "api-key-A" not in pointer_text and b"api-key-A".hex() not in pointer_text
    pointer = orjson.loads(pointer_text)
    stored = bytes.fromhex(pointer["hash_key"])
    keys = set(pq.read_table(state / pointer["snapshot"]).column("key").to_pylist())
    emails = pc.utf8_lower(pc.utf8_trim_whitespace(table.column("EmailAddress"))).combine_chunks()
    assert len(keys) == 2_000
    assert keys.isdisjoint(hash_strings(emails, key=stored).tolist())  # the folder's key alone: useless
    assert keys == set(hash_strings(emails, key=state_key(stored, b"api-key-A")).tolist())

    before = posted(emulator)
    again = run("a2", b"api-key-A")
    assert (again.sent, again.unchanged, posted(emulator) - before) == (0, 2_000, 0)

    with caplog.at_level("WARNING"):
        rotated = run("b1", b"api-key-B")
    assert (rotated.new, rotated.sent, rotated.removed) == (2_000, 2_000, 0)
    assert "hashed under another secret" in caplog.text
    assert run("b2", b"api-key-B").sent == 0
