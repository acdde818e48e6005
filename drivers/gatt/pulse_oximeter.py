"""Pulse Oximeter Service (0x1822): PLX Spot-check and Continuous Measurement and PLX Features, per the GSS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from enum import IntFlag

from healthhut.drivers.gatt.date_time import DateTime
from healthhut.drivers.gatt.sfloat import SFloat
from healthhut.drivers.gatt.units import put
from healthhut.drivers.gatt.wire import Cursor
from healthhut.protocol import Flag, Kind, Quantity, Reading

PLX_SPOT_CHECK_MEASUREMENT = 0x2A5E
PLX_CONTINUOUS_MEASUREMENT = 0x2A5F
PLX_FEATURES = 0x2A60


class SpotCheckFlags(IntFlag):
    TIME_STAMP = 0x01
    MEASUREMENT_STATUS = 0x02
    DEVICE_AND_SENSOR_STATUS = 0x04
    PULSE_AMPLITUDE_INDEX = 0x08
    DEVICE_CLOCK_NOT_SET = 0x10


SPOT_CHECK_DEFINED_FLAGS = 0x1F


class ContinuousFlags(IntFlag):
    SPO2PR_FAST = 0x01
    SPO2PR_SLOW = 0x02
    MEASUREMENT_STATUS = 0x04
    DEVICE_AND_SENSOR_STATUS = 0x08
    PULSE_AMPLITUDE_INDEX = 0x10


CONTINUOUS_DEFINED_FLAGS = 0x1F


class MeasurementStatus(IntFlag):
    """PLX Measurement Status (16 bits); bits 0-4 are reserved."""

    MEASUREMENT_ONGOING = 0x0020
    EARLY_ESTIMATED_DATA = 0x0040
    VALIDATED_DATA = 0x0080
    FULLY_QUALIFIED_DATA = 0x0100
    DATA_FROM_STORAGE = 0x0200
    DATA_FOR_DEMONSTRATION = 0x0400
    DATA_FOR_TESTING = 0x0800
    CALIBRATION_ONGOING = 0x1000
    MEASUREMENT_UNAVAILABLE = 0x2000
    QUESTIONABLE_MEASUREMENT = 0x4000
    INVALID_MEASUREMENT = 0x8000


class DeviceStatus(IntFlag):
    """PLX Device and Sensor Status (24 bits); bits 16-23 are reserved."""

    EXTENDED_DISPLAY_UPDATE_ONGOING = 0x0001
    EQUIPMENT_MALFUNCTION = 0x0002
    SIGNAL_PROCESSING_IRREGULARITY = 0x0004
    INADEQUATE_SIGNAL = 0x0008
    POOR_SIGNAL = 0x0010
    LOW_PERFUSION = 0x0020
    ERRATIC_SIGNAL = 0x0040
    NONPULSATILE_SIGNAL = 0x0080
    QUESTIONABLE_PULSE = 0x0100
    SIGNAL_ANALYSIS_ONGOING = 0x0200
    SENSOR_INTERFERENCE = 0x0400
    SENSOR_UNCONNECTED_TO_USER = 0x0800
    UNKNOWN_SENSOR_CONNECTED = 0x1000
    SENSOR_DISPLACED = 0x2000
    SENSOR_MALFUNCTIONING = 0x4000
    SENSOR_DISCONNECTED = 0x8000


# README, Protocol: the mapping of status bits to quality flags. Bits not listed carry no quality meaning
# (ongoing measurement, validated data, data from storage) or mark data that is not a resident's (demonstration,
# testing), which the decoder drops.
MEASUREMENT_STATUS_FLAGS: dict[MeasurementStatus, Flag] = {
    MeasurementStatus.EARLY_ESTIMATED_DATA: Flag.SEARCHING,
    MeasurementStatus.CALIBRATION_ONGOING: Flag.SEARCHING,
    MeasurementStatus.MEASUREMENT_UNAVAILABLE: Flag.VALUE_UNAVAILABLE,
    MeasurementStatus.QUESTIONABLE_MEASUREMENT: Flag.LOW_SIGNAL_QUALITY,
    MeasurementStatus.INVALID_MEASUREMENT: Flag.IMPLAUSIBLE,
}
DEVICE_STATUS_FLAGS: dict[DeviceStatus, Flag] = {
    DeviceStatus.EQUIPMENT_MALFUNCTION: Flag.PROBE_ERROR,
    DeviceStatus.SIGNAL_PROCESSING_IRREGULARITY: Flag.LOW_SIGNAL_QUALITY,
    DeviceStatus.INADEQUATE_SIGNAL: Flag.LOW_SIGNAL_QUALITY,
    DeviceStatus.POOR_SIGNAL: Flag.LOW_SIGNAL_QUALITY,
    DeviceStatus.LOW_PERFUSION: Flag.LOW_PERFUSION,
    DeviceStatus.ERRATIC_SIGNAL: Flag.LOW_SIGNAL_QUALITY,
    DeviceStatus.NONPULSATILE_SIGNAL: Flag.LOW_SIGNAL_QUALITY,
    DeviceStatus.QUESTIONABLE_PULSE: Flag.LOW_SIGNAL_QUALITY,
    DeviceStatus.SIGNAL_ANALYSIS_ONGOING: Flag.SEARCHING,
    DeviceStatus.SENSOR_INTERFERENCE: Flag.LOW_SIGNAL_QUALITY,
    DeviceStatus.SENSOR_UNCONNECTED_TO_USER: Flag.FINGER_OUT,
    DeviceStatus.UNKNOWN_SENSOR_CONNECTED: Flag.PROBE_ERROR,
    DeviceStatus.SENSOR_DISPLACED: Flag.IMPROPER_POSITION,
    DeviceStatus.SENSOR_MALFUNCTIONING: Flag.PROBE_ERROR,
    DeviceStatus.SENSOR_DISCONNECTED: Flag.PROBE_ERROR,
}
NOT_PATIENT_DATA = MeasurementStatus.DATA_FOR_DEMONSTRATION | MeasurementStatus.DATA_FOR_TESTING


def status_flags(measurement_status: int | None, device_status: int | None) -> set[Flag]:
    flags = {flag for bit, flag in MEASUREMENT_STATUS_FLAGS.items() if (measurement_status or 0) & bit}
    flags |= {flag for bit, flag in DEVICE_STATUS_FLAGS.items() if (device_status or 0) & bit}
    return flags


@dataclass(frozen=True, slots=True)
class PlxSpotCheck:
    """0x2A5E as sent: SpO2 (%) and pulse rate (/min) of one spot check."""

    spo2: SFloat
    pulse_rate: SFloat
    time_stamp: DateTime | None = None
    measurement_status: int | None = None
    device_status: int | None = None
    pulse_amplitude_index: SFloat | None = None  # %
    clock_not_set: bool = False
    rfu_flags: int = 0
    trailing: bytes = b""

    @property
    def not_patient_data(self) -> bool:
        """Sent for a demonstration or a test, not measured on a resident."""
        return bool((self.measurement_status or 0) & NOT_PATIENT_DATA)

    def reading(self, tz: tzinfo) -> Reading:
        """The device's time stamp is kept even when it says its clock is not set; CLOCK_UNVERIFIED tells the
        gateway not to trust it."""
        values: dict[str, Quantity] = {}
        flags = status_flags(self.measurement_status, self.device_status)
        if self.clock_not_set:
            flags.add(Flag.CLOCK_UNVERIFIED)
        put(values, flags, "spo2", self.spo2, "%")
        put(values, flags, "pulse_rate", self.pulse_rate, "/min")
        put(values, flags, "perfusion_index", self.pulse_amplitude_index, "%")
        measured_at = None if self.time_stamp is None else self.time_stamp.to_datetime(tz)
        return Reading(Kind.SPO2, values, frozenset(flags), measured_at)


def decode_plx_spot_check(data: bytes, strict: bool = False) -> PlxSpotCheck:
    cursor = Cursor(data, f"PLX Spot-Check Measurement ({PLX_SPOT_CHECK_MEASUREMENT:#06x})")
    flags, rfu = cursor.flags(SPOT_CHECK_DEFINED_FLAGS, strict)
    spo2 = cursor.sfloat("SpO2")
    pulse_rate = cursor.sfloat("PR")
    time_stamp = cursor.date_time("Timestamp") if flags & SpotCheckFlags.TIME_STAMP else None
    measurement = cursor.uint(2, "Measurement Status") if flags & SpotCheckFlags.MEASUREMENT_STATUS else None
    device = cursor.uint(3, "Device and Sensor Status") if flags & SpotCheckFlags.DEVICE_AND_SENSOR_STATUS else None
    pai = cursor.sfloat("Pulse Amplitude Index") if flags & SpotCheckFlags.PULSE_AMPLITUDE_INDEX else None
    clock_not_set = bool(flags & SpotCheckFlags.DEVICE_CLOCK_NOT_SET)
    return PlxSpotCheck(
        spo2, pulse_rate, time_stamp, measurement, device, pai, clock_not_set, rfu, cursor.trailing(strict)
    )


@dataclass(frozen=True, slots=True)
class PlxContinuous:
    """0x2A5F as sent: SpO2PR-Normal, and the Fast and Slow averages where the device sends them."""

    spo2: SFloat
    pulse_rate: SFloat
    fast: tuple[SFloat, SFloat] | None = None  # (SpO2, PR)
    slow: tuple[SFloat, SFloat] | None = None
    measurement_status: int | None = None
    device_status: int | None = None
    pulse_amplitude_index: SFloat | None = None
    rfu_flags: int = 0
    trailing: bytes = b""

    @property
    def not_patient_data(self) -> bool:
        return bool((self.measurement_status or 0) & NOT_PATIENT_DATA)

    def reading(self, tz: tzinfo) -> Reading:
        """The Normal pair is the reading; no time stamp (the gateway stamps it)."""
        values: dict[str, Quantity] = {}
        flags = status_flags(self.measurement_status, self.device_status)
        put(values, flags, "spo2", self.spo2, "%")
        put(values, flags, "pulse_rate", self.pulse_rate, "/min")
        put(values, flags, "perfusion_index", self.pulse_amplitude_index, "%")
        return Reading(Kind.SPO2, values, frozenset(flags))


def decode_plx_continuous(data: bytes, strict: bool = False) -> PlxContinuous:
    cursor = Cursor(data, f"PLX Continuous Measurement ({PLX_CONTINUOUS_MEASUREMENT:#06x})")
    flags, rfu = cursor.flags(CONTINUOUS_DEFINED_FLAGS, strict)
    spo2 = cursor.sfloat("SpO2PR-Normal SpO2")
    pulse_rate = cursor.sfloat("SpO2PR-Normal PR")
    fast = (
        (cursor.sfloat("SpO2PR-Fast SpO2"), cursor.sfloat("SpO2PR-Fast PR"))
        if flags & ContinuousFlags.SPO2PR_FAST
        else None
    )
    slow = (
        (cursor.sfloat("SpO2PR-Slow SpO2"), cursor.sfloat("SpO2PR-Slow PR"))
        if flags & ContinuousFlags.SPO2PR_SLOW
        else None
    )
    measurement = cursor.uint(2, "Measurement Status") if flags & ContinuousFlags.MEASUREMENT_STATUS else None
    device = cursor.uint(3, "Device and Sensor Status") if flags & ContinuousFlags.DEVICE_AND_SENSOR_STATUS else None
    pai = cursor.sfloat("Pulse Amplitude Index") if flags & ContinuousFlags.PULSE_AMPLITUDE_INDEX else None
    return PlxContinuous(spo2, pulse_rate, fast, slow, measurement, device, pai, rfu, cursor.trailing(strict))


class PlxSupportedFeatures(IntFlag):
    MEASUREMENT_STATUS = 0x0001
    DEVICE_AND_SENSOR_STATUS = 0x0002
    SPOT_CHECK_STORAGE = 0x0004
    SPOT_CHECK_TIME_STAMP = 0x0008
    SPO2PR_FAST = 0x0010
    SPO2PR_SLOW = 0x0020
    PULSE_AMPLITUDE_INDEX = 0x0040
    MULTIPLE_BONDS = 0x0080


@dataclass(frozen=True, slots=True)
class PlxFeatures:
    """0x2A60: the oximeter's features and which status bits it supports. It produces no reading."""

    supported: int
    measurement_status_support: int | None = None
    device_status_support: int | None = None
    trailing: bytes = b""

    def __post_init__(self) -> None:
        if (self.measurement_status_support is not None) != bool(
            self.supported & PlxSupportedFeatures.MEASUREMENT_STATUS
        ):
            raise ValueError("measurement_status_support is sent exactly when bit 0 of supported is set")
        if (self.device_status_support is not None) != bool(
            self.supported & PlxSupportedFeatures.DEVICE_AND_SENSOR_STATUS
        ):
            raise ValueError("device_status_support is sent exactly when bit 1 of supported is set")

    @property
    def features(self) -> PlxSupportedFeatures:
        return PlxSupportedFeatures(self.supported & 0x00FF)


def decode_plx_features(data: bytes, strict: bool = False) -> PlxFeatures:
    cursor = Cursor(data, f"PLX Features ({PLX_FEATURES:#06x})")
    supported = cursor.uint(2, "Supported Features")
    measurement = (
        cursor.uint(2, "Measurement Status Support") if supported & PlxSupportedFeatures.MEASUREMENT_STATUS else None
    )
    device = (
        cursor.uint(3, "Device and Sensor Status Support")
        if supported & PlxSupportedFeatures.DEVICE_AND_SENSOR_STATUS
        else None
    )
    return PlxFeatures(supported, measurement, device, cursor.trailing(strict))
