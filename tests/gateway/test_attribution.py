"""Whose reading is it? Stored glucose records attached by their device time once the meter's clock is verified
(RecordClock), and conflicts flagged when a reading's time window meets two residents' sessions. Every reading
goes through the device session as the BLE link hands it over, with the real clock check, into the spool; the
tests look at the observations there. One test runs the whole path over real bleak and the fake BlueZ."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from healthhut.devstack.fakebluez import FakeBlueZ
from healthhut.drivers import GattDecoder, get_driver
from healthhut.drivers.gatt import blood_pressure as bp
from healthhut.drivers.gatt import glucose as gl
from healthhut.drivers.gatt import heart_rate as hr
from healthhut.drivers.gatt.date_time import DateTime
from healthhut.drivers.gatt.racp import RECORD_ACCESS_CONTROL_POINT
from healthhut.drivers.gatt.sfloat import SFloat, Special
from healthhut.firmware_sim.encoders.gatt import encode
from healthhut.gateway.clock import ClockCheck
from healthhut.gateway.devices import DeviceSession
from healthhut.gateway.identity import Profile, SessionBook
from healthhut.gateway.outbox import Outbox, gap_item
from healthhut.gateway.spool import MemorySpool
from healthhut.gateway.state import GatewayState
from healthhut.gateway.transports import BleCentral, BleConnected, BleDisconnected, BleValue
from healthhut.protocol import Flag, Kind, Observation
from tests.ble.test_transport import FAST, GLUCOSE_SERVICES
from tests.conftest import eventually
from tests.tasks import running

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
SKEW = timedelta(seconds=300)
A, B = "a" * 64, "b" * 64
ADDRESS = "E0:7D:EA:10:00:01"
# RACP response code (06), operator null (00), to "report stored records" (01): success (01) / no records (06).
RACP_SUCCESS = bytes.fromhex("06000101")
RACP_NO_RECORDS = bytes.fromhex("06000106")
UNVERIFIED = Flag.CLOCK_UNVERIFIED
CONFLICT = Flag.SUBJECT_CONFLICT


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Hut:
    """One device session of the hut, its session book and its spool, on a clock the test moves."""

    session: DeviceSession
    decoder: GattDecoder
    book: SessionBook
    spool: MemorySpool
    clock: Clock

    async def send(self, characteristic: int, data: bytes, at: datetime | None = None) -> None:
        if at is not None:
            self.clock.now = at
        await self.session._ble_event(BleValue(characteristic, data), self.decoder)

    async def connect(self, at: datetime) -> None:
        self.clock.now = at
        await self.session._ble_event(BleConnected(ADDRESS, "dev"), self.decoder)

    async def disconnect(self, at: datetime | None = None) -> None:
        if at is not None:
            self.clock.now = at
        await self.session._ble_event(BleDisconnected(ADDRESS, "closed"), self.decoder)

    async def fetch(self, at: datetime, records: list[tuple[int, datetime]], answer: bytes = RACP_SUCCESS) -> None:
        """A meter connects and answers the gateway's RACP request with these records (sequence, device time)."""
        await self.connect(at)
        for sequence, device_time in records:
            await self.send(gl.GLUCOSE_MEASUREMENT, glucose_record(sequence, device_time))
        await self.send(RECORD_ACCESS_CONTROL_POINT, answer)
        await self.disconnect()

    def observations(self, kind: Kind) -> list[Observation]:
        found = [Observation.model_validate_json(i.body) for i in self.spool._rows.values() if i.channel == "obs"]
        return [o for o in found if o.kind is kind]

    def observation_at(self, kind: Kind, device_time: datetime) -> Observation:
        (found,) = [o for o in self.observations(kind) if o.device_time == device_time]
        return found


def hut(tmp_path: Path, driver: str, *, started: datetime = T0 - timedelta(hours=2)) -> Hut:
    clock = Clock(started)
    spec = get_driver(driver)
    config = spec.config_model.model_validate(
        {"driver": driver, "name": "dev-1", "address": ADDRESS, "timezone": "Asia/Shanghai"}
    )
    book = SessionBook(idle_timeout=timedelta(hours=3), ambiguity=timedelta(seconds=10), clock=clock)
    spool = MemorySpool(10**7, gap_item)
    session = DeviceSession(
        config,
        spec,
        hut_id="hut-1",
        state=GatewayState(tmp_path / driver),
        outbox=Outbox(spool),
        clock_check=ClockCheck(SKEW, probe=lambda: True),
        residents=book,
        clock=clock,
    )
    decoder = spec.decoder(config)
    assert isinstance(decoder, GattDecoder)
    return Hut(session, decoder, book, spool, clock)


