"""Property-based tests (hypothesis) of the export core: mapping, validation, de-duplication, chunking.

Properties:

1. Accounting: every input row, valid or not, ends exactly once either in one batch body (as the item
   the documented mapping gives) or in the rejects file with the reason the documented check order
   gives; a duplicate is a reject with reason ``duplicate`` whose detail names the winning row.
2. Caps: no batch body exceeds the item cap (100 for 2026-03-15, 1000 for v3) or the byte cap
   (``MAX_BATCH_BODY_BYTES``), chunks keep input order and are greedy (only the last one, or one that
   the next item would push over the byte cap, holds fewer than the cap).
3. De-duplication is deterministic: the same rows give the same survivors and the same staging and
   rejects whatever the record-batch split, the column types and the number of workers, and for
   e-mails differing only in case or surrounding white space the first valid occurrence wins.

The engine runs for real (prepare, diff, chunking, batch bodies, confirmation, snapshot) against
``InstantApi(keep_bodies=True)``, an in-process stand-in that keeps the bodies. What must happen is
computed by an independent oracle (``_property_support``). Runs are derandomised and keep no example database.
"""

from __future__ import annotations

import itertools
import tempfile
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from airflow_provider_omnisend.api.versions import MAX_BATCH_BODY_BYTES, get_version
from airflow_provider_omnisend.export import engine as engine_module
from airflow_provider_omnisend.export.dedupe import Deduplicator
from airflow_provider_omnisend.export.engine import ExportEngine, ExportOptions, ExportSummary
from airflow_provider_omnisend.export.payload import (
    BODY_OVERHEAD_BYTES,
    batch_body,
    oversized_items,
    plan_chunks,
)
from airflow_provider_omnisend.export.prepare import PrepareResult, prepare_export
from airflow_provider_omnisend.export.progress import MemoryProgressStore
from airflow_provider_omnisend.export.rejects import RejectsWriter
from airflow_provider_omnisend.export.text import ascii_lower
from airflow_provider_omnisend.testing.instant_api import InstantApi
from tests.unit.export._property_support import (
    BIO,
    BODY_PREFIX,
    BODY_SUFFIX,
    COLUMN_TYPES,
    COLUMNS,
    EMAIL,
    FIRST,
    LAST,
    NOTES,
    PHONE,
    SEGMENT,
    SPEC,
    Address,
    Expected,
    Rows,
    decorated,
    duplicate_winner,
    expected_outcomes,
    input_rows,
    splits,
    valid_addresses,
)

BASE = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # no explain phase: on a failure it reruns the (engine-heavy) example many times for little gain
    phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
)
#: A failing engine-level example can take hypothesis up to five minutes to shrink (each run writes
#: Parquet files); let it finish and report the minimal example instead of the 300 s suite timeout.
SHRINK_TIMEOUT = pytest.mark.timeout(900)
#: For the runs moving megabytes: shrinking them would take minutes; their inputs are a few scalars.
HEAVY = settings(BASE, phases=[Phase.explicit, Phase.generate])
KEY = bytes(range(16))
NEW_API = get_version("2026-03-15").batch_item_cap
V3 = get_version("v3").batch_item_cap
#: (item cap, body byte cap) pairs: the API's own, and small byte caps against which the generated
#: contacts (100 B to tens of KB) make the byte cap, not the item cap, cut most chunks.
CAPS = ((NEW_API, MAX_BATCH_BODY_BYTES), (V3, MAX_BATCH_BODY_BYTES), (1, MAX_BATCH_BODY_BYTES), (2, 3_000),
        (3, 700), (7, 12_000), (NEW_API, 700), (NEW_API, 3_000), (V3, 12_000), (V3, 60_000))


