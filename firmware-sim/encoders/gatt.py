"""Bluetooth SIG health-profile values for hut-sim: ``encode(characteristic, fields)`` is the exact inverse of
``decode_value`` (fields -> bytes -> fields, and bytes -> fields -> bytes for every value the decoder accepts)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from healthhut.drivers.gatt import blood_pressure as bp
from healthhut.drivers.gatt import glucose as gl
from healthhut.drivers.gatt import heart_rate as hr
from healthhut.drivers.gatt import pulse_oximeter as plx
from healthhut.drivers.gatt import racp
from healthhut.drivers.gatt import thermometer as ht
from healthhut.drivers.gatt import weight_scale as ws
from healthhut.drivers.gatt.date_time import DateTime, encode_date_time
from healthhut.drivers.gatt.sfloat import Float, SFloat
from healthhut.drivers.gatt.table import GattValue


class _Writer:
    """Appends fields; ValueError names a field whose value does not fit."""

    def __init__(self) -> None:
        self.out = bytearray()

    def uint(self, value: int, size: int, field: str) -> None:
        if not 0 <= value < 1 << (8 * size):
            raise ValueError(f"{field} must fit {8 * size} unsigned bits, not {value}")
        self.out += value.to_bytes(size, "little")

    def sint16(self, value: int, field: str) -> None:
        if not -0x8000 <= value <= 0x7FFF:
            raise ValueError(f"{field} must fit 16 signed bits, not {value}")
        self.out += value.to_bytes(2, "little", signed=True)

    def sfloat(self, value: SFloat) -> None:
        self.out += value.raw.to_bytes(2, "little")

    def float32(self, value: Float) -> None:
        self.out += value.raw.to_bytes(4, "little")

    def date_time(self, value: DateTime) -> None:
        self.out += encode_date_time(value)

    def raw(self, data: bytes) -> None:
        self.out += data


def _flags(defined: Iterable[tuple[int, bool]], rfu: int, allowed: int) -> int:
    if rfu & allowed:
        raise ValueError(f"rfu_flags {rfu:#x} overlaps the defined flags {allowed:#x}")
    if not 0 <= rfu <= 0xFF:
        raise ValueError(f"rfu_flags {rfu:#x} is not a byte")
    return sum(bit for bit, present in defined if present) | rfu


def _blood_pressure_layout(
    kpa: bool,
    pressures: tuple[SFloat, SFloat, SFloat],
    time_stamp: DateTime | None,
    pulse_rate: SFloat | None,
    user_id: int | None,
    status: int | None,
    rfu_flags: int,
    trailing: bytes,
) -> bytes:
    flag_bits = {
        bp.BpFlags.KPA: kpa,
        bp.BpFlags.TIME_STAMP: time_stamp is not None,
        bp.BpFlags.PULSE_RATE: pulse_rate is not None,
        bp.BpFlags.USER_ID: user_id is not None,
        bp.BpFlags.MEASUREMENT_STATUS: status is not None,
    }
    out = _Writer()
    out.uint(_flags(flag_bits.items(), rfu_flags, bp.BP_DEFINED_FLAGS), 1, "Flags")
    for pressure in pressures:
        out.sfloat(pressure)
    if time_stamp is not None:
        out.date_time(time_stamp)
    if pulse_rate is not None:
        out.sfloat(pulse_rate)
    if user_id is not None:
        out.uint(user_id, 1, "user_id")
    if status is not None:
        out.uint(status, 2, "status")
    out.raw(trailing)
    return bytes(out.out)


def encode_blood_pressure_measurement(value: bp.BloodPressureMeasurement) -> bytes:
    pressures = (value.systolic, value.diastolic, value.mean_arterial)
    return _blood_pressure_layout(
        value.kpa,
        pressures,
        value.time_stamp,
        value.pulse_rate,
        value.user_id,
        value.status,
        value.rfu_flags,
        value.trailing,
    )


def encode_intermediate_cuff_pressure(value: bp.IntermediateCuffPressure) -> bytes:
    pressures = (value.cuff_pressure, value.unused_diastolic, value.unused_mean_arterial)
    return _blood_pressure_layout(
        value.kpa,
        pressures,
        value.time_stamp,
        value.pulse_rate,
        value.user_id,
        value.status,
        value.rfu_flags,
        value.trailing,
    )


def _features(bits: int, size: int, trailing: bytes) -> bytes:
    out = _Writer()
    out.uint(bits, size, "bits")
    out.raw(trailing)
    return bytes(out.out)


def encode_blood_pressure_feature(value: bp.BloodPressureFeature) -> bytes:
    return _features(value.bits, 2, value.trailing)


def encode_temperature_measurement(value: ht.TemperatureMeasurement) -> bytes:
    """Temperature Measurement or Intermediate Temperature: the same layout."""
    flag_bits = {
        ht.TemperatureFlags.FAHRENHEIT: value.fahrenheit,
        ht.TemperatureFlags.TIME_STAMP: value.time_stamp is not None,
        ht.TemperatureFlags.TEMPERATURE_TYPE: value.temperature_type is not None,
    }
    out = _Writer()
    out.uint(_flags(flag_bits.items(), value.rfu_flags, ht.TEMPERATURE_DEFINED_FLAGS), 1, "Flags")
    out.float32(value.temperature)
    if value.time_stamp is not None:
        out.date_time(value.time_stamp)
    if value.temperature_type is not None:
        out.uint(value.temperature_type, 1, "temperature_type")
    out.raw(value.trailing)
    return bytes(out.out)


def encode_weight_measurement(value: ws.WeightMeasurement) -> bytes:
    flag_bits = {
        ws.WeightFlags.IMPERIAL: value.imperial,
        ws.WeightFlags.TIME_STAMP: value.time_stamp is not None,
        ws.WeightFlags.USER_ID: value.user_id is not None,
        ws.WeightFlags.BMI_AND_HEIGHT: value.bmi is not None,
    }
    out = _Writer()
    out.uint(_flags(flag_bits.items(), value.rfu_flags, ws.WEIGHT_DEFINED_FLAGS), 1, "Flags")
    out.uint(value.weight, 2, "weight")
    if value.time_stamp is not None:
        out.date_time(value.time_stamp)
    if value.user_id is not None:
        out.uint(value.user_id, 1, "user_id")
    if value.bmi is not None and value.height is not None:
        out.uint(value.bmi, 2, "bmi")
        out.uint(value.height, 2, "height")
    out.raw(value.trailing)
    return bytes(out.out)


def encode_weight_scale_feature(value: ws.WeightScaleFeature) -> bytes:
    return _features(value.bits, 4, value.trailing)


def encode_glucose_measurement(value: gl.GlucoseMeasurement) -> bytes:
    flag_bits = {
        gl.GlucoseFlags.TIME_OFFSET: value.time_offset is not None,
        gl.GlucoseFlags.CONCENTRATION_TYPE_LOCATION: value.concentration is not None,
        gl.GlucoseFlags.MOL_PER_L: value.mol_per_l,
        gl.GlucoseFlags.SENSOR_STATUS: value.status is not None,
        gl.GlucoseFlags.CONTEXT_FOLLOWS: value.context_follows,
    }
    out = _Writer()
    out.uint(_flags(flag_bits.items(), value.rfu_flags, gl.GLUCOSE_DEFINED_FLAGS), 1, "Flags")
    out.uint(value.sequence_number, 2, "sequence_number")
    out.date_time(value.base_time)
    if value.time_offset is not None:
        out.sint16(value.time_offset, "time_offset")
    if value.concentration is not None and value.sample_type is not None and value.sample_location is not None:
        out.sfloat(value.concentration)
        if not 0 <= value.sample_type <= 0x0F or not 0 <= value.sample_location <= 0x0F:
            raise ValueError("sample_type and sample_location are 4-bit nibbles (0..15)")
        out.uint(value.sample_location << 4 | value.sample_type, 1, "Type-Sample Location")
    if value.status is not None:
        out.uint(value.status, 2, "status")
    out.raw(value.trailing)
    return bytes(out.out)


def encode_glucose_context(value: gl.GlucoseContext) -> bytes:
    flag_bits = {
        gl.ContextFlags.CARBOHYDRATE: value.carbohydrate is not None,
        gl.ContextFlags.MEAL: value.meal is not None,
        gl.ContextFlags.TESTER_HEALTH: value.tester is not None,
        gl.ContextFlags.EXERCISE: value.exercise_duration is not None,
        gl.ContextFlags.MEDICATION: value.medication is not None,
        gl.ContextFlags.MEDICATION_IN_LITRES: value.medication_in_litres,
        gl.ContextFlags.HBA1C: value.hba1c is not None,
        gl.ContextFlags.EXTENDED_FLAGS: value.extended_flags is not None,
    }
    out = _Writer()
    out.uint(_flags(flag_bits.items(), 0, 0xFF), 1, "Flags")
    out.uint(value.sequence_number, 2, "sequence_number")
    if value.extended_flags is not None:
        out.uint(value.extended_flags, 1, "extended_flags")
    if value.carbohydrate_id is not None and value.carbohydrate is not None:
        out.uint(value.carbohydrate_id, 1, "carbohydrate_id")
        out.sfloat(value.carbohydrate)
    if value.meal is not None:
        out.uint(value.meal, 1, "meal")
    if value.tester is not None and value.health is not None:
        if not 0 <= value.tester <= 0x0F or not 0 <= value.health <= 0x0F:
            raise ValueError("tester and health are 4-bit nibbles (0..15)")
        out.uint(value.health << 4 | value.tester, 1, "Tester-Health")
    if value.exercise_duration is not None and value.exercise_intensity is not None:
        out.uint(value.exercise_duration, 2, "exercise_duration")
        out.uint(value.exercise_intensity, 1, "exercise_intensity")
    if value.medication_id is not None and value.medication is not None:
        out.uint(value.medication_id, 1, "medication_id")
        out.sfloat(value.medication)
    if value.hba1c is not None:
        out.sfloat(value.hba1c)
    out.raw(value.trailing)
    return bytes(out.out)


def encode_glucose_feature(value: gl.GlucoseFeature) -> bytes:
    return _features(value.bits, 2, value.trailing)


def encode_racp(value: racp.RacpValue) -> bytes:
    """Any RACP value: a command (for tests of the gateway's side) or a response (what a meter indicates)."""
    out = _Writer()
    out.uint(value.op_code, 1, "op_code")
    out.uint(value.operator, 1, "operator")
    out.raw(value.operand)
    return bytes(out.out)


def racp_number_of_records(count: int) -> bytes:
    """A meter's Number of Stored Records Response (a uint16 count)."""
    if not 0 <= count <= 0xFFFF:
        raise ValueError(f"a record count is 0..65535, not {count}")
    return encode_racp(
        racp.RacpValue(racp.OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, racp.Operator.NULL, count.to_bytes(2, "little"))
    )


def racp_response(request_op_code: int, response_code: int) -> bytes:
    """A meter's Response Code: ``response_code`` (racp.ResponseCode) to the request ``request_op_code``."""
    operand = bytes((request_op_code, response_code))
    return encode_racp(racp.RacpValue(racp.OpCode.RESPONSE_CODE, racp.Operator.NULL, operand))


def encode_plx_spot_check(value: plx.PlxSpotCheck) -> bytes:
    flag_bits = {
        plx.SpotCheckFlags.TIME_STAMP: value.time_stamp is not None,
        plx.SpotCheckFlags.MEASUREMENT_STATUS: value.measurement_status is not None,
        plx.SpotCheckFlags.DEVICE_AND_SENSOR_STATUS: value.device_status is not None,
        plx.SpotCheckFlags.PULSE_AMPLITUDE_INDEX: value.pulse_amplitude_index is not None,
        plx.SpotCheckFlags.DEVICE_CLOCK_NOT_SET: value.clock_not_set,
    }
    out = _Writer()
    out.uint(_flags(flag_bits.items(), value.rfu_flags, plx.SPOT_CHECK_DEFINED_FLAGS), 1, "Flags")
    out.sfloat(value.spo2)
    out.sfloat(value.pulse_rate)
    if value.time_stamp is not None:
        out.date_time(value.time_stamp)
    if value.measurement_status is not None:
        out.uint(value.measurement_status, 2, "measurement_status")
    if value.device_status is not None:
        out.uint(value.device_status, 3, "device_status")
    if value.pulse_amplitude_index is not None:
        out.sfloat(value.pulse_amplitude_index)
    out.raw(value.trailing)
    return bytes(out.out)


def encode_plx_continuous(value: plx.PlxContinuous) -> bytes:
    flag_bits = {
        plx.ContinuousFlags.SPO2PR_FAST: value.fast is not None,
        plx.ContinuousFlags.SPO2PR_SLOW: value.slow is not None,
        plx.ContinuousFlags.MEASUREMENT_STATUS: value.measurement_status is not None,
        plx.ContinuousFlags.DEVICE_AND_SENSOR_STATUS: value.device_status is not None,
        plx.ContinuousFlags.PULSE_AMPLITUDE_INDEX: value.pulse_amplitude_index is not None,
    }
    out = _Writer()
    out.uint(_flags(flag_bits.items(), value.rfu_flags, plx.CONTINUOUS_DEFINED_FLAGS), 1, "Flags")
    out.sfloat(value.spo2)
    out.sfloat(value.pulse_rate)
    for pair in (value.fast, value.slow):
        if pair is not None:
            out.sfloat(pair[0])
            out.sfloat(pair[1])
    if value.measurement_status is not None:
        out.uint(value.measurement_status, 2, "measurement_status")
    if value.device_status is not None:
        out.uint(value.device_status, 3, "device_status")
    if value.pulse_amplitude_index is not None:
        out.sfloat(value.pulse_amplitude_index)
    out.raw(value.trailing)
    return bytes(out.out)


def encode_plx_features(value: plx.PlxFeatures) -> bytes:
    out = _Writer()
    out.uint(value.supported, 2, "supported")
    if value.measurement_status_support is not None:
        out.uint(value.measurement_status_support, 2, "measurement_status_support")
    if value.device_status_support is not None:
        out.uint(value.device_status_support, 3, "device_status_support")
    out.raw(value.trailing)
    return bytes(out.out)


def encode_heart_rate_measurement(value: hr.HeartRateMeasurement) -> bytes:
    if not 0 <= value.sensor_contact <= 3:
        raise ValueError(f"sensor_contact is two bits (0..3), not {value.sensor_contact}")
    flag_bits = {
        hr.HrFlags.UINT16: value.uint16,
        hr.HrFlags.ENERGY_EXPENDED: value.energy_expended is not None,
        hr.HrFlags.RR_INTERVAL: value.rr_intervals is not None,
    }
    out = _Writer()
    out.uint(_flags(flag_bits.items(), value.rfu_flags, hr.HR_DEFINED_FLAGS) | value.sensor_contact << 1, 1, "Flags")
    out.uint(value.heart_rate, 2 if value.uint16 else 1, "heart_rate")
    if value.energy_expended is not None:
        out.uint(value.energy_expended, 2, "energy_expended")
    for interval in value.rr_intervals or ():
        out.uint(interval, 2, "rr_intervals")
    out.raw(value.trailing)
    return bytes(out.out)


# Characteristic UUID to the encoder of its values, as the decoding table maps it to the decoder.
ENCODERS: Mapping[int, Callable[[Any], bytes]] = MappingProxyType(
    {
        bp.BLOOD_PRESSURE_MEASUREMENT: encode_blood_pressure_measurement,
        bp.INTERMEDIATE_CUFF_PRESSURE: encode_intermediate_cuff_pressure,
        bp.BLOOD_PRESSURE_FEATURE: encode_blood_pressure_feature,
        ht.TEMPERATURE_MEASUREMENT: encode_temperature_measurement,
        ht.INTERMEDIATE_TEMPERATURE: encode_temperature_measurement,
        ws.WEIGHT_MEASUREMENT: encode_weight_measurement,
        ws.WEIGHT_SCALE_FEATURE: encode_weight_scale_feature,
        gl.GLUCOSE_MEASUREMENT: encode_glucose_measurement,
        gl.GLUCOSE_MEASUREMENT_CONTEXT: encode_glucose_context,
        gl.GLUCOSE_FEATURE: encode_glucose_feature,
        racp.RECORD_ACCESS_CONTROL_POINT: encode_racp,
        plx.PLX_SPOT_CHECK_MEASUREMENT: encode_plx_spot_check,
        plx.PLX_CONTINUOUS_MEASUREMENT: encode_plx_continuous,
        plx.PLX_FEATURES: encode_plx_features,
        hr.HEART_RATE_MEASUREMENT: encode_heart_rate_measurement,
    }
)
# The field types each characteristic's encoder takes, so that a value cannot go to the wrong characteristic.
_VALUE_TYPES: Mapping[int, type] = MappingProxyType(
    {
        bp.BLOOD_PRESSURE_MEASUREMENT: bp.BloodPressureMeasurement,
        bp.INTERMEDIATE_CUFF_PRESSURE: bp.IntermediateCuffPressure,
        bp.BLOOD_PRESSURE_FEATURE: bp.BloodPressureFeature,
        ht.TEMPERATURE_MEASUREMENT: ht.TemperatureMeasurement,
        ht.INTERMEDIATE_TEMPERATURE: ht.IntermediateTemperature,
        ws.WEIGHT_MEASUREMENT: ws.WeightMeasurement,
        ws.WEIGHT_SCALE_FEATURE: ws.WeightScaleFeature,
        gl.GLUCOSE_MEASUREMENT: gl.GlucoseMeasurement,
        gl.GLUCOSE_MEASUREMENT_CONTEXT: gl.GlucoseContext,
        gl.GLUCOSE_FEATURE: gl.GlucoseFeature,
        racp.RECORD_ACCESS_CONTROL_POINT: racp.RacpValue,
        plx.PLX_SPOT_CHECK_MEASUREMENT: plx.PlxSpotCheck,
        plx.PLX_CONTINUOUS_MEASUREMENT: plx.PlxContinuous,
        plx.PLX_FEATURES: plx.PlxFeatures,
        hr.HEART_RATE_MEASUREMENT: hr.HeartRateMeasurement,
    }
)


def encode(characteristic: int, value: GattValue) -> bytes:
    """The bytes of ``value`` as ``characteristic`` carries them. ValueError for a value of another
    characteristic, or a field that does not fit."""
    try:
        encoder, expected = ENCODERS[characteristic], _VALUE_TYPES[characteristic]
    except KeyError:
        raise ValueError(f"no encoder for characteristic {characteristic:#06x}") from None
    if type(value) is not expected:
        raise ValueError(f"{characteristic:#06x} carries {expected.__name__}, not {type(value).__name__}")
    return encoder(value)