def wall(moment: datetime) -> DateTime:
    """A device's time stamp: ``moment`` as its clock in Shanghai shows it."""
    return DateTime.from_datetime(moment.astimezone(SHANGHAI))


def glucose_record(sequence: int, device_time: datetime, mmol_per_l: str = "5.4") -> bytes:
    """A Glucose Measurement as a meter sends it: mol/L, capillary blood from a finger."""
    return encode(
        gl.GLUCOSE_MEASUREMENT,
        gl.GlucoseMeasurement(
            sequence_number=sequence,
            base_time=wall(device_time),
            concentration=SFloat.from_decimal(Decimal(mmol_per_l).scaleb(-3), -4),
            sample_type=gl.SampleType.CAPILLARY_WHOLE_BLOOD,
            sample_location=gl.SampleLocation.FINGER,
            mol_per_l=True,
        ),
    )


def cuff_result(device_time: datetime) -> bytes:
    """A Blood Pressure Measurement with its time stamp: 128/82 mmHg, mean 97."""
    return encode(
        bp.BLOOD_PRESSURE_MEASUREMENT,
        bp.BloodPressureMeasurement(
            kpa=False,
            systolic=SFloat.from_decimal(Decimal(128)),
            diastolic=SFloat.from_decimal(Decimal(82)),
            mean_arterial=SFloat.from_decimal(Decimal(97)),
            time_stamp=wall(device_time),
        ),
    )


def heart_rate(contact: bool = True) -> bytes:
    """A chest strap's notification: 72 /min, its electrodes on skin (or not)."""
    sensor = hr.SensorContact.DETECTED if contact else hr.SensorContact.NOT_DETECTED
    return encode(hr.HEART_RATE_MEASUREMENT, hr.HeartRateMeasurement(72, sensor_contact=sensor))


def who(observation: Observation) -> str | None:
    return observation.subject.pseudonym if observation.subject is not None else None


# --- stored glucose records: the meter's clock is judged, not each record's age -----------------------------


@pytest.mark.parametrize("late", [timedelta(minutes=10), timedelta(hours=1)])
async def test_a_record_fetched_later_lands_in_the_session_that_covered_its_device_time(
    tmp_path: Path, late: timedelta
) -> None:
    h = hut(tmp_path, "ble-glucose")
    # An earlier visit of the meter: everything it held was fetched (one record of the day before).
    await h.fetch(T0 - timedelta(hours=1), [(40, T0 - timedelta(days=1))])
    h.book.start(A, Profile(age_band="70-79y"), "kiosk", at=T0)
    taken_by_a = T0 + timedelta(minutes=1)  # the meter does not connect: it is carried away
    h.book.end(at=T0 + timedelta(minutes=5))
    fetched = taken_by_a + late
    h.book.start(B, Profile(age_band="18-39y"), "kiosk", at=fetched - timedelta(minutes=3))
    taken_by_b = fetched - timedelta(seconds=20)
    # B's test makes the meter connect: the gateway fetches A's record and B's.
    await h.fetch(fetched, [(41, taken_by_a), (42, taken_by_b)])

    a_record = h.observation_at(Kind.BLOOD_GLUCOSE, taken_by_a)
    # A's session had ended before the record arrived: it is A's all the same, and both times are kept.
    assert (who(a_record), a_record.flags) == (A, [])
    assert (a_record.measured_at, a_record.received_at, a_record.clock) == (taken_by_a, fetched, "device")
    assert a_record.subject is not None and a_record.subject.age_band == "70-79y"
    b_record = h.observation_at(Kind.BLOOD_GLUCOSE, taken_by_b)
    assert (who(b_record), b_record.flags) == (B, [])
    # The day-before record came alone at the earlier visit: nothing live vouched for the meter's clock then.
    (old,) = [o for o in h.observations(Kind.BLOOD_GLUCOSE) if o.device_time == T0 - timedelta(days=1)]
    assert (who(old), old.flags) == (None, [UNVERIFIED])


