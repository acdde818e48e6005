"""The BLE transport's real bleak and bleak-retry-connector code against a fake BlueZ on a private D-Bus."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pytest

from healthhut.devstack.fakebluez import FakeBlueZ, FakeGattCharacteristic, FakeGattService, FakePeripheral
from healthhut.drivers import BleProfile, DeviceConfig, DriverSpec
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
    run_ble_device,
)
from healthhut.gateway.transports.ble import RACP_REPORT_ALL, current_time_bytes, racp_report_after
from healthhut.protocol import Reading
from tests.tasks import running

FAST = BlePolicy(
    reconnect_min_s=0.05,
    reconnect_max_s=0.5,
    setup_timeout_s=10.0,
    racp_idle_timeout_s=5.0,
    adapter_retry_min_s=0.05,
    adapter_retry_max_s=0.5,
)
SHANGHAI = ZoneInfo("Asia/Shanghai")
# 2024-03-05 06:07:08.5 UTC is Tuesday 14:07:08.5 in Shanghai.
CLOCK = datetime(2024, 3, 5, 6, 7, 8, 500_000, tzinfo=UTC)
# Current Time: year 2024 (e8 07), March 5, 14:07:08, Tuesday (2), 128/256 s, external reference update (02).
CLOCK_BYTES = bytes.fromhex("e80703050e0708028002")

# Blood pressure feature: body movement and cuff fit detection supported.
BP_FEATURE = bytes.fromhex("0300")
# Blood pressure measurement, flags 00 (mmHg, nothing optional): 121 / 81 mmHg, mean 94 (SFLOATs, exponent 0).
BP_MEASUREMENT = bytes.fromhex("00790051005e00")
BP_MEASUREMENT_2 = bytes.fromhex("008c005a006c00")  # 140 / 90, mean 108
CUFF_PROFILE = BleProfile(service=0x1810, indicate=(0x2A35,), notify=(0x2A36,), read=(0x2A49,), current_time=True)
CUFF_SERVICES = (
    FakeGattService(
        0x1810,
        (
            FakeGattCharacteristic(0x2A35, ("indicate",)),
            FakeGattCharacteristic(0x2A36, ("notify",)),
            FakeGattCharacteristic(0x2A49, ("read",), BP_FEATURE),
        ),
    ),
    FakeGattService(0x1805, (FakeGattCharacteristic(0x2A2B, ("read", "write", "notify")),)),
)

# Glucose feature: low battery and sensor malfunction detection supported.
GLUCOSE_FEATURE = bytes.fromhex("0300")
# Glucose measurements, flags 02 (concentration in kg/L, type and location present): sequence number, base
# time, SFLOAT concentration with exponent -5 (b0), type 1 / location 1 (capillary whole blood, finger).
RECORD_1 = bytes.fromhex("020100e8070305071e005fb011")  # seq 1, 2024-03-05 07:30:00, 95 mg/dL
RECORD_2 = bytes.fromhex("020200e80703050c0f0078b011")  # seq 2, 2024-03-05 12:15:00, 120 mg/dL
RECORD_3 = bytes.fromhex("020300e807030512000096b011")  # seq 3, 2024-03-05 18:00:00, 150 mg/dL
# RACP response code (06), operator null (00), to "report stored records" (01): success (01).
RACP_SUCCESS = bytes.fromhex("06000101")
GLUCOSE_PROFILE = BleProfile(service=0x1808, notify=(0x2A18, 0x2A34), read=(0x2A51,), racp=True)
GLUCOSE_SERVICES = (
    FakeGattService(
        0x1808,
        (
            FakeGattCharacteristic(0x2A18, ("notify",)),
            FakeGattCharacteristic(0x2A34, ("notify",)),
            FakeGattCharacteristic(0x2A51, ("read",), GLUCOSE_FEATURE),
            FakeGattCharacteristic(0x2A52, ("write", "indicate")),
        ),
    ),
)

CUFF = "C4:7C:8D:6A:00:01"
CUFF_2 = "C4:7C:8D:6A:00:02"
METER = "E0:7D:EA:10:00:01"


class NoDecoder:
    """The transport test's driver decodes nothing: the transport hands over bytes, never readings."""

    frame_errors = 0

    def on_value(self, characteristic: int, data: bytes) -> list[Reading]:
        return []


async def take(queue: asyncio.Queue[BleEvent], count: int, within: float = 10.0) -> list[BleEvent]:
    async with asyncio.timeout(within):
        return [await queue.get() for _ in range(count)]


def cuff_link(central: BleCentral, target: BleTarget, name: str = "cuff") -> BleDeviceLink:
    return BleDeviceLink(central, target, CUFF_PROFILE, name=name, timezone=SHANGHAI, clock=lambda: CLOCK, policy=FAST)