# ------------------------------------------------------------------------------------------ regressions
def test_regression_emails_of_a_sliced_large_string_column_stay_with_their_row() -> None:
    """Found by the split property: a ``large_string`` e-mail column in a sliced record batch is cast to
    a string array whose offsets do not start at 0, and pyarrow's ``ascii_lower`` then gave each row the
    bytes of a later row. Valid addresses were rejected as invalid, or, with e-mails of equal length,
    a row was staged under ANOTHER row's e-mail (row 4's name sent for row 8's address)."""
    emails = [f"User{i}@Example.com" for i in range(10, 20)]  # all of the same length
    table = pa.table({EMAIL: pa.array(emails, pa.large_string()), PHONE: pa.nulls(10, pa.string()),
                      FIRST: [f"Name of user{i}" for i in range(10, 20)], LAST: pa.nulls(10, pa.string()),
                      BIO: pa.nulls(10, pa.string()), NOTES: pa.nulls(10, pa.string())})
    batch = table.to_batches()[0]
    result, staging, rejects = prepare([batch.slice(0, 4), batch.slice(4, 6)])
    assert rejects.num_rows == 0 and result.valid == 10
    for row, item in zip(staging.column("row").to_pylist(), staging.column("item").to_pylist(), strict=True):
        parsed = orjson.loads(item)
        assert parsed["identifiers"][0]["id"] == emails[row].lower()
        assert parsed["firstName"] == f"Name of user{row + 10}"


def test_regression_ascii_lower_on_rebased_offsets() -> None:
    """``text.ascii_lower`` on the layout a cast of a sliced ``large_string`` gives (offset 0, first
    value offset not 0), with nulls, against plain Python."""
    values = ["AB", None, "Cde@X.COM", "", "ÄÖ@ü.de", "K\u212a"]
    sliced = pa.array(["padding", *values], pa.large_string()).slice(1)
    layouts = [sliced.cast(pa.string()), pa.array(["padding", *values]).slice(1)]
    stripped = pa.array([v or "x" for v in ["pad", *values]], pa.large_string()).slice(1).cast(pa.string())
    assert stripped.offset == 0 and np.frombuffer(stripped.buffers()[1], np.int32)[0] != 0
    for array in [*layouts, stripped]:
        lowered = ascii_lower(array)
        lowered.validate(full=True)
        expected = [None if v is None else "".join(c.lower() if c.isascii() else c for c in v)
                    for v in array.to_pylist()]
        assert lowered.to_pylist() == expected


def test_the_real_caps() -> None:
    """The caps the properties use are the API's: 100 and 1000 items, about 1 MB per body."""
    assert (NEW_API, V3, MAX_BATCH_BODY_BYTES) == (100, 1000, 1_000_000)
    assert ExportOptions(segment=SEGMENT).max_body_bytes == MAX_BATCH_BODY_BYTES


# ------------------------------------------------------------------------------------------ helpers
def run_engine(batches: list[pa.RecordBatch], *, item_cap: int, body_cap: int, block_rows: int | None = None,
               in_flight: int = 4) -> tuple[ExportSummary, pa.Table, list[bytes]]:
    """One real ``ExportEngine.run`` against a recording API; returns the summary, rejects and bodies."""
    api = InstantApi(keep_bodies=True)
    options = ExportOptions(segment=SEGMENT, max_profiles=None, max_reject_ratio=1.0, batch_item_cap=item_cap,
                            max_body_bytes=body_cap, max_in_flight=in_flight, poll_interval=0.0,
                            progress_interval=1e9)
    with tempfile.TemporaryDirectory(prefix="omnisend-properties-") as folder:
        root = Path(folder)
        rejects = RejectsWriter(str(root / "rejects.parquet"), source_columns=SPEC.source_columns)
        engine = ExportEngine(client=api, spec=SPEC, options=options, state_dir=str(root / "state"),
                              work_dir=root / "work", artifacts_dir=root / "artifacts", rejects=rejects,
                              progress=MemoryProgressStore())
        rows = block_rows or engine_module.STAGING_READ_ROWS
        try:
            with mock.patch.object(engine_module, "STAGING_READ_ROWS", rows):
                summary = engine.run(batches)
        finally:
            rejects.close()
        return summary, pq.read_table(root / "rejects.parquet"), api.bodies


