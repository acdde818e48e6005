"""One suite for every spool implementation (memory and SQLite), plus what only SQLite promises:
durability across a restart, group commit, a corrupt file moved aside, and a really full disk."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from healthhut.gateway.spool import (
    Gap,
    MemorySpool,
    Priority,
    Spool,
    SpoolFullError,
    SpoolItem,
    SqliteSpool,
    open_spool,
)
from healthhut.gateway.spool.base import gaps_of, plan_eviction
from healthhut.gateway.spool.sqlite import DISK_RESERVE_BYTES

PRIORITY_OF = {"wave": Priority.WAVEFORM, "event": Priority.DIAGNOSTIC, "obs": Priority.VITAL}


def gap_item(gap: Gap) -> SpoolItem:
    body = json.dumps({"gap": gap.channel, "priority": int(gap.priority), "count": gap.count}).encode()
    return SpoolItem("event", Priority.GAP, f"gap-{gap.channel}-{gap.count}-{os.urandom(4).hex()}", body)


def item(n: int, channel: str = "obs", size: int = 100) -> SpoolItem:
    return SpoolItem(channel, PRIORITY_OF[channel], f"{channel}-{n}", bytes([n % 256]) * size)  # type: ignore[arg-type]


def gaps_in(spool_items: list[SpoolItem]) -> list[dict[str, int]]:
    return [json.loads(i.body) for i in spool_items if i.priority == Priority.GAP]


@pytest.fixture(params=["memory", "sqlite"])
async def make_spool(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[int], Spool]]:
    opened: list[Spool] = []

    def make(quota: int) -> Spool:
        spool: Spool
        if request.param == "memory":
            spool = MemorySpool(quota, gap_item)
        else:
            spool, problem = open_spool(tmp_path / f"spool{len(opened)}.sqlite", quota, gap_item)
            assert problem is None
        opened.append(spool)
        return spool

    yield make
    for spool in opened:
        await spool.close()


async def everything(spool: Spool, channel: str) -> list[SpoolItem]:
    lease = await spool.lease(channel, 10_000, 10**9)  # type: ignore[arg-type]
    await spool.release(lease)
    return [stored.item for stored in lease.items]


async def test_items_leave_in_order_and_only_when_acked(make_spool: Callable[[int], Spool]) -> None:
    spool = make_spool(10**6)
    await spool.put([item(n) for n in range(5)])
    await spool.put([item(0)])  # the same key again: stored once
    assert spool.depth == 5 and spool.size_bytes == 500
    first = await spool.lease("obs", 2, 10**6)
    assert [s.item.key for s in first.items] == ["obs-0", "obs-1"]
    second = await spool.lease("obs", 10, 10**6)
    assert [s.item.key for s in second.items] == ["obs-2", "obs-3", "obs-4"]
    assert (await spool.lease("obs", 10, 10**6)).items == ()
    assert await spool.oldest() == item(0)  # leased items still count as waiting
    await spool.release(first)  # not delivered: offered again, in its old place
    again = await spool.lease("obs", 10, 10**6)
    assert [s.item for s in again.items] == [item(0), item(1)]
    await spool.ack(again)
    assert await spool.oldest() == item(2)
    await spool.ack(second)
    assert spool.depth == 0 and spool.size_bytes == 0
    assert await spool.oldest() is None


async def test_lease_respects_byte_budget_but_always_moves(make_spool: Callable[[int], Spool]) -> None:
    spool = make_spool(10**6)
    await spool.put([item(n, size=400) for n in range(3)])
    assert len((await spool.lease("obs", 10, 900)).items) == 2
    assert len((await spool.lease("obs", 10, 10)).items) == 1, "one oversized item still goes out alone"


async def test_full_spool_evicts_waveforms_first_and_records_the_gap(make_spool: Callable[[int], Spool]) -> None:
    spool = make_spool(1000)
    await spool.put([item(1, "wave", 300), item(2, "wave", 300), item(3, "event", 200), item(4, "obs", 100)])
    await spool.put([item(5, "obs", 500)])  # 400 bytes too many: both waveforms go, nothing else
    assert [i.key for i in await everything(spool, "wave")] == []
    assert [i.key for i in await everything(spool, "obs")] == ["obs-4", "obs-5"]
    events = await everything(spool, "event")
    assert [i.key for i in events if i.priority != Priority.GAP] == ["event-3"]
    assert gaps_in(events) == [{"gap": "wave", "priority": 0, "count": 2}]
    assert spool.evicted == 2


async def test_vitals_go_last_and_a_waveform_never_evicts_a_vital(make_spool: Callable[[int], Spool]) -> None:
    spool = make_spool(300)
    await spool.put([item(1, "obs", 100), item(2, "obs", 100), item(3, "wave", 100)])
    with pytest.raises(SpoolFullError):
        await spool.put([item(4, "wave", 250)])
    await spool.put([item(5, "obs", 150)])  # the waveform goes first, then the oldest vital
    assert [i.key for i in await everything(spool, "obs")] == ["obs-2", "obs-5"]
    assert sorted(g["gap"] for g in gaps_in(await everything(spool, "event"))) == ["obs", "wave"]


async def test_a_put_is_accepted_whole_or_not_at_all(make_spool: Callable[[int], Spool]) -> None:
    spool = make_spool(300)
    await spool.put([item(1, "obs", 200)])
    with pytest.raises(SpoolFullError):
        await spool.put([item(2, "wave", 50), item(3, "wave", 200)])
    assert [i.key for i in await everything(spool, "wave")] == []
    assert spool.depth == 1 and spool.size_bytes == 200


async def test_leased_items_yield_to_priority_too(make_spool: Callable[[int], Spool]) -> None:
    """With the broker down, a window of waveforms in flight must not force a vital out first."""
    spool = make_spool(300)
    await spool.put([item(1, "obs", 100), item(2, "wave", 100), item(3, "wave", 100)])
    lease = await spool.lease("wave", 10, 10**6)
    await spool.put([item(4, "obs", 150)])
    assert [i.key for i in await everything(spool, "obs")] == ["obs-1", "obs-4"]
    assert gaps_in(await everything(spool, "event")) == [{"gap": "wave", "priority": 0, "count": 2}]
    await spool.ack(lease)  # confirming what was evicted meanwhile is harmless
    assert spool.depth == 3


async def test_waiting_for_items_wakes_on_put_and_release(make_spool: Callable[[int], Spool]) -> None:
    spool = make_spool(10**6)
    waiter = asyncio.create_task(spool.wait_for_items())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await spool.put([item(1)])
    await asyncio.wait_for(waiter, 2)
    lease = await spool.lease("obs", 10, 10**6)
    waiter = asyncio.create_task(spool.wait_for_items())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await spool.release(lease)
    await asyncio.wait_for(waiter, 2)


# -- SQLite only ---------------------------------------------------------------------------------


async def test_accepted_items_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool, _ = open_spool(path, 10**6, gap_item)
    await spool.put([item(n) for n in range(3)])
    await spool.lease("obs", 2, 10**6)  # in flight when the gateway stops: it must come back
    await spool.close()
    again, problem = open_spool(path, 10**6, gap_item)
    assert problem is None and again.depth == 3 and again.size_bytes == 300
    assert [s.item for s in (await again.lease("obs", 10, 10**6)).items] == [item(0), item(1), item(2)]
    await again.close()


async def test_concurrent_puts_share_commits(tmp_path: Path) -> None:
    spool, _ = open_spool(tmp_path / "spool.sqlite", 10**8, gap_item)
    await asyncio.gather(*(spool.put([item(n)]) for n in range(200)))
    assert spool.depth == 200
    assert spool.commits < 100, f"{spool.commits} commits for 200 concurrent puts: no group commit"
    await spool.close()


async def test_a_spool_made_with_autoincrement_keeps_its_rowids_above_the_old_high_water_mark(
    tmp_path: Path,
) -> None:
    """Earlier versions made the table with AUTOINCREMENT. A row deleted from the end leaves its rowid
    used in sqlite_sequence; the spool must not hand it out again."""
    path = tmp_path / "spool.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE items (
            rowid INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, priority INTEGER NOT NULL,
            key TEXT NOT NULL UNIQUE, body BLOB NOT NULL, size INTEGER NOT NULL
        );
        CREATE INDEX items_by_channel ON items (channel, rowid);
        CREATE INDEX items_by_priority ON items (priority, rowid);
        """
    )
    for n in (1, 2, 3):
        db.execute(
            "INSERT INTO items (channel, priority, key, body, size) VALUES ('obs', 2, ?, ?, 100)",
            (item(n).key, item(n).body),
        )
    db.execute("DELETE FROM items WHERE rowid = 3")
    db.commit()
    db.close()
    spool, problem = open_spool(path, 10**6, gap_item)
    assert problem is None
    await spool.put([item(4)])
    lease = await spool.lease("obs", 10, 10**6)
    assert [(s.rowid, s.item) for s in lease.items] == [(1, item(1)), (2, item(2)), (4, item(4))]
    await spool.close()


