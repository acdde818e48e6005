"""Alert state: episodes, the observations already evaluated, baselines, device failures and the outbox.

The lifecycle (:mod:`lifecycle`) reads and writes through :class:`AlertStore`, one transaction per
call of :meth:`AlertStore.transaction`; :class:`SqliteAlertStore` is the default. The SQLite file is in
WAL mode and every transaction is ``BEGIN IMMEDIATE``, so the collector processes of one host, which
share a subscription and each see part of every hut's stream, keep one alert state by pointing at the
same file. Collectors on several hosts need a shared server behind the same interface (PostgreSQL).
"""

from __future__ import annotations

import contextlib
import copy
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol

EpisodeState = Literal["pending", "firing", "resolving", "resolved", "unconfirmed"]
OPEN_STATES: tuple[EpisodeState, ...] = ("pending", "firing", "resolving")
# The same in SQL (the schema's partial index writes it out too, and must match).
_IS_OPEN = "state IN ({})".format(", ".join(f"'{state}'" for state in OPEN_STATES))
OutboxState = Literal["pending", "sent", "dead"]


@dataclass
class Episode:
    """One alert from first reading to resolution: the unit of deduplication (per subject and rule).

    Times are Unix seconds. ``opened_measured_at`` is the first reading's own time, against which a
    confirming repeat is judged; the others are the collector's clock.
    """

    alert_id: str
    subject_key: str
    rule: str
    hut_id: str
    kind: str | None
    audience: str
    severity: str
    state: EpisodeState
    opened_at: float
    opened_measured_at: float
    last_seen_at: float
    observation_ids: list[str] = field(default_factory=list)
    # The latest evidence, as the notification documents show it.
    detail: dict[str, Any] = field(default_factory=dict)
    fired_at: float | None = None
    last_notified_at: float | None = None
    notifications: int = 0
    escalation_level: int = 0
    escalated_at: float | None = None
    acked_at: float | None = None
    acked_by: str | None = None
    resolve_at: float | None = None
    resolved_at: float | None = None
    flaps: int = 0


_EPISODE_COLUMNS = tuple(f.name for f in fields(Episode))
_JSON_COLUMNS = {"observation_ids", "detail"}


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    alert_id: str
    channel: str
    event: str
    document: dict[str, Any]
    recipients: tuple[str, ...]
    attempts: int
    created_at: float


class AlertTransaction(Protocol):
    """What the lifecycle needs inside one transaction."""

    def prefetch(self, observation_keys: Sequence[str], subject_keys: Sequence[str]) -> None:
        """Say which observations, and which subjects' and devices' keys, the transaction is about to look
        at, so that their state can be read at once rather than a query at a time. A hint: every method
        answers the same with or without it."""
        ...

    def first_sight(self, observation_key: str, now: float) -> bool:
        """True the first time this observation is seen; False on a redelivery."""
        ...

    def open_episode(self, subject_key: str, rule: str) -> Episode | None: ...

    def open_episodes(self, subject_key: str) -> list[Episode]: ...

    def recently_resolved(self, subject_key: str, rule: str, since: float) -> Episode | None: ...

    def save(self, episode: Episode) -> None: ...

    def episode(self, alert_id: str) -> Episode | None: ...

    def due(self, now: float) -> list[Episode]:
        """The open episodes that may have something to do by ``now`` (expiry, repeat, escalation or
        resolution); a superset is allowed, since the lifecycle decides for each."""
        ...

    def add_history(self, subject_key: str, name: str, measured_at: float, value: float) -> None: ...

    def history(self, subject_key: str, name: str, since: float) -> list[tuple[float, float]]: ...

    def count_failure(self, device_key: str, at: float, since: float) -> int:
        """Note one failed reading of a device; returns the failures since ``since``, this one included."""
        ...

    def clear_failures(self, device_key: str) -> None: ...

    def enqueue(
        self, alert_id: str, channel: str, event: str, document: dict[str, Any], recipients: Sequence[str], now: float
    ) -> int: ...


