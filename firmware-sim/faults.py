"""The faults hut-sim can inject (``--fault NAME``): what each does, on which links, and when it strikes."""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from healthhut.firmware_sim.errors import SimError


class Fault(StrEnum):
    UNPLUG_MID_FRAME = "unplug-mid-frame"
    GARBAGE = "garbage"
    OUT_OF_RANGE = "out-of-range"
    SPECIAL_VALUES = "special-values"
    RACP_LINK_LOSS = "racp-link-loss"
    CLOCK_RESET = "clock-reset"
    RESEND_OLD_RECORDS = "resend-old-records"
    LEADS_OFF = "leads-off"
    MOTION = "motion"


# The links a device can be played over: a pseudo-terminal, a real serial port, BLE, and MQTT as a whole hut.
LINKS = ("pty", "serial", "ble", "mqtt")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    fault: Fault
    description: str
    links: frozenset[str]


FAULTS: Mapping[Fault, FaultSpec] = MappingProxyType(
    {
        spec.fault: spec
        for spec in (
            FaultSpec(
                Fault.UNPLUG_MID_FRAME,
                "the device is unplugged part-way through a frame, every --unplug-every s (default 20), "
                "for --unplug-for s",
                frozenset({"pty", "serial"}),
            ),
            FaultSpec(
                Fault.GARBAGE,
                "noise: random bytes between frames (serial, --garbage P, default 0.05), a truncated value "
                "every third measurement (BLE), a message that is not JSON every tenth (MQTT)",
                frozenset({"pty", "serial", "ble", "mqtt"}),
            ),
            FaultSpec(
                Fault.OUT_OF_RANGE,
                "values beyond the device's range or beyond physiology, with the device's own out-of-range "
                "status where it has one; every other measurement (serial: for 1 s every 10 s)",
                frozenset({"pty", "serial", "ble", "mqtt"}),
            ),
            FaultSpec(
                Fault.SPECIAL_VALUES,
                "IEEE-11073 NaN, NRes, +INF and -INF in SFLOAT/FLOAT fields (a scale's 'measurement "
                "unsuccessful'; the CMS50's no-value sentinel), every other measurement",
                frozenset({"pty", "serial", "ble", "mqtt"}),
            ),
            FaultSpec(
                Fault.RACP_LINK_LOSS,
                "the glucose meter drops the link half-way through its first RACP transfer, then advertises again",
                frozenset({"ble"}),
            ),
            FaultSpec(
                Fault.CLOCK_RESET,
                "the device clock restarted at 2000-01-01 00:00:00 (as after a battery change) and the device "
                "offers no Current Time to correct it",
                frozenset({"ble", "mqtt"}),
            ),
            FaultSpec(
                Fault.RESEND_OLD_RECORDS,
                "the glucose meter sends the records it already sent again, with their old sequence numbers, "
                "on every later connection",
                frozenset({"ble", "mqtt"}),
            ),
            FaultSpec(
                Fault.LEADS_OFF,
                "the ECG electrodes come off for 4 s every 10 s, the first time 5 s after the start: HealthyPi v4 "
                "lead status 0x0C with the ECG, respiration and rates zeroed, as its firmware sends them; "
                "HealthyPi 5 (no lead status in its packet) a saturated ECG and no heart rate",
                frozenset({"pty", "serial"}),
            ),
            FaultSpec(
                Fault.MOTION,
                "the resident fidgets from 5 s after the start: irregular 0.2-3 Hz movement, 1-3 s at a time, "
                "swinging the PPG light by up to 5 % (over three pulses) and the ECG baseline by up to 3 mV",
                frozenset({"pty", "serial"}),
            ),
        )
    }
)


class FaultNotApplicableError(SimError, ValueError):
    """A fault the chosen device or link cannot show; the message says which and what can."""

    def __init__(self, fault: Fault, driver: str, link: str, reason: str) -> None:
        self.fault = fault
        self.driver = driver
        super().__init__(f"--fault {fault}: {reason}", link=link)


