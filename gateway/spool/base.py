"""The spool contract shared by every implementation, and the pure eviction policy."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, Protocol

SpoolChannel = Literal["obs", "wave", "event"]


class Priority(IntEnum):
    """Clinical priority: the lowest is evicted first when the spool is full."""

    WAVEFORM = 0
    DIAGNOSTIC = 1
    VITAL = 2
    # The record that something was evicted: losing it would make the loss silent.
    GAP = 3


class SpoolError(Exception):
    """The spool could not do what was asked. ``path`` names the database where there is one."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class SpoolFullError(SpoolError):
    """Even after evicting everything less important, these items do not fit (quota or disk)."""


@dataclass(frozen=True, slots=True)
class SpoolItem:
    """One thing to deliver. ``key`` is unique (the observation id): putting it twice stores it once."""

    channel: SpoolChannel
    priority: Priority
    key: str
    body: bytes


@dataclass(frozen=True, slots=True)
class StoredItem:
    rowid: int
    item: SpoolItem


@dataclass(frozen=True, slots=True)
class Gap:
    """Items that the spool evicted, which will never be delivered: a ``gap`` event says so upstream."""

    channel: SpoolChannel
    priority: Priority
    count: int
    bytes: int


GapItemFactory = Callable[[Gap], SpoolItem]
"""Turns a Gap into the item that reports it upstream; the spool stores it with the eviction."""


@dataclass(frozen=True, slots=True)
class Lease:
    """Items handed to the uplink; they stay in the spool until acked."""

    items: tuple[StoredItem, ...]

    @property
    def rowids(self) -> tuple[int, ...]:
        return tuple(stored.rowid for stored in self.items)


class Spool(Protocol):
    """What the gateway needs from a spool. Every implementation passes tests/gateway/test_spool.py."""

    async def put(self, items: Sequence[SpoolItem]) -> None:
        """Return once the items are durable. SpoolFullError if they cannot be made to fit."""

    async def lease(self, channel: SpoolChannel, max_items: int, max_bytes: int) -> Lease:
        """The oldest unleased items of a channel (possibly none), held until ack or release."""

    async def ack(self, lease: Lease) -> None:
        """The items were delivered: remove them for good."""

    async def release(self, lease: Lease) -> None:
        """The items were not delivered: offer them again (they keep their place in line)."""

    @property
    def evicted(self) -> int:
        """Items evicted since the spool was opened (each also recorded as a gap item)."""

    @property
    def depth(self) -> int:
        """Items not yet delivered."""

    @property
    def size_bytes(self) -> int:
        """Bytes of items not yet delivered (what the quota bounds)."""

    async def wait_for_items(self) -> None:
        """Return once there is something unleased."""

    async def oldest(self) -> SpoolItem | None:
        """The item waiting longest, leased or not (for status reports), or None when empty."""

    async def close(self) -> None: ...


def plan_eviction(stored: Iterable[tuple[int, Priority, int]], need_bytes: int, up_to: Priority) -> list[int] | None:
    """Which rows to evict to free ``need_bytes``: lowest priority first, oldest first within one, and
    never anything more important than ``up_to`` (the incoming item's priority). None if even that is
    not enough. ``stored`` yields (rowid, priority, size) in that order (by priority, then rowid); it is
    read only as far as needed, so a database cursor over a full spool of millions of rows stops after
    the few it evicts."""
    chosen: list[int] = []
    freed = 0
    if need_bytes <= 0:
        return chosen
    for rowid, priority, size in stored:
        # A gap record is never evicted: that would make a loss silent.
        if priority > up_to or priority == Priority.GAP:
            break
        chosen.append(rowid)
        freed += size
        if freed >= need_bytes:
            return chosen
    return None


def gaps_of(evicted: Sequence[tuple[SpoolChannel, Priority, int]]) -> list[Gap]:
    """Summarise evicted (channel, priority, size) rows as one Gap per channel and priority, in the order
    the policy evicts them (lowest priority first), whatever order the rows came in."""
    totals: dict[tuple[SpoolChannel, Priority], tuple[int, int]] = {}
    for channel, priority, size in evicted:
        count, total = totals.get((channel, priority), (0, 0))
        totals[(channel, priority)] = (count + 1, total + size)
    ordered = sorted(totals.items(), key=lambda entry: entry[0][1])
    return [Gap(channel, priority, count, total) for (channel, priority), (count, total) in ordered]
