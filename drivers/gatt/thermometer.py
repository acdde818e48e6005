"""Health Thermometer Service (0x1809): Temperature Measurement and Intermediate Temperature, per the GSS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from enum import IntEnum, IntFlag

from healthhut.drivers.gatt.date_time import DateTime
from healthhut.drivers.gatt.sfloat import Float
from healthhut.drivers.gatt.units import fahrenheit_to_celsius, put
from healthhut.drivers.gatt.wire import Cursor
from healthhut.protocol import Flag, Kind, Quantity, Reading

TEMPERATURE_MEASUREMENT = 0x2A1C
INTERMEDIATE_TEMPERATURE = 0x2A1E


class TemperatureFlags(IntFlag):
    FAHRENHEIT = 0x01
    TIME_STAMP = 0x02
    TEMPERATURE_TYPE = 0x04


TEMPERATURE_DEFINED_FLAGS = 0x07


class TemperatureType(IntEnum):
    """Where the temperature was taken (GSS, Temperature Type); 0 and 10-255 are reserved."""

    ARMPIT = 1
    BODY = 2
    EAR = 3
    FINGER = 4
    GASTROINTESTINAL_TRACT = 5
    MOUTH = 6
    RECTUM = 7
    TOE = 8
    TYMPANUM = 9


@dataclass(frozen=True, slots=True)
class TemperatureMeasurement:
    """0x2A1C as sent: a FLOAT in °C, or °F when ``fahrenheit`` is set."""

    fahrenheit: bool
    temperature: Float
    time_stamp: DateTime | None = None
    temperature_type: int | None = None
    rfu_flags: int = 0
    trailing: bytes = b""

    def reading(self, tz: tzinfo) -> Reading:
        values: dict[str, Quantity] = {}
        flags: set[Flag] = set()
        put(values, flags, "temperature", self.temperature, "Cel", fahrenheit_to_celsius if self.fahrenheit else None)
        measured_at = None if self.time_stamp is None else self.time_stamp.to_datetime(tz)
        return Reading(Kind.BODY_TEMPERATURE, values, frozenset(flags), measured_at)


@dataclass(frozen=True, slots=True)
class IntermediateTemperature(TemperatureMeasurement):
    """0x2A1E: the same layout, sent while the thermometer is still measuring."""


def _decode(data: bytes, characteristic: int, name: str, strict: bool) -> TemperatureMeasurement:
    cursor = Cursor(data, f"{name} ({characteristic:#06x})")
    flags, rfu = cursor.flags(TEMPERATURE_DEFINED_FLAGS, strict)
    temperature = cursor.float32("Temperature")
    time_stamp = cursor.date_time("Time Stamp") if flags & TemperatureFlags.TIME_STAMP else None
    temperature_type = cursor.uint(1, "Temperature Type") if flags & TemperatureFlags.TEMPERATURE_TYPE else None
    kind = IntermediateTemperature if characteristic == INTERMEDIATE_TEMPERATURE else TemperatureMeasurement
    fahrenheit = bool(flags & TemperatureFlags.FAHRENHEIT)
    return kind(fahrenheit, temperature, time_stamp, temperature_type, rfu, cursor.trailing(strict))


def decode_temperature_measurement(data: bytes, strict: bool = False) -> TemperatureMeasurement:
    return _decode(data, TEMPERATURE_MEASUREMENT, "Temperature Measurement", strict)


def decode_intermediate_temperature(data: bytes, strict: bool = False) -> TemperatureMeasurement:
    return _decode(data, INTERMEDIATE_TEMPERATURE, "Intermediate Temperature", strict)
