"""hut-sim's BLE link against the real bleak library, through a fake BlueZ on a private D-Bus: discovery,
subscriptions, decoded values, RACP transfers (cut, and with old records sent again), and faults.

A missing dbus-daemon or python-dbusmock fails these tests (ServerError); it never skips them.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.uuids import normalize_uuid_16

from healthhut.devstack.fakebluez import FakeBlueZ
from healthhut.drivers.ble_blood_pressure import CHARACTERISTICS as CUFF_CHARACTERISTICS
from healthhut.drivers.ble_blood_pressure import PROFILE as CUFF_PROFILE
from healthhut.drivers.ble_glucose import CHARACTERISTICS as METER_CHARACTERISTICS
from healthhut.drivers.ble_glucose import PROFILE as METER_PROFILE
from healthhut.drivers.gatt import GattProfileDecoder, GlucoseMeasurement, decode_value
from healthhut.firmware_sim.ble_play import BlePlayer
from healthhut.firmware_sim.faults import Fault
from healthhut.firmware_sim.gatt_devices import BloodPressureCuff, GlucoseMeter, Thermometer
from healthhut.firmware_sim.links.ble import add_fake_peripheral
from healthhut.firmware_sim.progress import Progress
from healthhut.firmware_sim.scenarios import SCENARIOS
from healthhut.gateway.transports import (
    BleCentral,
    BleConnected,
    BleDeviceLink,
    BleDisconnected,
    BleError,
    BleEvent,
    BlePolicy,
    BleTarget,
    BleValue,
)
from healthhut.gateway.transports.ble import RACP_REPORT_ALL, racp_report_after
from healthhut.protocol import Flag, Kind, Quantity, Reading
from tests.tasks import running

SHANGHAI = ZoneInfo("Asia/Shanghai")
FAST = BlePolicy(
    reconnect_min_s=0.05,
    reconnect_max_s=0.5,
    setup_timeout_s=10.0,
    racp_idle_timeout_s=5.0,
    adapter_retry_min_s=0.05,
    adapter_retry_max_s=0.5,
)
CUFF = "C0:48:48:53:00:01"
METER = "C0:48:48:53:00:04"
THERMOMETER = "C0:48:48:53:00:02"
QUIET = Progress(quiet=True)


@pytest.fixture
def fake_bluez(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBlueZ]:
    with FakeBlueZ(tmp_path / "bluez", advertise_interval=0.05) as fake:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", fake.bus_address)
        yield fake


async def next_event(events: asyncio.Queue[BleEvent], kind: type[BleEvent], within: float = 10.0) -> BleEvent:
    """The next event of ``kind``, skipping the values read on connect."""
    async with asyncio.timeout(within):
        while True:
            event = await events.get()
            if isinstance(event, kind):
                return event


def sequence_numbers(values: tuple[BleValue, ...]) -> list[int]:
    out = []
    for value in values:
        fields = decode_value(value.characteristic, value.data)
        if isinstance(fields, GlucoseMeasurement):
            out.append(fields.sequence_number)
    return out


@contextlib.contextmanager
def hut_sim(*args: str) -> Iterator[subprocess.Popen[str]]:
    """hut-sim as a child process, ended (and its pipe closed) when the block ends."""
    with subprocess.Popen(
        [sys.executable, "-m", "healthhut.firmware_sim.cli", *args], stdout=subprocess.PIPE, text=True
    ) as sim:
        try:
            yield sim
        finally:
            sim.terminate()
            sim.wait(10)


async def test_a_bleak_client_finds_the_simulated_cuff_and_decodes_the_scenario(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The technician's path: hut-sim starts its own fake BlueZ and says where; bleak finds the cuff there."""
    with hut_sim(
        "play", "ble-blood-pressure", "--scenario", "hypertensive-crisis", "--steady", "--interval", "1",
        "--duration", "30", "--quiet",
    ) as sim:  # fmt: skip
        assert sim.stdout is not None
        line = await asyncio.to_thread(sim.stdout.readline)
        name, _, address = line.strip().partition("=")
        assert name == "DBUS_SYSTEM_BUS_ADDRESS" and address.startswith("unix:path=")
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        service = normalize_uuid_16(CUFF_PROFILE.service)
        device = await BleakScanner.find_device_by_filter(lambda _d, adv: service in adv.service_uuids, timeout=10)
        assert device is not None and (device.address, device.name) == (CUFF, "HH-SIM BPM")
        decoder = GattProfileDecoder(tz=SHANGHAI, characteristics=CUFF_CHARACTERISTICS)
        readings: asyncio.Queue[Reading] = asyncio.Queue()

        def on_value(characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
            for reading in decoder.on_value(int(characteristic.uuid[4:8], 16), bytes(data)):
                readings.put_nowait(reading)

        async with BleakClient(device) as client:
            assert {s.uuid for s in client.services} == {normalize_uuid_16(0x1810), normalize_uuid_16(0x1805)}
            decoder.on_value(0x2A49, bytes(await client.read_gatt_char(normalize_uuid_16(0x2A49))))
            await client.start_notify(normalize_uuid_16(0x2A36), on_value)
            await client.start_notify(normalize_uuid_16(0x2A35), on_value)
            async with asyncio.timeout(10):
                first, second = await readings.get(), await readings.get()
        now = datetime.now(UTC)
        for reading in (first, second):
            assert reading == Reading(
                Kind.BLOOD_PRESSURE,
                {
                    "systolic": Quantity(185.0, "mm[Hg]"),
                    "diastolic": Quantity(125.0, "mm[Hg]"),
                    "mean_arterial": Quantity(145.0, "mm[Hg]"),
                    "pulse_rate": Quantity(96.0, "/min"),
                },
                measured_at=reading.measured_at,
            )
            assert reading.measured_at is not None
            assert now - timedelta(seconds=30) < reading.measured_at < now + timedelta(seconds=2)
        assert decoder.last_cuff_pressure_mmhg is not None  # the inflation was notified too
        assert decoder.bp_feature is not None and decoder.bp_feature.bits == BloodPressureCuff.FEATURES
        # Stopped as a service manager stops it (SIGTERM), hut-sim takes its private D-Bus down with it.
        sim.terminate()
        assert await asyncio.to_thread(sim.wait, 15) == 0
    assert not Path(address.removeprefix("unix:path=")).exists()


async def test_hut_sim_attaches_to_a_running_fake_bluez(fake_bluez: FakeBlueZ) -> None:
    with hut_sim(
        "play", "ble-heart-rate", "--dbus-address", fake_bluez.bus_address, "--address", "C0:48:48:53:00:99",
        "--pulse-rate", "60", "--steady", "--duration", "30", "--quiet",
    ) as sim:  # fmt: skip
        assert sim.stdout is not None
        line = await asyncio.to_thread(sim.stdout.readline)
        assert line.strip() == f"DBUS_SYSTEM_BUS_ADDRESS={fake_bluez.bus_address}"
        device = await BleakScanner.find_device_by_address("C0:48:48:53:00:99", timeout=10)
        assert device is not None
        rates: asyncio.Queue[tuple[int, tuple[int, ...] | None]] = asyncio.Queue()

        def on_value(_characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
            fields = decode_value(0x2A37, bytes(data))
            rates.put_nowait((fields.heart_rate, fields.rr_intervals))  # type: ignore[union-attr]

        async with BleakClient(device) as client:
            await client.start_notify(normalize_uuid_16(0x2A37), on_value)
            async with asyncio.timeout(10):
                got = [await rates.get() for _ in range(3)]
        # 60 /min, one beat a second: 1024/1024 s between beats.
        assert got == [(60, (1024,))] * 3


async def test_the_gateways_link_fetches_the_meters_records_through_racp(fake_bluez: FakeBlueZ) -> None:
    meter = GlucoseMeter(SCENARIOS["hypoglycaemia"], steady=True, interval=3600, seed=2)
    peripheral = await add_fake_peripheral(fake_bluez, meter, METER)
    central = BleCentral(policy=FAST)
    link = BleDeviceLink(central, BleTarget(service=0x1808), METER_PROFILE, name="meter", policy=FAST)
    events: asyncio.Queue[BleEvent] = asyncio.Queue()
    async with running(central.run(), link.run(events.put_nowait), BlePlayer(meter, peripheral, QUIET).run()):
        assert await next_event(events, BleConnected) == BleConnected(METER, "HH-SIM GLUCO")
        result = await link.racp(RACP_REPORT_ALL)
    assert result.response == bytes.fromhex("06000101")  # response code to "report stored records": success
    assert sequence_numbers(result.values) == [r.sequence_number for r in meter.records]
    assert len(meter.records) == meter.history + 1
    decoder = GattProfileDecoder(tz=SHANGHAI, characteristics=METER_CHARACTERISTICS)
    readings = [r for value in result.values for r in decoder.on_value(value.characteristic, value.data)]
    readings += decoder.on_value(0x2A52, result.response)
    assert [r.values for r in readings] == [{"glucose": Quantity(3.2, "mmol/L")}] * len(meter.records)
    assert decoder.orphan_contexts == 0 and decoder.frame_errors == 0


async def test_a_link_lost_during_the_racp_transfer_then_a_whole_transfer(fake_bluez: FakeBlueZ) -> None:
    meter = GlucoseMeter(SCENARIOS["normal-adult"], faults={Fault.RACP_LINK_LOSS}, interval=3600, seed=3)
    peripheral = await add_fake_peripheral(fake_bluez, meter, METER)
    central = BleCentral(policy=FAST)
    link = BleDeviceLink(central, BleTarget(address=METER), METER_PROFILE, name="meter", policy=FAST)
    events: asyncio.Queue[BleEvent] = asyncio.Queue()
    async with running(central.run(), link.run(events.put_nowait), BlePlayer(meter, peripheral, QUIET).run()):
        await next_event(events, BleConnected)
        with pytest.raises(BleError) as cut:
            await link.racp(RACP_REPORT_ALL)
        assert (cut.value.operation, cut.value.unplugged) == ("racp", True)
        assert await next_event(events, BleDisconnected) == BleDisconnected(METER, "link lost")
        # The meter advertises again at once, and the next transfer goes through.
        await next_event(events, BleConnected)
        result = await link.racp(RACP_REPORT_ALL)
    assert sequence_numbers(result.values) == [r.sequence_number for r in meter.records]


async def test_the_meter_sends_old_records_again_on_the_next_connection(fake_bluez: FakeBlueZ) -> None:
    meter = GlucoseMeter(SCENARIOS["normal-adult"], faults={Fault.RESEND_OLD_RECORDS}, interval=3600, seed=4)
    peripheral = await add_fake_peripheral(fake_bluez, meter, METER)
    central = BleCentral(policy=FAST)
    link = BleDeviceLink(central, BleTarget(address=METER), METER_PROFILE, name="meter", policy=FAST)
    events: asyncio.Queue[BleEvent] = asyncio.Queue()
    player = BlePlayer(meter, peripheral, QUIET, awake=0.3)
    async with running(central.run(), link.run(events.put_nowait), player.run()):
        await next_event(events, BleConnected)
        first = await link.racp(RACP_REPORT_ALL)
        last = max(sequence_numbers(first.values))
        # The meter sleeps, then wakes with the same records listed again.
        await next_event(events, BleDisconnected)
        await next_event(events, BleConnected)
        again = await link.racp(racp_report_after(last))
    assert sequence_numbers(again.values) == sequence_numbers(first.values)
    assert again.values == first.values  # the very same bytes


async def test_special_values_reach_the_gateway_as_value_unavailable(fake_bluez: FakeBlueZ) -> None:
    cuff = BloodPressureCuff(SCENARIOS["normal-adult"], faults={Fault.SPECIAL_VALUES}, steady=True, interval=1)
    peripheral = await add_fake_peripheral(fake_bluez, cuff, CUFF)
    central = BleCentral(policy=FAST)
    link = BleDeviceLink(central, BleTarget(service=0x1810), CUFF_PROFILE, name="cuff", policy=FAST)
    decoder = GattProfileDecoder(tz=SHANGHAI, characteristics=CUFF_CHARACTERISTICS)
    readings: asyncio.Queue[Reading] = asyncio.Queue()

    def on_event(event: BleEvent) -> None:
        if isinstance(event, BleValue):
            for reading in decoder.on_value(event.characteristic, event.data):
                readings.put_nowait(reading)

    async with running(central.run(), link.run(on_event), BlePlayer(cuff, peripheral, QUIET).run()):
        async with asyncio.timeout(10):
            first, second = await readings.get(), await readings.get()
    # The first measurement's mean pressure and pulse rate are NaN; the second is whole.
    assert (set(first.values), first.flags) == ({"systolic", "diastolic"}, {Flag.VALUE_UNAVAILABLE})
    assert (len(second.values), second.flags) == (4, frozenset())


async def test_a_reset_clock_stamps_2000_01_01_and_cannot_be_set(fake_bluez: FakeBlueZ) -> None:
    thermometer = Thermometer(SCENARIOS["fever"], faults={Fault.CLOCK_RESET}, steady=True, interval=1)
    peripheral = await add_fake_peripheral(fake_bluez, thermometer, THERMOMETER)
    decoder = GattProfileDecoder(tz=SHANGHAI)
    readings: asyncio.Queue[Reading] = asyncio.Queue()

    def on_value(characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        for reading in decoder.on_value(int(characteristic.uuid[4:8], 16), bytes(data)):
            readings.put_nowait(reading)

    async with running(BlePlayer(thermometer, peripheral, QUIET).run()):
        device = await BleakScanner.find_device_by_address(THERMOMETER, timeout=10)
        assert device is not None
        async with BleakClient(device) as client:
            assert client.services.get_characteristic(normalize_uuid_16(0x2A2B)) is None
            await client.start_notify(normalize_uuid_16(0x2A1C), on_value)
            async with asyncio.timeout(10):
                reading = await readings.get()
    assert reading.values == {"temperature": Quantity(39.2, "Cel")}
    assert reading.measured_at is not None
    assert datetime(2000, 1, 1, tzinfo=SHANGHAI) <= reading.measured_at < datetime(2000, 1, 1, 0, 1, tzinfo=SHANGHAI)
