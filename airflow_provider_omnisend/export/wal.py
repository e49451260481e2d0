"""LocalJournal: every ledger event, written as it happens, to a SQLite file in WAL mode on local disk.

Why a second journal: the durable journal (Parquet parts under ``state_dir``) and the task state store
are remote writes (the Execution API, a blob store), so they are written at most once a second (see
``progress.Checkpoint``). Written per batch they cost about 20,000 remote writes for 1M contacts. A
local SQLite commit costs tens of microseconds and survives the process being killed (the WAL is in the
OS's page cache), so a retry or a new run on the same machine still knows every batch that was being
sent or submitted: it re-sends only the batches in flight. On another machine the rate-limited layers
bound the re-sends to the batches in flight plus those submitted since the last checkpoint.

The file holds chunk numbers, batch ids, staging positions and Omnisend's messages; no e-mail.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from airflow_provider_omnisend.export.ledger import Failure, LedgerEvent, Phase


class LocalJournal:
    """Append-only ledger events of one plan in ``path`` (created owner-only on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path.touch(mode=0o600)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # a commit survives a killed process, not a power cut
            db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, round INTEGER, "
                       "chunk INTEGER, phase INTEGER, batch_id TEXT, failed TEXT)")
            self._db = db
        return self._db

    def load(self) -> list[LedgerEvent]:
        if not self.path.exists():
            return []
        rows = self._open().execute("SELECT round, chunk, phase, batch_id, failed FROM events ORDER BY seq")
        return [LedgerEvent((r, c), Phase(p), batch_id=bid, failed=_failed(failed))
                for r, c, p, bid, failed in rows]

    def append(self, events: list[LedgerEvent]) -> None:
        """Store ``events`` in one transaction."""
        if not events:
            return
        rows = [(e.chunk[0], e.chunk[1], int(e.phase), e.batch_id,
                 json.dumps({str(k): list(v) for k, v in e.failed.items()}) if e.failed else None)
                for e in events]
        db = self._open()
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT INTO events (round, chunk, phase, batch_id, failed) "
                           "VALUES (?, ?, ?, ?, ?)", rows)

    def clear(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def _failed(text: str | None) -> dict[int, Failure]:
    if not text:
        return {}
    return {int(pos): (reason, detail, bool(transient))
            for pos, (reason, detail, transient) in json.loads(text).items()}
