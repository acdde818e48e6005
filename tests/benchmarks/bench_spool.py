"""Benchmark: durable readings per second into the gateway's spool, against persist-queue.

persist-queue's SQLiteAckQueue is what a Python developer would otherwise pick for a durable local
queue. Both run on the same disk with the same durability (SQLite WAL, synchronous=FULL, a put returns
only once committed). A hut has several devices producing at once, so both are fed by 8 concurrent
producers: asyncio tasks for the spool, threads for persist-queue (its own concurrency model). Median
of 5 interleaved runs each. Then a put into a full spool of 300,000 rows, which must evict, against one with room
(reading every evictable row for each such put once took 740 ms). And three what-ifs in the same runs, to
read the ratio by: the spool's thread and group commit with each commit cut down to one 4 KiB write and its
fdatasync (no database), or to an INSERT into a table with no index (the least a SQLite spool pays); and the
spool's own commit run on the event loop's thread, which saves the hand-off to the spool's thread and back
but stops the loop for every fsync (the gateway does not). Summary line:
``spool: durable_per_s=... persistqueue_per_s=... ratio=...``
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import persistqueue

from healthhut.gateway.outbox import gap_item
from healthhut.gateway.spool import Priority, SpoolItem, open_spool
from healthhut.gateway.spool.base import SpoolError
from healthhut.gateway.spool.sqlite import SqliteSpool, _Put

PRODUCERS = 8
ITEMS = 4000
RUNS = 5


def body(n: int) -> bytes:
    reading = {"id": f"{n:032x}", "kind": "spo2", "values": {"spo2": {"value": 97.0, "unit": "%"}}, "pad": "x" * 300}
    return json.dumps(reading).encode()


class FsyncOnly(SqliteSpool):
    """The spool's machinery (its thread, group commit and wake-ups) with each commit replaced by one 4 KiB
    write and its fdatasync: what the spool would do if its database cost nothing beyond durability."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, 10**9, gap_item)
        self._log = os.open(path.with_suffix(".log"), os.O_RDWR | os.O_CREAT, 0o600)
        os.pwrite(self._log, bytes(8192), 0)  # written once, so each commit overwrites allocated blocks
        os.fsync(self._log)

    def _commit_group(self, group: Sequence[_Put]) -> list[SpoolError | None]:
        os.pwrite(self._log, os.urandom(4096), 0)
        os.fdatasync(self._log)
        self._depth += sum(len(put.items) for put in group)
        return [None] * len(group)

    async def close(self) -> None:
        await super().close()
        os.close(self._log)


