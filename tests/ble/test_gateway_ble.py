"""A BLE cuff and a glucose meter read by the gateway's device sessions: real bleak, the fake BlueZ,
the real GATT decoders, into the spool."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from healthhut.devstack.fakebluez import FakeBlueZ
from healthhut.drivers import get_driver
from healthhut.gateway.clock import ClockCheck
from healthhut.gateway.devices import DeviceSession
from healthhut.gateway.outbox import Outbox, gap_item
from healthhut.gateway.spool import MemorySpool
from healthhut.gateway.state import GatewayState
from healthhut.gateway.transports import BleCentral
from healthhut.protocol import Flag, Kind, Observation
from tests.ble.test_transport import (
    CUFF_SERVICES,
    FAST,
    GLUCOSE_SERVICES,
    RECORD_1,
    RECORD_2,
)
from tests.conftest import eventually
from tests.tasks import running

CUFF = "C0:FF:EE:00:00:01"
METER = "C0:FF:EE:00:00:02"
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Blood pressure measurement, flags 02 (mmHg, time stamp): 121 / 81 mmHg, mean 94, 2026-11-22 08:30:00.
BP_WITH_TIME = bytes.fromhex("02790051005e00ea070b16081e00")


def session(
    name: str, driver: str, address: str, tmp_path: Path, spool: MemorySpool, central: BleCentral
) -> DeviceSession:
    spec = get_driver(driver)
    config = spec.config_model.model_validate({"driver": driver, "name": name, "address": address})
    return DeviceSession(
        config,
        spec,
        hut_id="hut-1",
        state=GatewayState(tmp_path / "state"),
        outbox=Outbox(spool),
        # The device clocks here are in the past on purpose; only the Pi's own clock is trusted.
        clock_check=ClockCheck(timedelta(days=10_000), probe=lambda: True),
        central=central,
    )


def observations(spool: MemorySpool, kind: Kind) -> list[Observation]:
    found = [Observation.model_validate_json(i.body) for i in spool._rows.values() if i.channel == "obs"]
    return [o for o in found if o.kind is kind]


async def test_cuff_measurement_reaches_the_spool(fake_bluez: FakeBlueZ, tmp_path: Path) -> None:
    cuff = fake_bluez.add_peripheral(CUFF, "Cuff", CUFF_SERVICES)
    spool = MemorySpool(10**8, gap_item)
    central = BleCentral(policy=FAST)
    device = session("cuff-1", "ble-blood-pressure", CUFF, tmp_path, spool, central)
    async with running(central.run(), device.run()):
        await eventually(lambda: device.connected)
        await eventually(lambda: cuff.push(0x2A35, BP_WITH_TIME))
        await eventually(lambda: observations(spool, Kind.BLOOD_PRESSURE))
    (obs,) = observations(spool, Kind.BLOOD_PRESSURE)
    assert {name: (q.value, q.unit) for name, q in obs.values.items()} == {
        "systolic": (121.0, "mm[Hg]"),
        "diastolic": (81.0, "mm[Hg]"),
        "mean_arterial": (94.0, "mm[Hg]"),
    }
    assert obs.device_time == datetime(2026, 11, 22, 8, 30, tzinfo=SHANGHAI) and obs.clock == "device"
    assert obs.fit_for_alerting and Flag.CLOCK_UNVERIFIED not in obs.flags
    # The gateway set the cuff's clock on connect.
    assert len(cuff.writes(0x2A2B)) == 1


async def test_glucose_records_come_through_racp_once(fake_bluez: FakeBlueZ, tmp_path: Path) -> None:
    meter = fake_bluez.add_peripheral(METER, "Meter", GLUCOSE_SERVICES)
    meter.set_records([(1, [(0x2A18, RECORD_1)]), (2, [(0x2A18, RECORD_2)])])
    spool = MemorySpool(10**8, gap_item)
    central = BleCentral(policy=FAST)
    device = session("meter-1", "ble-glucose", METER, tmp_path, spool, central)
    async with running(central.run(), device.run()):
        await eventually(lambda: len(observations(spool, Kind.BLOOD_GLUCOSE)) == 2)
        # The link drops and comes back: only records after the last one seen are asked for.
        meter.drop_link(advertise=True)
        await eventually(lambda: len(meter.writes(0x2A52)) == 2, within=30)
    glucose = observations(spool, Kind.BLOOD_GLUCOSE)
    assert [round(o.values["glucose"].value, 2) for o in glucose] == [round(95 / 18.016, 2), round(120 / 18.016, 2)]  # type: ignore[arg-type]
    first, second = meter.writes(0x2A52)
    assert first == bytes.fromhex("0101") and second[:2] == bytes.fromhex("0103")  # all, then ">= 3"