def add_cuff(fake: FakeBlueZ, address: str = CUFF, **options: Any) -> FakePeripheral:
    return fake.add_peripheral(address, "BP7000", CUFF_SERVICES, **options)


def test_current_time_bytes() -> None:
    assert current_time_bytes(CLOCK.astimezone(SHANGHAI)) == CLOCK_BYTES
    # Sunday is day 7; no fraction; a manual adjustment.
    assert current_time_bytes(datetime(2000, 1, 2, 0, 0, 0), 0x01) == bytes.fromhex("d0070102000000070001")


def test_racp_report_after() -> None:
    # Report stored records (01), greater than or equal to (03), by sequence number (01), from 0x0102.
    assert racp_report_after(0x0101) == bytes.fromhex("0103010201")
    assert racp_report_after(0) == bytes.fromhex("0103010100")


async def test_discovers_by_service_connects_reads_sets_clock_and_notifies(fake_bluez: FakeBlueZ) -> None:
    cuff = add_cuff(fake_bluez)
    fake_bluez.add_peripheral("5C:31:3E:00:00:09", "scale", (FakeGattService(0x181D, ()),))
    central = BleCentral(policy=FAST)
    link = cuff_link(central, BleTarget(service=0x1810))
    events: asyncio.Queue[BleEvent] = asyncio.Queue()
    async with running(central.run(), link.run(events.put_nowait)):
        assert await take(events, 2) == [BleValue(0x2A49, BP_FEATURE), BleConnected(CUFF, "BP7000")]
        assert link.connected
        assert cuff.writes(0x2A2B) == [CLOCK_BYTES]
        assert cuff.is_notifying(0x2A35)
        assert cuff.is_notifying(0x2A36)
        assert cuff.push(0x2A35, BP_MEASUREMENT)
        assert await take(events, 1) == [BleValue(0x2A35, BP_MEASUREMENT)]
    # Stopping the link disconnects the device.
    assert await take(events, 1) == [BleDisconnected(CUFF, "closed")]
    assert events.empty()
    assert not cuff.state()["connected"]


async def test_link_loss_reconnects_when_it_advertises_and_resubscribes(fake_bluez: FakeBlueZ) -> None:
    cuff = add_cuff(fake_bluez)
    central = BleCentral(policy=FAST)
    link = cuff_link(central, BleTarget(address=CUFF))
    events: asyncio.Queue[BleEvent] = asyncio.Queue()
    async with running(central.run(), link.run(events.put_nowait)):
        assert await take(events, 2) == [BleValue(0x2A49, BP_FEATURE), BleConnected(CUFF, "BP7000")]
        assert cuff.push(0x2A35, BP_MEASUREMENT)
        assert await take(events, 1) == [BleValue(0x2A35, BP_MEASUREMENT)]

        cuff.drop_link(advertise=False)
        assert await take(events, 1) == [BleDisconnected(CUFF, "link lost")]
        assert not cuff.push(0x2A35, BP_MEASUREMENT)  # asleep: nothing to connect to, nothing sent
        await asyncio.sleep(0.3)
        assert events.empty()

        cuff.advertise()  # a new measurement wakes the cuff
        assert await take(events, 2) == [BleValue(0x2A49, BP_FEATURE), BleConnected(CUFF, "BP7000")]
        # The fake forgets subscriptions with the link, so this arrives only because the link subscribed again.
        assert cuff.push(0x2A35, BP_MEASUREMENT_2)
        assert await take(events, 1) == [BleValue(0x2A35, BP_MEASUREMENT_2)]
        assert cuff.writes(0x2A2B) == [CLOCK_BYTES, CLOCK_BYTES]