class AlertStore(Protocol):
    def transaction(self) -> contextlib.AbstractContextManager[AlertTransaction]: ...

    def claim(self, now: float, lease_s: float, limit: int) -> list[OutboxItem]:
        """Outbox items due by ``now``, each leased to the caller for ``lease_s``."""
        ...

    def delivered(self, item_id: int, now: float) -> None: ...

    def failed(self, item_id: int, error: str, retry_at: float | None, now: float) -> None:
        """A failed attempt: try again at ``retry_at``, or dead-letter when None."""
        ...

    def next_due(self) -> float | None: ...

    def outbox(self, state: OutboxState | None = None, limit: int = 100) -> list[OutboxItem]: ...

    def episodes(self, *, open_only: bool = False, limit: int = 100) -> list[Episode]: ...

    def prune(self, before: float) -> None: ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    alert_id TEXT PRIMARY KEY,
    subject_key TEXT NOT NULL,
    rule TEXT NOT NULL,
    hut_id TEXT NOT NULL,
    kind TEXT,
    audience TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_at REAL NOT NULL,
    opened_measured_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    observation_ids TEXT NOT NULL,
    detail TEXT NOT NULL,
    fired_at REAL,
    last_notified_at REAL,
    notifications INTEGER NOT NULL,
    escalation_level INTEGER NOT NULL,
    escalated_at REAL,
    acked_at REAL,
    acked_by TEXT,
    resolve_at REAL,
    resolved_at REAL,
    flaps INTEGER NOT NULL
);
-- At most one open episode per subject and rule: the deduplication, enforced by the database itself.
CREATE UNIQUE INDEX IF NOT EXISTS one_open_episode ON episodes (subject_key, rule)
    WHERE state IN ('pending', 'firing', 'resolving');
