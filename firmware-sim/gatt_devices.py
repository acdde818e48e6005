"""Sans-I/O models of the six Bluetooth SIG health devices hut-sim plays: their GATT tables, and what they send
over time for a scenario, with faults; a link (fake BlueZ, MQTT) carries it."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from types import MappingProxyType
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from healthhut.drivers import BleProfile
from healthhut.drivers.ble_blood_pressure import PROFILE as BLOOD_PRESSURE_PROFILE
from healthhut.drivers.ble_glucose import PROFILE as GLUCOSE_PROFILE
from healthhut.drivers.ble_heart_rate import PROFILE as HEART_RATE_PROFILE
from healthhut.drivers.ble_pulse_oximeter import PROFILE as PULSE_OXIMETER_PROFILE
from healthhut.drivers.ble_thermometer import PROFILE as THERMOMETER_PROFILE
from healthhut.drivers.ble_weight_scale import PROFILE as WEIGHT_SCALE_PROFILE
from healthhut.drivers.gatt import blood_pressure as bp
from healthhut.drivers.gatt import glucose as gl
from healthhut.drivers.gatt import heart_rate as hr
from healthhut.drivers.gatt import pulse_oximeter as plx
from healthhut.drivers.gatt import thermometer as ht
from healthhut.drivers.gatt import weight_scale as ws
from healthhut.drivers.gatt.date_time import DateTime, current_time_bytes
from healthhut.drivers.gatt.decoder import DEFAULT_TIMEZONE
from healthhut.drivers.gatt.racp import RECORD_ACCESS_CONTROL_POINT
from healthhut.drivers.gatt.sfloat import Float, SFloat, Special
from healthhut.drivers.gatt.table import GattValue
from healthhut.firmware_sim.encoders.gatt import encode
from healthhut.firmware_sim.faults import Fault, value_fault
from healthhut.firmware_sim.scenarios import Scenario
from healthhut.firmware_sim.signals import BeatClock, Rhythm

CURRENT_TIME_SERVICE = 0x1805
CURRENT_TIME = 0x2A2B
# After a reset the clock starts here: the GATT Date Time's usual epoch, and what reset devices show.
RESET_CLOCK = datetime(2000, 1, 1)
SPECIALS = (Special.NAN, Special.NRES, Special.POSITIVE_INFINITY, Special.NEGATIVE_INFINITY)
DEFAULT_INTERVAL_S = 30.0


@dataclass(frozen=True, slots=True)
class CharacteristicSpec:
    """One characteristic of the GATT table: UUID, BlueZ-style flags and its initial value."""

    uuid: int
    flags: tuple[str, ...]
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    uuid: int
    characteristics: tuple[CharacteristicSpec, ...]


@dataclass(frozen=True, slots=True)
class Send:
    """A value to notify or indicate. A ``stored`` one (a measurement result) waits in the device until a
    client takes it; the others (progress, a continuous stream) are lost when nobody listens."""

    characteristic: int
    value: bytes
    stored: bool


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record in a meter's memory, fetched through RACP: its sequence number and the notifications
    (characteristic, value) that carry it."""

    sequence_number: int
    values: tuple[tuple[int, bytes], ...]


DeviceEvent = Send | StoredRecord
# When a device sends something, and how to make it then.
Due = tuple[float, Callable[[], list[DeviceEvent]]]


def then(make: Callable[..., DeviceEvent], *args: Any) -> Callable[[], list[DeviceEvent]]:
    """``make(*args)``, later, as a list."""
    return lambda: [make(*args)]


def _sfloat(value: float | str, exponent: int | None = None) -> SFloat:
    """An SFLOAT of ``value`` as written (2.5 is 25 × 10^-1), or rounded to 10^``exponent``."""
    return SFloat.from_decimal(Decimal(str(value)), exponent)