async def test_racp_transfer_through_run_ble_device(fake_bluez: FakeBlueZ) -> None:
    meter = fake_bluez.add_peripheral(METER, "Meter", GLUCOSE_SERVICES)
    meter.set_records([(1, [(0x2A18, RECORD_1)]), (2, [(0x2A18, RECORD_2)]), (3, [(0x2A18, RECORD_3)])])

    class MeterConfig(DeviceConfig):
        driver: Literal["ble-glucose"] = "ble-glucose"
        address: str
        timezone: str = "Asia/Shanghai"

    spec = DriverSpec(
        name="ble-glucose",
        description="test",
        transport="ble",
        config_model=MeterConfig,
        new_decoder=NoDecoder,
        ble=GLUCOSE_PROFILE,
    )
    central = BleCentral(policy=FAST)
    values: list[tuple[int, bytes]] = []
    events: asyncio.Queue[BleEvent] = asyncio.Queue()

    def on_value(characteristic: int, data: bytes) -> None:
        values.append((characteristic, data))
        events.put_nowait(BleValue(characteristic, data))

    config = MeterConfig(name="meter", address=METER.lower())
    device = run_ble_device(spec, config, central, on_value, on_event=events.put_nowait, policy=FAST)
    async with running(central.run(), device):
        assert await take(events, 6) == [
            BleValue(0x2A51, GLUCOSE_FEATURE),
            BleConnected(METER, "Meter"),
            BleValue(0x2A18, RECORD_1),
            BleValue(0x2A18, RECORD_2),
            BleValue(0x2A18, RECORD_3),
            BleValue(0x2A52, RACP_SUCCESS),
        ]
        assert meter.writes(0x2A52) == [RACP_REPORT_ALL]
    assert values == [
        (0x2A51, GLUCOSE_FEATURE),
        (0x2A18, RECORD_1),
        (0x2A18, RECORD_2),
        (0x2A18, RECORD_3),
        (0x2A52, RACP_SUCCESS),
    ]


async def test_racp_records_after_a_sequence_number(fake_bluez: FakeBlueZ) -> None:
    meter = fake_bluez.add_peripheral(METER, "Meter", GLUCOSE_SERVICES)
    meter.set_records([(1, [(0x2A18, RECORD_1)]), (2, [(0x2A18, RECORD_2)]), (3, [(0x2A18, RECORD_3)])])
    central = BleCentral(policy=FAST)
    link = BleDeviceLink(central, BleTarget(service=0x1808), GLUCOSE_PROFILE, name="meter", policy=FAST)
    events: asyncio.Queue[BleEvent] = asyncio.Queue()
    async with running(central.run(), link.run(events.put_nowait)):
        assert await take(events, 2) == [BleValue(0x2A51, GLUCOSE_FEATURE), BleConnected(METER, "Meter")]
        result = await link.racp(racp_report_after(1))
        assert result.values == (BleValue(0x2A18, RECORD_2), BleValue(0x2A18, RECORD_3))
        assert result.response == RACP_SUCCESS
        # RACP response (06) to "report stored records" (01): no records found (06).
        assert (await link.racp(racp_report_after(3))).response == bytes.fromhex("06000106")
        assert meter.writes(0x2A52) == [racp_report_after(1), racp_report_after(3)]
        assert await take(events, 4) == [
            BleValue(0x2A18, RECORD_2),
            BleValue(0x2A18, RECORD_3),
            BleValue(0x2A52, RACP_SUCCESS),
            BleValue(0x2A52, bytes.fromhex("06000106")),
        ]


async def test_racp_transfer_cut_by_link_loss_fails_then_succeeds_after_reconnect(fake_bluez: FakeBlueZ) -> None:
    meter = fake_bluez.add_peripheral(METER, "Meter", GLUCOSE_SERVICES)
    meter.set_records([(1, [(0x2A18, RECORD_1)]), (2, [(0x2A18, RECORD_2)]), (3, [(0x2A18, RECORD_3)])])
    meter.fail_racp_after(1)
    central = BleCentral(policy=FAST)
    link = BleDeviceLink(central, BleTarget(address=METER), GLUCOSE_PROFILE, name="meter", policy=FAST)
    events: asyncio.Queue[BleEvent] = asyncio.Queue()
    async with running(central.run(), link.run(events.put_nowait)):
        assert await take(events, 2) == [BleValue(0x2A51, GLUCOSE_FEATURE), BleConnected(METER, "Meter")]
        with pytest.raises(BleError) as failure:
            await link.racp(RACP_REPORT_ALL)
        assert (failure.value.path, failure.value.operation, failure.value.unplugged) == (METER, "racp", True)
        assert await take(events, 2) == [BleValue(0x2A18, RECORD_1), BleDisconnected(METER, "link lost")]

        meter.fail_racp_after(None)
        meter.advertise()
        assert await take(events, 2) == [BleValue(0x2A51, GLUCOSE_FEATURE), BleConnected(METER, "Meter")]
        result = await link.racp(RACP_REPORT_ALL)
        assert result.values == (BleValue(0x2A18, RECORD_1), BleValue(0x2A18, RECORD_2), BleValue(0x2A18, RECORD_3))
        assert result.response == RACP_SUCCESS


