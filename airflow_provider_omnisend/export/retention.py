"""Run folders by day, and their removal after a retention period: they hold personal data.

Each export try keeps what a user may need afterwards (its rejects, the dry run's payload sample, batch
ids) in a run folder ``<root>/<dag>/<YYYY-MM-DD>/<run>/<task>``. Rejected rows are the customers' own
rows, so they must not pile up forever: at the start of each export, the day folders of that DAG
older than the retention period are removed.

Removal is deliberately narrow, because ``root`` is a setting (it could point at a shared mount or a
bucket holding other things): only a folder named like a day (``2026-12-05``), directly below the
DAG's folder, holding the marker file this module wrote when it created it. On a local disk nothing
that is a symlink is entered or removed (the DAG folder, the day folder, the marker), and removal
unlinks symlinks inside instead of following them (``shutil.rmtree``), so nothing outside the root can
be deleted.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
import stat
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)

#: Written into each day folder this module creates; nothing without it is ever removed.
MARKER = ".omnisend-run-folder"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def day_folder(root: str, dag: str, day: date, *, storage_options: Mapping[str, Any] | None = None) -> str:
    """``<root>/<dag>/<day>`` created with its marker (``dag`` must be a single safe folder name)."""
    fs, base = fsspec.core.url_to_fs(str(root), **dict(storage_options or {}))
    folder = posixpath.join(base, dag, day.isoformat())
    fs.makedirs(folder, exist_ok=True)
    marker = posixpath.join(folder, MARKER)
    if not fs.exists(marker):
        fs.pipe_file(marker, b"Created by airflow-provider-omnisend; removed after the retention period.\n")
    return folder if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(folder)


def prune_day_folders(root: str, dag: str, *, keep_days: int, today: date,
                      storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Remove ``<root>/<dag>/<day>`` folders of days before ``today - keep_days``; return them.

    ``keep_days`` <= 0 keeps everything. A missing root or DAG folder is nothing to do.
    """
    if keep_days <= 0:
        return []
    cutoff = (today - timedelta(days=keep_days)).isoformat()
    fs, base = fsspec.core.url_to_fs(str(root), **dict(storage_options or {}))
    if isinstance(fs, LocalFileSystem):
        return [str(p) for p in _prune_local(Path(base, dag), cutoff)]
    return _prune_remote(fs, posixpath.join(base, dag), cutoff)


def _old_day(name: str, cutoff: str) -> bool:
    return bool(_DAY.match(name)) and name < cutoff


def _prune_local(dag_dir: Path, cutoff: str) -> list[Path]:
    try:
        if not stat.S_ISDIR(dag_dir.lstat().st_mode):  # a symlink or a file: not ours to enter
            return []
        entries = list(os.scandir(dag_dir))
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        if not _old_day(entry.name, cutoff) or not entry.is_dir(follow_symlinks=False):
            continue
        marker = Path(entry.path, MARKER)
        try:
            if not stat.S_ISREG(marker.lstat().st_mode):
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(entry.path)
        removed.append(Path(entry.path))
    return removed


def _prune_remote(fs: fsspec.AbstractFileSystem, dag_dir: str, cutoff: str) -> list[str]:
    try:
        entries = fs.ls(dag_dir, detail=True)
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        path = str(entry["name"]).rstrip("/")
        if entry.get("type") != "directory" or not _old_day(posixpath.basename(path), cutoff):
            continue
        if not fs.exists(posixpath.join(path, MARKER)):
            continue
        fs.rm(path, recursive=True)
        removed.append(fs.unstrip_protocol(path))
    return removed
