"""The staging folder of a dead try is removed by the next try to start; a live one's never is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from airflow_provider_omnisend.export.scratch import LOCK_NAME, hold, remove_abandoned

HOLD_AND_WAIT = """
import sys, time
from pathlib import Path
from airflow_provider_omnisend.export.scratch import hold
lock = hold(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(600)
"""


def staging(root: Path, run: str) -> Path:
    folder = root / "dag" / run / "segment.export-0"
    folder.mkdir(parents=True)
    (folder / "staging-0.parquet").write_bytes(b"e-mails")
    return folder


def test_only_folders_whose_lock_nobody_holds_are_removed(tmp_path: Path) -> None:
    mine, running, dead, legacy = (staging(tmp_path, run) for run in ("mine", "running", "dead", "legacy"))
    own = hold(mine)
    other = subprocess.Popen([sys.executable, "-c", HOLD_AND_WAIT, str(running)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        dying = subprocess.Popen([sys.executable, "-c", HOLD_AND_WAIT, str(dead)], stdout=subprocess.PIPE,
                                 text=True)
        assert dying.stdout is not None and dying.stdout.readline().strip() == "held"
        assert remove_abandoned(tmp_path, depth=3, keep=mine) == []  # every holder is alive
        dying.kill()  # SIGKILL: no clean-up, the kernel drops its lock
        dying.wait(timeout=30)

        assert remove_abandoned(tmp_path, depth=3, keep=mine) == [dead]
        assert not dead.parent.exists()  # the dead run's folder too, once empty
        assert (running / "staging-0.parquet").exists() and (mine / "staging-0.parquet").exists()
        assert (legacy / "staging-0.parquet").exists()  # no lock file: not ours to judge
    finally:
        other.kill()
        other.wait(timeout=30)
        own.release()


def test_a_released_folder_is_removed_but_never_the_one_kept(tmp_path: Path) -> None:
    done, mine = staging(tmp_path, "done"), staging(tmp_path, "mine")
    hold(done).release()
    lock = hold(mine)
    lock.release()
    assert (mine / LOCK_NAME).exists() and not list(mine.glob(f"{LOCK_NAME}.*.tmp"))
    assert remove_abandoned(tmp_path, depth=3, keep=mine) == [done]
    assert mine.exists()