def prepare(batches: list[pa.RecordBatch], *, workers: int = 1) -> tuple[PrepareResult, pa.Table, pa.Table]:
    """``prepare_export`` alone; returns its result, the staging table and the rejects (by row)."""
    with tempfile.TemporaryDirectory(prefix="omnisend-properties-") as folder:
        rejects = RejectsWriter(f"{folder}/rejects.parquet", source_columns=SPEC.source_columns)
        try:
            result = prepare_export(batches, SPEC, staging_dir=f"{folder}/staging", rejects=rejects,
                                    hash_key=KEY, workers=workers)
        finally:
            rejects.close()
        staging = pq.read_table(result.staging_path)
        rejected = pq.read_table(f"{folder}/rejects.parquet").sort_by("row")
    return result, staging, rejected


def whole(table: pa.Table) -> list[pa.RecordBatch]:
    return table.combine_chunks().to_batches()


def batch_rows(bodies: list[bytes], expected: Expected) -> list[tuple[list[int], bytes]]:
    """Each body with its input rows (found through the e-mail identifier), in input order."""
    row_of = {expected.outcomes[row].email: row for row in expected.sent_rows}
    chunks = []
    for body in bodies:
        emails = [item["identifiers"][0]["id"] for item in orjson.loads(body)["items"]]
        unknown = [e for e in emails if e not in row_of]
        assert not unknown, f"a batch holds contacts that no valid, first-occurrence row gives: {unknown[:3]}"
        assert emails, "an empty batch was sent"
        chunks.append(([row_of[e] for e in emails], body))
    return sorted(chunks, key=lambda chunk: chunk[0][0])


def check_accounting(data: Rows, expected: Expected, summary: ExportSummary, rejects: pa.Table,
                     bodies: list[bytes]) -> list[list[int]]:
    """Property 1: every row once, either sent (as the oracle's exact item) or rejected with its reason.

    Returns the rows of each batch, batches in input order."""
    chunks = batch_rows(bodies, expected)
    sent = Counter(row for rows, _ in chunks for row in rows)
    assert not [row for row, n in sent.items() if n > 1], "a row was sent in more than one item"
    for rows, body in chunks:
        # the exact bytes: the documented item shape for the cleaned values, in input order
        assert body == BODY_PREFIX + b",".join(expected.outcomes[r].item or b"" for r in rows) + BODY_SUFFIX
    assert sorted(sent) == expected.sent_rows

    records = rejects.to_pylist()
    rejected = Counter(record["row"] for record in records)
    assert not [row for row, n in rejected.items() if n > 1], "a row was rejected twice"
    assert not set(sent) & set(rejected), "a row was both sent and rejected"
    assert set(sent) | set(rejected) == set(range(len(data.rows))), "a row went missing"
    for record in records:
        row, outcome = record["row"], expected.outcomes[record["row"]]
        assert record["reason"] == outcome.reason, (row, record["detail"])
        assert record["detail"]
        if outcome.reason == "duplicate":
            assert duplicate_winner(record["detail"]) == outcome.winner
            assert outcome.winner is not None and outcome.winner < row
        if outcome.reason == "item_too_large":
            continue  # rejected after staging: the source values are no longer at hand (null)
        assert {c: record[c] for c in COLUMNS} == data.rows[row], "rejects must keep the values as read"

    reasons = expected.reasons()
    assert summary.rows_read == len(data.rows)
    assert summary.valid == len(expected.survivors)
    assert summary.duplicates == reasons.get("duplicate", 0)
    assert summary.rejected == len(records) == sum(reasons.values())
    assert summary.reasons == reasons
    assert summary.batches == len(bodies)
    return [rows for rows, _ in chunks]


