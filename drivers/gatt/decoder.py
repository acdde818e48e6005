"""The sans-I/O GATT decoder the BLE transport feeds: one value in, readings out, with a profile's context."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import tzinfo
from zoneinfo import ZoneInfo

from healthhut.drivers.base import DecodeError
from healthhut.drivers.gatt import blood_pressure as bp
from healthhut.drivers.gatt import glucose as gl
from healthhut.drivers.gatt import pulse_oximeter as plx
from healthhut.drivers.gatt import racp
from healthhut.drivers.gatt import thermometer as ht
from healthhut.drivers.gatt import weight_scale as ws
from healthhut.drivers.gatt.table import CHARACTERISTICS, GattValue
from healthhut.protocol import Reading

DEFAULT_TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True, slots=True)
class GlucoseRecord:
    """A glucose measurement with its context, when the meter sent one."""

    measurement: gl.GlucoseMeasurement
    context: gl.GlucoseContext | None = None


class GattProfileDecoder:
    """Decodes every value the transport receives (notification, indication or read) with ``on_value``.

    It never raises on a bad value: it counts it in ``frame_errors`` and keeps the error in ``last_error``.
    Features (0x2A49, 0x2A9E, 0x2A60, 0x2A51) produce no reading; they are kept in ``features``. Intermediate
    values (0x2A36, 0x2A1E) are progress, not results: they produce no reading and are kept for display.
    A glucose measurement whose flags say a context follows waits for it (same sequence number) until the
    context, the next measurement, an RACP response or :meth:`flush`. RACP responses produce no reading.
    Values that are not a resident's measurement (control solution, demonstration or test data) are counted
    in ``not_patient_data`` and produce no reading.
    """

    def __init__(
        self,
        *,
        tz: tzinfo | None = None,
        characteristics: Iterable[int] | None = None,
        strict: bool = False,
    ) -> None:
        self.tz: tzinfo = tz if tz is not None else ZoneInfo(DEFAULT_TIMEZONE)
        self.characteristics = frozenset(CHARACTERISTICS if characteristics is None else characteristics)
        unknown = self.characteristics - CHARACTERISTICS.keys()
        if unknown:
            raise ValueError(f"no decoder for {', '.join(f'{u:#06x}' for u in sorted(unknown))}")
        self.strict = strict
        self.frame_errors = 0
        self.last_error: DecodeError | None = None
        # Values of characteristics this decoder was not made for; not errors of the device's protocol.
        self.ignored_values = 0
        # Values that broke a rule the decoder tolerates (reserved flag bits, trailing bytes): for technicians.
        self.tolerated_quirks = 0
        self.not_patient_data = 0
        self.features: dict[int, GattValue] = {}
        self.last_intermediate: Reading | None = None
        self.last_cuff_pressure_mmhg: float | None = None
        # Glucose and RACP.
        self.last_glucose_record: GlucoseRecord | None = None
        self.last_sequence_number: int | None = None
        self.glucose_records = 0
        self.orphan_contexts = 0
        self.last_racp_response: racp.RacpValue | None = None
        self.racp_record_count: int | None = None
        self._held: gl.GlucoseMeasurement | None = None

    def on_value(self, characteristic: int, data: bytes) -> list[Reading]:
        """The readings one characteristic value gives (often none). Never raises on bad bytes."""
        if characteristic not in self.characteristics:
            self.ignored_values += 1
            return []
        try:
            value = CHARACTERISTICS[characteristic].decode(bytes(data), self.strict)
            return self._handle(characteristic, value)
        except DecodeError as error:
            self.frame_errors += 1
            self.last_error = error
            return []

    def flush(self) -> list[Reading]:
        """Release a glucose measurement still waiting for its context (call it when the link goes down)."""
        return self._release()

    @property
    def bp_feature(self) -> bp.BloodPressureFeature | None:
        value = self.features.get(bp.BLOOD_PRESSURE_FEATURE)
        return value if isinstance(value, bp.BloodPressureFeature) else None

    @property
    def weight_scale_feature(self) -> ws.WeightScaleFeature | None:
        value = self.features.get(ws.WEIGHT_SCALE_FEATURE)
        return value if isinstance(value, ws.WeightScaleFeature) else None

    @property
    def plx_features(self) -> plx.PlxFeatures | None:
        value = self.features.get(plx.PLX_FEATURES)
        return value if isinstance(value, plx.PlxFeatures) else None

    def _handle(self, characteristic: int, value: GattValue) -> list[Reading]:
        if getattr(value, "rfu_flags", 0) or getattr(value, "trailing", b""):
            self.tolerated_quirks += 1
        match value:
            case bp.BloodPressureFeature() | ws.WeightScaleFeature() | plx.PlxFeatures() | gl.GlucoseFeature():
                self.features[characteristic] = value
                return []
            case bp.IntermediateCuffPressure():
                self.last_cuff_pressure_mmhg = value.cuff_pressure_mmhg()
                self.last_intermediate = value.reading(self.tz)
                return []
            case ht.IntermediateTemperature():
                self.last_intermediate = value.reading(self.tz)
                return []
            case gl.GlucoseMeasurement():
                return self._on_glucose(value)
            case gl.GlucoseContext():
                return self._on_context(value)
            case racp.RacpValue():
                self.last_racp_response = value
                if value.record_count is not None:
                    self.racp_record_count = value.record_count
                # A response ends a transfer: no context can follow the last record any more.
                return self._release()
            case plx.PlxSpotCheck() | plx.PlxContinuous() if value.not_patient_data:
                self.not_patient_data += 1
                return []
            case _:
                return [value.reading(self.tz)]

    def _on_glucose(self, measurement: gl.GlucoseMeasurement) -> list[Reading]:
        released = self._release()
        self.glucose_records += 1
        self.last_sequence_number = measurement.sequence_number
        if measurement.context_follows:
            self._held = measurement
            return released
        return released + self._emit(GlucoseRecord(measurement))

    def _on_context(self, context: gl.GlucoseContext) -> list[Reading]:
        held = self._held
        if held is None or held.sequence_number != context.sequence_number:
            # A context for a record that is not waiting: its measurement was lost, or never said one follows.
            self.orphan_contexts += 1
            return self._release()
        self._held = None
        return self._emit(GlucoseRecord(held, context))

    def _release(self) -> list[Reading]:
        held, self._held = self._held, None
        return [] if held is None else self._emit(GlucoseRecord(held))

    def _emit(self, record: GlucoseRecord) -> list[Reading]:
        self.last_glucose_record = record
        if record.measurement.control_solution:
            self.not_patient_data += 1
            return []
        return [record.measurement.reading(self.tz)]