class GattDevice:
    """One simulated device. :meth:`advance` gives what it sends as time passes (seconds since it started).

    ``started_at`` is the real moment of its start; the device's clock shows it in ``tz`` (GATT time stamps
    carry no zone), or 2000-01-01 00:00:00 with the clock-reset fault. ``steady`` sends the scenario's values
    exactly, with no variation between measurements. ``interval`` is the time between spot measurements.
    """

    driver: ClassVar[str]
    local_name: ClassVar[str]
    profile: ClassVar[BleProfile]
    # Devices that wake for a measurement and sleep after it; the others stay connected and stream.
    sleeps: ClassVar[bool] = True
    supported_faults: ClassVar[frozenset[Fault]] = frozenset(
        {Fault.GARBAGE, Fault.OUT_OF_RANGE, Fault.SPECIAL_VALUES, Fault.CLOCK_RESET}
    )

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int | None = None,
        faults: Collection[Fault] = (),
        interval: float = DEFAULT_INTERVAL_S,
        steady: bool = False,
        tz: tzinfo | None = None,
        started_at: datetime | None = None,
    ) -> None:
        unsupported = set(faults) - self.supported_faults
        if unsupported:
            raise ValueError(f"{self.driver} cannot show {', '.join(sorted(unsupported))}")
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.scenario = scenario
        self.faults = frozenset(faults)
        self.interval = interval
        self.steady = steady
        self.tz = tz if tz is not None else ZoneInfo(DEFAULT_TIMEZONE)
        self.started_at = started_at if started_at is not None else datetime.now(UTC)
        self.rng = random.Random(seed)
        self.measurements = 0
        # The resident's heart, for the devices that count beats.
        self.beats = BeatClock(
            scenario.pulse_rate,
            self.rng,
            rhythm=scenario.rhythm,
            jitter=0.0 if steady else 0.03,
            pause_every=scenario.pause_every,
        )
        # Started on first use, so that a subclass's own set-up comes first.
        self._schedule: Iterator[Due] | None = None
        self._next: Due | None = None

    # -- the GATT table --

    def services(self) -> tuple[ServiceSpec, ...]:
        """The device's GATT table: its profile's service and, where the device's clock can be set, Current Time."""
        profile = self.profile
        flags: dict[int, list[str]] = {}
        for uuid in profile.read:
            flags.setdefault(uuid, []).append("read")
        for uuid in profile.notify:
            flags.setdefault(uuid, []).append("notify")
        for uuid in profile.indicate:
            flags.setdefault(uuid, []).append("indicate")
        if profile.racp:
            flags[RECORD_ACCESS_CONTROL_POINT] = ["write", "indicate"]
        values = self.read_values()
        main = ServiceSpec(
            profile.service,
            tuple(CharacteristicSpec(uuid, tuple(f), values.get(uuid, b"")) for uuid, f in flags.items()),
        )
        if not self.can_set_clock:
            return (main,)
        now = current_time_bytes(self.started_at, self.tz)
        clock = CharacteristicSpec(CURRENT_TIME, ("read", "write", "notify"), now)
        return main, ServiceSpec(CURRENT_TIME_SERVICE, (clock,))

    @property
    def can_set_clock(self) -> bool:
        # A device whose clock was reset and stays wrong is one that offers no Current Time to correct it.
        return self.profile.current_time and Fault.CLOCK_RESET not in self.faults

    def read_values(self) -> Mapping[int, bytes]:
        """The values of the readable characteristics (features)."""
        return MappingProxyType({})

    # -- time --

    def clock(self, elapsed: float) -> datetime:
        """The device's wall clock (naive, as GATT time stamps are) ``elapsed`` seconds after its start."""
        if Fault.CLOCK_RESET in self.faults:
            return RESET_CLOCK + timedelta(seconds=elapsed)
        moment = self.started_at + timedelta(seconds=elapsed)
        return moment.astimezone(self.tz).replace(tzinfo=None)

    def time_stamp(self, elapsed: float) -> DateTime:
        return DateTime.from_datetime(self.clock(elapsed))

    def advance(self, elapsed: float) -> list[DeviceEvent]:
        """Everything the device sends up to ``elapsed`` seconds after its start, oldest first."""
        out: list[DeviceEvent] = []
        schedule = self._started()
        while self._next is not None and self._next[0] <= elapsed:
            # Made only now: a measurement (a stored record) exists from its time on, not when it is scheduled.
            out.extend(self._next[1]())
            self._next = next(schedule, None)
        return out

    def _started(self) -> Iterator[Due]:
        if self._schedule is None:
            self._schedule = self._events()
            self._next = next(self._schedule, None)
        return self._schedule

    def _events(self) -> Iterator[Due]:
        """The device's life: when it sends something, and how to make what it sends, in time order, without end."""
        raise NotImplementedError

    def measure(self, at: float) -> DeviceEvent:
        """One result now, outside the device's schedule (``at`` seconds after its start, for its clock):
        for load tests that want readings faster than a resident could be measured."""
        raise NotImplementedError

    # -- values --

    def vary(self, value: float, spread: float) -> float:
        """``value`` with a measurement's natural variation (a normal spread), or exactly, when steady."""
        return value if self.steady else value + self.rng.gauss(0, spread)

    def fault_for_next(self) -> Fault | None:
        """The value fault of the next measurement, counting it."""
        fault = value_fault(self.faults, self.measurements)
        self.measurements += 1
        return fault

    def special(self, measurement: int) -> Special:
        return SPECIALS[(measurement // 2) % len(SPECIALS)]

    def result(self, characteristic: int, value: GattValue, *, stored: bool = True) -> Send:
        """The encoded value; with the garbage fault every third measurement is cut short, as a device with a
        failing radio or firmware might send it."""
        data = encode(characteristic, value)
        if Fault.GARBAGE in self.faults and self.measurements % 3 == 2:
            data = data[: max(1, len(data) // 3)]
        return Send(characteristic, data, stored)

    def cycle_starts(self) -> Iterator[float]:
        """When each spot measurement starts: at once, then every ``interval``."""
        k = 0
        while True:
            yield k * self.interval
            k += 1


class BloodPressureCuff(GattDevice):
    """An upper-arm cuff: notifies its pressure while it inflates, then indicates the result."""

    driver = "ble-blood-pressure"
    local_name = "HH-SIM BPM"
    profile = BLOOD_PRESSURE_PROFILE
    # Body movement, cuff fit, irregular pulse and pulse rate range detection (Blood Pressure Feature bits 0-3).
    FEATURES = 0x000F
    INFLATION_STEPS = 6

    def read_values(self) -> Mapping[int, bytes]:
        return MappingProxyType(
            {bp.BLOOD_PRESSURE_FEATURE: encode(bp.BLOOD_PRESSURE_FEATURE, bp.BloodPressureFeature(self.FEATURES))}
        )

    def _events(self) -> Iterator[Due]:
        for start in self.cycle_starts():
            step = min(0.25, self.interval / (2 * self.INFLATION_STEPS))
            target = self.scenario.systolic + 30
            for i in range(self.INFLATION_STEPS):
                pressure = round(target * (i + 1) / self.INFLATION_STEPS)
                yield start + i * step, then(self._cuff_pressure, pressure, start + i * step)
            done = start + self.INFLATION_STEPS * step
            yield done, then(self.measure, done)

    def _cuff_pressure(self, mmhg: int, at: float) -> Send:
        nan = SFloat.of_special(Special.NAN)
        value = bp.IntermediateCuffPressure(False, _sfloat(mmhg), nan, nan, self.time_stamp(at), status=0)
        return Send(bp.INTERMEDIATE_CUFF_PRESSURE, encode(bp.INTERMEDIATE_CUFF_PRESSURE, value), stored=False)

    def measure(self, at: float) -> Send:
        scenario = self.scenario
        fault = self.fault_for_next()
        systolic = round(self.vary(scenario.systolic, 4))
        diastolic = min(round(self.vary(scenario.diastolic, 3)), systolic - 10)
        pulse = round(self.vary(scenario.pulse_rate, 3))
        status = int(bp.BpStatus.IRREGULAR_PULSE) if scenario.rhythm is Rhythm.AF else 0
        mean = _sfloat(round(diastolic + (systolic - diastolic) / 3))
        pulse_rate = _sfloat(pulse)
        if fault is Fault.SPECIAL_VALUES:
            # Cuffs that do not compute a mean pressure send NaN for it; a pulse they could not count, likewise.
            special = SFloat.of_special(self.special(self.measurements - 1))
            mean, pulse_rate = special, special
        elif fault is Fault.OUT_OF_RANGE:
            # Beyond an oscillometric cuff's 0-299 mmHg, with the pulse flagged above the upper limit.
            systolic, diastolic, mean, pulse_rate = 310, 260, _sfloat(277), _sfloat(250)
            status |= bp.PULSE_RATE_ABOVE_UPPER_LIMIT << 3
        value = bp.BloodPressureMeasurement(
            kpa=False,
            systolic=_sfloat(systolic),
            diastolic=_sfloat(diastolic),
            mean_arterial=mean,
            time_stamp=self.time_stamp(at),
            pulse_rate=pulse_rate,
            status=status,
        )
        return self.result(bp.BLOOD_PRESSURE_MEASUREMENT, value)


class Thermometer(GattDevice):
    """An ear thermometer: notifies intermediate temperatures, then indicates the result."""

    driver = "ble-thermometer"
    local_name = "HH-SIM THERMO"
    profile = THERMOMETER_PROFILE
    INTERMEDIATE_STEPS = 3

    def _events(self) -> Iterator[Due]:
        for start in self.cycle_starts():
            step = min(0.5, self.interval / (2 * self.INTERMEDIATE_STEPS))
            for i in range(self.INTERMEDIATE_STEPS):
                # The reading climbs towards the final value as the probe warms.
                celsius = self.scenario.temperature - 0.8 * (self.INTERMEDIATE_STEPS - i) / self.INTERMEDIATE_STEPS
                yield start + i * step, then(self._intermediate, celsius, start + i * step)
            done = start + self.INTERMEDIATE_STEPS * step
            yield done, then(self.measure, done)

    def _intermediate(self, celsius: float, at: float) -> Send:
        return self._temperature(celsius, at, final=False)

    def _temperature(self, celsius: float, at: float, *, final: bool) -> Send:
        value_type = ht.TemperatureMeasurement if final else ht.IntermediateTemperature
        value = value_type(
            fahrenheit=False,
            temperature=Float.from_decimal(f"{celsius:.2f}", -2),
            time_stamp=self.time_stamp(at),
            temperature_type=ht.TemperatureType.EAR,
        )
        if final:
            return self.result(ht.TEMPERATURE_MEASUREMENT, value)
        return Send(ht.INTERMEDIATE_TEMPERATURE, encode(ht.INTERMEDIATE_TEMPERATURE, value), stored=False)

    def measure(self, at: float) -> Send:
        fault = self.fault_for_next()
        if fault is Fault.SPECIAL_VALUES:
            value = ht.TemperatureMeasurement(
                False,
                Float.of_special(self.special(self.measurements - 1)),
                self.time_stamp(at),
                ht.TemperatureType.EAR,
            )
            return self.result(ht.TEMPERATURE_MEASUREMENT, value)
        # Beyond any living body and the probe's 34-42.9 °C range.
        celsius = 46.5 if fault is Fault.OUT_OF_RANGE else self.vary(self.scenario.temperature, 0.1)
        return self._temperature(celsius, at, final=True)


class WeightScale(GattDevice):
    """A scale with a height rod: indicates weight, BMI and height, resolved to 0.05 kg and 1 mm."""

    driver = "ble-weight-scale"
    local_name = "HH-SIM SCALE"
    profile = WEIGHT_SCALE_PROFILE
    # Time stamp and BMI supported (bits 0, 2), weight resolution 0.05 kg (code 4 in bits 3-6), height 1 mm
    # (code 3 in bits 7-9).
    FEATURES = 0x01 | 0x04 | 4 << 3 | 3 << 7
    STEPS_PER_RESOLUTION = 10  # 0.05 kg in the field's 0.005 kg steps

    def read_values(self) -> Mapping[int, bytes]:
        return MappingProxyType(
            {ws.WEIGHT_SCALE_FEATURE: encode(ws.WEIGHT_SCALE_FEATURE, ws.WeightScaleFeature(self.FEATURES))}
        )

    def _events(self) -> Iterator[Due]:
        for start in self.cycle_starts():
            yield start, then(self.measure, start)

    def measure(self, at: float) -> Send:
        fault = self.fault_for_next()
        height_mm = round(self.scenario.height * 1000)
        kg = self.vary(self.scenario.weight, 0.1)
        steps = round(kg / 0.05) * self.STEPS_PER_RESOLUTION
        if fault is Fault.SPECIAL_VALUES:
            steps = ws.MEASUREMENT_UNSUCCESSFUL
        elif fault is Fault.OUT_OF_RANGE:
            steps = ws.MEASUREMENT_UNSUCCESSFUL - 1  # 327.67 kg: the field's largest weight, past any scale's range
        bmi: int | None = round(float(steps * ws.KG_PER_STEP) / (height_mm / 1000) ** 2 * 10)
        height: int | None = height_mm
        if fault is Fault.SPECIAL_VALUES:
            bmi = height = None  # no weight, no BMI
        value = ws.WeightMeasurement(
            imperial=False, weight=steps, time_stamp=self.time_stamp(at), bmi=bmi, height=height
        )
        return self.result(ws.WEIGHT_MEASUREMENT, value)


class PulseOximeter(GattDevice):
    """A fingertip oximeter: streams SpO2 and pulse every second, and indicates a time-stamped spot check."""

    driver = "ble-pulse-oximeter"
    local_name = "HH-SIM PLX"
    profile = PULSE_OXIMETER_PROFILE
    sleeps = False
    # Spot-check time stamp and pulse amplitude index supported.
    SUPPORTED = plx.PlxSupportedFeatures.SPOT_CHECK_TIME_STAMP | plx.PlxSupportedFeatures.PULSE_AMPLITUDE_INDEX

    def read_values(self) -> Mapping[int, bytes]:
        return MappingProxyType({plx.PLX_FEATURES: encode(plx.PLX_FEATURES, plx.PlxFeatures(self.SUPPORTED))})

    def _events(self) -> Iterator[Due]:
        spot_starts = self.cycle_starts()
        next_spot = next(spot_starts)
        second = 0
        while True:
            if next_spot <= second:
                yield next_spot, then(self.measure, next_spot)
                next_spot = next(spot_starts)
                continue
            yield float(second), then(self._continuous)
            second += 1

    def _pulse(self) -> float:
        # An oximeter averages a few beats: irregular in AF, long across a pause.
        return 60 / (sum(self.beats.next_rr() for _ in range(4)) / 4)

    def _values(self, fault: Fault | None, measurement: int) -> tuple[SFloat, SFloat]:
        if fault is Fault.SPECIAL_VALUES:
            return SFloat.of_special(self.special(measurement)), _sfloat(round(self._pulse()))
        if fault is Fault.OUT_OF_RANGE:
            return _sfloat(104), _sfloat(320)  # no saturation exceeds 100 %; no pulse reaches 320
        spo2 = min(100, round(self.vary(self.scenario.spo2, 0.7)))
        return _sfloat(spo2), _sfloat(round(self._pulse()))

    def _continuous(self) -> Send:
        spo2, pulse = self._values(None, 1)
        value = plx.PlxContinuous(spo2, pulse, pulse_amplitude_index=_sfloat("2.5"))
        return Send(plx.PLX_CONTINUOUS_MEASUREMENT, encode(plx.PLX_CONTINUOUS_MEASUREMENT, value), stored=False)

    def measure(self, at: float) -> Send:
        fault = self.fault_for_next()
        spo2, pulse = self._values(fault, self.measurements - 1)
        value = plx.PlxSpotCheck(
            spo2,
            pulse,
            time_stamp=self.time_stamp(at),
            pulse_amplitude_index=_sfloat("2.5"),
            # A PLX says when its clock was never set, which a reset clock is.
            clock_not_set=Fault.CLOCK_RESET in self.faults,
        )
        return self.result(plx.PLX_SPOT_CHECK_MEASUREMENT, value)


class HeartRateStrap(GattDevice):
    """A chest strap: notifies its heart rate every second, with the RR intervals of the beats in between."""

    driver = "ble-heart-rate"
    local_name = "HH-SIM HRM"
    profile = HEART_RATE_PROFILE
    sleeps = False
    # No time stamps (no clock to reset) and no SFLOATs (no special values).
    supported_faults = frozenset({Fault.GARBAGE, Fault.OUT_OF_RANGE})
    RR_PER_SECOND = 1024

    def __init__(self, scenario: Scenario, **options: Any) -> None:
        super().__init__(scenario, **options)
        self._beat_at = self.beats.next_rr()
        self._second = 0
        self._recent: list[float] = []

    def _events(self) -> Iterator[Due]:
        while True:
            yield float(self._second + 1), then(self.measure, self._second + 1)

    def measure(self, at: float) -> Send:
        """The next second's notification: the beats that ended in it. (A strap has no clock: ``at`` is unused.)"""
        self._second += 1
        intervals: list[float] = []
        while self._beat_at <= self._second:
            rr = self.beats.next_rr()
            intervals.append(rr)
            self._beat_at += rr
        self._recent = (self._recent + intervals)[-5:]
        return self._notification(intervals, self._recent)

    def _notification(self, intervals: list[float], recent: list[float]) -> Send:
        fault = self.fault_for_next()
        rate = round(60 / (sum(recent) / len(recent))) if recent else self.scenario.pulse_rate
        rr = tuple(round(interval * self.RR_PER_SECOND) for interval in intervals) or None
        if fault is Fault.OUT_OF_RANGE:
            # Past any human heart; it needs the 16-bit form of the field.
            value = hr.HeartRateMeasurement(300, uint16=True, sensor_contact=hr.SensorContact.DETECTED)
        else:
            value = hr.HeartRateMeasurement(rate, sensor_contact=hr.SensorContact.DETECTED, rr_intervals=rr)
        return self.result(hr.HEART_RATE_MEASUREMENT, value, stored=False)


class GlucoseMeter(GattDevice):
    """A meter with stored records, fetched through RACP. A new record (with a meal context) every ``interval``.

    The meter starts with ``history`` records from the days before, at typical testing times, numbered on
    from wherever its counter had got to. :meth:`racp_records` is its memory as the RACP sees it.
    """

    driver = "ble-glucose"
    local_name = "HH-SIM GLUCO"
    profile = GLUCOSE_PROFILE
    supported_faults = GattDevice.supported_faults | {Fault.RACP_LINK_LOSS, Fault.RESEND_OLD_RECORDS}
    # Low battery, sensor malfunction, sample size, strip insertion and type, result high/low, temperature
    # high/low, read interrupt, general fault and time fault detection (Glucose Feature bits 0-9).
    FEATURES = 0x03FF
    HISTORY_TIMES = ((7, 5), (12, 40), (21, 30))  # fasting, after lunch, bedtime

    def __init__(self, scenario: Scenario, *, history: int = 5, **options: Any) -> None:
        super().__init__(scenario, **options)
        # A meter in use has taken many tests before this one.
        self.first_sequence_number = self.rng.randint(40, 400)
        self.history = history
        self.records: list[StoredRecord] = []
        self._next_sequence = self.first_sequence_number
        self._offered = 0
        self._reconnects = 0

    def read_values(self) -> Mapping[int, bytes]:
        return MappingProxyType({gl.GLUCOSE_FEATURE: encode(gl.GLUCOSE_FEATURE, gl.GlucoseFeature(self.FEATURES))})

    def _events(self) -> Iterator[Due]:
        starts = self.cycle_starts()
        yield next(starts), self._history_and_first
        for start in starts:
            yield start, then(self.measure, start)

    def _history_and_first(self) -> list[DeviceEvent]:
        # The history is from before any reset: real dates, on the days before the simulation starts.
        today = self.started_at.astimezone(self.tz).replace(tzinfo=None)
        times: list[datetime] = []
        for back in range(self.history):
            days, slot = divmod(back, len(self.HISTORY_TIMES))
            hour, minute = self.HISTORY_TIMES[-1 - slot]
            day = today - timedelta(days=days + 1)
            times.append(day.replace(hour=hour, minute=minute, second=0, microsecond=0))
        past: list[DeviceEvent] = [self._record(DateTime.from_datetime(when)) for when in reversed(times)]
        return [*past, self.measure(0.0)]

    def measure(self, at: float) -> StoredRecord:
        return self._record(self.time_stamp(at))

    def _record(self, base_time: DateTime) -> StoredRecord:
        sequence_number = self._next_sequence
        self._next_sequence += 1
        fault = self.fault_for_next()
        concentration: SFloat | None = self._concentration(self.vary(self.scenario.glucose, 0.2))
        status = None
        if fault is Fault.SPECIAL_VALUES:
            concentration = SFloat.of_special(self.special(self.measurements - 1))
        elif fault is Fault.OUT_OF_RANGE:
            # Above a meter's 33.3 mmol/L: it says so in its annunciation.
            concentration, status = self._concentration(36.0), int(gl.SensorStatus.RESULT_TOO_HIGH)
        measurement = gl.GlucoseMeasurement(
            sequence_number=sequence_number,
            base_time=base_time,
            concentration=concentration,
            sample_type=gl.SampleType.CAPILLARY_WHOLE_BLOOD,
            sample_location=gl.SampleLocation.FINGER,
            mol_per_l=True,
            status=status,
            context_follows=True,
        )
        context = gl.GlucoseContext(sequence_number, meal=self._meal(base_time.hours))
        values = [
            self.result(gl.GLUCOSE_MEASUREMENT, measurement),
            Send(gl.GLUCOSE_MEASUREMENT_CONTEXT, encode(gl.GLUCOSE_MEASUREMENT_CONTEXT, context), True),
        ]
        record = StoredRecord(sequence_number, tuple((send.characteristic, send.value) for send in values))
        self.records.append(record)
        return record

    @staticmethod
    def _concentration(mmol_per_l: float) -> SFloat:
        # mol/L, as meters sold in mmol/L countries send it: 5.4 mmol/L is 54 × 10^-4 mol/L, exactly.
        return SFloat.from_decimal(Decimal(f"{max(mmol_per_l, 0.1):.1f}").scaleb(-3), -4)

    @staticmethod
    def _meal(hour: int) -> gl.Meal:
        if hour < 10:
            return gl.Meal.FASTING
        if hour < 16:
            return gl.Meal.POSTPRANDIAL
        if hour >= 20:
            return gl.Meal.BEDTIME
        return gl.Meal.CASUAL

    # -- RACP --

    def racp_records(self) -> list[StoredRecord]:
        """The records an RACP request chooses from, keyed by sequence number.

        With the resend fault, after the first connection ended, every record offered before is listed again
        under the next sequence number to come, with its old bytes: it passes any "from sequence number"
        filter, and the collector gets records it already has.
        """
        out = list(self.records)
        if Fault.RESEND_OLD_RECORDS in self.faults and self._reconnects:
            upcoming = self.records[-1].sequence_number + 1 if self.records else self.first_sequence_number
            out.extend(StoredRecord(upcoming, record.values) for record in self.records[: self._offered])
        return out

    def link_closed(self) -> None:
        """A connection ended: what the meter held then counts as offered (and, with the fault, is resent)."""
        self._offered = len(self.records)
        self._reconnects += 1


GATT_DEVICES: Mapping[str, type[GattDevice]] = MappingProxyType(
    {
        device.driver: device
        for device in (BloodPressureCuff, Thermometer, WeightScale, GlucoseMeter, PulseOximeter, HeartRateStrap)
    }
)
