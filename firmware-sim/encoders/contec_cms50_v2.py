"""CMS50D+/CMS50E firmware 4.6+ for hut-sim: 9-byte real-time packets, and a stream that obeys the host.

Like the device, :class:`Cms50V2Stream` streams only after the start command and stops about 30 s after the
host last sent it or "inform device connected" (README of the driver, Quirks). Give it the host's bytes
with :meth:`Cms50V2Stream.receive`; ``require_start=False`` streams at once and never stops, for a link
that cannot hear the host.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType

from healthhut.drivers.contec_cms50.codec import PULSE_RATE_VALID, SAMPLE_RATE_HZ, SPO2_VALID
from healthhut.drivers.contec_cms50.codec_v2 import PI_UNAVAILABLE, Cms50V2Frame
from healthhut.firmware_sim.encoders.overrides import FrameOverrides
from healthhut.firmware_sim.signals import PpgGenerator, Rhythm

__all__ = [
    "ACQUIRE_FRAMES",
    "FINGER_OUT_FRAME",
    "KEEPALIVE_TIMEOUT_FRAMES",
    "SAMPLE_RATE_HZ",
    "Cms50V2Stream",
    "HostCommandReader",
    "encode_realtime",
]

REALTIME_TYPE = 0x01
COMMAND_TYPE = 0x7D
START = 0xA1
STOP = 0xA2
INFORM_CONNECTED = 0xAF

# The largest value each numeric field's bits can carry.
FIELD_MAX: Mapping[str, int] = MappingProxyType(
    {
        "signal_strength": 0x0F,
        "pleth": 0x7F,
        "bar_graph": 0x0F,
        "reserved": 0x07,
        "pulse_rate": 0xFF,
        "spo2": 0xFF,
        "perfusion_index_raw": 0xFFFF,
    }
)

FRAMES_PER_UPDATE = 60
# MarkMLl saw a CMS50D+ 4.6 stream for 30 s after one start command and then stop.
KEEPALIVE_TIMEOUT_FRAMES = round(30 * SAMPLE_RATE_HZ)
# After a finger goes in, the pleth runs for some seconds with pulse rate and SpO2 still 0 (the real
# capture of AndreasZachariae shows about six).
ACQUIRE_FRAMES = round(6 * SAMPLE_RATE_HZ)
PLETH_FLOOR, PLETH_SPAN = 10, 100

# What the real capture shows with the clip empty: the probe-error bit, a flat pleth at 64, numerics 0.
FINGER_OUT_FRAME = Cms50V2Frame(
    signal_strength=4,
    searching_too_long=False,
    spo2_dropping=False,
    beep=False,
    probe_error=True,
    pleth=64,
    searching=False,
    bar_graph=0,
    pi_invalid=True,
    reserved=0,
    pulse_rate=0,
    spo2=0,
    perfusion_index_raw=PI_UNAVAILABLE,
)


def encode_realtime(frame: Cms50V2Frame) -> bytes:
    """The 9 bytes of ``frame``. ValueError names a field whose value does not fit its bits."""
    for name, largest in FIELD_MAX.items():
        value = getattr(frame, name)
        if not 0 <= value <= largest:
            raise ValueError(f"{name} must be in 0..{largest}, not {value}")
    data = (
        frame.signal_strength
        | frame.searching_too_long << 4
        | frame.spo2_dropping << 5
        | frame.beep << 6
        | frame.probe_error << 7,
        frame.pleth | frame.searching << 7,
        frame.bar_graph | frame.pi_invalid << 4 | frame.reserved << 5,
        frame.pulse_rate,
        frame.spo2,
        frame.perfusion_index_raw & 0xFF,
        frame.perfusion_index_raw >> 8,
    )
    # Bit 7 of each data byte moves to the high byte, so that only the type byte has bit 7 clear.
    high = 0x80
    for index, byte in enumerate(data):
        high |= (byte >> 7) << index
    return bytes((REALTIME_TYPE, high, *(byte | 0x80 for byte in data)))


class HostCommandReader:
    """Splits the host's bytes into control commands (type 0x7D, 9 bytes), resynchronising on type bytes."""

    def __init__(self) -> None:
        self._packet = bytearray()

    def feed(self, data: bytes) -> list[int]:
        commands: list[int] = []
        for byte in data:
            if not byte & 0x80:
                self._packet[:] = (byte,)
            elif self._packet:
                self._packet.append(byte)
                if len(self._packet) == 9:
                    if self._packet[0] == COMMAND_TYPE:
                        commands.append((self._packet[2] & 0x7F) | (self._packet[1] & 1) << 7)
                    self._packet.clear()
        return commands


