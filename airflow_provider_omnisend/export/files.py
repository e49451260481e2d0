"""Creating files that hold personal data or secrets (rejects, staging, snapshot pointer).

Why: such a file must never exist, even empty for an instant, with the umask's usual 0o644. Locally we
create it with mode 0o600 before any data is written (and tighten it if it already existed), so only
the account running the export can read it. Remote stores (abfs://, s3://, gs://) have no POSIX modes;
their own access control applies.
"""

from __future__ import annotations

import os
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

PRIVATE_MODE = 0o600


def create_private(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Create (or truncate) ``path`` and, on a local file system, restrict it to its owner."""
    if isinstance(fs, LocalFileSystem):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE))
        os.chmod(path, PRIVATE_MODE)


def open_private(fs: fsspec.AbstractFileSystem, path: str) -> Any:
    """``fs.open(path, "wb")`` for a file created by :func:`create_private` first."""
    create_private(fs, path)
    return fs.open(path, "wb")