async def test_a_meter_reset_to_2000_keeps_its_records_anonymous_and_flagged(tmp_path: Path) -> None:
    h = hut(tmp_path, "ble-glucose")
    h.book.start(A, Profile(), "kiosk", at=T0)
    reset = datetime(2000, 1, 1, tzinfo=SHANGHAI)
    # A battery change reset the meter's clock; A measures twice: its records say 2000-01-01.
    await h.fetch(T0 + timedelta(minutes=3), [(41, reset + timedelta(minutes=1)), (42, reset + timedelta(minutes=2))])
    stored = h.observations(Kind.BLOOD_GLUCOSE)
    assert [(who(o), o.flags, o.device_time) for o in stored] == [
        (None, [UNVERIFIED], reset + timedelta(minutes=1)),
        (None, [UNVERIFIED], reset + timedelta(minutes=2)),
    ]
    assert all(o.received_at == T0 + timedelta(minutes=3) for o in stored)


async def test_a_record_dated_before_the_last_whole_fetch_says_its_clock_was_wrong(tmp_path: Path) -> None:
    h = hut(tmp_path, "ble-glucose")
    await h.fetch(T0 - timedelta(minutes=30), [], answer=RACP_NO_RECORDS)  # the meter held nothing then
    h.book.start(A, Profile(), "kiosk", at=T0)
    # Its clock was reset and then set again: one record of the reset clock, then A's test with the right time.
    wrong = datetime(2000, 1, 1, 0, 5, tzinfo=SHANGHAI)
    taken = T0 + timedelta(minutes=2)
    await h.fetch(T0 + timedelta(minutes=2, seconds=30), [(41, wrong), (42, taken)])
    reset_clock, right_clock = (h.observation_at(Kind.BLOOD_GLUCOSE, t) for t in (wrong, taken))
    assert (who(reset_clock), reset_clock.flags) == (None, [UNVERIFIED])
    assert (who(right_clock), right_clock.flags) == (A, [])


async def test_without_a_live_record_the_meters_clock_is_not_verified(tmp_path: Path) -> None:
    h = hut(tmp_path, "ble-glucose")
    h.book.start(A, Profile(), "kiosk", at=T0)
    # Only a record of 40 minutes ago: an old record from a good clock, or a new one from a clock 40 minutes
    # slow. Nothing tells them apart, so it is nobody's.
    taken = T0 + timedelta(minutes=1)
    await h.fetch(T0 + timedelta(minutes=41), [(41, taken)])
    record = h.observation_at(Kind.BLOOD_GLUCOSE, taken)
    assert (who(record), record.flags) == (None, [UNVERIFIED])


async def test_a_record_sent_again_is_judged_as_it_was_the_first_time(tmp_path: Path) -> None:
    h = hut(tmp_path, "ble-glucose")
    h.book.start(A, Profile(), "kiosk", at=T0)
    taken = T0 + timedelta(minutes=1)
    await h.fetch(T0 + timedelta(minutes=1, seconds=10), [(41, taken)])
    await h.fetch(T0 + timedelta(minutes=20), [], answer=RACP_NO_RECORDS)
    # A meter that sends an old record again (same bytes) with a new one, after a fetch that came after it:
    # by the bracket alone it would be a wrong clock; it keeps its first verdict, so its observation is the same.
    sent: list[Observation] = []
    spool_it = h.session.outbox.observation

    async def record(observation: Observation) -> bool:
        sent.append(observation)  # the spool keeps one row per id; what the session made is compared here
        return await spool_it(observation)

    h.session.outbox.observation = record  # type: ignore[method-assign]
    await h.fetch(T0 + timedelta(minutes=40), [(41, taken), (43, T0 + timedelta(minutes=39, seconds=40))])
    first = h.observation_at(Kind.BLOOD_GLUCOSE, taken)
    (again,) = [o for o in sent if o.device_time == taken]
    assert first.id == again.id
    assert (who(first), first.flags) == (who(again), again.flags) == (A, [])