class BareTable(SqliteSpool):
    """The spool's machinery and its database settings (WAL, synchronous=FULL, the same checkpoints), with
    each commit reduced to inserting the bodies into a table with no index, key or bookkeeping: what any
    SQLite spool must pay."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, 10**9, gap_item)
        self._db.execute("CREATE TABLE bare (body BLOB NOT NULL)")

    def _commit_group(self, group: Sequence[_Put]) -> list[SpoolError | None]:
        bodies = [item.body for put in group for item in put.items]
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("INSERT INTO bare (body) VALUES (?)" + ", (?)" * (len(bodies) - 1), bodies)
        self._db.execute("COMMIT")
        self._depth += len(bodies)
        return [None] * len(group)


class OnTheLoop(SqliteSpool):
    """The spool's own commit, run on the event loop's thread at the end of each turn of the loop: no
    hand-off to the spool's thread and back, but the loop stops for every fsync (on an SD card, now and
    then for a second), which the gateway does not accept. Measured to show what the thread costs."""

    _waiting: list[_Put] | None = None

    async def put(self, items: Sequence[SpoolItem]) -> None:
        loop = asyncio.get_running_loop()
        if self._waiting is None:
            self._waiting = []
            loop.call_soon(self._commit_now)
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.append(_Put(items, future))
        await future

    def _commit_now(self) -> None:
        puts, self._waiting = self._waiting or [], None
        self._resolve(puts, self._commit_group(puts))


VARIANTS: dict[str, Callable[[Path], SqliteSpool]] = {
    "fsync": lambda folder: FsyncOnly(folder / "variant.sqlite"),
    "bare": lambda folder: BareTable(folder / "variant.sqlite"),
    "loop": lambda folder: OnTheLoop(folder / "variant.sqlite", 10**9, gap_item),
}


async def spool_rate(folder: Path, *, variant: str | None = None) -> tuple[float, int]:
    spool = open_spool(folder / "spool.sqlite", 10**9, gap_item)[0] if variant is None else VARIANTS[variant](folder)
    per_producer = ITEMS // PRODUCERS

    async def produce(worker: int) -> None:
        for n in range(per_producer):
            key = f"{worker}-{n}"
            await spool.put([SpoolItem("obs", Priority.VITAL, key, body(worker * per_producer + n))])

    start = time.perf_counter()
    await asyncio.gather(*(produce(w) for w in range(PRODUCERS)))
    elapsed = time.perf_counter() - start
    assert spool.depth == per_producer * PRODUCERS
    commits = spool.commits
    await spool.close()
    return per_producer * PRODUCERS / elapsed, commits


def persistqueue_rate(folder: Path) -> float:
    queue = persistqueue.SQLiteAckQueue(str(folder / "pq"), auto_commit=True, multithreading=True)
    # Same durability as the spool: WAL (persist-queue's own choice) with a synced commit per put.
    queue._putter.execute("PRAGMA synchronous=FULL")
    per_producer = ITEMS // PRODUCERS

    def produce(worker: int) -> None:
        for n in range(per_producer):
            queue.put(body(worker * per_producer + n))

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(PRODUCERS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    assert queue.size == per_producer * PRODUCERS
    return per_producer * PRODUCERS / elapsed


FULL_ROWS = 300_000
EVICTING_PUTS = 21


async def full_spool_puts(folder: Path) -> tuple[float, float]:
    """Median seconds of a put into a full spool of FULL_ROWS rows (it must evict), and of a put into the
    same spool with room: a hut whose uplink is down for days runs full and evicts on every put."""
    item_body = b"x" * 400
    logging.getLogger("healthhut.gateway.spool").setLevel(logging.ERROR)  # a warning per eviction
    spool, _ = open_spool(folder / "full.sqlite", FULL_ROWS * len(item_body), gap_item)
    try:
        for start in range(0, FULL_ROWS, 5000):
            await spool.put(
                [
                    SpoolItem(*(("wave", Priority.WAVEFORM) if n % 2 else ("obs", Priority.VITAL)), f"k{n}", item_body)
                    for n in range(start, start + 5000)
                ]
            )

        async def timed(prefix: str) -> float:
            times = []
            for n in range(EVICTING_PUTS):
                start = time.perf_counter()
                await spool.put([SpoolItem("obs", Priority.VITAL, f"{prefix}{n}", item_body)])
                times.append(time.perf_counter() - start)
            return statistics.median(times)

        evicting = await timed("full")
        assert spool.evicted >= EVICTING_PUTS
        spool.quota_bytes *= 2
        with_room = await timed("room")
    finally:
        await spool.close()
    return evicting, with_room


def main() -> None:
    ours: list[float] = []
    theirs: list[float] = []
    variants: dict[str, list[float]] = {name: [] for name in VARIANTS}
    commits: list[int] = []
    for _ in range(RUNS):  # interleaved: the machine is shared, and its speed drifts
        with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
            rate, count = asyncio.run(spool_rate(Path(tmp)))
            ours.append(rate)
            commits.append(count)
        with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
            theirs.append(persistqueue_rate(Path(tmp)))
        for name, rates in variants.items():
            with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
                rates.append(asyncio.run(spool_rate(Path(tmp), variant=name))[0])
    spool_median, pq_median = statistics.median(ours), statistics.median(theirs)
    print(f"{ITEMS} items of ~{len(body(0))} bytes from {PRODUCERS} concurrent producers; {RUNS} runs; medians")
    print(
        f"  healthhut spool: {spool_median:8.0f} durable puts/s  (runs {[round(r) for r in ours]}, "
        f"commits per run {commits})"
    )
    print(f"  persist-queue:   {pq_median:8.0f} durable puts/s  (runs {[round(r) for r in theirs]})")
    print("  what-ifs, with the same producers in the same runs:")
    for name, label in (
        ("fsync", "spool thread; each commit one 4 KiB write + fdatasync, no database"),
        ("bare", "spool thread; each commit an INSERT into a bare table, no index"),
        ("loop", "the spool's own commit on the event loop's thread (blocking it)"),
    ):
        rate = statistics.median(variants[name])
        print(f"    {label:68} {rate:6.0f} puts/s  {rate / pq_median:.1f}x persist-queue")
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        evicting, with_room = asyncio.run(full_spool_puts(Path(tmp)))
    print(
        f"  a put into a full spool of {FULL_ROWS} rows, which evicts: {evicting * 1000:.2f} ms median, "
        f"against {with_room * 1000:.2f} ms for a put with room"
    )
    ratio = spool_median / pq_median
    print(f"spool: durable_per_s={spool_median:.0f} persistqueue_per_s={pq_median:.0f} ratio={ratio:.1f}")


if __name__ == "__main__":
    main()