def _clamp(value: int, allowed: range) -> int:
    return min(max(value, allowed.start), allowed.stop - 1)


class Cms50V2Stream:
    """A CMS50 with firmware 4.6+ at 60 packets/s: pleth at the set pulse rate, numerics that wander.

    Set ``spo2`` and ``pulse_rate`` at any time; :meth:`finger_out` and :meth:`finger_in` model the finger
    leaving and re-entering the clip; :meth:`override` sends raw field values (faults). The same seed gives
    the same bytes, however the frames are split between calls to :meth:`frames`. Time passes with every
    frame asked for, streaming or not.
    """

    def __init__(
        self,
        spo2: int,
        pulse_rate: int,
        *,
        seed: int | None = None,
        require_start: bool = True,
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
        self._commands = HostCommandReader()
        self._hears_host = require_start
        self._streaming = not require_start
        self._since_host = 0
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
    def streaming(self) -> bool:
        return self._streaming

    @property
    def finger_present(self) -> bool:
        return self._finger_in

    def finger_out(self) -> None:
        self._finger_in = False

    def finger_in(self) -> None:
        if not self._finger_in:
            self._finger_in = True
            self._acquiring = ACQUIRE_FRAMES

    def receive(self, data: bytes) -> None:
        """Bytes the host wrote: start, stop and keep-alive commands take effect at once."""
        for command in self._commands.feed(data):
            if command == START:
                self._streaming = True
                self._since_host = 0
            elif command == INFORM_CONNECTED:
                self._since_host = 0
            elif command == STOP:
                self._streaming = False

    def override(self, frames: int, fields: Mapping[str, int]) -> None:
        """Send ``fields`` (frame field names to raw values) in the next ``frames`` frame periods."""
        self._overrides.set(frames, fields)

    def frames(self, n: int) -> bytes:
        """The next ``n`` frame periods: their packets while streaming, nothing while not."""
        if n < 0:
            raise ValueError(f"cannot produce {n} frames")
        out = bytearray()
        for _ in range(n):
            frame = self._overrides.apply(self._next_frame())
            if self._streaming:
                out += encode_realtime(frame)
                self._since_host += 1
                if self._hears_host and self._since_host >= KEEPALIVE_TIMEOUT_FRAMES:
                    self._streaming = False
        return bytes(out)

    def _refresh_numerics(self) -> None:
        self._shown_spo2 = _clamp(self._spo2 + self._rng.randint(-1, 1), SPO2_VALID)
        self._shown_pulse = _clamp(self._pulse_rate + self._rng.randint(-2, 2), PULSE_RATE_VALID)
        self._signal_strength = self._rng.randint(4, 8)

    def _next_frame(self) -> Cms50V2Frame:
        # The waveform and numerics run whether or not the host listens, as they do on the display.
        if self._frame_index % FRAMES_PER_UPDATE == 0:
            self._refresh_numerics()
        self._frame_index += 1
        if not self._finger_in:
            return FINGER_OUT_FRAME
        sample = self._ppg.take(1)[0]
        acquiring = self._acquiring > 0
        self._acquiring = max(0, self._acquiring - 1)
        pleth = _clamp(round(PLETH_FLOOR + PLETH_SPAN * sample.value), range(128))
        return Cms50V2Frame(
            signal_strength=self._signal_strength,
            searching_too_long=False,
            spo2_dropping=False,
            beep=sample.peak and not acquiring,
            probe_error=False,
            pleth=pleth,
            searching=False,
            bar_graph=pleth // 8,
            pi_invalid=True,
            reserved=0,
            pulse_rate=0 if acquiring else self._shown_pulse,
            spo2=0 if acquiring else self._shown_spo2,
            perfusion_index_raw=PI_UNAVAILABLE,
        )