CREATE INDEX IF NOT EXISTS episodes_by_subject ON episodes (subject_key, rule, resolved_at);
CREATE TABLE IF NOT EXISTS evaluated (key TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    subject_key TEXT NOT NULL, name TEXT NOT NULL, measured_at REAL NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (subject_key, name, measured_at)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (device_key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS failures_by_device ON failures (device_key, at);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    document TEXT NOT NULL,
    recipients TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    created_at REAL NOT NULL,
    done_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
"""


def _chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), _PREFETCH_CHUNK):
        yield keys[start : start + _PREFETCH_CHUNK]


def _row_to_episode(row: sqlite3.Row) -> Episode:
    values = {name: row[name] for name in _EPISODE_COLUMNS}
    for name in _JSON_COLUMNS:
        values[name] = json.loads(values[name])
    return Episode(**values)


def _row_to_item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        alert_id=row["alert_id"],
        channel=row["channel"],
        event=row["event"],
        document=json.loads(row["document"]),
        recipients=tuple(json.loads(row["recipients"])),
        attempts=row["attempts"],
        created_at=row["created_at"],
    )


# Keys per query when reading ahead: well under SQLite's 32,766 bound parameters.
_PREFETCH_CHUNK = 500


class _SqliteTransaction:
    """One write transaction. The lifecycle asks about every observation of a window: was it seen, are its
    subject's and device's episodes open, has its device been failing. Asked a query at a time, that was
    four statements per observation, and each statement lets go of the GIL and must win it back from the
    ingest loop's thread, which holds it while it parses messages: in the collector benchmark the alert
    rules took 2 s of the windows' time for 0.5 s of work. ``prefetch`` reads all of it for the window in
    a few statements, and these methods answer from what it read and keep it current as they write."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._observations: set[str] = set()  # keys prefetched
        self._seen: set[str] = set()  # ... of these, the ones evaluated already (stored or in _unsaved)
        self._unsaved: list[tuple[str, float]] = []  # first sights not inserted yet
        self._keys: set[str] = set()  # subject and device keys prefetched
        self._open: dict[str, dict[str, Episode]] = {}  # ... their open episodes, by key and rule
        self._failing: set[str] = set()  # ... the device keys with failures on record

    def prefetch(self, observation_keys: Sequence[str], subject_keys: Sequence[str]) -> None:
        new = [key for key in dict.fromkeys(observation_keys) if key not in self._observations]
        for chunk in _chunks(new):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT key FROM evaluated WHERE key IN ({marks})", chunk)
            self._seen.update(key for (key,) in rows)
        self._observations.update(new)
        keys = [key for key in dict.fromkeys(subject_keys) if key not in self._keys]
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            query = f"SELECT * FROM episodes WHERE subject_key IN ({marks}) AND {_IS_OPEN}"
            for row in self.db.execute(query, chunk):
                episode = _row_to_episode(row)
                self._open.setdefault(episode.subject_key, {})[episode.rule] = episode
            query = f"SELECT DISTINCT device_key FROM failures WHERE device_key IN ({marks})"
            self._failing.update(key for (key,) in self.db.execute(query, chunk))
        self._keys.update(keys)

    def flush(self) -> None:
        """Write what was held back (first sights); before the transaction commits."""
        if self._unsaved:
            self.db.executemany("INSERT OR IGNORE INTO evaluated (key, at) VALUES (?, ?)", self._unsaved)
            self._unsaved.clear()

    def first_sight(self, observation_key: str, now: float) -> bool:
        if observation_key in self._observations:
            if observation_key in self._seen:
                return False
            self._seen.add(observation_key)
            self._unsaved.append((observation_key, now))
            return True
        cursor = self.db.execute("INSERT OR IGNORE INTO evaluated (key, at) VALUES (?, ?)", (observation_key, now))
        return cursor.rowcount == 1

    def _episodes(self, where: str, args: tuple[Any, ...]) -> list[Episode]:
        return [_row_to_episode(r) for r in self.db.execute(f"SELECT * FROM episodes WHERE {where}", args)]

    def open_episode(self, subject_key: str, rule: str) -> Episode | None:
        if subject_key in self._keys:
            episode = self._open.get(subject_key, {}).get(rule)
            return None if episode is None else copy.deepcopy(episode)  # the caller's own, as a read gives
        found = self._episodes(f"subject_key = ? AND rule = ? AND {_IS_OPEN}", (subject_key, rule))
        return found[0] if found else None

    def open_episodes(self, subject_key: str) -> list[Episode]:
        if subject_key in self._keys:
            return [copy.deepcopy(episode) for episode in self._open.get(subject_key, {}).values()]
        return self._episodes(f"subject_key = ? AND {_IS_OPEN}", (subject_key,))

    def recently_resolved(self, subject_key: str, rule: str, since: float) -> Episode | None:
        found = self._episodes(
            "subject_key = ? AND rule = ? AND state = 'resolved' AND resolved_at >= ?"
            " ORDER BY resolved_at DESC LIMIT 1",
            (subject_key, rule, since),
        )
        return found[0] if found else None

    def episode(self, alert_id: str) -> Episode | None:
        found = self._episodes("alert_id = ?", (alert_id,))
        return found[0] if found else None

    def save(self, episode: Episode) -> None:
        values = asdict(episode)
        for name in _JSON_COLUMNS:
            values[name] = json.dumps(values[name], ensure_ascii=False, sort_keys=True)
        columns = ", ".join(_EPISODE_COLUMNS)
        marks = ", ".join(f":{name}" for name in _EPISODE_COLUMNS)
        self.db.execute(f"INSERT OR REPLACE INTO episodes ({columns}) VALUES ({marks})", values)
        if episode.subject_key in self._keys:
            held = self._open.setdefault(episode.subject_key, {})
            for rule, known in list(held.items()):
                if known.alert_id == episode.alert_id:
                    del held[rule]
            if episode.state in OPEN_STATES:
                held[episode.rule] = copy.deepcopy(episode)

    def due(self, now: float) -> list[Episode]:
        # Every open episode is a candidate; the lifecycle decides. Open episodes are few (per subject).
        return self._episodes(_IS_OPEN, ())

    def add_history(self, subject_key: str, name: str, measured_at: float, value: float) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO history (subject_key, name, measured_at, value) VALUES (?, ?, ?, ?)",
            (subject_key, name, measured_at, value),
        )

    def history(self, subject_key: str, name: str, since: float) -> list[tuple[float, float]]:
        rows = self.db.execute(
            "SELECT measured_at, value FROM history WHERE subject_key = ? AND name = ? AND measured_at >= ?"
            " ORDER BY measured_at",
            (subject_key, name, since),
        )
        return [(float(a), float(v)) for a, v in rows]

    def count_failure(self, device_key: str, at: float, since: float) -> int:
        self._failing.add(device_key)
        self.db.execute("INSERT INTO failures (device_key, at) VALUES (?, ?)", (device_key, at))
        self.db.execute("DELETE FROM failures WHERE device_key = ? AND at < ?", (device_key, since))
        (count,) = self.db.execute("SELECT COUNT(*) FROM failures WHERE device_key = ?", (device_key,)).fetchone()
        return int(count)

    def clear_failures(self, device_key: str) -> None:
        if device_key in self._keys and device_key not in self._failing:
            return  # nothing on record
        self._failing.discard(device_key)
        self.db.execute("DELETE FROM failures WHERE device_key = ?", (device_key,))

    def enqueue(
        self,
        alert_id: str,
        channel: str,
        event: str,
        document: dict[str, Any],
        recipients: Sequence[str],
        now: float,
    ) -> int:
        cursor = self.db.execute(
            "INSERT INTO outbox (alert_id, channel, event, document, recipients, next_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                alert_id,
                channel,
                event,
                json.dumps(document, ensure_ascii=False),
                json.dumps(list(recipients)),
                now,
                now,
            ),
        )
        return int(cursor.lastrowid or 0)


