"""Sans-I/O codec for the 5-byte live stream of Contec CMS50D+/CMS50E oximeters (before firmware 4.6)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from healthhut.drivers.base import DecodeError
from healthhut.protocol import Flag, Kind, Quantity, Reading, Strip

FRAME_LEN = 5
SYNC_BIT = 0x80
SAMPLE_RATE_HZ = 60.0
# Sentinels the device sends instead of a number (see README, Quirks).
SPO2_UNAVAILABLE = 127
PULSE_RATE_UNAVAILABLE = 255
SPO2_VALID = range(1, 101)
PULSE_RATE_VALID = range(1, 255)


@dataclass(frozen=True, slots=True)
class Cms50Frame:
    """Every field of one live frame, as the device sent it (README, Protocol)."""

    signal_strength: int
    searching_too_long: bool
    spo2_dropping: bool
    beep: bool
    pleth: int
    bar_graph: int
    probe_error: bool
    searching: bool
    pulse_rate: int
    spo2: int


# Frame bits that are protocol quality flags. spo2_dropping is an alarm, not a quality, so it stays in
# the frame (the gateway can read it from ``last_frame``).
FLAG_OF_FIELD: Mapping[str, Flag] = MappingProxyType(
    {"probe_error": Flag.PROBE_ERROR, "searching": Flag.SEARCHING, "searching_too_long": Flag.FINGER_OUT}
)


def parse_frame(data: bytes) -> Cms50Frame:
    """Decode one 5-byte frame. DecodeError says which byte breaks the framing."""
    if len(data) != FRAME_LEN:
        raise DecodeError(f"a CMS50 live frame is {FRAME_LEN} bytes, not {len(data)}")
    if not data[0] & SYNC_BIT:
        raise DecodeError(f"byte 1 (0x{data[0]:02x}) lacks the sync bit 7 that starts a frame")
    for index in range(1, FRAME_LEN):
        if data[index] & SYNC_BIT:
            raise DecodeError(f"byte {index + 1} (0x{data[index]:02x}) has bit 7 set; only byte 1 may")
    status, pleth, bar, pulse_low, spo2 = data
    return Cms50Frame(
        signal_strength=status & 0x0F,
        searching_too_long=bool(status & 0x10),
        spo2_dropping=bool(status & 0x20),
        beep=bool(status & 0x40),
        pleth=pleth,
        bar_graph=bar & 0x0F,
        probe_error=bool(bar & 0x10),
        searching=bool(bar & 0x20),
        # The eighth bit of the pulse rate travels in byte 3, so that bytes 2-5 keep bit 7 for sync.
        pulse_rate=(bar & 0x40) << 1 | pulse_low,
        spo2=spo2,
    )


def frame_flags(frame: Cms50Frame) -> frozenset[Flag]:
    """Quality flags of one frame (README, Quirks, for the two readings of byte 1 bit 4)."""
    return frozenset(flag for name, flag in FLAG_OF_FIELD.items() if getattr(frame, name))


def numerics_reading(spo2: int, pulse_rate: int, flags: frozenset[Flag]) -> Reading | None:
    """SpO2 and pulse rate as a reading; None when neither is a number (finger out, still searching).

    A value outside its valid range is a sentinel, not a measurement: it is left out and
    VALUE_UNAVAILABLE says so. The device shows a pulse rate before its SpO2 settles. Both protocol
    generations share this rule.
    """
    values: dict[str, Quantity] = {}
    if spo2 in SPO2_VALID:
        values["spo2"] = Quantity(spo2, "%")
    if pulse_rate in PULSE_RATE_VALID:
        values["pulse_rate"] = Quantity(pulse_rate, "/min")
    if not values:
        return None
    if len(values) < 2:
        flags |= {Flag.VALUE_UNAVAILABLE}
    return Reading(kind=Kind.SPO2, values=values, flags=flags)


def spo2_reading(frame: Cms50Frame) -> Reading | None:
    """The numerics of one frame; None when the device has neither (README, Quirks)."""
    return numerics_reading(frame.spo2, frame.pulse_rate, frame_flags(frame))


class PlethStrips:
    """Collects the pleth byte of every frame (numerics or not) into strips of ``strip_samples``.

    Both CMS50 protocol generations use it. A frame error does not restart a strip: garbage between
    frames loses no sample, and a lost frame shifts the rest of a strip by one sample period (17 ms).
    """

    def __init__(self, strip_samples: int) -> None:
        if strip_samples < 1:
            raise ValueError(f"strip_samples must be at least 1, not {strip_samples}")
        self.strip_samples = strip_samples
        self._pleth: list[int] = []
        self._flags: frozenset[Flag] = frozenset()

    def add(self, pleth: int, flags: frozenset[Flag]) -> Reading | None:
        """The finished ppg strip when this sample completes one, else None."""
        self._pleth.append(pleth)
        self._flags |= flags
        if len(self._pleth) < self.strip_samples:
            return None
        strip = Strip(fs=SAMPLE_RATE_HZ, unit="1", raw=tuple(self._pleth), channel="pleth")
        reading = Reading(kind=Kind.PPG, flags=self._flags, strip=strip)
        self._pleth.clear()
        self._flags = frozenset()
        return reading


class Cms50Decoder:
    """Stream decoder: bytes in, SpO2 readings (one per valid frame) and pleth strips out.

    It never raises on garbage. A byte with bit 7 set always starts a new frame; whatever it cuts
    short, and each run of stray bytes between frames, counts as one frame error. Stray bytes before
    the first sync byte are the tail of a frame already on the wire at connect time and are not counted.
    """

    def __init__(self, strip_samples: int = 600) -> None:
        self._strips = PlethStrips(strip_samples)
        self.strip_samples = strip_samples
        self.frame_errors = 0
        self.frames_ok = 0
        self.last_frame: Cms50Frame | None = None
        self._frame = bytearray()
        self._synced = False
        self._in_stray_run = False

    def feed(self, data: bytes) -> list[Reading]:
        readings: list[Reading] = []
        for byte in data:
            if byte & SYNC_BIT:
                if self._frame:
                    self.frame_errors += 1
                self._frame[:] = (byte,)
                self._synced = True
                self._in_stray_run = False
            elif self._frame:
                self._frame.append(byte)
                if len(self._frame) == FRAME_LEN:
                    frame = parse_frame(bytes(self._frame))
                    self._frame.clear()
                    readings.extend(self._accept(frame))
            elif self._synced and not self._in_stray_run:
                self.frame_errors += 1
                self._in_stray_run = True
        return readings

    def _accept(self, frame: Cms50Frame) -> list[Reading]:
        self.frames_ok += 1
        self.last_frame = frame
        out: list[Reading] = []
        numerics = spo2_reading(frame)
        if numerics is not None:
            out.append(numerics)
        # Pleth is kept from every frame, numerics or not: the waveform is what shows a finger slipping.
        strip = self._strips.add(frame.pleth, frame_flags(frame))
        if strip is not None:
            out.append(strip)
        return out
