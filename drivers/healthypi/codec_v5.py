"""Sans-I/O codec for the OpenView data packets a ProtoCentral HealthyPi 5 streams over USB (README, HealthyPi 5)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from healthhut.drivers.base import DecodeError
from healthhut.drivers.healthypi.codec import (
    HEADER_LEN,
    TRAILER_LEN,
    TYPE_DATA,
    OpenViewStream,
    fit_int16,
    openview_payload,
)
from healthhut.protocol import Kind, Quantity, Reading, Strip

# Same framing as the v4 (0A FA, length, type 2, payload, 00 0B); the payload is 22 bytes, little-endian:
# ECG int32, BioZ int32, BioZ-skip uint8, red int32, IR int32, temperature int16, SpO2, HR, RR uint8.
PAYLOAD_LEN = 22
PACKET_LEN = HEADER_LEN + PAYLOAD_LEN + TRAILER_LEN
PAYLOAD = struct.Struct("<iiBiihBBB")

# One packet per MAX30001 ECG sample: CNFG_ECG rate 0b10 with FMSTR 0b00 is 128 samples/s.
SAMPLE_RATE_HZ = 128.0
# MAX30001 ECG: V = ADC · VREF / (2^17 · ECG_GAIN), VREF 1 V, gain 20, 40, 80 or 160 V/V. The firmware sends
# the 18-bit ADC value sign-extended; ProtoCentral's Arduino firmware sets 80 V/V (README, HealthyPi 5).
EcgGain = Literal[20, 40, 80, 160]
ECG_GAINS: tuple[EcgGain, ...] = (20, 40, 80, 160)
DEFAULT_ECG_GAIN: EcgGain = 80
ECG_CHANNEL = "ecg"
# Ranges the firmware can mean as a number; 0 is "none yet" in every field. The Zephyr firmware takes a
# MAX30001 heart rate only when 0 < hr < 255.
HEART_RATE_VALID = range(1, 255)
SPO2_VALID = range(1, 101)
TEMPERATURE_CENTI_VALID = range(1, 5001)  # the MAX30205 operates from 0 to 50 °C


def ecg_uv_per_count(ecg_gain: int) -> float:
    """µV per ECG count at a MAX30001 ECG gain (V/V)."""
    if ecg_gain not in ECG_GAINS:
        raise ValueError(f"the MAX30001 ECG gain is one of {ECG_GAINS} V/V, not {ecg_gain}")
    return 1e6 / (2**17 * ecg_gain)


@dataclass(frozen=True, slots=True)
class HealthyPi5Frame:
    """Every field of one HealthyPi 5 data packet, in wire order, as the firmware sent it."""

    ecg: int
    bioz: int
    bioz_skip: int
    ppg_red: int
    ppg_ir: int
    temperature_centi: int
    spo2: int
    heart_rate: int
    respiration_rate: int


def parse_payload(payload: bytes) -> HealthyPi5Frame:
    """Decode the 22-byte payload of a HealthyPi 5 data packet."""
    if len(payload) != PAYLOAD_LEN:
        raise DecodeError(f"a HealthyPi 5 data payload is {PAYLOAD_LEN} bytes, not {len(payload)}")
    return HealthyPi5Frame(*PAYLOAD.unpack(payload))


def parse_packet(data: bytes) -> HealthyPi5Frame:
    """Decode one whole HealthyPi 5 packet. DecodeError says which part breaks it."""
    return parse_payload(openview_payload(data, "HealthyPi 5", PAYLOAD_LEN))


def fit_int16_scaled(values: list[int]) -> tuple[tuple[int, ...], int]:
    """Samples as int16 and a power-of-two step, so that sample ≈ raw · step (offset 0).

    The MAX30001's 18-bit ECG needs a step of at most 4; each sample is then off by less than one step.
    """
    shift = 0
    while any(not -0x8000 <= value >> shift <= 0x7FFF for value in values):
        shift += 1
    return tuple(value >> shift for value in values), 1 << shift


class HealthyPi5Decoder(OpenViewStream):
    """Stream decoder of the HealthyPi 5: bytes in; ECG and PPG strips and spot readings out.

    Every ``strip_samples`` packets give an ``ecg`` strip (µV, at ``ecg_gain``) and two ``ppg`` strips
    (``red``, ``ir``); every ``numerics_every`` packets give ``heart_rate``, ``spo2`` and
    ``body_temperature`` readings from the latest packet, each only when the board has a number for it.
    It never raises on garbage; framing and error counting are :class:`OpenViewStream`'s, and a HealthyPi
    v4 packet (20-byte payload) or a batch packet (types 3, 4) counts as unsupported.
    """

    PACKETS = MappingProxyType({TYPE_DATA: PAYLOAD_LEN})

    def __init__(self, strip_samples: int = 1280, numerics_every: int = 128, ecg_gain: int = DEFAULT_ECG_GAIN) -> None:
        if strip_samples < 1 or numerics_every < 1:
            raise ValueError(f"strip_samples and numerics_every must be at least 1, not {strip_samples}")
        super().__init__()
        self.strip_samples = strip_samples
        self.numerics_every = numerics_every
        self.ecg_uv_per_count = ecg_uv_per_count(ecg_gain)
        self.last_frame: HealthyPi5Frame | None = None
        self._ecg: list[int] = []
        self._red: list[int] = []
        self._ir: list[int] = []

    def _decode(self, packet_type: int, payload: bytes) -> list[Reading]:
        frame = parse_payload(payload)
        self.last_frame = frame
        out: list[Reading] = []
        self._ecg.append(frame.ecg)
        self._red.append(frame.ppg_red)
        self._ir.append(frame.ppg_ir)
        if len(self._ecg) == self.strip_samples:
            out.extend(self._strips())
        if self.frames_ok % self.numerics_every == 0:
            out.extend(numerics_readings(frame))
        return out

    def _strips(self) -> list[Reading]:
        raw, step = fit_int16_scaled(self._ecg)
        ecg = Strip(SAMPLE_RATE_HZ, "uV", raw, gain=self.ecg_uv_per_count * step, channel=ECG_CHANNEL)
        out = [Reading(kind=Kind.ECG, strip=ecg)]
        for channel, samples in (("red", self._red), ("ir", self._ir)):
            ppg_raw, gain, offset = fit_int16(samples)
            strip = Strip(SAMPLE_RATE_HZ, "1", ppg_raw, gain=gain, offset=offset, channel=channel)
            out.append(Reading(kind=Kind.PPG, strip=strip))
        self._ecg, self._red, self._ir = [], [], []
        return out


def numerics_readings(frame: HealthyPi5Frame) -> list[Reading]:
    """The board's numbers in one packet, each as a reading when it is one; 0 means none yet."""
    out: list[Reading] = []
    if frame.heart_rate in HEART_RATE_VALID:
        out.append(Reading(kind=Kind.HEART_RATE, values={"heart_rate": Quantity(frame.heart_rate, "/min")}))
    if frame.spo2 in SPO2_VALID:
        out.append(Reading(kind=Kind.SPO2, values={"spo2": Quantity(frame.spo2, "%")}))
    if frame.temperature_centi in TEMPERATURE_CENTI_VALID:
        values = {"temperature": Quantity(frame.temperature_centi / 100, "Cel")}
        out.append(Reading(kind=Kind.BODY_TEMPERATURE, values=values))
    return out
