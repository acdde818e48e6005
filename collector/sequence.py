"""The sequence ledger: which of each hut's message numbers have arrived, so gaps and duplicates show.

Every message a hut publishes carries the next number of a per-hut counter that survives restarts
(``gateway.state``). The ledger keeps, per hut, a low-water mark (every number up to it is accounted
for) and the numbers seen above it. A number that arrives twice is a **duplicate** (harmless, since
writes are idempotent, but it says the uplink resent). A hole that is still open ``grace_s`` after a
later number arrived is a **gap**: the hut numbered a message that never reached us. Numbers can be
burnt without loss (a gateway killed between numbering and publishing a message), so a gap is
evidence to look at, not proof of a lost reading; the hut's spool keeps anything unconfirmed. A number
that arrives after its gap was reported is recorded as **late**. A hut whose counter went backwards
under a boot id never seen before has lost its state file: that is a **restart**, and the ledger
follows the new numbering (a message numbered before the restart, resent afterwards, counts as late).

The database is SQLite in WAL mode and every update is one ``BEGIN IMMEDIATE`` transaction, so the
collector processes of one host, which share a subscription and each see only some of a hut's
messages, keep one ledger between them by pointing at the same file.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

EventKind = Literal["gap", "duplicate", "late", "restart"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS huts (
    hut TEXT PRIMARY KEY, low INTEGER NOT NULL, era INTEGER NOT NULL, settles_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS boots (
    hut TEXT NOT NULL, boot TEXT NOT NULL, era INTEGER NOT NULL, PRIMARY KEY (hut, boot)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (
    hut TEXT NOT NULL, seq INTEGER NOT NULL, received_at REAL NOT NULL, PRIMARY KEY (hut, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    hut TEXT NOT NULL,
    event TEXT NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    count INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_hut ON events (hut, event, first);
"""


@dataclass(frozen=True, slots=True)
class Arrival:
    hut_id: str
    boot_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class SequenceEvent:
    hut_id: str
    event: EventKind
    first: int
    last: int
    count: int
    at: datetime


