"""The simulated BLE devices, without a radio: GATT tables per profile, values the drivers decode back to the
scenario, time stamps, faults, and the glucose meter's records."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from healthhut.drivers import get_driver
from healthhut.drivers.gatt import GattProfileDecoder, decode_value
from healthhut.drivers.gatt.config import profile_characteristics
from healthhut.drivers.gatt.glucose import GlucoseMeasurement
from healthhut.firmware_sim.faults import Fault
from healthhut.firmware_sim.gatt_devices import (
    CURRENT_TIME,
    CURRENT_TIME_SERVICE,
    GATT_DEVICES,
    BloodPressureCuff,
    GattDevice,
    GlucoseMeter,
    HeartRateStrap,
    Send,
    StoredRecord,
    Thermometer,
    WeightScale,
)
from healthhut.firmware_sim.scenarios import SCENARIOS, Scenario
from healthhut.protocol import Flag, Kind, Quantity, Reading

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 02:00 UTC is 10:00 in Shanghai.
START = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)


def device(driver: str, resident: Scenario, **options: object) -> GattDevice:
    options.setdefault("seed", 1)
    options.setdefault("steady", True)
    options.setdefault("started_at", START)
    return GATT_DEVICES[driver](resident, **options)  # type: ignore[arg-type]


def readings_of(gatt: GattDevice, until: float) -> list[Reading]:
    """What the driver's decoder makes of everything ``gatt`` sends until ``until``, as the gateway gets it."""
    decoder = GattProfileDecoder(tz=SHANGHAI, characteristics=profile_characteristics(gatt.profile))
    for uuid, value in gatt.read_values().items():
        decoder.on_value(uuid, value)
    out: list[Reading] = []
    for event in gatt.advance(until):
        values = event.values if isinstance(event, StoredRecord) else ((event.characteristic, event.value),)
        for uuid, value in values:
            out.extend(decoder.on_value(uuid, value))
    assert decoder.frame_errors == 0, decoder.last_error
    return out + decoder.flush()


@pytest.mark.parametrize("driver", sorted(GATT_DEVICES))
def test_the_gatt_table_offers_the_profile_with_readable_features(driver: str) -> None:
    gatt = device(driver, SCENARIOS["normal-adult"])
    profile = get_driver(driver).ble
    assert profile is not None and gatt.profile == profile
    [main, *others] = gatt.services()
    assert main.uuid == profile.service
    flags = {c.uuid: set(c.flags) for c in main.characteristics}
    for uuid in profile.notify:
        assert "notify" in flags[uuid]
    for uuid in profile.indicate:
        assert "indicate" in flags[uuid]
    for uuid in profile.read:
        assert "read" in flags[uuid]
        [value] = [c.value for c in main.characteristics if c.uuid == uuid]
        decode_value(uuid, value)  # a feature the driver reads without error
    if profile.racp:
        assert flags[0x2A52] == {"write", "indicate"}
    # Devices whose clock the gateway sets offer Current Time; the rest offer nothing more.
    if profile.current_time:
        [clock] = others
        assert clock.uuid == CURRENT_TIME_SERVICE
        assert [(c.uuid, set(c.flags)) for c in clock.characteristics] == [(CURRENT_TIME, {"read", "write", "notify"})]
    else:
        assert others == []


def test_a_cuff_measures_the_scenario_and_stamps_its_clock() -> None:
    crisis = SCENARIOS["hypertensive-crisis"]
    readings = readings_of(device("ble-blood-pressure", crisis, interval=10), 25)
    assert readings == [
        Reading(
            Kind.BLOOD_PRESSURE,
            {
                "systolic": Quantity(185.0, "mm[Hg]"),
                "diastolic": Quantity(125.0, "mm[Hg]"),
                "mean_arterial": Quantity(145.0, "mm[Hg]"),
                "pulse_rate": Quantity(96.0, "/min"),
            },
            measured_at=datetime(2024, 6, 1, 10, 0, int(at), tzinfo=SHANGHAI),
        )
        for at in (1.5, 11.5, 21.5)
    ]


def test_the_cuff_inflates_before_its_result_and_flags_an_irregular_pulse_in_af() -> None:
    cuff = device("ble-blood-pressure", SCENARIOS["atrial-fibrillation"], interval=10)
    events = cuff.advance(2)
    assert all(isinstance(e, Send) for e in events)
    sends = [e for e in events if isinstance(e, Send)]
    assert [(s.characteristic, s.stored) for s in sends] == [(0x2A36, False)] * BloodPressureCuff.INFLATION_STEPS + [
        (0x2A35, True)
    ]
    [reading] = readings_of(device("ble-blood-pressure", SCENARIOS["atrial-fibrillation"], interval=10), 2)
    assert reading.flags == {Flag.IRREGULAR_PULSE}


