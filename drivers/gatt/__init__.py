"""Sans-I/O codecs of the Bluetooth SIG health profiles (GSS): ``parse`` gives a value's Reading, ``decode_value``
its raw fields, and ``GattProfileDecoder`` is what the BLE transport feeds."""

from __future__ import annotations

from datetime import tzinfo
from zoneinfo import ZoneInfo

from healthhut.drivers.base import DecodeError
from healthhut.drivers.gatt.blood_pressure import (
    BloodPressureFeature,
    BloodPressureMeasurement,
    IntermediateCuffPressure,
)
from healthhut.drivers.gatt.date_time import (
    AdjustReason,
    CurrentTime,
    DateTime,
    current_time_bytes,
    current_time_for,
    decode_current_time,
    decode_date_time,
    encode_current_time,
    encode_date_time,
)
from healthhut.drivers.gatt.decoder import DEFAULT_TIMEZONE, GattProfileDecoder, GlucoseRecord
from healthhut.drivers.gatt.glucose import GlucoseContext, GlucoseFeature, GlucoseMeasurement
from healthhut.drivers.gatt.heart_rate import HeartRateMeasurement
from healthhut.drivers.gatt.pulse_oximeter import PlxContinuous, PlxFeatures, PlxSpotCheck
from healthhut.drivers.gatt.racp import (
    RacpValue,
    decode_racp,
    racp_abort,
    racp_delete_all,
    racp_report_after,
    racp_report_all,
    racp_report_at_most,
    racp_report_count,
    racp_report_count_after,
    racp_report_first,
    racp_report_from,
    racp_report_last,
    racp_report_range,
)
from healthhut.drivers.gatt.sfloat import (
    Float,
    SFloat,
    Special,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
)
from healthhut.drivers.gatt.table import (
    CHARACTERISTICS,
    GattValue,
    Measurement,
    characteristic,
    decode_value,
    short_uuid,
    to_reading,
)
from healthhut.drivers.gatt.thermometer import IntermediateTemperature, TemperatureMeasurement
from healthhut.drivers.gatt.weight_scale import WeightMeasurement, WeightScaleFeature
from healthhut.protocol import Reading

_DEFAULT_TZ = ZoneInfo(DEFAULT_TIMEZONE)


def parse(uuid: int | str, payload: bytes, *, tz: tzinfo = _DEFAULT_TZ, strict: bool = False) -> Reading:
    """The Reading of one characteristic value.

    ``uuid`` is a 16-bit SIG UUID (0x2A35) or a UUID string ("00002a35-0000-1000-8000-00805f9b34fb").
    ``tz`` is the zone of the device's clock (GATT time stamps carry none). Reserved flag bits and trailing
    bytes are ignored unless ``strict``. DecodeError (a ValueError) says what is wrong, including when the
    characteristic carries no reading by itself (a feature, a glucose context, an RACP response).
    """
    entry = characteristic(uuid)
    return to_reading(entry.decode(bytes(payload), strict), tz, entry.label)


__all__ = [
    "CHARACTERISTICS",
    "DEFAULT_TIMEZONE",
    "AdjustReason",
    "BloodPressureFeature",
    "BloodPressureMeasurement",
    "CurrentTime",
    "DateTime",
    "DecodeError",
    "Float",
    "GattProfileDecoder",
    "GattValue",
    "GlucoseContext",
    "GlucoseFeature",
    "GlucoseMeasurement",
    "GlucoseRecord",
    "HeartRateMeasurement",
    "IntermediateCuffPressure",
    "IntermediateTemperature",
    "Measurement",
    "PlxContinuous",
    "PlxFeatures",
    "PlxSpotCheck",
    "RacpValue",
    "SFloat",
    "Special",
    "TemperatureMeasurement",
    "WeightMeasurement",
    "WeightScaleFeature",
    "characteristic",
    "current_time_bytes",
    "current_time_for",
    "decode_current_time",
    "decode_date_time",
    "decode_float",
    "decode_racp",
    "decode_sfloat",
    "decode_value",
    "encode_current_time",
    "encode_date_time",
    "encode_float",
    "encode_sfloat",
    "parse",
    "racp_abort",
    "racp_delete_all",
    "racp_report_after",
    "racp_report_all",
    "racp_report_at_most",
    "racp_report_count",
    "racp_report_count_after",
    "racp_report_first",
    "racp_report_from",
    "racp_report_last",
    "racp_report_range",
    "short_uuid",
]
