"""prepare_export: the streaming phase 1 end to end (staging, rejects, counts, determinism)."""

from __future__ import annotations

import os
import stat
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_omnisend.export.hashing import hash_strings
from airflow_provider_omnisend.export.mapping import MappingError, MappingSpec
from airflow_provider_omnisend.export.prepare import STAGING_SCHEMA, PrepareResult, prepare_export
from airflow_provider_omnisend.export.rejects import RejectsWriter

KEY = bytes(range(16))


def prepare(
    tmp_path: Path, batches: list[pa.RecordBatch], spec: MappingSpec, name: str = "run", **options: object
) -> tuple[PrepareResult, pa.Table, pa.Table]:
    rejects = RejectsWriter(str(tmp_path / name / "rejects.parquet"), source_columns=spec.source_columns)
    result = prepare_export(
        batches, spec, staging_dir=str(tmp_path / name), rejects=rejects, hash_key=KEY, **options
    )
    rejects.close()
    return result, pq.read_table(result.staging_path), pq.read_table(tmp_path / name / "rejects.parquet")


SPEC = MappingSpec.build({"email": "Email", "firstName": "First"}, segment="VIP")


def test_counts_staging_and_rejects(tmp_path: Path) -> None:
    batches = [
        pa.record_batch(
            {"Email": ["Ann@Example.com", "bad", "bob@example.com"], "First": ["Ann", "X", "Bob"]}
        ),
        pa.record_batch({"Email": [" ann@example.COM ", None], "First": ["Ann 2", "Y"]}),
        pa.record_batch({"Email": pa.array([], pa.string()), "First": pa.array([], pa.string())}),
        pa.record_batch({"Email": ["carl@example.com", "BOB@example.com"], "First": ["Carl", "Bob 2"]}),
    ]
    result, staging, rejects = prepare(tmp_path, batches, SPEC)
    assert result.rows_read == 7
    assert result.rows_read == result.valid + result.rejected
    assert (result.valid, result.rejected, result.duplicates) == (3, 4, 2)
    assert result.reasons == {"duplicate": 2, "invalid_email": 1, "missing_email": 1}
    assert staging.schema.equals(STAGING_SCHEMA)
    assert staging.column("row").to_pylist() == [0, 2, 5]
    emails = [orjson.loads(item)["identifiers"][0]["id"] for item in staging.column("item").to_pylist()]
    assert emails == ["ann@example.com", "bob@example.com", "carl@example.com"]
    assert staging.column("key").to_numpy().tolist() == hash_strings(pa.array(emails), key=KEY).tolist()
    assert sorted(rejects.column("row").to_pylist()) == [1, 3, 4, 6]
    duplicate_details = {r["row"]: r["detail"] for r in rejects.to_pylist() if r["reason"] == "duplicate"}
    # the first occurrence in export order wins, across batch boundaries, whatever the case or spaces
    assert duplicate_details[3].startswith("same e-mail as row 0,")
    assert duplicate_details[6].startswith("same e-mail as row 2,")
    assert "example" not in " ".join(duplicate_details.values())
    raw = {r["row"]: r["Email"] for r in rejects.to_pylist()}
    assert raw[3] == " ann@example.COM "  # values exactly as read
    assert stat.S_IMODE(os.stat(result.staging_path).st_mode) == 0o600


def test_first_valid_occurrence_wins(tmp_path: Path) -> None:
    spec = MappingSpec.build({"email": "Email", "phone": "Phone"}, on_invalid_field="reject_row")
    batch = pa.record_batch(
        {"Email": ["a@example.com", "A@example.com"], "Phone": ["nonsense", "+14155550123"]}
    )
    result, staging, rejects = prepare(tmp_path, [batch], spec)
    assert staging.column("row").to_pylist() == [1]
    assert rejects.column("reason").to_pylist() == ["invalid_phone"]
    assert result.duplicates == 0


def test_all_rows_rejected_gives_empty_staging(tmp_path: Path) -> None:
    result, staging, rejects = prepare(
        tmp_path, [pa.record_batch({"Email": ["x", "y"], "First": ["a", "b"]})], SPEC
    )
    assert (result.rows_read, result.valid, result.rejected) == (2, 0, 2)
    assert staging.num_rows == 0 and staging.schema.equals(STAGING_SCHEMA)
    assert rejects.num_rows == 2


