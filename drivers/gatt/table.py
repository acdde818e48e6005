"""The decoding table: each characteristic UUID to its name and a small pure decode function."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import tzinfo
from types import MappingProxyType

from healthhut.drivers.base import DecodeError
from healthhut.drivers.gatt import blood_pressure as bp
from healthhut.drivers.gatt import glucose as gl
from healthhut.drivers.gatt import heart_rate as hr
from healthhut.drivers.gatt import pulse_oximeter as plx
from healthhut.drivers.gatt import racp
from healthhut.drivers.gatt import thermometer as ht
from healthhut.drivers.gatt import weight_scale as ws
from healthhut.protocol import Reading

Measurement = (
    bp.BloodPressureMeasurement
    | bp.IntermediateCuffPressure
    | ht.TemperatureMeasurement
    | ws.WeightMeasurement
    | gl.GlucoseMeasurement
    | plx.PlxSpotCheck
    | plx.PlxContinuous
    | hr.HeartRateMeasurement
)
GattValue = (
    Measurement
    | bp.BloodPressureFeature
    | ws.WeightScaleFeature
    | gl.GlucoseContext
    | gl.GlucoseFeature
    | racp.RacpValue
    | plx.PlxFeatures
)
MEASUREMENT_TYPES = (
    bp.BloodPressureMeasurement,
    bp.IntermediateCuffPressure,
    ht.TemperatureMeasurement,
    ws.WeightMeasurement,
    gl.GlucoseMeasurement,
    plx.PlxSpotCheck,
    plx.PlxContinuous,
    hr.HeartRateMeasurement,
)


@dataclass(frozen=True, slots=True)
class Characteristic:
    uuid: int
    name: str
    decode: Callable[[bytes, bool], GattValue]

    @property
    def label(self) -> str:
        return f"{self.name} ({self.uuid:#06x})"


def _table(*entries: Characteristic) -> Mapping[int, Characteristic]:
    return MappingProxyType({entry.uuid: entry for entry in entries})


CHARACTERISTICS: Mapping[int, Characteristic] = _table(
    Characteristic(bp.BLOOD_PRESSURE_MEASUREMENT, "Blood Pressure Measurement", bp.decode_blood_pressure_measurement),
    Characteristic(bp.INTERMEDIATE_CUFF_PRESSURE, "Intermediate Cuff Pressure", bp.decode_intermediate_cuff_pressure),
    Characteristic(bp.BLOOD_PRESSURE_FEATURE, "Blood Pressure Feature", bp.decode_blood_pressure_feature),
    Characteristic(ht.TEMPERATURE_MEASUREMENT, "Temperature Measurement", ht.decode_temperature_measurement),
    Characteristic(ht.INTERMEDIATE_TEMPERATURE, "Intermediate Temperature", ht.decode_intermediate_temperature),
    Characteristic(ws.WEIGHT_MEASUREMENT, "Weight Measurement", ws.decode_weight_measurement),
    Characteristic(ws.WEIGHT_SCALE_FEATURE, "Weight Scale Feature", ws.decode_weight_scale_feature),
    Characteristic(gl.GLUCOSE_MEASUREMENT, "Glucose Measurement", gl.decode_glucose_measurement),
    Characteristic(gl.GLUCOSE_MEASUREMENT_CONTEXT, "Glucose Measurement Context", gl.decode_glucose_context),
    Characteristic(gl.GLUCOSE_FEATURE, "Glucose Feature", gl.decode_glucose_feature),
    Characteristic(racp.RECORD_ACCESS_CONTROL_POINT, "Record Access Control Point", racp.decode_racp_response),
    Characteristic(plx.PLX_SPOT_CHECK_MEASUREMENT, "PLX Spot-Check Measurement", plx.decode_plx_spot_check),
    Characteristic(plx.PLX_CONTINUOUS_MEASUREMENT, "PLX Continuous Measurement", plx.decode_plx_continuous),
    Characteristic(plx.PLX_FEATURES, "PLX Features", plx.decode_plx_features),
    Characteristic(hr.HEART_RATE_MEASUREMENT, "Heart Rate Measurement", hr.decode_heart_rate_measurement),
)

# The Bluetooth Base UUID: a 16-bit SIG UUID xxxx stands for 0000xxxx-0000-1000-8000-00805f9b34fb.
_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def short_uuid(uuid: int | str) -> int:
    """The 16-bit SIG UUID of ``uuid``: an int (0x2A35), a hex string ("2A35", "0x2a35") or a 128-bit UUID
    string built on the Bluetooth Base UUID. DecodeError for anything else."""
    if isinstance(uuid, int) and not isinstance(uuid, bool):
        number = uuid
    elif isinstance(uuid, str):
        text = uuid.strip().lower()
        if len(text) == 36 and text.endswith(_BASE_SUFFIX) and text.startswith("0000"):
            text = text[4:8]
        elif text.startswith("0x"):
            text = text[2:]
        if not 1 <= len(text) <= 4 or any(c not in "0123456789abcdef" for c in text):
            raise DecodeError(f"{uuid!r} is not a 16-bit Bluetooth SIG UUID (nor one on the Bluetooth Base UUID)")
        number = int(text, 16)
    else:
        raise DecodeError(f"a characteristic UUID is an int or a string, not {type(uuid).__name__}")
    if not 0 <= number <= 0xFFFF:
        raise DecodeError(f"{number:#x} is not a 16-bit Bluetooth SIG UUID")
    return number


def characteristic(uuid: int | str) -> Characteristic:
    number = short_uuid(uuid)
    try:
        return CHARACTERISTICS[number]
    except KeyError:
        known = ", ".join(f"{key:#06x}" for key in sorted(CHARACTERISTICS))
        raise DecodeError(f"no decoder for characteristic {number:#06x}; known: {known}") from None


def decode_value(uuid: int | str, payload: bytes, *, strict: bool = False) -> GattValue:
    """The fields of one characteristic value, exactly as sent. DecodeError says what is wrong."""
    return characteristic(uuid).decode(bytes(payload), strict)


def to_reading(value: GattValue, tz: tzinfo, label: str) -> Reading:
    if not isinstance(value, MEASUREMENT_TYPES):
        raise DecodeError(f"{label} carries no reading by itself ({type(value).__name__}); use decode_value()")
    return value.reading(tz)
