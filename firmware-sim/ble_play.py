"""Playing a GATT device over a BLE peripheral: it advertises when it has something to send, delivers stored
measurements once a client subscribes, streams live values while connected, and sleeps when idle."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

from healthhut.firmware_sim.errors import LinkError
from healthhut.firmware_sim.faults import Fault
from healthhut.firmware_sim.gatt_devices import GattDevice, GlucoseMeter, Send, StoredRecord
from healthhut.firmware_sim.links.ble import LinkState, Peripheral
from healthhut.firmware_sim.progress import Progress

# How often the player looks at the link and the device's schedule. The fake BlueZ tells nobody when a
# client connects or subscribes (its D-Bus signals would need a GLib main loop here), and the device's
# values are due by the clock anyway, so the player keeps time in ticks.
TICK_S = 0.05
DEFAULT_AWAKE_S = 8.0


@dataclass
class BleStats:
    measurements: int = 0
    delivered: int = 0
    lost: int = 0
    connections: int = 0
    records: int = 0


class BlePlayer:
    """Plays one device on one peripheral. A device that sleeps ends the link ``awake`` seconds after it
    last sent something (0: never); it advertises again when it has something new to send."""

    def __init__(
        self, device: GattDevice, peripheral: Peripheral, progress: Progress, *, awake: float = DEFAULT_AWAKE_S
    ) -> None:
        self.device = device
        self.peripheral = peripheral
        self.progress = progress
        self.awake = awake
        self.stats = BleStats()
        self.meter = device if isinstance(device, GlucoseMeter) else None
        self._stored: deque[Send] = deque()
        self._connected = False
        self._last_sent = 0.0
        self._wake = True  # a device just switched on shows itself
        # RACP link loss: armed until the meter's records are in place, then set, then spent after one cut.
        self._racp_fault = "armed" if self.meter is not None and Fault.RACP_LINK_LOSS in device.faults else "off"

    async def run(self, duration: float | None = None) -> BleStats:
        """Play until ``duration`` seconds have passed (or the task is cancelled)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            while duration is None or loop.time() - started < duration:
                now = loop.time()
                await self._tick(now - started)
                if self.progress.due(now):
                    self.progress.note(self._summary(now - started))
                await asyncio.sleep(TICK_S)
        finally:
            # Switched off: no more advertising, and the link (if any) ends. A bus already gone has done both.
            with contextlib.suppress(LinkError):
                await self.peripheral.advertise(False)
                await self.peripheral.drop_link()
        return self.stats

    async def _tick(self, elapsed: float) -> None:
        live: list[Send] = []
        records_changed = False
        for event in self.device.advance(elapsed):
            if isinstance(event, StoredRecord):
                records_changed = True
                self.stats.records += 1
            elif event.stored:
                self._stored.append(event)
                self.stats.measurements += 1
            else:
                live.append(event)
        state = await self.peripheral.state()
        records_changed |= await self._link_change(state, elapsed)
        if records_changed:
            await self._store_records()
        if self._connected:
            await self._deliver(live, elapsed)
        else:
            self.stats.lost += len(live)
        await self._wake_or_sleep(state, elapsed)

    async def _link_change(self, state: LinkState, elapsed: float) -> bool:
        """Note a connect or a disconnect; True when the meter's records change with it."""
        was, self._connected = self._connected, state.connected
        if state.connected and not was:
            self._wake = False
            self.stats.connections += 1
            self._last_sent = elapsed
            self.progress.note(f"{self.device.driver} connected ({self.stats.connections})")
        elif was and not state.connected:
            self.progress.note(f"{self.device.driver} disconnected")
            if self._racp_fault == "set":
                # The transfer was cut once, as the fault asks; the next one goes through.
                self._racp_fault = "spent"
                await self.peripheral.fail_racp_after(None)
                self._wake = True
            if self.meter is not None:
                before = self.meter.racp_records()
                self.meter.link_closed()
                # Only a meter that now lists other records (the resend fault) has a reason to wake.
                return self.meter.racp_records() != before
        return False

    async def _store_records(self) -> None:
        if self.meter is None:
            return
        records = self.meter.racp_records()
        await self.peripheral.set_records(records)
        if self._racp_fault == "armed":
            await self.peripheral.fail_racp_after(max(1, len(records) // 2))
            self._racp_fault = "set"
        self._wake = self._wake or not self._connected

    async def _deliver(self, live: list[Send], elapsed: float) -> None:
        for send in live:
            if await self.peripheral.push(send.characteristic, send.value):
                self.stats.delivered += 1
                self._last_sent = elapsed
            else:
                self.stats.lost += 1
        stored = self._stored
        # A stored value waits until the client has subscribed to its characteristic.
        while stored and await self.peripheral.push(stored[0].characteristic, stored[0].value):
            stored.popleft()
            self.stats.delivered += 1
            self._last_sent = elapsed

    async def _wake_or_sleep(self, state: LinkState, elapsed: float) -> None:
        if not self._connected:
            wanted = bool(self._stored) or self._wake or not self.device.sleeps
            if wanted and not state.advertising:
                await self.peripheral.advertise(True)
                # Only now is the wish met: a link state read as "still advertising" just as the link
                # fell (the radio stops advertising when a connection forms) must not swallow it.
                self._wake = False
        elif self.device.sleeps and self.awake > 0 and not self._stored and elapsed - self._last_sent >= self.awake:
            await self.peripheral.drop_link()

    def _summary(self, elapsed: float) -> str:
        stats = self.stats
        line = (
            f"{elapsed:6.0f} s  {self.device.driver}: {stats.measurements} measurements, "
            f"{stats.delivered} values delivered, {len(self._stored)} waiting, {stats.connections} connections"
        )
        return line + (f", {stats.records} records stored" if self.meter is not None else "")