def check_chunks(chunks: list[list[int]], bodies: list[bytes], expected: Expected, *, item_cap: int,
                 body_cap: int) -> dict[str, int]:
    """Property 2: caps hold, chunks follow input order, and only a byte-capped or the last one is short.

    Returns how many chunks were cut by the item cap and by the byte cap (the last one excluded)."""
    for body in bodies:
        assert len(body) <= body_cap, f"a batch body of {len(body)} bytes is over the {body_cap}-byte cap"
        assert 1 <= len(orjson.loads(body)["items"]) <= item_cap
    assert [row for rows in chunks for row in rows] == expected.sent_rows, "chunks must keep input order"
    cut = {"items": 0, "bytes": 0}
    for rows, following in itertools.pairwise(chunks):
        if len(rows) == item_cap:
            cut["items"] += 1
            continue
        sizes = [len(expected.outcomes[r].item or b"") for r in [*rows, following[0]]]
        with_next = BODY_OVERHEAD_BYTES + sum(sizes) + len(sizes) - 1
        assert with_next > body_cap, f"a short chunk ({len(rows)} items) had room for the next item"
        cut["bytes"] += 1
    return cut


# ------------------------------------------------------------------------------------------ properties
@SHRINK_TIMEOUT
@settings(BASE, max_examples=50)
@given(
    data=input_rows(),
    types=COLUMN_TYPES,
    caps=st.sampled_from(CAPS),
    block_rows=st.sampled_from([1, 3, 8, None]),
    in_flight=st.integers(1, 4),
    draw=st.data(),
)
def test_every_row_is_sent_once_or_rejected_and_batches_respect_the_caps(
    *, data: Rows, types: list[str], caps: tuple[int, int], block_rows: int | None, in_flight: int,
    draw: st.DataObject,
) -> None:
    """Properties 1 and 2 on one real engine run: nasty rows in any split and column types, any caps,
    staging read in blocks of 1, 3, 8 or the default rows (so chunks span blocks), 1 to 4 senders."""
    item_cap, body_cap = caps
    table = data.table(types)
    batches = draw.draw(splits(table), label="batches")
    expected = expected_outcomes(data, max_body_bytes=body_cap)
    summary, rejects, bodies = run_engine(batches, item_cap=item_cap, body_cap=body_cap,
                                          block_rows=block_rows, in_flight=in_flight)
    chunks = check_accounting(data, expected, summary, rejects, bodies)
    cut = check_chunks(chunks, bodies, expected, item_cap=item_cap, body_cap=body_cap)
    for reason in expected.reasons():
        event(f"reject: {reason}")
    event(f"sent rows > 0: {bool(expected.sent_rows)}")
    event(f"chunk cut by item cap: {bool(cut['items'])}")
    event(f"chunk cut by byte cap: {bool(cut['bytes'])}")


#: Characters of many UTF-8 bytes (or JSON-escaped to two), to fill custom properties to their limit.
WIDE = ("🎉", "𝔘", "\U0010fffd", "李", '"', "\\", "é")


@pytest.mark.parametrize("version", ["2026-03-15", "v3"])
@settings(HEAVY, max_examples=2)
@given(
    bio_unit=st.sampled_from(WIDE[:3]),
    notes_unit=st.sampled_from(WIDE),
    fill=st.integers(1_900, 2_048),
    big_rows=st.integers(150, 260),
    extra_small=st.integers(1, 60),
)
def test_real_caps_cut_chunks_by_items_and_by_bytes(
    *, version: str, bio_unit: str, notes_unit: str, fill: int, big_rows: int, extra_small: int
) -> None:
    """With the API's own caps, a run cuts chunks at the item cap AND (10-16 KB contacts) at the byte
    cap, and no body goes over either."""
    item_cap = get_version(version).batch_item_cap
    small = item_cap + extra_small
    rows: list[dict[str, str | None]] = []
    for i in range(small + big_rows):
        big = i >= small
        # unique among the small rows (so the item cap is reached); some case/space duplicates among big ones
        email = f" USER{i - 1}@example.COM\t" if big and i % 17 == 0 else f"User{i}@Example.com"
        rows.append({EMAIL: email, PHONE: None, FIRST: f"Zoë {i}", LAST: "שָׁלוֹם 👩‍👩‍👧‍👦",
                     BIO: bio_unit * fill if big else None, NOTES: notes_unit * fill if big else "n"})
    data = Rows(rows, ["valid"] * len(rows))
    expected = expected_outcomes(data, max_body_bytes=MAX_BATCH_BODY_BYTES)
    summary, rejects, bodies = run_engine(whole(data.table()), item_cap=item_cap,
                                          body_cap=MAX_BATCH_BODY_BYTES)
    chunks = check_accounting(data, expected, summary, rejects, bodies)
    cut = check_chunks(chunks, bodies, expected, item_cap=item_cap, body_cap=MAX_BATCH_BODY_BYTES)
    assert cut["items"] >= 1, "no chunk reached the item cap"
    assert cut["bytes"] >= 1, "no chunk was cut by the byte cap"
    assert max(len(b) for b in bodies) > 0.98 * MAX_BATCH_BODY_BYTES  # byte-capped bodies are nearly full


