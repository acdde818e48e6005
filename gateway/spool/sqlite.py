"""The SQLite spool: WAL mode with synchronous=FULL, and group commit so that durability stays fast.

``put`` waits until its rows are committed and the WAL is fsync'd. Puts that arrive while a commit is
running are committed together in the next one, so many devices cost one fsync, not one each. All
database work runs on one dedicated thread of the spool's own, fed by a queue: it takes every put and
job waiting at once and wakes the event loop once per commit (no executor round trip and no task per
commit: at a few hundred microseconds per fsync, that overhead was half the cost of a put). Rowids
come from a counter of the spool's, not AUTOINCREMENT, which costs a write of sqlite_sequence in every
commit. A database that fails its integrity check on open is moved aside and replaced, and the caller
is told: the gateway never refuses to run because of its spool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from healthhut.gateway.spool.base import (
    GapItemFactory,
    Lease,
    Priority,
    SpoolChannel,
    SpoolError,
    SpoolFullError,
    SpoolItem,
    StoredItem,
    gaps_of,
    plan_eviction,
)

log = logging.getLogger(__name__)
R = TypeVar("R")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    rowid INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    priority INTEGER NOT NULL,
    key TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_channel ON items (channel, rowid);
CREATE INDEX IF NOT EXISTS items_by_priority ON items (priority, rowid);
"""
_INSERT = "INSERT OR IGNORE INTO items (rowid, channel, priority, key, body, size) VALUES (?, ?, ?, ?, ?, ?)"
# 960 parameters a statement: within the 999 that SQLite allowed before 3.32.
_ROWS_PER_INSERT = 160
# Free space the spool leaves on the filesystem: SQLite needs room to write the WAL even to delete.
DISK_RESERVE_BYTES = 4 * 1024 * 1024


class _Put:
    __slots__ = ("future", "items")

    def __init__(self, items: Sequence[SpoolItem], future: asyncio.Future[None]) -> None:
        self.items = items
        self.future = future


def _row(rowid: int, item: SpoolItem) -> tuple[int, str, int, str, bytes, int]:
    """The values of ``_INSERT`` for one item."""
    return (rowid, item.channel, int(item.priority), item.key, item.body, len(item.body))


class _Job:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[], Any], future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.future = future


