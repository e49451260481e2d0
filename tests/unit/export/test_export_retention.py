"""Retention of run folders: old day folders the product created go; nothing else, nothing outside."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import fsspec
import pytest

from airflow_provider_omnisend.export.retention import MARKER, day_folder, prune_day_folders

TODAY = date(2026, 12, 5)


def make_day(root: Path, dag: str, day: str) -> Path:
    folder = Path(day_folder(str(root), dag, date.fromisoformat(day)))
    (folder / "run_1" / "export-0").mkdir(parents=True)
    (folder / "run_1" / "export-0" / "rejects.parquet").write_text("jane@example.com")
    return folder


def test_old_day_folders_are_removed_recent_ones_kept(tmp_path: Path) -> None:
    old, edge, recent = (make_day(tmp_path, "dag_a", d) for d in ("2026-10-01", "2026-11-04", "2026-11-05"))
    other_dag = make_day(tmp_path, "dag_b", "2026-10-01")
    removed = prune_day_folders(str(tmp_path), "dag_a", keep_days=30, today=TODAY)
    assert sorted(removed) == [str(old), str(edge)]  # before today - 30 days; 2026-11-05 is not
    assert not old.exists() and not edge.exists()
    assert recent.exists() and (recent / MARKER).is_file()
    assert other_dag.exists()  # another DAG's folders are its own export's business


def test_only_marked_day_folders_are_touched(tmp_path: Path) -> None:
    dag_dir = tmp_path / "dag_a"
    unmarked = dag_dir / "2020-01-01"  # named like ours, but not created by us
    unmarked.mkdir(parents=True)
    (unmarked / "keep.txt").write_text("someone else's")
    not_a_day = dag_dir / "archive"
    not_a_day.mkdir()
    (not_a_day / MARKER).write_text("")
    loose_file = dag_dir / "2020-01-02"
    loose_file.write_text("a file, not a folder")
    assert prune_day_folders(str(tmp_path), "dag_a", keep_days=1, today=TODAY) == []
    assert (unmarked / "keep.txt").exists() and not_a_day.exists() and loose_file.exists()


def test_symlinks_are_never_followed_out_of_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "runs", tmp_path / "outside"
    victim_day = outside / "dag_a" / "2020-01-01"
    victim_day.mkdir(parents=True)
    (victim_day / MARKER).write_text("")
    (victim_day / "precious.txt").write_text("keep")
    # 1. the DAG folder itself is a symlink to a folder elsewhere
    root.mkdir()
    (root / "dag_a").symlink_to(outside / "dag_a")
    assert prune_day_folders(str(root), "dag_a", keep_days=1, today=TODAY) == []
    # 2. a day folder is a symlink; 3. a marker is a symlink; 4. a symlink inside an old day folder
    (root / "dag_a").unlink()
    old = make_day(root, "dag_a", "2020-01-03")
    (root / "dag_a" / "2020-01-01").symlink_to(victim_day)
    fake = root / "dag_a" / "2020-01-02"
    fake.mkdir()
    (fake / MARKER).symlink_to(victim_day / MARKER)
    (old / "escape").symlink_to(outside)
    removed = prune_day_folders(str(root), "dag_a", keep_days=1, today=TODAY)
    assert removed == [str(old)]
    assert (victim_day / "precious.txt").read_text() == "keep" and (victim_day / MARKER).exists()
    assert os.path.islink(root / "dag_a" / "2020-01-01") and fake.exists()


def test_no_retention_and_missing_folders_do_nothing(tmp_path: Path) -> None:
    old = make_day(tmp_path, "dag_a", "2000-01-01")
    assert prune_day_folders(str(tmp_path), "dag_a", keep_days=0, today=TODAY) == []
    assert old.exists()
    assert prune_day_folders(str(tmp_path / "nowhere"), "dag_a", keep_days=30, today=TODAY) == []


@pytest.fixture
def memory_root() -> Iterator[str]:
    """An object store (fsspec's in-memory one): no symlinks, folders are key prefixes."""
    fs = fsspec.filesystem("memory")
    yield "memory://omnisend-runs"
    if fs.exists("/omnisend-runs"):
        fs.rm("/omnisend-runs", recursive=True)


def test_object_storage_day_folders_are_pruned_the_same_way(memory_root: str) -> None:
    fs = fsspec.filesystem("memory")
    old = day_folder(memory_root, "dag_a", date(2026, 10, 1))
    recent = day_folder(memory_root, "dag_a", date(2026, 12, 1))
    fs.pipe_file(f"{old}/run_1/export-0/rejects.parquet", b"jane@example.com")
    fs.pipe_file("/omnisend-runs/dag_a/2020-01-01/run/rejects.parquet", b"not ours: no marker")
    assert prune_day_folders(memory_root, "dag_a", keep_days=30, today=TODAY) == [old]
    assert not fs.exists(old) and fs.exists(f"{recent}/{MARKER}")
    assert fs.exists("/omnisend-runs/dag_a/2020-01-01/run/rejects.parquet")