async def test_a_transfer_cut_by_the_link_is_judged_when_the_link_drops(tmp_path: Path) -> None:
    h = hut(tmp_path, "ble-glucose")
    h.book.start(A, Profile(), "kiosk", at=T0)
    taken = T0 + timedelta(minutes=1)
    # The link drops after A's record, before the meter's answer: the record is not lost with it.
    await h.connect(T0 + timedelta(minutes=1, seconds=5))
    await h.send(gl.GLUCOSE_MEASUREMENT, glucose_record(41, taken))
    assert h.observations(Kind.BLOOD_GLUCOSE) == []  # it waits for the end of the transfer
    await h.disconnect()
    record = h.observation_at(Kind.BLOOD_GLUCOSE, taken)
    assert (who(record), record.flags, record.received_at) == (A, [], T0 + timedelta(minutes=1, seconds=5))
    # A transfer that was not whole says nothing of when the next one's records were taken.
    assert h.session.record_clock.bracket_start == T0 - timedelta(hours=2)


# --- conflicts: a reading whose time window meets two residents' sessions ----------------------------------


async def test_a_cuff_clock_two_minutes_slow_cannot_put_bs_reading_on_a(tmp_path: Path) -> None:
    h = hut(tmp_path, "ble-blood-pressure")
    h.book.start(A, Profile(), "kiosk", at=T0)
    switch = T0 + timedelta(minutes=10)
    h.book.start(B, Profile(), "kiosk", at=switch)
    # B's measurement arrives a minute into B's session; the cuff's clock, two minutes slow, says A's.
    await h.connect(switch + timedelta(seconds=20))
    await h.send(
        bp.BLOOD_PRESSURE_MEASUREMENT, cuff_result(switch - timedelta(minutes=1)), at=switch + timedelta(minutes=1)
    )
    (reading,) = h.observations(Kind.BLOOD_PRESSURE)
    assert (reading.subject, reading.flags) == (None, [CONFLICT])
    assert (reading.device_time, reading.received_at) == (switch - timedelta(minutes=1), switch + timedelta(minutes=1))


async def test_a_device_time_within_the_clock_limit_of_a_switch_is_a_conflict(tmp_path: Path) -> None:
    h = hut(tmp_path, "ble-blood-pressure")
    h.book.start(A, Profile(), "kiosk", at=T0)
    switch = T0 + timedelta(minutes=10)
    h.book.start(B, Profile(), "kiosk", at=switch)
    await h.connect(switch + timedelta(minutes=3))
    # Three minutes into B's session by the cuff's clock: a clock up to five minutes off could mean A's.
    three = switch + timedelta(minutes=3, seconds=40)
    await h.send(bp.BLOOD_PRESSURE_MEASUREMENT, cuff_result(three), at=three + timedelta(seconds=5))
    await h.disconnect(switch + timedelta(minutes=3, seconds=50))
    # Eight minutes in, no clock within the limit reaches A's session: B's.
    await h.connect(switch + timedelta(minutes=8))
    eight = switch + timedelta(minutes=8, seconds=40)
    await h.send(bp.BLOOD_PRESSURE_MEASUREMENT, cuff_result(eight), at=eight + timedelta(seconds=5))
    near, clear = h.observations(Kind.BLOOD_PRESSURE)
    assert (near.subject, near.flags) == (None, [CONFLICT])
    assert (who(clear), clear.flags) == (B, [])


async def test_a_strap_still_on_a_is_a_conflict_after_b_scans_until_it_goes_quiet(tmp_path: Path) -> None:
    h = hut(tmp_path, "ble-heart-rate")
    h.book.start(A, Profile(), "kiosk", at=T0)
    await h.connect(T0 + timedelta(minutes=1))
    second = timedelta(seconds=1)
    for k in range(60):  # A wears the strap: one notification a second
        await h.send(hr.HEART_RATE_MEASUREMENT, heart_rate(), at=T0 + timedelta(minutes=1) + k * second)
    switch = T0 + timedelta(minutes=2)
    h.book.start(B, Profile(), "kiosk", at=switch)
    # It keeps sending, 15 s and 45 s after B's card: the run that began on A has not ended.
    for k in range(60):
        await h.send(hr.HEART_RATE_MEASUREMENT, heart_rate(), at=switch + k * second)
    # Quiet for half a minute (the strap taken off and put on B), then it sends again.
    for k in range(5):
        await h.send(hr.HEART_RATE_MEASUREMENT, heart_rate(), at=switch + timedelta(seconds=90) + k * second)
    readings = h.observations(Kind.HEART_RATE)
    assert len(readings) == 125
    by_arrival = {o.received_at: o for o in readings}
    assert {(who(o), tuple(o.flags)) for o in readings[:60]} == {(A, ())}
    for after in (15, 45):
        late = by_arrival[switch + timedelta(seconds=after)]
        assert (late.subject, late.flags) == (None, [CONFLICT])
    assert {(who(o), tuple(o.flags)) for o in readings[60:120]} == {(None, (CONFLICT,))}
    assert {(who(o), tuple(o.flags)) for o in readings[120:]} == {(B, ())}


