"""Benchmark: durable readings per second into the gateway's spool, against persist-queue.

persist-queue's SQLiteAckQueue is what a Python developer would otherwise pick for a durable local
queue. Both run on the same disk with the same durability (SQLite WAL, synchronous=FULL, a put returns
only once committed). A hut has several devices producing at once, so both are fed by 8 concurrent
producers: asyncio tasks for the spool, threads for persist-queue (its own concurrency model). Median
of 3 runs each. Then a put into a full spool of 300,000 rows, which must evict, against one with room
(reading every evictable row for each such put once took 740 ms). And a floor, to read the ratio by: the
same producers and spool thread with each database commit replaced by the least a durable commit can
cost, one 4 KiB write and its fdatasync; no spool built this way (asyncio producers, a commit thread)
can beat that figure on the machine at hand. Summary line:
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
from collections.abc import Sequence
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


FLOORS = {"fsync": FsyncOnly, "bare": BareTable}


async def spool_rate(folder: Path, *, floor: str | None = None) -> tuple[float, int]:
    if floor is None:
        spool: SqliteSpool = open_spool(folder / "spool.sqlite", 10**9, gap_item)[0]
    else:
        spool = FLOORS[floor](folder / "floor.sqlite")
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
    floors: dict[str, list[float]] = {name: [] for name in FLOORS}
    commits: list[int] = []
    for _ in range(RUNS):  # interleaved: the machine is shared, and its speed drifts
        with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
            rate, count = asyncio.run(spool_rate(Path(tmp)))
            ours.append(rate)
            commits.append(count)
        with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
            theirs.append(persistqueue_rate(Path(tmp)))
        for name, rates in floors.items():
            with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
                rates.append(asyncio.run(spool_rate(Path(tmp), floor=name))[0])
    spool_median, pq_median = statistics.median(ours), statistics.median(theirs)
    print(f"{ITEMS} items of ~{len(body(0))} bytes from {PRODUCERS} concurrent producers; {RUNS} runs; medians")
    print(
        f"  healthhut spool: {spool_median:8.0f} durable puts/s  (runs {[round(r) for r in ours]}, "
        f"commits per run {commits})"
    )
    print(f"  persist-queue:   {pq_median:8.0f} durable puts/s  (runs {[round(r) for r in theirs]})")
    print("  the same producers and spool thread, with each commit replaced by")
    for name, label in (
        ("fsync", "one 4 KiB write + fdatasync, no database"),
        ("bare", "an INSERT into a bare SQLite table (no index)"),
    ):
        rate = statistics.median(floors[name])
        print(f"    {label:46} {rate:8.0f} puts/s  {rate / pq_median:.1f}x persist-queue")
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