async def test_two_devices_at_once(fake_bluez: FakeBlueZ) -> None:
    cuffs = {CUFF: add_cuff(fake_bluez, CUFF), CUFF_2: add_cuff(fake_bluez, CUFF_2)}
    central = BleCentral(policy=FAST)
    # Both links look for any cuff: the central must hand each a different one.
    links = [cuff_link(central, BleTarget(service=0x1810), name=f"cuff-{i}") for i in range(2)]
    queues: list[asyncio.Queue[BleEvent]] = [asyncio.Queue(), asyncio.Queue()]
    async with running(central.run(), *(link.run(q.put_nowait) for link, q in zip(links, queues, strict=True))):
        first = [await take(q, 2) for q in queues]
        addresses = [events[1].address for events in first if isinstance(events[1], BleConnected)]
        assert sorted(addresses) == sorted(cuffs)
        for address, queue in zip(addresses, queues, strict=True):
            assert cuffs[address].push(0x2A35, BP_MEASUREMENT)
            assert await take(queue, 1) == [BleValue(0x2A35, BP_MEASUREMENT)]
        assert all(q.empty() for q in queues)


async def test_pairs_when_the_device_refuses_unpaired_requests(fake_bluez: FakeBlueZ) -> None:
    cuff = add_cuff(fake_bluez, pairing_required=True)
    central = BleCentral(policy=FAST)
    link = cuff_link(central, BleTarget(address=CUFF))
    events: asyncio.Queue[BleEvent] = asyncio.Queue()
    async with running(central.run(), link.run(events.put_nowait)):
        assert await take(events, 2) == [BleValue(0x2A49, BP_FEATURE), BleConnected(CUFF, "BP7000")]
        assert cuff.state()["paired"]
        assert cuff.push(0x2A35, BP_MEASUREMENT)
        assert await take(events, 1) == [BleValue(0x2A35, BP_MEASUREMENT)]


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.02)


async def test_recovers_from_an_unplugged_adapter(fake_bluez: FakeBlueZ) -> None:
    cuff = add_cuff(fake_bluez)
    central = BleCentral(policy=FAST)
    link = cuff_link(central, BleTarget(service=0x1810))
    # A thermometer that never shows up keeps the scan running while the adapter goes away.
    absent = BleDeviceLink(central, BleTarget(service=0x1809), BleProfile(service=0x1809), name="absent")
    events: asyncio.Queue[BleEvent] = asyncio.Queue()
    async with running(central.run(), link.run(events.put_nowait), absent.run(events.put_nowait)):
        assert await take(events, 2) == [BleValue(0x2A49, BP_FEATURE), BleConnected(CUFF, "BP7000")]
        assert central.scanning
        fake_bluez.remove_adapter("hci0")
        assert await take(events, 1) == [BleDisconnected(CUFF, "link lost")]
        cuff.advertise()
        await eventually(lambda: not central.scanning)
        await asyncio.sleep(0.3)
        assert events.empty()  # no adapter, no scan

        fake_bluez.add_adapter("hci0")
        assert await take(events, 2) == [BleValue(0x2A49, BP_FEATURE), BleConnected(CUFF, "BP7000")]
        assert cuff.push(0x2A35, BP_MEASUREMENT)
        assert await take(events, 1) == [BleValue(0x2A35, BP_MEASUREMENT)]
        await eventually(lambda: central.scanning)


async def test_recovers_from_an_adapter_power_cycle(fake_bluez: FakeBlueZ) -> None:
    cuff = add_cuff(fake_bluez)
    central = BleCentral(policy=FAST)
    link = cuff_link(central, BleTarget(address=CUFF))
    events: asyncio.Queue[BleEvent] = asyncio.Queue()
    async with running(central.run(), link.run(events.put_nowait)):
        assert await take(events, 2) == [BleValue(0x2A49, BP_FEATURE), BleConnected(CUFF, "BP7000")]
        fake_bluez.set_powered(False)
        assert await take(events, 1) == [BleDisconnected(CUFF, "link lost")]
        cuff.advertise()
        await asyncio.sleep(0.3)
        assert events.empty()
        fake_bluez.set_powered(True)
        assert await take(events, 2) == [BleValue(0x2A49, BP_FEATURE), BleConnected(CUFF, "BP7000")]


async def test_takes_over_a_link_that_bluez_kept_open(fake_bluez: FakeBlueZ) -> None:
    cuff = add_cuff(fake_bluez, advertising=False)
    cuff.connect()  # left connected by an earlier gateway run; a connected cuff does not advertise
    central = BleCentral(policy=FAST)
    link = cuff_link(central, BleTarget(service=0x1810, address=CUFF))
    events: asyncio.Queue[BleEvent] = asyncio.Queue()
    async with running(central.run(), link.run(events.put_nowait)):
        assert await take(events, 2) == [BleValue(0x2A49, BP_FEATURE), BleConnected(CUFF, "BP7000")]
        assert cuff.push(0x2A35, BP_MEASUREMENT)
        assert await take(events, 1) == [BleValue(0x2A35, BP_MEASUREMENT)]
