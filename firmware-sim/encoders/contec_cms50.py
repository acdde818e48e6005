"""CMS50D+/CMS50E live frames for hut-sim: the inverse of the driver's parse_frame, and a 60 Hz stream."""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType

from healthhut.drivers.contec_cms50.codec import (
    PULSE_RATE_UNAVAILABLE,
    PULSE_RATE_VALID,
    SAMPLE_RATE_HZ,
    SPO2_UNAVAILABLE,
    SPO2_VALID,
    SYNC_BIT,
    Cms50Frame,
)
from healthhut.firmware_sim.encoders.overrides import FrameOverrides
from healthhut.firmware_sim.signals import PpgGenerator, Rhythm

# SAMPLE_RATE_HZ is re-exported: it is the stream's frame rate, which players pace themselves by.
__all__ = ["ACQUIRE_FRAMES", "FINGER_OUT_FRAME", "SAMPLE_RATE_HZ", "Cms50Stream", "encode_frame"]

# The largest value each numeric field's bits can carry.
FIELD_MAX: Mapping[str, int] = MappingProxyType(
    {"signal_strength": 0x0F, "pleth": 0x7F, "bar_graph": 0x0F, "pulse_rate": 0xFF, "spo2": 0x7F}
)

# The device refreshes its numerics about once a second, although frames come at 60 Hz.
FRAMES_PER_UPDATE = 60
# After a finger goes in, the device searches for a pulse for a while before it shows numerics.
ACQUIRE_FRAMES = 120
# Pleth is drawn on this part of 0..127, leaving headroom for noise and tall beats.
PLETH_FLOOR, PLETH_SPAN = 10, 90
BAR_SPAN = 8

# What the simulator sends with no finger: the documented "no value" sentinels, FINGER_OUT (byte 1 bit 4)
# and SEARCHING, a flat pleth and no signal (README, Quirks).
FINGER_OUT_FRAME = Cms50Frame(
    signal_strength=0,
    searching_too_long=True,
    spo2_dropping=False,
    beep=False,
    pleth=0,
    bar_graph=0,
    probe_error=False,
    searching=True,
    pulse_rate=PULSE_RATE_UNAVAILABLE,
    spo2=SPO2_UNAVAILABLE,
)


def encode_frame(frame: Cms50Frame) -> bytes:
    """The 5 bytes of ``frame``. ValueError names a field whose value does not fit its bits."""
    for name, largest in FIELD_MAX.items():
        value = getattr(frame, name)
        if not 0 <= value <= largest:
            raise ValueError(f"{name} must be in 0..{largest}, not {value}")
    status = (
        SYNC_BIT | frame.signal_strength | frame.searching_too_long << 4 | frame.spo2_dropping << 5 | frame.beep << 6
    )
    bar = frame.bar_graph | frame.probe_error << 4 | frame.searching << 5 | (frame.pulse_rate & 0x80) >> 1
    return bytes((status, frame.pleth, bar, frame.pulse_rate & 0x7F, frame.spo2))


def _clamp(value: int, allowed: range) -> int:
    return min(max(value, allowed.start), allowed.stop - 1)


class Cms50Stream:
    """A live CMS50 at 60 frames/s: a pleth waveform at the set pulse rate and numerics that wander.

    Set ``spo2`` and ``pulse_rate`` at any time; :meth:`finger_out` and :meth:`finger_in` model the
    finger leaving and re-entering the probe; :meth:`override` sends raw field values (faults). The same
    seed gives the same bytes, however the frames are split between calls to :meth:`frames`.
    """

    def __init__(
        self,
        spo2: int,
        pulse_rate: int,
        *,
        seed: int | None = None,
        rhythm: Rhythm = Rhythm.SINUS,
        pause_every: int | None = None,
    ) -> None:
        self._rng = random.Random(seed)
        self._ppg = PpgGenerator(
            SAMPLE_RATE_HZ, _clamp(pulse_rate, PULSE_RATE_VALID), self._rng, rhythm=rhythm, pause_every=pause_every
        )
        self._overrides = FrameOverrides(FIELD_MAX, "numeric frame field")
        self.spo2 = spo2
        self.pulse_rate = pulse_rate
        self._finger_in = True
        self._acquiring = 0
        self._frame_index = 0
        self._shown_spo2 = spo2
        self._shown_pulse = pulse_rate
        self._signal_strength = 0

    @property
    def spo2(self) -> int:
        return self._spo2

    @spo2.setter
    def spo2(self, value: int) -> None:
        if value not in SPO2_VALID:
            raise ValueError(f"spo2 must be in {SPO2_VALID.start}..{SPO2_VALID.stop - 1}, not {value}")
        self._spo2 = value

    @property
    def pulse_rate(self) -> int:
        return self._pulse_rate

    @pulse_rate.setter
    def pulse_rate(self, value: int) -> None:
        if value not in PULSE_RATE_VALID:
            raise ValueError(
                f"pulse_rate must be in {PULSE_RATE_VALID.start}..{PULSE_RATE_VALID.stop - 1}, not {value}"
            )
        self._pulse_rate = value
        self._ppg.rate_per_min = value

    @property
    def finger_present(self) -> bool:
        return self._finger_in

    def finger_out(self) -> None:
        self._finger_in = False

    def finger_in(self) -> None:
        if not self._finger_in:
            self._finger_in = True
            self._acquiring = ACQUIRE_FRAMES

    def override(self, frames: int, fields: Mapping[str, int]) -> None:
        """Send ``fields`` (frame field names to raw values, sentinels and out-of-range values included) in
        the next ``frames`` frames, in place of what the stream would send."""
        self._overrides.set(frames, fields)

    def frames(self, n: int) -> bytes:
        """The next ``n`` frames of the stream, encoded."""
        if n < 0:
            raise ValueError(f"cannot produce {n} frames")
        return b"".join(encode_frame(self._overrides.apply(self._next_frame())) for _ in range(n))

    def _refresh_numerics(self) -> None:
        self._shown_spo2 = _clamp(self._spo2 + self._rng.randint(-1, 1), SPO2_VALID)
        self._shown_pulse = _clamp(self._pulse_rate + self._rng.randint(-2, 2), PULSE_RATE_VALID)
        self._signal_strength = self._rng.randint(4, 8)

    def _next_frame(self) -> Cms50Frame:
        if self._frame_index % FRAMES_PER_UPDATE == 0:
            self._refresh_numerics()
        self._frame_index += 1
        if not self._finger_in:
            return FINGER_OUT_FRAME
        sample = self._ppg.take(1)[0]
        searching = self._acquiring > 0
        self._acquiring = max(0, self._acquiring - 1)
        return Cms50Frame(
            signal_strength=self._signal_strength,
            searching_too_long=False,
            spo2_dropping=False,
            beep=sample.peak and not searching,
            pleth=_clamp(round(PLETH_FLOOR + PLETH_SPAN * sample.value), range(128)),
            bar_graph=_clamp(round(BAR_SPAN * sample.value), range(16)),
            probe_error=False,
            searching=searching,
            pulse_rate=PULSE_RATE_UNAVAILABLE if searching else self._shown_pulse,
            spo2=SPO2_UNAVAILABLE if searching else self._shown_spo2,
        )
