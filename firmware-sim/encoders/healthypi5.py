"""HealthyPi 5 for hut-sim: its 29-byte OpenView data packets, the exact inverse of the driver's v5 parser."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from healthhut.drivers.healthypi.codec import START, STOP, TYPE_DATA
from healthhut.drivers.healthypi.codec_v5 import PAYLOAD, PAYLOAD_LEN, SAMPLE_RATE_HZ, HealthyPi5Frame

__all__ = ["FIELD_RANGES", "SAMPLE_RATE_HZ", "encode_packet"]

HEADER = START + PAYLOAD_LEN.to_bytes(2, "little") + bytes([TYPE_DATA])

INT32 = range(-(2**31), 2**31)
INT16 = range(-0x8000, 0x8000)
UINT8 = range(0x100)
FIELD_RANGES: Mapping[str, range] = MappingProxyType(
    {
        "ecg": INT32,
        "bioz": INT32,
        "bioz_skip": UINT8,
        "ppg_red": INT32,
        "ppg_ir": INT32,
        "temperature_centi": INT16,
        "spo2": UINT8,
        "heart_rate": UINT8,
        "respiration_rate": UINT8,
    }
)


def encode_packet(frame: HealthyPi5Frame) -> bytes:
    """The 29 bytes of ``frame``. ValueError names a field whose value does not fit its bytes."""
    for name, allowed in FIELD_RANGES.items():
        value = getattr(frame, name)
        if value not in allowed:
            raise ValueError(f"{name} must be in {allowed.start}..{allowed.stop - 1}, not {value}")
    payload = PAYLOAD.pack(*(getattr(frame, name) for name in FIELD_RANGES))
    return HEADER + payload + STOP
