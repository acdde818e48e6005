"""The dead-letter store: every message the collector refused, with its reason and (capped) raw bytes.

SQLite, one row per refused message. Writing a dead letter is what lets the collector acknowledge a
poison message and move on without losing the evidence.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    topic TEXT NOT NULL,
    hut_id TEXT,
    reason TEXT NOT NULL,
    location TEXT,
    detail TEXT NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A dead letter to store. ``whole``: keep all of ``payload`` (something valid we could not store,
    kept for replay); otherwise only up to the size cap."""

    topic: str
    hut_id: str | None
    reason: str
    location: str | None
    detail: str
    payload: bytes
    whole: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    received_at: datetime
    topic: str
    hut_id: str | None
    reason: str
    location: str | None
    detail: str
    size: int
    payload: bytes


class DeadLetterStore:
    """Thread-safe (the ingest loop calls it through ``asyncio.to_thread``)."""

    def __init__(self, path: Path, max_payload_bytes: int = 16 * 1024) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_payload_bytes = max_payload_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def add(
        self,
        *,
        topic: str,
        hut_id: str | None,
        reason: str,
        location: str | None,
        detail: str,
        payload: bytes,
        whole: bool = False,
    ) -> None:
        self.add_many([Refusal(topic, hut_id, reason, location, detail, payload, whole)])

    def add_many(self, refusals: Sequence[Refusal]) -> None:
        """Store refusals in one transaction (one fsync): a flood of bad messages costs one commit per
        window of messages, not one each."""
        if not refusals:
            return
        now = datetime.now(UTC).isoformat()
        rows = [
            (
                now,
                r.topic,
                r.hut_id,
                r.reason,
                r.location,
                r.detail[:2000],
                len(r.payload),
                r.payload if r.whole else r.payload[: self.max_payload_bytes],
            )
            for r in refusals
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO dead_letters (received_at, topic, hut_id, reason, location, detail, size, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def list(self, limit: int = 100, hut_id: str | None = None) -> list[DeadLetter]:
        query = "SELECT * FROM dead_letters"
        args: tuple[object, ...] = ()
        if hut_id is not None:
            query += " WHERE hut_id = ?"
            args = (hut_id,)
        query += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [
            DeadLetter(
                id=row[0],
                received_at=datetime.fromisoformat(row[1]),
                topic=row[2],
                hut_id=row[3],
                reason=row[4],
                location=row[5],
                detail=row[6],
                size=int(row[7]),
                payload=bytes(row[8]),
            )
            for row in rows
        ]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