def _settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if future.done():  # the caller gave up waiting (cancelled)
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class SqliteSpool:
    def __init__(self, path: Path, quota_bytes: int, gap_item: GapItemFactory) -> None:
        self.path = path
        self._folder = str(path.parent)
        self.quota_bytes = quota_bytes
        self._gap_item = gap_item
        self.evicted = 0
        self.commits = 0
        # Puts and jobs in the order they came; None, put by close() after everything else, ends the thread.
        self._queue: queue.SimpleQueue[_Put | _Job | None] = queue.SimpleQueue()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db = self._connect(path)
        self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        size, depth, last = self._db.execute(
            "SELECT COALESCE(SUM(size), 0), COUNT(*), COALESCE(MAX(rowid), 0) FROM items"
        ).fetchone()
        # Spools made by earlier versions have AUTOINCREMENT, whose high-water mark may be above the last
        # row: new rows stay above it too.
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            marks = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'items'").fetchall()
            last = max([last, *(seq for (seq,) in marks)])
        self._next_rowid = int(last) + 1
        self._size, self._depth = int(size), int(depth)
        self._leased: set[int] = set()
        self._ready = asyncio.Event()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit returns only after the WAL is fsync'd. NORMAL would only flush.
        db.execute("PRAGMA synchronous=FULL")
        # Keep the WAL small (it is disk the quota does not see): checkpoint every 1 MiB (256 pages of
        # the default 4 KiB). The file is then reused from its start, at the size it reached; it is cut
        # back only past 2 MiB, after a large transaction: cutting it to 1 MiB each time made the last
        # commits before every checkpoint grow the file again, and an fsync that must also record a new
        # file size costs more (0.32 against 0.35 ms per commit of 8 items here).
        db.execute("PRAGMA wal_autocheckpoint=256")
        db.execute(f"PRAGMA journal_size_limit={2 * 1024 * 1024}")
        db.executescript(_SCHEMA)
        return db

    # -- the spool's thread ----------------------------------------------------------------------
    def _submit(self, work: _Put | _Job) -> None:
        """Hand work to the spool's thread, starting it on first use. The thread wakes at once, but to
        take the work it needs the GIL, which the event loop holds while it runs Python code (until it
        waits for I/O, or for 5 ms at most): so the puts made in one turn of the loop, typically by
        every producer that a commit just released, are taken together and share the next commit."""
        if self._closing:
            raise SpoolError("the spool is closed", str(self.path))
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._work, name="spool", daemon=True)
            self._thread.start()
        self._queue.put(work)

    async def _run(self, fn: Callable[[], R]) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._submit(_Job(fn, future))
        return await future

    def _work(self) -> None:
        inbox = self._queue
        loop = self._loop
        assert loop is not None
        while True:
            waiting = [inbox.get()]
            while not inbox.empty():
                waiting.append(inbox.get_nowait())
            puts: list[_Put] = []
            for work in waiting:
                if isinstance(work, _Put):
                    puts.append(work)
                    continue
                if puts:  # what came before the job is done before it
                    self._commit_and_resolve(loop, puts)
                    puts = []
                if work is None:
                    return
                try:
                    result, error = work.fn(), None
                except Exception as exc:  # noqa: BLE001 - handed to the caller, who raises it
                    result, error = None, exc
                loop.call_soon_threadsafe(_settle, work.future, result, error)
            if puts:
                self._commit_and_resolve(loop, puts)

    def _commit_and_resolve(self, loop: asyncio.AbstractEventLoop, puts: list[_Put]) -> None:
        try:
            outcomes: list[SpoolError | None] = self._commit_group(puts)
        except Exception as exc:  # noqa: BLE001 - a bug must fail the puts, not hang them
            outcomes = [SpoolError(f"cannot store items: {exc!r}", str(self.path))] * len(puts)
        self.commits += 1
        loop.call_soon_threadsafe(self._resolve, puts, outcomes)

    def _resolve(self, puts: Sequence[_Put], outcomes: Sequence[SpoolError | None]) -> None:
        for put, outcome in zip(puts, outcomes, strict=True):
            _settle(put.future, None, outcome)
        if self._depth > len(self._leased):
            self._ready.set()

    # -- put, with group commit ------------------------------------------------------------------
    async def put(self, items: Sequence[SpoolItem]) -> None:
        if not items:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(_Put(items, future))
        await future

    def _commit_group(self, group: Sequence[_Put]) -> list[SpoolError | None]:
        """All waiting puts in one transaction, so one fsync; each put in its own savepoint, so each is
        accepted whole or refused whole."""
        db = self._db
        outcomes: list[SpoolError | None] = []
        size = depth = evicted = 0
        try:
            items = [item for put in group for item in put.items]
            total = sum(len(item.body) for item in items)
            # One look at the filesystem per commit, not per item.
            if self._size + total <= self._room(exact=False) and self._commit_all(items, total):
                return [None] * len(group)
            room = self._room(exact=True)
            db.execute("BEGIN IMMEDIATE")
            for put in group:
                db.execute("SAVEPOINT put")
                try:
                    change = self._insert(put.items, size, room)
                except SpoolFullError as exc:
                    db.execute("ROLLBACK TO put")
                    db.execute("RELEASE put")
                    outcomes.append(exc)
                    continue
                db.execute("RELEASE put")
                size, depth, evicted = size + change[0], depth + change[1], evicted + change[2]
                outcomes.append(None)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            full = isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)
            error = (SpoolFullError if full else SpoolError)(f"cannot store items: {exc}", str(self.path))
            return [error] * len(group)
        self._size += size
        self._depth += depth
        self.evicted += evicted
        return outcomes

    def _commit_all(self, items: Sequence[SpoolItem], total: int) -> bool:
        """The common case in one transaction: everything fits (the caller has checked) and nothing is a
        duplicate. False (having changed nothing) when a key was already there, and the careful path
        with a savepoint per put must run."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        before = db.total_changes
        first = self._take_rowids(len(items))
        # Many rows per INSERT: each statement opens the table and its three indexes once, where
        # executemany opens them for every row (8 rows: 47 against 88 microseconds here).
        for start in range(0, len(items), _ROWS_PER_INSERT):
            chunk = items[start : start + _ROWS_PER_INSERT]
            values: list[object] = []
            for rowid, item in enumerate(chunk, first + start):
                values += _row(rowid, item)
            db.execute(_INSERT + ", (?, ?, ?, ?, ?, ?)" * (len(chunk) - 1), values)
        if db.total_changes - before != len(items):
            db.execute("ROLLBACK")
            return False
        db.execute("COMMIT")
        self._size += total
        self._depth += len(items)
        return True

    def _insert(self, items: Sequence[SpoolItem], pending_size: int, room: int) -> tuple[int, int, int]:
        """Insert within the current savepoint; returns (bytes, rows, evicted) it added."""
        size = depth = evicted = 0
        for item in items:
            freed, removed, gap_rows, gap_size = self._make_room(item, pending_size + size, room)
            size += gap_size - freed
            depth += gap_rows - removed
            evicted += removed
            if self._insert_one(item):
                size += len(item.body)
                depth += 1
        return size, depth, evicted

    def _insert_one(self, item: SpoolItem) -> bool:
        """One row, within the transaction under way; False if its key was there already."""
        return self._db.execute(_INSERT, _row(self._take_rowids(1), item)).rowcount == 1

    def _take_rowids(self, count: int) -> int:
        """The first of ``count`` fresh rowids. They only ever grow, even past a rollback or a row that
        was ignored, so a rowid is never reused in the life of this object: an ack or release of a lease
        whose rows were evicted meanwhile can never touch a newer row. (SQLite's own choice, the largest
        rowid plus one, would reuse the rowid of an evicted last row; AUTOINCREMENT prevents that too,
        at the price of writing sqlite_sequence in every commit.)"""
        first = self._next_rowid
        self._next_rowid += count
        return first

    def _room(self, *, exact: bool) -> int:
        """Bytes the spool may hold: the quota, or less when the filesystem is nearly full. Free pages
        inside the database count as room: SQLite reuses them, though it never gives them back. Not
        ``exact``, those pages are left out (reading their count costs more than the statvfs): a lower
        bound, enough to know that a commit fits."""
        stats = os.statvfs(self._folder)
        free = stats.f_bavail * stats.f_frsize - DISK_RESERVE_BYTES
        if exact:
            free += int(self._db.execute("PRAGMA freelist_count").fetchone()[0]) * self._page_size
        return min(self.quota_bytes, self._size + max(0, free))

    def _make_room(self, item: SpoolItem, pending_size: int, room: int) -> tuple[int, int, int, int]:
        """Evict what must go for ``item`` to fit; returns (bytes freed, rows evicted, gap rows, gap bytes)."""
        excess = self._size + pending_size + len(item.body) - room
        if excess <= 0:
            return 0, 0, 0, 0
        # Leased rows (in a message sent but not yet confirmed) may go too: otherwise, with the broker
        # down, a full window of waveforms would force vitals out first. Such a message may still be
        # confirmed later, so a gap record can over-report a loss, never hide one.
        # In eviction order from the priority index, read only as far as the plan needs.
        rows = self._db.execute(
            "SELECT rowid, priority, size FROM items WHERE priority <= ? ORDER BY priority, rowid",
            (int(item.priority),),
        )
        candidates = ((rowid, Priority(priority), size) for rowid, priority, size in rows)
        victims = plan_eviction(candidates, excess, item.priority)
        rows.close()
        if victims is None:
            raise SpoolFullError(
                f"no room for a {item.channel} item of {len(item.body)} bytes "
                f"(quota {self.quota_bytes}, holding {self._size + pending_size})",
                str(self.path),
            )
        marks = ",".join("?" * len(victims))
        rows = self._db.execute(f"SELECT channel, priority, size FROM items WHERE rowid IN ({marks})", victims)
        evicted = [(cast(SpoolChannel, channel), Priority(priority), int(size)) for channel, priority, size in rows]
        self._db.execute(f"DELETE FROM items WHERE rowid IN ({marks})", victims)
        self._leased.difference_update(victims)
        freed = sum(size for _, _, size in evicted)
        # The gap is stored in the same transaction as the eviction: no loss without its record.
        gap_size = 0
        gaps = gaps_of(evicted)
        for gap in gaps:
            record = self._gap_item(gap)
            self._insert_one(record)
            gap_size += len(record.body)
        log.warning("spool full: evicting %d item(s) (%d bytes) to make room", len(evicted), freed)
        return freed, len(evicted), len(gaps), gap_size

    # -- delivery --------------------------------------------------------------------------------
    async def lease(self, channel: SpoolChannel, max_items: int, max_bytes: int) -> Lease:
        leased = tuple(self._leased)

        def select() -> list[StoredItem]:
            # Leased rows are few (the in-flight window), so excluding them by list is cheap.
            exclude = f"AND rowid NOT IN ({','.join('?' * len(leased))})" if leased else ""
            rows = self._db.execute(
                f"SELECT rowid, channel, priority, key, body FROM items WHERE channel = ? {exclude} "
                "ORDER BY rowid LIMIT ?",
                (channel, *leased, max_items),
            ).fetchall()
            chosen: list[StoredItem] = []
            total = 0
            for rowid, row_channel, priority, key, body in rows:
                if chosen and total + len(body) > max_bytes:
                    break
                chosen.append(StoredItem(rowid, SpoolItem(row_channel, Priority(priority), key, bytes(body))))
                total += len(body)
            return chosen

        chosen = await self._run(select)
        self._leased.update(stored.rowid for stored in chosen)
        return Lease(tuple(chosen))

    async def ack(self, lease: Lease) -> None:
        rowids = lease.rowids
        if not rowids:
            return

        def delete() -> tuple[int, int]:
            marks = ",".join("?" * len(rowids))
            size, count = self._db.execute(
                f"SELECT COALESCE(SUM(size), 0), COUNT(*) FROM items WHERE rowid IN ({marks})", rowids
            ).fetchone()
            # Deleting needs no fsync of its own: a delivered item resent after a crash is deduplicated
            # upstream by its id, so NORMAL durability is enough here and keeps acks cheap.
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute(f"DELETE FROM items WHERE rowid IN ({marks})", rowids)
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            return int(size), int(count)

        size, count = await self._run(delete)
        self._size -= size
        self._depth -= count
        self._leased.difference_update(rowids)

    async def release(self, lease: Lease) -> None:
        self._leased.difference_update(lease.rowids)
        if self._depth > len(self._leased):
            self._ready.set()

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def size_bytes(self) -> int:
        return self._size

    async def oldest(self) -> SpoolItem | None:
        def first() -> SpoolItem | None:
            row = self._db.execute("SELECT channel, priority, key, body FROM items ORDER BY rowid LIMIT 1").fetchone()
            return None if row is None else SpoolItem(row[0], Priority(row[1]), row[2], bytes(row[3]))

        return await self._run(first)

    async def wait_for_items(self) -> None:
        while self._depth <= len(self._leased):
            self._ready.clear()
            await self._ready.wait()

    async def close(self) -> None:
        if self._thread is None:
            self._db.close()
            return
        await self._run(self._db.close)  # after every put already waiting
        self._closing = True
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)


def check_database(path: Path) -> str | None:
    """None if the database at ``path`` is sound, else what is wrong with it."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = db.execute("PRAGMA quick_check").fetchone()
            db.execute("SELECT COUNT(*) FROM items").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return str(exc)
    return None if result and result[0] == "ok" else str(result[0] if result else "no answer")


def open_spool(path: Path, quota_bytes: int, gap_item: GapItemFactory) -> tuple[SqliteSpool, str | None]:
    """Open (or create) the spool. A corrupt database is moved aside and a fresh one started; the second
    value then says what was wrong and where the old file went, for the caller to report upstream."""
    path.parent.mkdir(parents=True, exist_ok=True)
    problem = check_database(path) if path.exists() else None
    if problem is not None:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                os.replace(source, Path(f"{aside}{suffix}"))
        log.error("spool %s is corrupt (%s); moved to %s and starting a new one", path, problem, aside)
        problem = f"spool database was corrupt ({problem}); moved to {aside.name}"
    try:
        return SqliteSpool(path, quota_bytes, gap_item), problem
    except sqlite3.Error as exc:
        raise SpoolError(f"cannot open spool: {exc}", str(path)) from exc
