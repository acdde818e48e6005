"""hut-sim's bumble backend, with real bumble code on both sides and no radio: the simulated device is a bumble
GATT server on one virtual controller, the client a bumble central on another, both on one in-process
``LocalLink``. The central scans, connects, discovers the SIG service and subscribes, and what it receives must
decode with our own GATT parser into what the scenario asked for; a glucose meter answers RACP.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from bumble.att import ATT_Error, ErrorCode
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink
from bumble.transport.tcp_server import open_tcp_server_transport_with_socket

from healthhut.drivers.gatt import GlucoseMeasurement, decode_value, parse
from healthhut.drivers.gatt.date_time import current_time_bytes
from healthhut.drivers.gatt.racp import (
    OpCode,
    ResponseCode,
    decode_racp_response,
    racp_report_after,
    racp_report_all,
    racp_report_count,
)
from healthhut.firmware_sim.ble_play import BlePlayer, BleStats
from healthhut.firmware_sim.cli import main
from healthhut.firmware_sim.faults import Fault
from healthhut.firmware_sim.gatt_devices import BloodPressureCuff, GattDevice, GlucoseMeter, HeartRateStrap
from healthhut.firmware_sim.links.bumble_peripheral import BumblePeripheral, advertising_data
from healthhut.firmware_sim.progress import Progress
from healthhut.firmware_sim.scenarios import SCENARIOS
from healthhut.protocol import Kind, Quantity, Reading

SHANGHAI = ZoneInfo("Asia/Shanghai")
CENTRAL = "F0:F0:F0:F0:F0:F0"
HEART_RATE = 0x2A37
BP_MEASUREMENT, CUFF_PRESSURE, BP_FEATURE = 0x2A35, 0x2A36, 0x2A49
CURRENT_TIME = 0x2A2B
GLUCOSE, GLUCOSE_CONTEXT, RACP = 0x2A18, 0x2A34, 0x2A52
TEMPERATURE = 0x2A1C
WITHIN = 20.0  # generous: the suite shares two cores with servers and other tests


def radio(name: str, address: str, link: LocalLink) -> Device:
    """A bumble host on its own virtual controller, on ``link`` (as bumble's own tests build them)."""
    controller = Controller(name, link=link, public_address=address)
    return Device(name=name, address=Address(address), host=Host(controller, AsyncPipeSink(controller)))


@dataclass
class Air:
    """One simulated device played by hut-sim's BLE player on bumble, and a central in range of it."""

    peripheral: BumblePeripheral
    central: Device
    player: asyncio.Task[BleStats]


@contextlib.asynccontextmanager
async def on_the_air(device: GattDevice, address: str, *, awake: float = 0.0) -> AsyncIterator[Air]:
    link = LocalLink()
    simulated, central = radio("hut-sim", address, link), radio("central", CENTRAL, link)
    await simulated.power_on()
    await central.power_on()
    peripheral = BumblePeripheral(simulated, device)
    player = asyncio.create_task(BlePlayer(device, peripheral, Progress(quiet=True), awake=awake).run())
    try:
        yield Air(peripheral, central, player)
    finally:
        player.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await player
        await central.power_off()
        await simulated.power_off()


async def scan_for(central: Device, service: int) -> Advertisement:
    """The first advertisement that lists ``service``, as a gateway scanning by service UUID finds it."""
    found: asyncio.Future[Advertisement] = asyncio.get_running_loop().create_future()
    wanted = UUID.from_16_bits(service)

    def on_advertisement(advertisement: Advertisement) -> None:
        uuids = advertisement.data.get(AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS) or []
        if wanted in uuids and not found.done():
            found.set_result(advertisement)

    central.on(central.EVENT_ADVERTISEMENT, on_advertisement)
    await central.start_scanning(filter_duplicates=True)
    try:
        async with asyncio.timeout(WITHIN):
            return await found
    finally:
        central.remove_listener(central.EVENT_ADVERTISEMENT, on_advertisement)
        await central.stop_scanning()


@dataclass
class Client:
    """A connected central with the device's service discovered, and the values it has received."""

    connection: Connection
    peer: Peer
    received: list[tuple[int, bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def characteristic(self, uuid: int) -> CharacteristicProxy[bytes]:
        (found,) = self.peer.get_characteristics_by_uuid(UUID.from_16_bits(uuid))
        return found

    async def subscribe(self, uuid: int) -> None:
        def on_value(value: bytes) -> None:
            self.received.append((uuid, bytes(value)))
            self.arrived.set()

        await self.peer.subscribe(self.characteristic(uuid), on_value, prefer_notify=False)

    async def until(self, done: Callable[[list[tuple[int, bytes]]], bool]) -> list[tuple[int, bytes]]:
        async with asyncio.timeout(WITHIN):
            while not done(self.received):
                self.arrived.clear()
                await self.arrived.wait()
        return self.received

    def of(self, uuid: int) -> list[bytes]:
        return [value for characteristic, value in self.received if characteristic == uuid]


async def connect(air: Air, service: int) -> Client:
    return await connect_to(air.central, service, air.peripheral.address, air.peripheral.device.local_name)


async def connect_to(central: Device, service: int, address: str, name: str) -> Client:
    advertisement = await scan_for(central, service)
    assert advertisement.address == Address(address)
    assert advertisement.data.get(AdvertisingData.COMPLETE_LOCAL_NAME) == name
    connection = await central.connect(advertisement.address)
    peer = Peer(connection)
    services = await peer.discover_service(UUID.from_16_bits(service))
    assert len(services) == 1
    await peer.discover_characteristics()
    return Client(connection, peer)


async def test_advertising_data_names_the_service_and_the_device() -> None:
    strap = HeartRateStrap(SCENARIOS["normal-adult"], seed=1)
    data = AdvertisingData.from_bytes(advertising_data(strap))
    assert data.get(AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS) == [UUID.from_16_bits(0x180D)]
    assert data.get(AdvertisingData.COMPLETE_LOCAL_NAME) == "HH-SIM HRM"
    assert data.get(AdvertisingData.FLAGS) == 0x06  # LE General Discoverable, BR/EDR not supported


async def test_a_heart_rate_strap_notifies_the_set_rate_and_its_rr_intervals() -> None:
    scenario = SCENARIOS["bradycardia"]
    strap = HeartRateStrap(scenario, seed=3, steady=True)
    async with on_the_air(strap, "C0:48:48:53:00:06") as air:
        client = await connect(air, 0x180D)
        await client.subscribe(HEART_RATE)
        await client.until(lambda received: len(received) >= 3)
    # Steady: every beat exactly 60/42 s apart, so every notification says 42/min.
    readings = [parse(HEART_RATE, value) for value in client.of(HEART_RATE)]
    # Each RR interval in 1/1024 s, as the strap sends it, in ms.
    rr_ms = round(60 / scenario.pulse_rate * 1024) * 1000 / 1024
    for reading in readings:
        assert reading.kind is Kind.HEART_RATE
        assert reading.values["heart_rate"] == Quantity(42, "/min")
        intervals = reading.values.get("rr_intervals")
        assert intervals is None or intervals == Quantity((rr_ms,) * len(intervals.value), "ms")  # type: ignore[arg-type]
    assert any("rr_intervals" in r.values for r in readings)


async def test_a_cuff_indicates_its_stored_result_after_the_current_time_is_written() -> None:
    scenario = SCENARIOS["hypertensive-crisis"]
    started = datetime(2025, 3, 4, 1, 2, 3, tzinfo=UTC)
    cuff = BloodPressureCuff(scenario, seed=2, steady=True, interval=60.0, tz=SHANGHAI, started_at=started)
    async with on_the_air(cuff, "C0:48:48:53:00:01") as air:
        client = await connect(air, 0x1810)
        features = await client.peer.read_value(client.characteristic(BP_FEATURE))
        assert features == bytes([0x0F, 0x00])
        (clock_service,) = await client.peer.discover_service(UUID.from_16_bits(0x1805))
        await client.peer.discover_characteristics(service=clock_service)
        now = current_time_bytes(datetime.now(UTC), SHANGHAI)
        await client.peer.write_value(client.characteristic(CURRENT_TIME), now, with_response=True)
        assert await client.peer.read_value(client.characteristic(CURRENT_TIME)) == now
        assert air.peripheral.writes(CURRENT_TIME) == [now]
        # The result was measured before anyone subscribed; the cuff kept it until the client did.
        await asyncio.sleep(1.0)
        await client.subscribe(BP_MEASUREMENT)
        await client.until(lambda received: any(uuid == BP_MEASUREMENT for uuid, _ in received))
    (result,) = client.of(BP_MEASUREMENT)
    reading = parse(BP_MEASUREMENT, result, tz=SHANGHAI)
    assert reading == Reading(
        Kind.BLOOD_PRESSURE,
        {
            "systolic": Quantity(185, "mm[Hg]"),
            "diastolic": Quantity(125, "mm[Hg]"),
            "mean_arterial": Quantity(145, "mm[Hg]"),
            "pulse_rate": Quantity(scenario.pulse_rate, "/min"),
        },
        measured_at=reading.measured_at,
    )
    assert reading.measured_at is not None
    assert abs(reading.measured_at - started) < timedelta(seconds=2)


def racp_finished(received: list[tuple[int, bytes]]) -> bool:
    return any(uuid == RACP for uuid, _ in received)


async def test_a_glucose_meter_reports_all_its_records_through_racp() -> None:
    scenario = SCENARIOS["hypoglycaemia"]
    meter = GlucoseMeter(scenario, seed=4, steady=True, interval=600.0, tz=SHANGHAI)
    async with on_the_air(meter, "C0:48:48:53:00:04") as air:
        client = await connect(air, 0x1808)
        # Indications on the RACP must be on before a request (Glucose Service 1.0, 3.2.3; ATT error 0xFD).
        with pytest.raises(ATT_Error) as refused:
            await client.peer.write_value(client.characteristic(RACP), racp_report_all(), with_response=True)
        assert refused.value.error_code == ErrorCode.CCCD_IMPROPERLY_CONFIGURED
        for uuid in (GLUCOSE, GLUCOSE_CONTEXT, RACP):
            await client.subscribe(uuid)
        await client.peer.write_value(client.characteristic(RACP), racp_report_count(), with_response=True)
        await client.until(racp_finished)
        assert decode_racp_response(client.of(RACP)[0]).record_count == 6  # five days' history and one now
        client.received.clear()
        await client.peer.write_value(client.characteristic(RACP), racp_report_all(), with_response=True)
        await client.until(racp_finished)
        all_records = list(client.received)
        client.received.clear()
        last_seen = meter.first_sequence_number + 3
        await client.peer.write_value(client.characteristic(RACP), racp_report_after(last_seen), with_response=True)
        await client.until(racp_finished)
        after = list(client.received)
    # Each record is its measurement, then its context; the transfer ends with a success response.
    assert [uuid for uuid, _ in all_records] == [GLUCOSE, GLUCOSE_CONTEXT] * 6 + [RACP]
    response = decode_racp_response(all_records[-1][1])
    assert (response.request_op_code, response.response_code) == (OpCode.REPORT_STORED_RECORDS, ResponseCode.SUCCESS)
    measurements = [value for uuid, value in all_records if uuid == GLUCOSE]
    fields = [decode_value(GLUCOSE, value) for value in measurements]
    assert [f.sequence_number for f in fields if isinstance(f, GlucoseMeasurement)] == [
        meter.first_sequence_number + i for i in range(6)
    ]
    readings = [parse(GLUCOSE, value, tz=SHANGHAI) for value in measurements]
    assert {(r.kind, r.values["glucose"]) for r in readings} == {(Kind.BLOOD_GLUCOSE, Quantity(3.2, "mmol/L"))}
    assert [r.measured_at for r in readings] == sorted(r.measured_at for r in readings if r.measured_at)
    # "After the last one seen": only the two newer records.
    assert [uuid for uuid, _ in after] == [GLUCOSE, GLUCOSE_CONTEXT] * 2 + [RACP]
    assert [value for uuid, value in after if uuid == GLUCOSE] == measurements[4:]


async def test_the_meter_drops_the_link_half_way_through_its_first_racp_transfer() -> None:
    meter = GlucoseMeter(SCENARIOS["normal-adult"], seed=5, steady=True, interval=600.0, faults={Fault.RACP_LINK_LOSS})
    async with on_the_air(meter, "C0:48:48:53:00:04") as air:
        client = await connect(air, 0x1808)
        for uuid in (GLUCOSE, GLUCOSE_CONTEXT, RACP):
            await client.subscribe(uuid)
        lost: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        client.connection.on(client.connection.EVENT_DISCONNECTION, lost.set_result)
        await client.peer.write_value(client.characteristic(RACP), racp_report_all(), with_response=True)
        async with asyncio.timeout(WITHIN):
            await lost
        # Three of six records arrived, and no response: the gateway must ask again.
        assert [uuid for uuid, _ in client.received] == [GLUCOSE, GLUCOSE_CONTEXT] * 3
        # The meter advertises again, and the next transfer goes through whole.
        client = await connect(air, 0x1808)
        for uuid in (GLUCOSE, GLUCOSE_CONTEXT, RACP):
            await client.subscribe(uuid)
        await client.peer.write_value(client.characteristic(RACP), racp_report_all(), with_response=True)
        await client.until(racp_finished)
    assert [uuid for uuid, _ in client.received] == [GLUCOSE, GLUCOSE_CONTEXT] * 6 + [RACP]
    assert air.player.done()


async def test_hut_sim_plays_on_an_hci_controller_it_reaches_through_a_bumble_transport() -> None:
    # The "dongle" is a bumble virtual controller behind a TCP server transport; hut-sim, a separate process,
    # opens it as it would open usb:0, and a central on the controller's link sees a thermometer.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        hci = await open_tcp_server_transport_with_socket(sock)
        link = LocalLink()
        Controller("dongle", host_source=hci.source, host_sink=hci.sink, link=link)
        central = radio("central", CENTRAL, link)
        await central.power_on()
        transport = f"tcp-client:127.0.0.1:{port}"
        sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "healthhut.firmware_sim.cli", "play", "ble-thermometer", "--transport", transport,
            "--scenario", "fever", "--steady", "--duration", "30", "--quiet",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert sim.stdout is not None
            async with asyncio.timeout(WITHIN):
                assert (await sim.stdout.readline()).decode().strip() == f"C0:48:48:53:00:02 on {transport}"
            client = await connect_to(central, 0x1809, "C0:48:48:53:00:02", "HH-SIM THERMO")
            await client.subscribe(TEMPERATURE)
            await client.until(lambda received: any(uuid == TEMPERATURE for uuid, _ in received))
        finally:
            sim.terminate()
            _, err = await sim.communicate()
            await central.power_off()
            await hci.close()
    assert sim.returncode == 0, err.decode()
    (reading,) = [parse(TEMPERATURE, value) for value in client.of(TEMPERATURE)]
    assert (reading.kind, reading.values) == (Kind.BODY_TEMPERATURE, {"temperature": Quantity(39.2, "Cel")})


def test_the_cli_refuses_a_transport_bumble_cannot_open(capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens on port 1: bumble's TCP client transport fails, and hut-sim says so.
    assert main(["play", "ble-heart-rate", "--transport", "tcp-client:127.0.0.1:1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "tcp-client:127.0.0.1:1" in err and "bumble cannot open the HCI transport" in err
    assert main(["play", "ble-heart-rate", "--ble", "fake-bluez", "--transport", "usb:0"]) == 2
    assert "--transport is for --ble bumble" in capsys.readouterr().err