class SqliteAlertStore:
    """The default :class:`AlertStore`: one SQLite file, shareable by the collector processes of a host."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # Alert state is what stops a second alert for one episode: it is synced at every commit.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[AlertTransaction]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                transaction = _SqliteTransaction(self._db)
                yield transaction
                transaction.flush()
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def claim(self, now: float, lease_s: float, limit: int) -> list[OutboxItem]:
        with self.transaction():
            rows = self._db.execute(
                "SELECT * FROM outbox WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?",
                (now, limit),
            ).fetchall()
            # The lease: another process sees these as not yet due until it runs out (a dispatcher that
            # died mid-send has its items taken up again then).
            self._db.executemany(
                "UPDATE outbox SET next_at = ? WHERE id = ?", [(now + lease_s, row["id"]) for row in rows]
            )
        return [_row_to_item(row) for row in rows]

    def delivered(self, item_id: int, now: float) -> None:
        with self.transaction():
            self._db.execute(
                "UPDATE outbox SET state = 'sent', attempts = attempts + 1, done_at = ? WHERE id = ?", (now, item_id)
            )

    def failed(self, item_id: int, error: str, retry_at: float | None, now: float) -> None:
        with self.transaction():
            if retry_at is None:
                self._db.execute(
                    "UPDATE outbox SET state = 'dead', attempts = attempts + 1, done_at = ?, last_error = ?"
                    " WHERE id = ?",
                    (now, error, item_id),
                )
            else:
                self._db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE id = ?",
                    (retry_at, error, item_id),
                )

    def next_due(self) -> float | None:
        with self._lock:
            (at,) = self._db.execute("SELECT MIN(next_at) FROM outbox WHERE state = 'pending'").fetchone()
        return None if at is None else float(at)

    def outbox(self, state: OutboxState | None = None, limit: int = 100) -> list[OutboxItem]:
        with self._lock:
            if state is None:
                rows = self._db.execute("SELECT * FROM outbox ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM outbox WHERE state = ? ORDER BY id DESC LIMIT ?", (state, limit)
                ).fetchall()
        return [_row_to_item(row) for row in rows]

    def last_error(self, item_id: int) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT last_error FROM outbox WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else row[0]

    def episodes(self, *, open_only: bool = False, limit: int = 100) -> list[Episode]:
        where = f"WHERE {_IS_OPEN}" if open_only else ""
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM episodes {where} ORDER BY opened_at DESC LIMIT ?", (limit,))
            return [_row_to_episode(row) for row in rows.fetchall()]

    def prune(self, before: float) -> None:
        """Forget evaluated keys, histories, failures, closed episodes and finished outbox items older than
        ``before`` (the caller keeps the trend window)."""
        with self.transaction():
            self._db.execute("DELETE FROM evaluated WHERE at < ?", (before,))
            self._db.execute("DELETE FROM history WHERE measured_at < ?", (before,))
            self._db.execute("DELETE FROM failures WHERE at < ?", (before,))
            self._db.execute(
                "DELETE FROM episodes WHERE state IN ('resolved', 'unconfirmed') AND last_seen_at < ?", (before,)
            )
            self._db.execute("DELETE FROM outbox WHERE state = 'sent' AND done_at < ?", (before,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