@SHRINK_TIMEOUT
@settings(BASE, max_examples=30)
@given(data=input_rows(), types=st.lists(COLUMN_TYPES, min_size=2, max_size=2), draw=st.data())
def test_dedupe_is_deterministic_and_independent_of_batch_splits(
    data: Rows, types: list[list[str]], draw: st.DataObject
) -> None:
    """Property 3: the survivors are the oracle's (first valid occurrence of each e-mail); staging and
    rejects are identical whether the rows come in one batch or split into slices, as string,
    large_string or dictionary columns, prepared by 1, 2 or 3 workers."""
    expected = expected_outcomes(data)
    baseline = prepare(whole(data.table()), workers=1)
    runs = [prepare(draw.draw(splits(data.table(t)), label=f"split {i}"), workers=1 + i)
            for i, t in enumerate(types)]
    result, staging, rejects = baseline
    assert staging.column("row").to_pylist() == expected.survivors
    winners = {r["row"]: duplicate_winner(r["detail"])
               for r in rejects.to_pylist() if r["reason"] == "duplicate"}
    assert winners == {row: o.winner for row, o in enumerate(expected.outcomes) if o.reason == "duplicate"}
    for other_result, other_staging, other_rejects in runs:
        assert other_staging.equals(staging), "staging (rows, keys, fingerprints, items) depends on the split"
        assert other_rejects.equals(rejects), "rejects depend on the split"
        assert other_result.reasons == result.reasons
        counts = ("rows_read", "valid", "rejected", "duplicates")
        assert [getattr(other_result, c) for c in counts] == [getattr(result, c) for c in counts]
    assert result.rows_read == result.valid + result.rejected


@SHRINK_TIMEOUT
@settings(BASE, max_examples=40)
@given(
    address=valid_addresses(),
    variants=st.lists(st.booleans(), min_size=2, max_size=8),
    draw=st.data(),
)
def test_first_valid_case_or_space_variant_wins(
    address: str, variants: list[bool], draw: st.DataObject
) -> None:
    """Spellings of one address differing in case and surrounding white space: the first row that passes
    every check wins and is sent lower-cased and trimmed; later valid ones are duplicates of it; rows
    failing another check are rejected for that, not as duplicates."""
    rows: list[dict[str, str | None]] = []
    for valid in variants:
        spelled = draw.draw(decorated(Address("valid", address)))
        rows.append({EMAIL: spelled, PHONE: None, FIRST: "Ann" if valid else "A" * 256, LAST: None,
                     BIO: None, NOTES: None})
    batches = draw.draw(splits(Rows(rows, ["valid"] * len(rows)).table()))
    result, staging, rejects = prepare(batches)
    valid_rows = [i for i, valid in enumerate(variants) if valid]
    assert staging.column("row").to_pylist() == valid_rows[:1]
    if valid_rows:
        assert orjson.loads(staging.column("item")[0].as_py())["identifiers"][0]["id"] == address
    by_row = {r["row"]: r for r in rejects.to_pylist()}
    for i, valid in enumerate(variants):
        if not valid:
            assert by_row[i]["reason"] == "too_long"
        elif i != valid_rows[0]:
            assert by_row[i]["reason"] == "duplicate"
            assert duplicate_winner(by_row[i]["detail"]) == valid_rows[0]
    assert result.duplicates == max(len(valid_rows) - 1, 0)