async def test_a_strap_that_loses_contact_has_ended_its_run(tmp_path: Path) -> None:
    h = hut(tmp_path, "ble-heart-rate")
    h.book.start(A, Profile(), "kiosk", at=T0)
    start = T0 + timedelta(seconds=30)
    await h.connect(start)
    second = timedelta(seconds=1)
    for k in range(20):
        await h.send(hr.HEART_RATE_MEASUREMENT, heart_rate(), at=start + k * second)
    # A takes it off. It keeps notifying, without a pause, that its electrodes touch nobody; B scans a card.
    for k in range(30):
        if k == 5:
            h.book.start(B, Profile(), "kiosk", at=start + (20 + k) * second)
        await h.send(hr.HEART_RATE_MEASUREMENT, heart_rate(contact=False), at=start + (20 + k) * second)
    for k in range(20):
        await h.send(hr.HEART_RATE_MEASUREMENT, heart_rate(), at=start + (50 + k) * second)
    on_b = [o for o in h.observations(Kind.HEART_RATE) if o.received_at >= start + 50 * second]
    assert len(on_b) == 20 and {(who(o), tuple(o.flags)) for o in on_b} == {(B, ())}


async def test_a_reading_clearly_inside_one_session_is_its_residents_without_conflict(tmp_path: Path) -> None:
    h = hut(tmp_path, "ble-blood-pressure")
    h.book.start(A, Profile(), "kiosk", at=T0)
    h.book.start(B, Profile(age_band="80+y"), "kiosk", at=T0 + timedelta(minutes=10))
    await h.connect(T0 + timedelta(minutes=25))
    taken = T0 + timedelta(minutes=25, seconds=40)
    await h.send(bp.BLOOD_PRESSURE_MEASUREMENT, cuff_result(taken), at=taken + timedelta(seconds=2))
    (reading,) = h.observations(Kind.BLOOD_PRESSURE)
    assert (who(reading), reading.flags) == (B, [])
    assert reading.subject is not None and reading.subject.age_band == "80+y"


async def test_a_cuff_reading_without_a_trusted_time_from_a_run_begun_in_as_session_is_a_conflict(
    tmp_path: Path,
) -> None:
    h = hut(tmp_path, "ble-blood-pressure")
    h.book.start(A, Profile(), "kiosk", at=T0)
    switch = T0 + timedelta(minutes=5)
    # A starts the cuff 25 s before B scans; it inflates (its pressure notified) and gives its result 15 s
    # after B's card. Its clock was reset, so only the arrival and the run tell the time.
    await h.connect(switch - timedelta(seconds=25))
    reset = datetime(2000, 1, 1, tzinfo=SHANGHAI)
    nan = SFloat.of_special(Special.NAN)
    for k in range(5):  # every 5 s, up to 4 s before B's card
        pressure = bp.IntermediateCuffPressure(False, SFloat.from_decimal(20 * k), nan, nan, wall(reset))
        data = encode(bp.INTERMEDIATE_CUFF_PRESSURE, pressure)
        await h.send(bp.INTERMEDIATE_CUFF_PRESSURE, data, at=switch - timedelta(seconds=24 - 5 * k))
    h.book.start(B, Profile(), "kiosk", at=switch)
    for k in range(2):  # still inflating, then the result 15 s after the card
        pressure = bp.IntermediateCuffPressure(False, SFloat.from_decimal(120 + 20 * k), nan, nan, wall(reset))
        data = encode(bp.INTERMEDIATE_CUFF_PRESSURE, pressure)
        await h.send(bp.INTERMEDIATE_CUFF_PRESSURE, data, at=switch + timedelta(seconds=1 + 5 * k))
    await h.send(bp.BLOOD_PRESSURE_MEASUREMENT, cuff_result(reset), at=switch + timedelta(seconds=15))
    (reading,) = h.observations(Kind.BLOOD_PRESSURE)
    assert (reading.subject, sorted(reading.flags)) == (None, sorted([UNVERIFIED, CONFLICT]))