def test_missing_column_fails_before_anything_is_staged(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="'First'"):
        prepare(tmp_path, [pa.record_batch({"Email": ["a@example.com"]})], SPEC)


def test_rejects_writer_must_match_the_mapping(tmp_path: Path) -> None:
    rejects = RejectsWriter(str(tmp_path / "r.parquet"), source_columns=["Email"])
    with pytest.raises(ValueError, match=r"source_columns=spec\.source_columns"):
        prepare_export([], SPEC, staging_dir=str(tmp_path), rejects=rejects, hash_key=KEY)
    rejects.close()


def synthetic(rows: int, seed: int, batch_rows: int = 7_000) -> list[pa.RecordBatch]:
    rng = np.random.default_rng(seed)
    ids = np.where(rng.random(rows) < 0.03, rng.integers(0, rows, rows), np.arange(rows))
    emails = np.array([f"User{i}@Example.com" for i in ids.tolist()], dtype=object)
    emails[rng.random(rows) < 0.01] = "not-an-email"
    names = np.array(["Ann", "Zoë", "  Bob ", "", "李", 'O\'Neil "Jr"'], dtype=object)[
        rng.integers(0, 6, rows)
    ]
    table = pa.table({"Email": emails, "First": names})
    return table.to_batches(max_chunksize=batch_rows)


def test_streaming_100k_rows_bounded_memory_and_deterministic(tmp_path: Path) -> None:
    batches = synthetic(100_000, seed=1)
    alive: list[weakref.ref] = []
    most_alive = 0

    def stream() -> Iterator[pa.RecordBatch]:
        """Hands out copies one by one and records how many handed-out batches are still referenced."""
        nonlocal most_alive
        for batch in batches:
            copy = pa.RecordBatch.from_arrays(
                [pa.concat_arrays([c]) for c in batch.columns], names=batch.schema.names
            )
            alive.append(weakref.ref(copy))
            most_alive = max(most_alive, sum(ref() is not None for ref in alive))
            yield copy
            del copy

    first, staging, rejects = prepare(tmp_path, stream(), SPEC, name="a")
    assert len(alive) == len(batches) == 15
    assert most_alive <= 5  # a few slices in flight, never the whole export
    assert first.rows_read == 100_000 == first.valid + first.rejected
    assert first.rejected == rejects.num_rows and first.duplicates > 0
    assert sorted(staging.column("row").to_pylist() + rejects.column("row").to_pylist()) == list(
        range(100_000)
    )
    assert staging.column("row").to_pylist() == sorted(staging.column("row").to_pylist())
    assert len(set(staging.column("key").to_pylist())) == staging.num_rows
    # one worker or several: same bytes in the same order
    single, staging_single, rejects_single = prepare(tmp_path, batches, SPEC, name="b", workers=1)
    assert (single.valid, single.rejected, single.duplicates, single.reasons) == (
        first.valid,
        first.rejected,
        first.duplicates,
        first.reasons,
    )
    assert staging_single.equals(staging)
    assert rejects_single.equals(rejects)


def test_same_input_same_staging_and_mapping_change_changes_every_fingerprint(tmp_path: Path) -> None:
    batches = synthetic(3_000, seed=2)
    _, staging_a, _ = prepare(tmp_path, batches, SPEC, name="a")
    _, staging_b, _ = prepare(tmp_path, batches, SPEC, name="b")
    assert staging_a.equals(staging_b)
    other = MappingSpec.build(
        {"email": "Email", "firstName": "First"}, segment="VIP", send_welcome_message=False, tags=["extra"]
    )
    _, staging_c, _ = prepare(tmp_path, batches, other, name="c")
    assert staging_c.column("key").equals(staging_a.column("key"))
    fp_a, fp_c = staging_a.column("fp").to_numpy(), staging_c.column("fp").to_numpy()
    assert not np.any(fp_a == fp_c)
    # a mapping change that leaves the JSON identical still changes every fingerprint (by design)
    renamed = [b.rename_columns(["Mail", "First"]) for b in batches]
    spec_renamed = MappingSpec.build({"email": "Mail", "firstName": "First"}, segment="VIP")
    _, staging_d, _ = prepare(tmp_path, renamed, spec_renamed, name="d")
    assert staging_d.column("item").equals(staging_a.column("item"))
    assert not np.any(staging_d.column("fp").to_numpy() == fp_a)
