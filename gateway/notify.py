"""The gateway's watchdog: when hut-gateway counts as live for systemd (see ``protocol.sdnotify``).

It pings ``WATCHDOG=1`` only while its parts are live, so systemd restarts a gateway whose event loop or
uplink is stuck.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class UplinkProgress(Protocol):
    """What the watchdog reads of ``gateway.uplink.UplinkStats``."""

    @property
    def connected(self) -> bool: ...
    @property
    def connects(self) -> int: ...
    @property
    def published_messages(self) -> int: ...
    @property
    def stored_messages(self) -> int: ...
    @property
    def resent(self) -> int: ...
    @property
    def refused(self) -> int: ...


class SpoolDepth(Protocol):
    @property
    def depth(self) -> int: ...


class DeviceLink(Protocol):
    @property
    def connected(self) -> bool: ...


class GatewayLiveness:
    """Whether the gateway is live: every supervised task (devices, BLE scanner, uplink) is running, and
    the uplink moves or has nothing to move.

    The uplink moves when the collector confirms messages, and also when it publishes or resends them, or
    the broker refuses them: each is the uplink working on the spool, and none is fixed by a restart. So
    is waiting for a broker that cannot be reached, which is the network's fault, not the gateway's.
    Stalled is connected, with items spooled, and none of that for ``stall_after`` seconds.
    """

    def __init__(
        self,
        *,
        tasks: Sequence[asyncio.Task[Any]],
        uplink: UplinkProgress,
        spool: SpoolDepth,
        devices: Sequence[DeviceLink],
        stall_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tasks = tasks
        self.uplink = uplink
        self.spool = spool
        self.devices = devices
        self.stall_after = stall_after
        self._clock = clock
        self._mark = self._progress()
        self._moved_at = clock()

    def _progress(self) -> tuple[int, ...]:
        u = self.uplink
        return (u.connects, u.published_messages, u.stored_messages, u.resent, u.refused)

    def problem(self) -> str | None:
        """What is wrong, in words for STATUS=; None when the gateway is live."""
        for task in self.tasks:
            if task.done():
                return f"task {task.get_name()} has stopped"
        now = self._clock()
        mark = self._progress()
        depth = self.spool.depth
        if mark != self._mark or depth == 0 or not self.uplink.connected:
            self._mark, self._moved_at = mark, now
            return None
        idle = now - self._moved_at
        if idle >= self.stall_after:
            return f"uplink stalled: nothing sent or confirmed for {idle:.0f} s with {depth} item(s) spooled"
        return None

    def status(self) -> str:
        """Counts only: no readings and no resident's identifier."""
        connected = sum(1 for device in self.devices if device.connected)
        broker = "broker connected" if self.uplink.connected else "broker unreachable, retrying"
        return f"{len(self.devices)} device(s), {connected} connected, spool {self.spool.depth} item(s), {broker}"
