"""Playing a serial device over a pty or a real serial port, at the device's pace, with line and value faults."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from healthhut.firmware_sim.faults import (
    SIGNAL_FAULTS,
    Fault,
    SerialFaultClock,
    garbage_chunk,
    mid_frame_cut,
    signal_faults_at,
)
from healthhut.firmware_sim.players import CommandSink, FrameSource, Player, show_signal_fault
from healthhut.firmware_sim.progress import Progress
from healthhut.firmware_sim.scenarios import Scenario

CHUNKS_PER_SECOND = 10
# With --fault unplug-mid-frame and no --unplug-every, or --fault garbage and no --garbage.
DEFAULT_UNPLUG_EVERY_S = 20.0
DEFAULT_GARBAGE = 0.05
MID_FRAME_DRAIN_S = 0.1


class ByteLink(Protocol):
    """A pty or a serial port as the player uses it."""

    bytes_written: int
    bytes_dropped: int

    def open(self) -> str: ...

    def write(self, data: bytes) -> int: ...

    def read(self) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SerialPlay:
    """How to play: for how long, the seed, and the faults (``unplug_every`` and ``garbage`` as the
    --unplug-every and --garbage options give them; the faults fill in defaults)."""

    duration: float | None = None
    seed: int | None = None
    faults: frozenset[Fault] = frozenset()
    unplug_every: float | None = None
    unplug_for: float = 2.0
    garbage: float = 0.0

    @classmethod
    def with_faults(
        cls,
        faults: Collection[Fault],
        *,
        duration: float | None = None,
        seed: int | None = None,
        unplug_every: float | None = None,
        unplug_for: float = 2.0,
        garbage: float = 0.0,
    ) -> SerialPlay:
        chosen = frozenset(faults)
        if Fault.UNPLUG_MID_FRAME in chosen and unplug_every is None:
            unplug_every = DEFAULT_UNPLUG_EVERY_S
        if Fault.GARBAGE in chosen and not garbage:
            garbage = DEFAULT_GARBAGE
        return cls(duration, seed, chosen, unplug_every, unplug_for, garbage)


class StreamFaults:
    """Puts a source's value faults (raw field values, 1 s in every 10) and signal faults (leads off,
    movement) into its stream when their schedules say."""

    def __init__(self, player: Player, source: FrameSource, faults: Collection[Fault], progress: Progress) -> None:
        self.player = player
        self.source = source
        self.values = SerialFaultClock(faults)
        self.signal = frozenset(faults) & SIGNAL_FAULTS
        self.progress = progress
        self.showing: frozenset[Fault] = frozenset()

    def at(self, elapsed: float) -> None:
        fault = self.values.due(elapsed)
        if fault is not None:
            self.source.override(round(self.player.frames_per_second), self.player.fault_fields[fault])
            self.progress.note(f"{fault} for 1 s")
        if not self.signal:
            return
        now_showing = signal_faults_at(self.signal, elapsed)
        for changed in sorted(now_showing ^ self.showing):
            show_signal_fault(self.source, changed, changed in now_showing)
            self.progress.note(f"{changed} {'starts' if changed in now_showing else 'ends'}")
        self.showing = now_showing


async def play_serial(
    player: Player, scenario: Scenario, link: ByteLink, settings: SerialPlay, progress: Progress
) -> int:
    """Play until ``settings.duration`` (or cancelled); returns the number of frames sent."""
    source = player.new_source(scenario, settings.seed)
    # A device with a start command hears the gateway through the same line.
    sink = source if isinstance(source, CommandSink) else None
    rng = random.Random(settings.seed)
    faults = StreamFaults(player, source, settings.faults, progress)
    mid_frame = Fault.UNPLUG_MID_FRAME in settings.faults
    path = link.open()
    print(path, flush=True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    frames_sent = 0
    unplug_every = settings.unplug_every
    next_unplug = started + unplug_every if unplug_every else None
    try:
        while settings.duration is None or loop.time() - started < settings.duration:
            if sink is not None:
                sink.receive(link.read())
            elapsed = loop.time() - started
            faults.at(elapsed)
            # Pace by the clock, not by sleeps, so the long-run frame rate is exact.
            due = int(elapsed * player.frames_per_second)
            if due > frames_sent:
                chunk = source.frames(due - frames_sent)
                frames_sent = due
                if settings.garbage and rng.random() < settings.garbage:
                    chunk = garbage_chunk(chunk, rng)
                link.write(chunk)
            now = loop.time()
            if next_unplug is not None and now >= next_unplug:
                if mid_frame:
                    # The cable comes out while a frame is on the wire: its head arrives, its tail never does.
                    link.write(source.frames(1)[: mid_frame_cut(player.frame_size, rng)])
                    frames_sent += 1
                    # A pty's hangup discards what the reader has not yet read: give the head time to arrive.
                    await asyncio.sleep(MID_FRAME_DRAIN_S)
                link.close()
                progress.note(f"unplugged{' mid-frame' if mid_frame else ''} for {settings.unplug_for:.1f} s")
                await asyncio.sleep(settings.unplug_for)
                # What the device measured while unplugged never reached the wire.
                missed = int((loop.time() - started) * player.frames_per_second) - frames_sent
                source.frames(max(missed, 0))
                frames_sent += max(missed, 0)
                path = link.open()
                next_unplug = loop.time() + unplug_every if unplug_every else None
                progress.note(f"plugged in again at {path}")
            if progress.due(now):
                progress.note(
                    f"{now - started:6.0f} s  {frames_sent} frames  {link.bytes_written} bytes delivered  "
                    f"{link.bytes_dropped} dropped (nobody reading)"
                )
            await asyncio.sleep(1 / CHUNKS_PER_SECOND)
    finally:
        link.close()
    return frames_sent