def check_faults(faults: Collection[Fault], *, driver: str, link: str, supported: Collection[Fault]) -> None:
    """Raise FaultNotApplicableError for the first of ``faults`` that ``driver`` over ``link`` cannot show."""
    for fault in faults:
        spec = FAULTS[fault]
        if link not in spec.links:
            links = ", ".join(sorted(spec.links))
            raise FaultNotApplicableError(fault, driver, link, f"not on the {link} link (only {links})")
        if fault not in supported:
            able = ", ".join(sorted(supported)) or "none"
            raise FaultNotApplicableError(fault, driver, link, f"{driver} cannot show it; its faults: {able}")


def value_fault(faults: Collection[Fault], measurement: int) -> Fault | None:
    """The value fault for the ``measurement``-th measurement (from 0): every other one, starting with the
    first, takes the next of special values and out-of-range in turn; the rest are clean."""
    chosen = [f for f in (Fault.SPECIAL_VALUES, Fault.OUT_OF_RANGE) if f in faults]
    if not chosen or measurement % 2:
        return None
    return chosen[(measurement // 2) % len(chosen)]


def garbage_chunk(chunk: bytes, rng: random.Random) -> bytes:
    """Noise on a serial line: 1-16 random bytes, then the chunk from a random point (a frame cut short)."""
    return rng.randbytes(rng.randint(1, 16)) + chunk[rng.randint(0, len(chunk)) :]


def mid_frame_cut(frame_size: int, rng: random.Random) -> int:
    """How many bytes of the next frame reach the wire before the cable comes out: never 0, never all."""
    return rng.randint(1, frame_size - 1)


def serial_value_fault(faults: Collection[Fault], occurrence: int) -> Fault | None:
    """The value fault a serial device shows at its ``occurrence``-th fault time: each chosen one in turn."""
    chosen = [f for f in (Fault.SPECIAL_VALUES, Fault.OUT_OF_RANGE) if f in faults]
    return chosen[occurrence % len(chosen)] if chosen else None


# A serial device shows its value faults for this long, once every period.
SERIAL_FAULT_PERIOD_S = 10.0
SERIAL_FAULT_LENGTH_S = 1.0


class SerialFaultClock:
    """When a serial stream's value faults strike: for SERIAL_FAULT_LENGTH_S, every SERIAL_FAULT_PERIOD_S,
    the first half a period after the start (so that the device shows clean numbers first)."""

    def __init__(self, faults: Collection[Fault], period: float = SERIAL_FAULT_PERIOD_S) -> None:
        self.faults = frozenset(faults)
        self.period = period
        self._occurrence = 0

    def due(self, elapsed: float) -> Fault | None:
        """The value fault to start now, if one is due by ``elapsed`` seconds and has not started yet."""
        if serial_value_fault(self.faults, 0) is None:
            return None
        if elapsed < (self._occurrence + 0.5) * self.period:
            return None
        fault = serial_value_fault(self.faults, self._occurrence)
        self._occurrence += 1
        return fault


# Faults of the signal itself, which the device's stream shows when told (the player says when).
SIGNAL_FAULTS = frozenset({Fault.LEADS_OFF, Fault.MOTION})
SIGNAL_FAULT_START_S = 5.0
LEADS_OFF_PERIOD_S = 10.0
LEADS_OFF_FOR_S = 4.0


def signal_faults_at(faults: Collection[Fault], elapsed: float) -> frozenset[Fault]:
    """Which of the chosen signal faults are in effect ``elapsed`` seconds after the start: none before
    SIGNAL_FAULT_START_S (so that the device shows a clean signal first); then movement throughout, and the
    leads off for LEADS_OFF_FOR_S of every LEADS_OFF_PERIOD_S."""
    if elapsed < SIGNAL_FAULT_START_S:
        return frozenset()
    active: set[Fault] = set()
    if Fault.MOTION in faults:
        active.add(Fault.MOTION)
    if Fault.LEADS_OFF in faults and (elapsed - SIGNAL_FAULT_START_S) % LEADS_OFF_PERIOD_S < LEADS_OFF_FOR_S:
        active.add(Fault.LEADS_OFF)
    return frozenset(active)
