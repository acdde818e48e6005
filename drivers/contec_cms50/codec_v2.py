"""Sans-I/O codec for the 9-byte live stream of Contec CMS50D+/CMS50E oximeters, firmware 4.6 and later."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from healthhut.drivers.base import DecodeError
from healthhut.drivers.contec_cms50.codec import PlethStrips, numerics_reading
from healthhut.protocol import Flag, Reading

# Every byte after a packet's type byte has bit 7 set; only the type byte has it clear (README, Protocol, 9-byte).
HIGH_BIT = 0x80
REALTIME_TYPE = 0x01

# Data bytes that follow the type and high bytes, per device-to-host packet type of the V7.0 protocol
# (README, Sources 12 and 13). A type not in this table is not part of the protocol.
DATA_LENGTHS: Mapping[int, int] = MappingProxyType(
    {
        0x01: 7,  # real-time data
        0x04: 7,  # device identifier
        0x05: 7,  # user information
        0x07: 6,  # storage start date
        0x08: 6,  # storage data length
        0x09: 4,  # storage data with PI
        0x0A: 2,  # storage segment amount
        0x0B: 2,  # command feedback
        0x0C: 0,  # free feedback
        0x0D: 1,  # disconnect notice
        0x0E: 1,  # PI identifiers
        0x0F: 6,  # storage data
        0x10: 1,  # user amount
        0x11: 7,  # device notice
        0x12: 6,  # storage start time
        0x15: 7,  # storage data identifiers
    }
)

# Host-to-device control commands (type 0x7D): the command byte, six zero bytes, packed as every packet
# is. These exact bytes are in every public implementation (README, Sources).
START_REALTIME_COMMAND = bytes.fromhex("7d 81 a1 80 80 80 80 80 80")
STOP_REALTIME_COMMAND = bytes.fromhex("7d 81 a2 80 80 80 80 80 80")
INFORM_CONNECTED_COMMAND = bytes.fromhex("7d 81 af 80 80 80 80 80 80")
KEEPALIVE_INTERVAL_S = 5.0

# The device sends 0xFFFF when it has no perfusion index (every public capture).
PI_UNAVAILABLE = 0xFFFF


@dataclass(frozen=True, slots=True)
class Cms50V2Frame:
    """Every field of one real-time data packet, with the bit 7 of each data byte restored."""

    signal_strength: int
    searching_too_long: bool
    spo2_dropping: bool
    beep: bool
    probe_error: bool
    pleth: int
    searching: bool
    bar_graph: int
    pi_invalid: bool
    reserved: int
    pulse_rate: int
    spo2: int
    perfusion_index_raw: int


# Frame bits that are quality flags. The V7.0 "probe error" bit is what the device sets when the clip is
# empty (a real capture and three independent readers say "finger out"), so it carries both flags.
FLAGS_OF_FIELD: Mapping[str, frozenset[Flag]] = MappingProxyType(
    {
        "probe_error": frozenset({Flag.PROBE_ERROR, Flag.FINGER_OUT}),
        "searching_too_long": frozenset({Flag.FINGER_OUT}),
        "searching": frozenset({Flag.SEARCHING}),
    }
)


def parse_packet(data: bytes) -> tuple[int, bytes]:
    """One whole packet: its type and its data bytes with bit 7 restored. DecodeError says what is wrong."""
    if not data:
        raise DecodeError("a CMS50 packet has at least a type byte and a high byte, not 0 bytes")
    packet_type = data[0]
    if packet_type & HIGH_BIT:
        raise DecodeError(f"byte 1 (0x{packet_type:02x}) has bit 7 set; a packet starts with its type byte")
    length = DATA_LENGTHS.get(packet_type)
    if length is None:
        raise DecodeError(f"type 0x{packet_type:02x} is not a device packet type of the V7.0 protocol")
    if len(data) != length + 2:
        raise DecodeError(f"a type 0x{packet_type:02x} packet is {length + 2} bytes, not {len(data)}")
    for index in range(1, len(data)):
        if not data[index] & HIGH_BIT:
            raise DecodeError(f"byte {index + 1} (0x{data[index]:02x}) lacks bit 7; only the type byte may")
    high = data[1]
    # Bit i of the high byte is bit 7 of data byte i: the wire keeps bit 7 for framing.
    restored = bytes((byte & 0x7F) | ((high >> index) & 1) << 7 for index, byte in enumerate(data[2:]))
    return packet_type, restored


def parse_realtime(data: bytes) -> Cms50V2Frame:
    """Decode one 9-byte real-time data packet. DecodeError says what breaks it."""
    packet_type, body = parse_packet(data)
    if packet_type != REALTIME_TYPE:
        raise DecodeError(f"type 0x{packet_type:02x} is not real-time data (0x01)")
    status, wave, bar, pulse_rate, spo2, pi_low, pi_high = body
    return Cms50V2Frame(
        signal_strength=status & 0x0F,
        searching_too_long=bool(status & 0x10),
        spo2_dropping=bool(status & 0x20),
        beep=bool(status & 0x40),
        probe_error=bool(status & 0x80),
        pleth=wave & 0x7F,
        searching=bool(wave & 0x80),
        bar_graph=bar & 0x0F,
        pi_invalid=bool(bar & 0x10),
        reserved=bar >> 5,
        pulse_rate=pulse_rate,
        spo2=spo2,
        perfusion_index_raw=pi_low | pi_high << 8,
    )


def frame_flags(frame: Cms50V2Frame) -> frozenset[Flag]:
    """Quality flags of one frame (README, Quirks, for the probe-error bit)."""
    flags: frozenset[Flag] = frozenset()
    for name, field_flags in FLAGS_OF_FIELD.items():
        if getattr(frame, name):
            flags |= field_flags
    return flags


def spo2_reading(frame: Cms50V2Frame) -> Reading | None:
    """The numerics of one frame, by the same rule as the 5-byte protocol; None when neither is a number."""
    return numerics_reading(frame.spo2, frame.pulse_rate, frame_flags(frame))


class Cms50V2Decoder:
    """Stream decoder: bytes in, SpO2 readings (one per valid real-time packet) and pleth strips out.

    It never raises on garbage. A byte with bit 7 clear always starts a packet; whatever it cuts short,
    a type byte that the protocol does not define (with the bytes that follow it), and each run of stray
    bytes between packets count as one frame error each. Bytes before the first type byte are the tail
    of a packet already on the wire at connect time and are not counted. Whole packets of other known
    types (replies to commands) are counted in ``packets_other`` and produce nothing.
    """

    def __init__(self, strip_samples: int = 600) -> None:
        self._strips = PlethStrips(strip_samples)
        self.strip_samples = strip_samples
        self.frame_errors = 0
        self.frames_ok = 0
        self.packets_other = 0
        self.last_frame: Cms50V2Frame | None = None
        self._packet = bytearray()
        self._expected = 0
        self._synced = False
        self._in_error = False

    def feed(self, data: bytes) -> list[Reading]:
        readings: list[Reading] = []
        for byte in data:
            if not byte & HIGH_BIT:
                if self._packet:
                    self.frame_errors += 1
                self._synced = True
                length = DATA_LENGTHS.get(byte)
                if length is None:
                    self._packet.clear()
                    self.frame_errors += 1
                    self._in_error = True
                else:
                    self._packet[:] = (byte,)
                    self._expected = length + 2
                    self._in_error = False
            elif self._packet:
                self._packet.append(byte)
                if len(self._packet) == self._expected:
                    packet = bytes(self._packet)
                    self._packet.clear()
                    readings.extend(self._accept(packet))
            elif self._synced and not self._in_error:
                self.frame_errors += 1
                self._in_error = True
        return readings

    def _accept(self, packet: bytes) -> list[Reading]:
        if packet[0] != REALTIME_TYPE:
            self.packets_other += 1
            return []
        frame = parse_realtime(packet)
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