def test_the_session_book_window() -> None:
    clock = Clock(T0)
    book = SessionBook(ambiguity=timedelta(seconds=10), clock=clock)
    book.start(A, Profile(), "kiosk", at=T0)
    book.end(at=T0 + timedelta(minutes=5))
    book.start(B, Profile(), "kiosk", at=T0 + timedelta(minutes=7))
    margin = timedelta(minutes=5)
    # Between the two sessions: nobody's, but a window meeting both is a conflict, one meeting A's alone is not.
    gap = book.attribute(T0 + timedelta(minutes=7, seconds=30), T0 + timedelta(minutes=6), clock_margin=margin)
    assert (gap.subject, gap.conflict) == (None, True)
    after_a = book.attribute(T0 + timedelta(minutes=5, seconds=30))
    assert (after_a.subject, after_a.conflict) == (None, False)
    # A run that began before anyone's session, going on into B's, is B's: only one resident is involved.
    clock.now = T0 + timedelta(minutes=20)
    book.end(at=T0 + timedelta(minutes=20))
    book.start(A, Profile(), "kiosk", at=T0 + timedelta(minutes=40))
    began = book.attribute(T0 + timedelta(minutes=41), since=T0 + timedelta(minutes=35))
    assert began.subject is not None and began.subject.pseudonym == A and not began.conflict
    # A device clock ahead of the gateway's: the reading is not placed after its own arrival.
    ahead = book.attribute(T0 + timedelta(minutes=39, seconds=58), T0 + timedelta(minutes=40, seconds=30))
    assert (ahead.subject, ahead.conflict) == (None, False)


# --- the whole path: real bleak, the fake BlueZ, the RACP transfer --------------------------------------------


@pytest.fixture
def fake_bluez(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBlueZ]:
    with FakeBlueZ(tmp_path / "bluez", advertise_interval=0.05) as fake:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", fake.bus_address)
        yield fake


async def test_over_ble_a_record_of_a_session_that_ended_reaches_the_spool_as_its_residents(
    fake_bluez: FakeBlueZ, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    book = SessionBook(idle_timeout=timedelta(hours=1), ambiguity=timedelta(seconds=10))
    book.start(A, Profile(), "kiosk", at=now - timedelta(minutes=20))
    book.end(at=now - timedelta(minutes=8))
    book.start(B, Profile(), "kiosk", at=now - timedelta(minutes=2))
    taken_by_a, taken_by_b = now - timedelta(minutes=12), now - timedelta(seconds=20)
    meter = fake_bluez.add_peripheral(ADDRESS, "Meter", GLUCOSE_SERVICES)
    meter.set_records(
        [(41, [(0x2A18, glucose_record(41, taken_by_a))]), (42, [(0x2A18, glucose_record(42, taken_by_b))])]
    )
    spec = get_driver("ble-glucose")
    config = spec.config_model.model_validate({"driver": "ble-glucose", "name": "meter-1", "address": ADDRESS})
    spool = MemorySpool(10**8, gap_item)
    central = BleCentral(policy=FAST)
    device = DeviceSession(
        config,
        spec,
        hut_id="hut-1",
        state=GatewayState(tmp_path / "state"),
        outbox=Outbox(spool),
        clock_check=ClockCheck(SKEW, probe=lambda: True),
        central=central,
        residents=book,
        clock=lambda: datetime.now(UTC),
    )
    # The gateway has been running for half an hour: the meter's first transfer is bracketed from then.
    device.record_clock.bracket_start = now - timedelta(minutes=30)
    observed: Callable[[], list[Observation]] = lambda: [  # noqa: E731
        o
        for o in (Observation.model_validate_json(i.body) for i in spool._rows.values() if i.channel == "obs")
        if o.kind is Kind.BLOOD_GLUCOSE
    ]
    async with running(central.run(), device.run()):
        await eventually(lambda: len(observed()) == 2, within=30)
    by_time = {o.device_time: o for o in observed()}
    assert (who(by_time[taken_by_a]), by_time[taken_by_a].flags) == (A, [])
    assert (who(by_time[taken_by_b]), by_time[taken_by_b].flags) == (B, [])