def _runs(numbers: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted numbers as (first, last) runs of consecutive values."""
    runs: list[tuple[int, int]] = []
    for number in sorted(set(numbers)):
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


class SequenceLedger:
    def __init__(self, path: Path, grace_s: float = 600.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # The ledger is bookkeeping, not data: after a power cut it may lack its last moments (a few
        # false duplicates or gaps at worst), which does not justify an fsync per window.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    # -- arrivals ----------------------------------------------------------------------------------
    def record(self, arrivals: Sequence[Arrival], now: float | None = None) -> list[SequenceEvent]:
        """Note these messages as stored; returns the duplicates, late arrivals and restarts among them."""
        if not arrivals:
            return []
        now = time.time() if now is None else now
        found: dict[tuple[str, EventKind], list[int]] = {}
        with self._transaction():
            for arrival in arrivals:
                kind = self._record_one(arrival, now)
                if kind is not None:
                    found.setdefault((arrival.hut_id, kind), []).append(arrival.seq)
            return self._events_from(found, now)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so that processes sharing the file wait
        their turn instead of failing half-way."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _record_one(self, arrival: Arrival, now: float) -> EventKind | None:
        db = self._db
        hut, seq = arrival.hut_id, arrival.seq
        row = db.execute("SELECT low, era, settles_at FROM huts WHERE hut = ?", (hut,)).fetchone()
        if row is None:
            # First sight of this hut: its history before now is not ours to judge. For a grace time the
            # start is provisional, since the collectors sharing the stream may not see it in order.
            settles_at = now + self.grace_s
            db.execute("INSERT INTO huts (hut, low, era, settles_at) VALUES (?, ?, 0, ?)", (hut, seq - 1, settles_at))
            low, era = seq - 1, 0
        else:
            low, era, settles_at = int(row[0]), int(row[1]), float(row[2])
        provisional = now < settles_at
        # Each counter restart starts an era; a boot belongs to the era in which it was first seen.
        known = db.execute("SELECT era FROM boots WHERE hut = ? AND boot = ?", (hut, arrival.boot_id)).fetchone()
        if known is None:
            db.execute("INSERT INTO boots (hut, boot, era) VALUES (?, ?, ?)", (hut, arrival.boot_id, era))
        elif int(known[0]) < era:
            return "late"  # numbered before the hut's counter restarted: not comparable with today's numbers
        outcome: EventKind | None = None
        if seq <= low:
            if known is None:
                # Numbering went back under a boot we never saw: the hut lost its counter file.
                era += 1
                db.execute("DELETE FROM seen WHERE hut = ?", (hut,))
                db.execute("UPDATE huts SET low = ?, era = ? WHERE hut = ?", (seq - 1, era, hut))
                db.execute("UPDATE boots SET era = ? WHERE hut = ? AND boot = ?", (era, hut, arrival.boot_id))
                low, outcome = seq - 1, "restart"
            elif provisional:
                # An earlier number of a hut we have only just met: the start moves back to it.
                db.execute("UPDATE huts SET low = ? WHERE hut = ?", (seq - 1, hut))
                low = seq - 1
            else:
                reported = db.execute(
                    "SELECT 1 FROM events WHERE hut = ? AND event = 'gap' AND first <= ? AND last >= ? LIMIT 1",
                    (hut, seq, seq),
                ).fetchone()
                return "late" if reported else "duplicate"
        if db.execute("INSERT OR IGNORE INTO seen (hut, seq, received_at) VALUES (?, ?, ?)", (hut, seq, now)).rowcount:
            if not provisional:  # while provisional, what was seen is kept to tell duplicates from news
                self._advance(hut, low)
            return outcome
        return "duplicate"

    def _advance(self, hut: str, low: int) -> None:
        """Move the low-water mark over consecutive arrivals, forgetting them."""
        start = low
        while self._db.execute("SELECT 1 FROM seen WHERE hut = ? AND seq = ?", (hut, low + 1)).fetchone():
            low += 1
        if low != start:
            self._db.execute("DELETE FROM seen WHERE hut = ? AND seq <= ?", (hut, low))
            self._db.execute("UPDATE huts SET low = ? WHERE hut = ?", (low, hut))

    def _events_from(self, found: dict[tuple[str, EventKind], list[int]], now: float) -> list[SequenceEvent]:
        at = datetime.fromtimestamp(now, UTC)
        events = [
            SequenceEvent(hut, kind, first, last, last - first + 1, at)
            for (hut, kind), numbers in found.items()
            for first, last in _runs(numbers)
        ]
        self._store_events(events)
        return events

    def _store_events(self, events: list[SequenceEvent]) -> None:
        self._db.executemany(
            "INSERT INTO events (at, hut, event, first, last, count) VALUES (?, ?, ?, ?, ?, ?)",
            [(e.at.isoformat(), e.hut_id, e.event, e.first, e.last, e.count) for e in events],
        )

    # -- gaps --------------------------------------------------------------------------------------
    def sweep(self, now: float | None = None) -> list[SequenceEvent]:
        """Report holes that stayed open ``grace_s`` after a later number arrived, and move past them."""
        now = time.time() if now is None else now
        gaps: list[SequenceEvent] = []
        with self._transaction():
            at = datetime.fromtimestamp(now, UTC)
            rows = self._db.execute("SELECT hut, low FROM huts WHERE settles_at <= ?", (now,)).fetchall()
            for hut, low in rows:
                gaps.extend(self._sweep_hut(hut, int(low), now, at))
            self._store_events(gaps)
        return gaps

    def _sweep_hut(self, hut: str, low: int, now: float, at: datetime) -> list[SequenceEvent]:
        gaps: list[SequenceEvent] = []
        start = low
        rows = self._db.execute("SELECT seq, received_at FROM seen WHERE hut = ? ORDER BY seq", (hut,)).fetchall()
        for seq, received_at in rows:
            if seq > low + 1:
                if now - received_at < self.grace_s:
                    break  # may still come: the hut resends what we have not confirmed
                gaps.append(SequenceEvent(hut, "gap", low + 1, seq - 1, seq - 1 - low, at))
            low = seq
        if low != start:
            self._db.execute("DELETE FROM seen WHERE hut = ? AND seq <= ?", (hut, low))
            self._db.execute("UPDATE huts SET low = ? WHERE hut = ?", (low, hut))
        return gaps

    # -- reading -----------------------------------------------------------------------------------
    def events(self, hut_id: str | None = None, limit: int = 100) -> list[SequenceEvent]:
        query = "SELECT hut, event, first, last, count, at FROM events"
        args: tuple[object, ...] = ()
        if hut_id is not None:
            query, args = query + " WHERE hut = ?", (hut_id,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [
            SequenceEvent(hut, event, int(first), int(last), int(count), datetime.fromisoformat(at))
            for hut, event, first, last, count, at in rows
        ]

    def low_water(self, hut_id: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT low FROM huts WHERE hut = ?", (hut_id,)).fetchone()
        return None if row is None else int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
