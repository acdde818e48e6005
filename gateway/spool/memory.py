"""An in-memory spool: the same contract without durability, for tests and for a hut with no disk to
spare. The shared suite in tests/gateway/test_spool.py runs against it and the SQLite spool alike."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from healthhut.gateway.spool.base import (
    GapItemFactory,
    Lease,
    Priority,
    SpoolChannel,
    SpoolFullError,
    SpoolItem,
    StoredItem,
    gaps_of,
    plan_eviction,
)


class MemorySpool:
    def __init__(self, quota_bytes: int, gap_item: GapItemFactory) -> None:
        self.quota_bytes = quota_bytes
        self._gap_item = gap_item
        self.evicted = 0
        self._rows: dict[int, SpoolItem] = {}
        self._keys: set[str] = set()
        self._leased: set[int] = set()
        self._next = 1
        self._size = 0
        self._ready = asyncio.Event()

    async def put(self, items: Sequence[SpoolItem]) -> None:
        # A put is accepted whole or not at all: keep what to restore if an item does not fit.
        saved = (dict(self._rows), set(self._keys), self._next, self._size, self.evicted)
        try:
            self._put_each(items)
        except SpoolFullError:
            self._rows, self._keys, self._next, self._size, self.evicted = saved
            raise
        if self._rows:
            self._ready.set()

    def _put_each(self, items: Sequence[SpoolItem]) -> None:
        for item in items:
            if item.key in self._keys:
                continue
            excess = self._size + len(item.body) - self.quota_bytes
            if excess > 0:
                # In flight or not, as in the SQLite spool: priority decides.
                candidates = sorted(
                    ((rowid, row.priority, len(row.body)) for rowid, row in self._rows.items()),
                    key=lambda row: (row[1], row[0]),
                )
                victims = plan_eviction(candidates, excess, item.priority)
                if victims is None:
                    raise SpoolFullError(f"no room for a {item.channel} item of {len(item.body)} bytes")
                self.evicted += len(victims)
                for gap in gaps_of([self._evict(rowid) for rowid in victims]):
                    self._store(self._gap_item(gap))
            self._store(item)

    def _store(self, item: SpoolItem) -> None:
        self._rows[self._next] = item
        self._keys.add(item.key)
        self._size += len(item.body)
        self._next += 1

    def _evict(self, rowid: int) -> tuple[SpoolChannel, Priority, int]:
        self._leased.discard(rowid)
        row = self._rows.pop(rowid)
        self._keys.discard(row.key)
        self._size -= len(row.body)
        return row.channel, row.priority, len(row.body)

    async def lease(self, channel: SpoolChannel, max_items: int, max_bytes: int) -> Lease:
        chosen: list[StoredItem] = []
        total = 0
        for rowid, row in self._rows.items():
            if row.channel != channel or rowid in self._leased:
                continue
            if chosen and (len(chosen) >= max_items or total + len(row.body) > max_bytes):
                break
            chosen.append(StoredItem(rowid, row))
            total += len(row.body)
        self._leased.update(stored.rowid for stored in chosen)
        return Lease(tuple(chosen))

    async def ack(self, lease: Lease) -> None:
        for rowid in lease.rowids:
            self._leased.discard(rowid)
            if rowid in self._rows:
                self._evict(rowid)

    async def release(self, lease: Lease) -> None:
        self._leased.difference_update(lease.rowids)
        if self._rows:
            self._ready.set()

    async def oldest(self) -> SpoolItem | None:
        return self._rows[min(self._rows)] if self._rows else None

    @property
    def depth(self) -> int:
        return len(self._rows)

    @property
    def size_bytes(self) -> int:
        return self._size

    async def wait_for_items(self) -> None:
        while len(self._rows) <= len(self._leased):
            self._ready.clear()
            await self._ready.wait()

    async def close(self) -> None:
        return None
