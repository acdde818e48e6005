"""The dead-letter store: every message the collector refused, with its reason and (capped) raw bytes.

SQLite, one row per refused message. Writing a dead letter is what lets the collector acknowledge a
poison message and move on without losing the evidence.
"""

from __future__ import annotations

import sqlite3
import threading
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
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
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
    ) -> int:
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO dead_letters (received_at, topic, hut_id, reason, location, detail, size, payload)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    datetime.now(UTC).isoformat(),
                    topic,
                    hut_id,
                    reason,
                    location,
                    detail[:2000],
                    len(payload),
                    payload if whole else payload[: self.max_payload_bytes],
                ),
            )
            return int(cursor.lastrowid or 0)

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