@pytest.mark.parametrize(
    ("driver", "kind", "values"),
    [
        ("ble-thermometer", Kind.BODY_TEMPERATURE, {"temperature": Quantity(39.2, "Cel")}),
        (
            "ble-weight-scale",
            Kind.BODY_WEIGHT,
            {"weight": Quantity(70.0, "kg"), "height": Quantity(1.7, "m"), "bmi": Quantity(24.2, "kg/m2")},
        ),
        (
            "ble-pulse-oximeter",
            Kind.SPO2,
            {"spo2": Quantity(97.0, "%"), "pulse_rate": Quantity(108.0, "/min"), "perfusion_index": Quantity(2.5, "%")},
        ),
    ],
)
def test_each_spot_device_reports_the_scenario(driver: str, kind: Kind, values: dict[str, Quantity]) -> None:
    readings = [r for r in readings_of(device(driver, SCENARIOS["fever"], interval=10), 9) if r.measured_at]
    assert [(r.kind, dict(r.values), r.flags) for r in readings] == [(kind, values, frozenset())]
    assert readings[0].measured_at is not None and readings[0].measured_at.date() == START.date()


def test_a_strap_sends_rr_intervals_in_1024ths_of_a_second() -> None:
    strap = device("ble-heart-rate", SCENARIOS["normal-adult"].with_values(pulse_rate=60))
    readings = readings_of(strap, 5)
    assert [r.values["heart_rate"].value for r in readings] == [60] * 5
    assert {r.values["rr_intervals"].value for r in readings} == {(1000.0,)}
    first = strap.advance(6)
    assert [decode_value(0x2A37, e.value).rr_intervals for e in first if isinstance(e, Send)] == [(1024,)]


def test_clock_reset_stamps_2000_01_01_and_offers_no_current_time() -> None:
    thermometer = device("ble-thermometer", SCENARIOS["fever"], interval=10, faults={Fault.CLOCK_RESET})
    assert [s.uuid for s in thermometer.services()] == [0x1809]
    [reading] = readings_of(thermometer, 5)
    assert reading.measured_at == datetime(2000, 1, 1, 0, 0, 1, tzinfo=SHANGHAI)
    oximeter = device("ble-pulse-oximeter", SCENARIOS["fever"], interval=10, faults={Fault.CLOCK_RESET})
    [spot] = [r for r in readings_of(oximeter, 1) if r.measured_at is not None]
    assert spot.measured_at == datetime(2000, 1, 1, tzinfo=SHANGHAI)
    assert Flag.CLOCK_UNVERIFIED in spot.flags  # a PLX says its clock is not set


@pytest.mark.parametrize(
    ("driver", "kept"),
    [
        ("ble-blood-pressure", {"systolic", "diastolic"}),
        ("ble-thermometer", set()),
        ("ble-weight-scale", set()),
        ("ble-glucose", set()),
        ("ble-pulse-oximeter", {"pulse_rate", "perfusion_index"}),
    ],
)
def test_special_values_become_value_unavailable_every_other_measurement(driver: str, kept: set[str]) -> None:
    gatt = device(driver, SCENARIOS["normal-adult"], interval=10, faults={Fault.SPECIAL_VALUES})
    if isinstance(gatt, GlucoseMeter):
        gatt.history = 0
    results = [r for r in readings_of(gatt, 25) if r.measured_at is not None]
    assert len(results) == 3
    assert [Flag.VALUE_UNAVAILABLE in r.flags for r in results] == [True, False, True]
    assert set(results[0].values) == kept


def test_the_special_values_are_nan_nres_and_infinities_in_turn() -> None:
    cuff = device("ble-blood-pressure", SCENARIOS["normal-adult"], interval=1, faults={Fault.SPECIAL_VALUES})
    results = [decode_value(0x2A35, e.value) for e in cuff.advance(8) if isinstance(e, Send) and e.stored]
    specials = [str(r.pulse_rate) for r in results[::2]]  # type: ignore[union-attr]
    assert specials == ["NaN", "NRes", "+INF", "-INF"]


