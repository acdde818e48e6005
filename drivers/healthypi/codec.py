"""Sans-I/O codec for the OpenView data packets a ProtoCentral HealthyPi v4 streams to a Raspberry Pi."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from healthhut.drivers.base import DecodeError
from healthhut.protocol import Flag, Kind, Quantity, Reading, Strip

# Packet: 0A FA, payload length (16-bit little-endian), type, payload, 00 0B (README, Protocol).
START = b"\x0a\xfa"
STOP = b"\x00\x0b"
HEADER_LEN = 5
TRAILER_LEN = 2
TYPE_DATA = 0x02
PAYLOAD_LEN = 20
PACKET_LEN = HEADER_LEN + PAYLOAD_LEN + TRAILER_LEN
# The length field's high byte is 0 in every ProtoCentral firmware; a larger length is garbage, and
# refusing it at once keeps a false start from holding up the stream.
MAX_PAYLOAD_LEN = 0xFF
PAYLOAD = struct.Struct("<hhiiHBBBBBB")

# One packet per ADS1292R conversion: CONFIG1 = 0x00 is 125 samples/s.
SAMPLE_RATE_HZ = 125.0
# µV per count of the ECG field. The ADS1292R's LSB is VREF / (gain · 2^23), with VREF 2.42 V (CONFIG2 =
# 0xA0) and gain 12 (CH2SET = 0x60); the firmware keeps the top 16 of 24 bits (>> 8), divides by 4 after its
# DC-removal filter (>> 2), and its 40 Hz low-pass has a gain of 0.9997 (README, Protocol).
ECG_UV_PER_COUNT = 2.42e6 * 2**8 * 2**2 / (12 * 2**23)
ECG_CHANNEL = "ecg"
# LOFF_STAT bits 4..0 of the ADS1292R status word; the firmware calls any of them set a lead off.
LEAD_OFF_MASK = 0x1F
# Ranges the firmware can produce; anything else (0 included) is "no value yet".
HEART_RATE_VALID = range(1, 251)  # QRS_Heart_Rate is capped at 250
SPO2_VALID = range(1, 101)
TEMPERATURE_CENTI_VALID = range(1, 5001)  # the MAX30205 operates from 0 to 50 °C


@dataclass(frozen=True, slots=True)
class HealthyPiFrame:
    """Every field of one data packet, as the firmware sent it (README, Protocol)."""

    ecg: int
    respiration: int
    ppg_ir: int
    ppg_red: int
    temperature_centi: int
    respiration_rate: int
    spo2: int
    heart_rate: int
    bp_systolic_placeholder: int
    bp_diastolic_placeholder: int
    lead_status: int

    @property
    def lead_off(self) -> bool:
        return bool(self.lead_status & LEAD_OFF_MASK)


def parse_payload(payload: bytes) -> HealthyPiFrame:
    """Decode the 20-byte payload of a data packet."""
    if len(payload) != PAYLOAD_LEN:
        raise DecodeError(f"a HealthyPi data payload is {PAYLOAD_LEN} bytes, not {len(payload)}")
    return HealthyPiFrame(*PAYLOAD.unpack(payload))


def openview_payload(data: bytes, board: str, payload_len: int) -> bytes:
    """The payload of one whole OpenView data packet of ``board``; DecodeError says which part breaks it.
    Both HealthyPi generations frame their data the same way and differ only in the payload."""
    if len(data) < HEADER_LEN + TRAILER_LEN:
        raise DecodeError(f"an OpenView packet is at least {HEADER_LEN + TRAILER_LEN} bytes, not {len(data)}")
    if data[:2] != START:
        raise DecodeError(f"an OpenView packet starts with 0a fa, not {data[:2].hex(' ')}")
    length = data[2] | data[3] << 8
    if len(data) != HEADER_LEN + length + TRAILER_LEN:
        raise DecodeError(f"the header says {length} payload bytes, so {length + 7} in all, not {len(data)}")
    if data[-2:] != STOP:
        raise DecodeError(f"an OpenView packet ends with 00 0b, not {data[-2:].hex(' ')}")
    if data[4] != TYPE_DATA:
        raise DecodeError(f"packet type 0x{data[4]:02x} is not the data packet (0x02) the {board} firmware sends")
    if length != payload_len:
        raise DecodeError(f"a {board} data packet has {payload_len} payload bytes, not {length}")
    return data[HEADER_LEN:-TRAILER_LEN]


def parse_packet(data: bytes) -> HealthyPiFrame:
    """Decode one whole packet. DecodeError says which part breaks it."""
    return parse_payload(openview_payload(data, "HealthyPi v4", PAYLOAD_LEN))


def fit_int16(values: list[int]) -> tuple[tuple[int, ...], float, float]:
    """Samples as int16 with a gain and offset, so that sample ≈ raw · gain + offset (README, Protocol).

    Exact when the strip spans at most 65535 counts; beyond that the gain doubles until it fits.
    """
    low, high = min(values), max(values)
    shift = 0
    while (high - low) >> shift > 0xFFFF:
        shift += 1
    offset = low + (0x8000 << shift)
    return tuple(((value - low) >> shift) - 0x8000 for value in values), float(1 << shift), float(offset)


class OpenViewStream:
    """The OpenView framing both HealthyPi generations share: find packets, resynchronise, count errors.

    A subclass says which packets its board sends (:attr:`PACKETS`, type to payload length) and decodes
    them in :meth:`_decode`; a well-framed packet of another type or length comes from another board or
    firmware on the port. Each stretch of bytes
    between two good packets counts as one frame error, except the stretch before the first good packet
    (the tail of a packet on the wire at connect time); well-framed packets of another kind are such a
    stretch too, and are counted in ``packets_unsupported``.
    """

    def __init__(self) -> None:
        self.frame_errors = 0
        self.frames_ok = 0
        self.packets_unsupported = 0
        self._buffer = bytearray()
        self._seen_good = False
        self._clean = True

    PACKETS: Mapping[int, int] = MappingProxyType({})

    def _decode(self, packet_type: int, payload: bytes) -> list[Reading]:
        raise NotImplementedError

    def feed(self, data: bytes) -> list[Reading]:
        self._buffer += data
        readings: list[Reading] = []
        buffer = self._buffer
        pos = 0
        while True:
            start = buffer.find(START, pos)
            if start < 0:
                # Keep a last 0x0A: it may be the first half of the next start.
                keep_from = len(buffer) - 1 if buffer.endswith(START[:1]) else len(buffer)
                self._discard(keep_from - pos)
                pos = keep_from
                break
            self._discard(start - pos)
            pos = start
            if len(buffer) - pos < HEADER_LEN:
                break
            length = buffer[pos + 2] | buffer[pos + 3] << 8
            if length > MAX_PAYLOAD_LEN:
                self._discard(1)
                pos += 1
                continue
            end = pos + HEADER_LEN + length + TRAILER_LEN
            if len(buffer) < end:
                break
            if buffer[end - TRAILER_LEN : end] != STOP:
                self._discard(1)
                pos += 1
                continue
            packet_type = buffer[pos + 4]
            if self.PACKETS.get(packet_type) != length:
                self.packets_unsupported += 1
                self._discard(end - pos)
            else:
                self._seen_good = True
                self._clean = True
                self.frames_ok += 1
                readings.extend(self._decode(packet_type, bytes(buffer[pos + HEADER_LEN : end - TRAILER_LEN])))
            pos = end
        del buffer[:pos]
        return readings

    def _discard(self, count: int) -> None:
        if count > 0 and self._seen_good and self._clean:
            self.frame_errors += 1
            self._clean = False


class HealthyPiDecoder(OpenViewStream):
    """Stream decoder of the HealthyPi v4: bytes in; ECG and PPG strips and spot readings out.

    Every ``strip_samples`` packets give an ``ecg`` strip and two ``ppg`` strips (``red``, ``ir``); every
    ``numerics_every`` packets give ``heart_rate``, ``spo2`` and ``body_temperature`` readings from the
    latest packet, each only when the board has a number for it. It never raises on garbage; framing and
    error counting are :class:`OpenViewStream`'s.
    """

    def __init__(self, strip_samples: int = 1250, numerics_every: int = 125) -> None:
        if strip_samples < 1 or numerics_every < 1:
            raise ValueError(f"strip_samples and numerics_every must be at least 1, not {strip_samples}")
        super().__init__()
        self.strip_samples = strip_samples
        self.numerics_every = numerics_every
        self.last_frame: HealthyPiFrame | None = None
        self._ecg: list[int] = []
        self._red: list[int] = []
        self._ir: list[int] = []
        self._lead_off_in_strip = False

    PACKETS = MappingProxyType({TYPE_DATA: PAYLOAD_LEN})

    def _decode(self, packet_type: int, payload: bytes) -> list[Reading]:
        return self._accept(parse_payload(payload))

    def _accept(self, frame: HealthyPiFrame) -> list[Reading]:
        self.last_frame = frame
        out: list[Reading] = []
        self._ecg.append(frame.ecg)
        self._red.append(frame.ppg_red)
        self._ir.append(frame.ppg_ir)
        self._lead_off_in_strip |= frame.lead_off
        if len(self._ecg) == self.strip_samples:
            out.extend(self._strips())
        if self.frames_ok % self.numerics_every == 0:
            out.extend(numerics_readings(frame))
        return out

    def _strips(self) -> list[Reading]:
        flags = frozenset({Flag.LEAD_OFF}) if self._lead_off_in_strip else frozenset()
        ecg = Strip(SAMPLE_RATE_HZ, "uV", tuple(self._ecg), gain=ECG_UV_PER_COUNT, channel=ECG_CHANNEL)
        out = [Reading(kind=Kind.ECG, flags=flags, strip=ecg)]
        for channel, samples in (("red", self._red), ("ir", self._ir)):
            raw, gain, offset = fit_int16(samples)
            strip = Strip(SAMPLE_RATE_HZ, "1", raw, gain=gain, offset=offset, channel=channel)
            out.append(Reading(kind=Kind.PPG, strip=strip))
        self._ecg, self._red, self._ir = [], [], []
        self._lead_off_in_strip = False
        return out


def numerics_readings(frame: HealthyPiFrame) -> list[Reading]:
    """The board's numbers in one packet, each as a reading when it is one; 0 means none yet."""
    out: list[Reading] = []
    if frame.heart_rate in HEART_RATE_VALID:
        flags = frozenset({Flag.LEAD_OFF}) if frame.lead_off else frozenset()
        values = {"heart_rate": Quantity(frame.heart_rate, "/min")}
        out.append(Reading(kind=Kind.HEART_RATE, values=values, flags=flags))
    if frame.spo2 in SPO2_VALID:
        out.append(Reading(kind=Kind.SPO2, values={"spo2": Quantity(frame.spo2, "%")}))
    if frame.temperature_centi in TEMPERATURE_CENTI_VALID:
        values = {"temperature": Quantity(frame.temperature_centi / 100, "Cel")}
        out.append(Reading(kind=Kind.BODY_TEMPERATURE, values=values))
    return out
