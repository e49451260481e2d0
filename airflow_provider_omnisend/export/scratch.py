"""Local staging folders of running exports (they hold customer e-mails), and removing those whose try died.

Why: a try killed without clean-up (SIGKILL, OOM) leaves its staging behind. A retry of the same task
instance empties its own folder when it starts, but a *new DAG run* gets a folder of its own, so a killed
run's e-mails would stay in the temp folder for good. Each try holds an exclusive ``flock`` on a lock
file in its folder while it runs; the kernel drops the lock when the process ends, however it ends. A try
starting removes the folders below the staging root whose lock nobody holds. A lock file only ever
appears locked (created under a temporary name, locked, then renamed), so a try still starting is never
taken for a dead one; folders without a lock file are left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

LOCK_NAME = ".owner.lock"


class FolderLock:
    """An exclusive ``flock`` on a staging folder's lock file, held until :meth:`release`."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def hold(folder: Path) -> FolderLock:
    """Lock ``folder`` as in use by this process (until released, or the process ends)."""
    temporary = folder / f"{LOCK_NAME}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(temporary, folder / LOCK_NAME)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return FolderLock(fd)


def remove_abandoned(root: Path, *, depth: int, keep: Path) -> list[Path]:
    """Remove the folders ``depth`` levels below ``root`` whose lock file nobody holds (their try died);
    never ``keep``. Returns the folders removed."""
    removed = []
    for lock in root.glob("/".join(["*"] * depth + [LOCK_NAME])):
        folder = lock.parent
        if folder == keep or folder.is_symlink():
            continue
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its try is running
            os.close(fd)
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            with contextlib.suppress(OSError):  # the run's folder, once its last task's is gone
                folder.parent.rmdir()
        finally:
            os.close(fd)
    return removed