def test_out_of_range_values_carry_the_devices_own_out_of_range_status() -> None:
    cuff = device("ble-blood-pressure", SCENARIOS["normal-adult"], interval=10, faults={Fault.OUT_OF_RANGE})
    first, second = readings_of(cuff, 12)
    assert first.values["systolic"] == Quantity(310.0, "mm[Hg]") and Flag.OUT_OF_RANGE in first.flags
    assert second.values["systolic"] == Quantity(120.0, "mm[Hg]") and not second.flags
    meter = GlucoseMeter(SCENARIOS["normal-adult"], history=0, faults={Fault.OUT_OF_RANGE}, steady=True, seed=1)
    [high] = readings_of(meter, 0)
    assert high.values["glucose"] == Quantity(36.0, "mmol/L") and Flag.OUT_OF_RANGE in high.flags
    strap = device("ble-heart-rate", SCENARIOS["normal-adult"], faults={Fault.OUT_OF_RANGE})
    assert [r.values["heart_rate"].value for r in readings_of(strap, 2)] == [300, 72]


def test_garbage_cuts_every_third_measurement_short() -> None:
    scale = device("ble-weight-scale", SCENARIOS["normal-adult"], interval=1, faults={Fault.GARBAGE})
    decoder = GattProfileDecoder(characteristics=profile_characteristics(scale.profile))
    for event in scale.advance(5):
        assert isinstance(event, Send)
        decoder.on_value(event.characteristic, event.value)
    assert decoder.frame_errors == 2  # measurements 3 and 6 of 6


def test_faults_a_device_cannot_show_are_refused() -> None:
    with pytest.raises(ValueError, match="ble-heart-rate cannot show clock-reset"):
        HeartRateStrap(SCENARIOS["normal-adult"], faults={Fault.CLOCK_RESET})
    with pytest.raises(ValueError, match="ble-thermometer cannot show racp-link-loss"):
        Thermometer(SCENARIOS["normal-adult"], faults={Fault.RACP_LINK_LOSS})
    with pytest.raises(ValueError, match="interval must be positive"):
        WeightScale(SCENARIOS["normal-adult"], interval=0)


def test_a_meter_holds_numbered_records_with_past_base_times_and_meal_contexts() -> None:
    meter = device("ble-glucose", SCENARIOS["hypoglycaemia"], interval=60)
    assert isinstance(meter, GlucoseMeter)
    events = meter.advance(61)
    records = [e for e in events if isinstance(e, StoredRecord)]
    assert len(records) == meter.history + 2 == len(meter.records)
    numbers = [r.sequence_number for r in records]
    assert numbers == list(range(meter.first_sequence_number, meter.first_sequence_number + len(records)))
    assert 40 <= numbers[0] <= 400
    measurements = [decode_value(0x2A18, r.values[0][1]) for r in records]
    assert all(isinstance(m, GlucoseMeasurement) and m.context_follows for m in measurements)
    readings = readings_of(device("ble-glucose", SCENARIOS["hypoglycaemia"], interval=60), 61)
    assert [r.values["glucose"] for r in readings] == [Quantity(3.2, "mmol/L")] * len(records)
    times = [r.measured_at for r in readings]
    assert times == sorted(times)  # type: ignore[type-var]
    # The history: the usual testing times (fasting, after lunch, bedtime) of the days before; then the new
    # records, stamped by the meter's clock at the start and a minute later.
    assert [t.strftime("%m-%d %H:%M") for t in times if t] == [
        "05-30 12:40",
        "05-30 21:30",
        "05-31 07:05",
        "05-31 12:40",
        "05-31 21:30",
        "06-01 10:00",
        "06-01 10:01",
    ]


def test_a_meter_with_the_resend_fault_lists_old_records_again_after_a_connection() -> None:
    meter = GlucoseMeter(SCENARIOS["normal-adult"], history=2, faults={Fault.RESEND_OLD_RECORDS}, seed=3)
    meter.advance(0)
    first = meter.racp_records()
    assert [r.sequence_number for r in first] == [r.sequence_number for r in meter.records]
    meter.link_closed()
    again = meter.racp_records()
    upcoming = meter.records[-1].sequence_number + 1
    # The old bytes, under a number that passes "from the next sequence number on".
    assert again == first + [StoredRecord(upcoming, r.values) for r in first]
    clean = GlucoseMeter(SCENARIOS["normal-adult"], history=2, seed=3)
    clean.advance(0)
    clean.link_closed()
    assert clean.racp_records() == clean.records