LENGTHS = st.lists(st.one_of(st.integers(2, 60), st.integers(500, 5_000), st.integers(40_000, 60_000)),
                   max_size=120)


@settings(BASE, max_examples=150)
@given(
    lengths=LENGTHS,
    max_items=st.sampled_from([1, 2, 3, NEW_API, V3]),
    max_body_bytes=st.sampled_from([BODY_OVERHEAD_BYTES + 60, 2_000, 10_000, 100_000, MAX_BATCH_BODY_BYTES]),
    envelope=st.sampled_from([("contacts", "POST"), ("contacts", "PUT"), ("categories", "POST"),
                              ("events", "PUT")]),
)
def test_plan_chunks_partitions_within_caps_and_is_greedy(
    lengths: list[int], max_items: int, max_body_bytes: int, envelope: tuple[str, str]
) -> None:
    """``plan_chunks`` + ``batch_body`` on items of arbitrary sizes: consecutive chunks covering every
    item, none over the item cap, every real body within the byte cap (whatever the envelope) except an
    item that alone cannot fit (``oversized_items``), which then sits alone; and greedy packing."""
    items = ['"' + "x" * (n - 2) + '"' for n in lengths]
    chunks = plan_chunks(lengths, max_items=max_items, max_body_bytes=max_body_bytes)
    oversized = set(oversized_items(lengths, max_body_bytes=max_body_bytes).tolist())
    endpoint, method = envelope
    assert [i for start, stop in chunks for i in range(start, stop)] == list(range(len(lengths)))
    for start, stop in chunks:
        assert 1 <= stop - start <= max_items
        size = len(batch_body(items[start:stop], endpoint=endpoint, method=method))
        if stop - start == 1 and start in oversized:
            continue
        assert not oversized & set(range(start, stop)), "an oversized item shares a chunk"
        assert size <= max_body_bytes
    for (start, stop), _ in itertools.pairwise(chunks):
        if stop - start < max_items and stop not in oversized and start not in oversized:
            with_next = BODY_OVERHEAD_BYTES + sum(lengths[start:stop + 1]) + (stop - start)
            assert with_next > max_body_bytes, "a short chunk had room for the next item"
    for i in oversized:
        assert lengths[i] + BODY_OVERHEAD_BYTES > max_body_bytes
        assert len(batch_body([items[i]], endpoint="categories")) > max_body_bytes


KEYS = st.one_of(st.integers(0, 6), st.integers(2**64 - 4, 2**64 - 1), st.integers(0, 2**64 - 1))


@settings(BASE, max_examples=150)
@given(
    keys=st.lists(KEYS, max_size=200),
    gaps=st.lists(st.integers(1, 3), min_size=200, max_size=200),
    cuts=st.lists(st.integers(0, 200), max_size=40),
)
def test_deduplicator_matches_first_wins_model_whatever_the_batches(
    keys: list[int], gaps: list[int], cuts: list[int]
) -> None:
    """Across any batching, ``Deduplicator`` keeps exactly the first occurrence of each key and names it
    as the winner of every later one (also for keys at the top of the uint64 range)."""
    rows = np.cumsum(gaps[: len(keys)]).astype(np.int64)
    bounds = [0, *sorted(c for c in cuts if c <= len(keys)), len(keys)]
    dedupe = Deduplicator()
    keep: list[bool] = []
    winners: list[int] = []
    for a, b in itertools.pairwise(bounds):
        verdict = dedupe.add(np.array(keys[a:b], dtype=np.uint64), rows[a:b])
        keep += verdict.keep.tolist()
        winners += verdict.winner_rows.tolist()
    first: dict[int, int] = {}
    model_keep, model_winners = [], []
    for key, row in zip(keys, rows.tolist(), strict=True):
        model_keep.append(key not in first)
        model_winners.append(first.get(key, -1))
        first.setdefault(key, row)
    assert keep == model_keep
    assert winners == model_winners
    assert dedupe.distinct == len(first)