async def test_a_put_of_many_items_is_stored_whole_and_in_order(tmp_path: Path) -> None:
    """More items than one INSERT statement takes: they go in several, in one transaction."""
    spool, _ = open_spool(tmp_path / "spool.sqlite", 10**8, gap_item)
    await spool.put([item(n) for n in range(500)])
    await spool.put([item(n) for n in range(495, 505)])  # five already there: the careful path
    assert spool.depth == 505 and spool.size_bytes == 50_500
    lease = await spool.lease("obs", 1000, 10**8)
    assert [s.item for s in lease.items] == [item(n) for n in range(505)]
    assert [s.rowid for s in lease.items] == sorted({s.rowid for s in lease.items})
    await spool.close()


@pytest.mark.parametrize("damage", [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
async def test_corrupt_spool_is_moved_aside_and_replaced(tmp_path: Path, damage: bytes) -> None:
    path = tmp_path / "spool.sqlite"
    path.write_bytes(damage)
    spool, problem = open_spool(path, 10**6, gap_item)
    assert problem is not None and "corrupt" in problem
    aside = list(tmp_path.glob("spool.sqlite.corrupt-*"))
    assert [p.read_bytes() for p in aside if not p.name.endswith(("-wal", "-shm"))] == [damage]
    await spool.put([item(1)])
    assert spool.depth == 1
    await spool.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB filesystem (tmpfs), so that the disk really fills. Needs root, as CI has."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path: Path) -> None:
    """Write until the filesystem says no more."""
    with open(path, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


async def test_a_nearly_full_disk_evicts_by_priority(small_disk: Path) -> None:
    # The quota is far beyond the disk: the filesystem is what bounds the spool.
    spool = SqliteSpool(small_disk / "spool.sqlite", 10**9, gap_item)
    (small_disk / "someone-elses-logs").write_bytes(b"\0" * (2 * 1024 * 1024))
    for n in range(2000):  # 4 MB of waveforms into a disk with about 2 MB to spare
        await spool.put([item(n, "wave", 2000)])
    await spool.put([item(1, "obs", 2000)])
    assert spool.evicted > 0
    assert spool.size_bytes <= 8 * 1024 * 1024 - 2 * 1024 * 1024 - DISK_RESERVE_BYTES
    assert [i.key for i in await everything(spool, "obs")] == ["obs-1"]
    assert {g["gap"] for g in gaps_in(await everything(spool, "event"))} == {"wave"}
    await spool.close()


async def test_a_completely_full_disk_refuses_cleanly_and_recovers(small_disk: Path) -> None:
    spool = SqliteSpool(small_disk / "spool.sqlite", 10**9, gap_item)
    await spool.put([item(1, "obs", 2000)])
    fill(small_disk / "runaway-log")
    accepted = ["obs-1"]
    for n in range(2, 200):
        try:
            await spool.put([item(n, "obs", 2000)])
            accepted.append(f"obs-{n}")
        except SpoolFullError:
            break
    else:
        pytest.fail("a completely full disk never refused a put")
    (small_disk / "runaway-log").unlink()
    await spool.put([item(999, "obs", 2000)])
    assert [i.key for i in await everything(spool, "obs")] == [*accepted, "obs-999"]
    await spool.close()


def test_gap_records_list_an_eviction_lowest_priority_first_whatever_the_row_order() -> None:
    # Rows come back from the database oldest first: here a device's events before the waveforms.
    evicted = [
        ("event", Priority.DIAGNOSTIC, 100),
        ("wave", Priority.WAVEFORM, 500),
        ("event", Priority.DIAGNOSTIC, 120),
        ("wave", Priority.WAVEFORM, 700),
    ]
    assert gaps_of(evicted) == [  # type: ignore[arg-type]
        Gap("wave", Priority.WAVEFORM, 2, 1200),
        Gap("event", Priority.DIAGNOSTIC, 2, 220),
    ]


def test_the_eviction_plan_reads_only_the_rows_it_evicts() -> None:
    # The SQLite spool hands it a cursor over every evictable row, in order: on a full spool of millions of
    # rows, reading them all took most of a second per put (740 ms at 300,000 rows), and a full spool
    # evicts on every put.
    read: list[int] = []

    def rows() -> Iterator[tuple[int, Priority, int]]:
        for rowid in range(1, 1_000_000):
            read.append(rowid)
            yield rowid, Priority.WAVEFORM, 100

    assert plan_eviction(rows(), 250, Priority.VITAL) == [1, 2, 3]
    assert read == [1, 2, 3]


async def test_a_full_spool_of_many_rows_evicts_exactly_the_oldest_waveforms(tmp_path: Path) -> None:
    spool, _ = open_spool(tmp_path / "spool.sqlite", 20_000 * 100, gap_item)
    try:
        for start in range(0, 20_000, 2_000):
            items = [
                SpoolItem(
                    "wave" if n % 2 else "obs", Priority.WAVEFORM if n % 2 else Priority.VITAL, f"k{n}", b"x" * 100
                )
                for n in range(start, start + 2_000)
            ]
            await spool.put(items)
        await spool.put([SpoolItem("obs", Priority.VITAL, "new", b"y" * 250)])
        lease = await spool.lease("wave", 5, 10**6)
        # Waveforms 1, 3 and 5 made room (and the gap record's bytes), 7 is the oldest left.
        assert [stored.item.key for stored in lease.items][:1] == ["k7"], [s.item.key for s in lease.items]
        assert spool.evicted == 3
    finally:
        await spool.close()
