"""BLE peripherals for hut-sim: a fake BlueZ on a private D-Bus (tests, demos, no radio needed), and the check
for bumble, whose GATT peripheral on a real HCI controller is ``links.bumble_peripheral``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from healthhut.devstack.fakebluez import (
    BLUEZ,
    CONTROL_IFACE,
    FakeBlueZ,
    FakeGattCharacteristic,
    FakeGattService,
    FakePeripheral,
)
from healthhut.firmware_sim.errors import LinkError
from healthhut.firmware_sim.gatt_devices import GattDevice, StoredRecord

_T = TypeVar("_T")

BUMBLE_TRANSPORTS = (
    "usb:0 (the first USB Bluetooth dongle), usb:2FE3:000B (by vendor:product id), "
    "serial:/dev/ttyACM0 (an HCI UART such as a Zephyr hci_uart board), or any other bumble transport "
    "(https://google.github.io/bumble/transports/)"
)


@dataclass(frozen=True, slots=True)
class LinkState:
    connected: bool
    advertising: bool


class Peripheral(Protocol):
    """One simulated device's radio: what the BLE player asks of a backend."""

    address: str

    async def state(self) -> LinkState: ...

    async def push(self, characteristic: int, value: bytes) -> bool:
        """Notify or indicate ``value``; False when no client has subscribed (nothing is sent then)."""
        ...

    async def advertise(self, advertising: bool = True) -> None: ...

    async def drop_link(self) -> None:
        """End the connection, as a device going to sleep does; nothing if there is none."""
        ...

    async def set_records(self, records: Sequence[StoredRecord]) -> None:
        """The records RACP requests choose from (glucose)."""
        ...

    async def fail_racp_after(self, records: int | None) -> None:
        """Drop the link after sending this many records of an RACP transfer (None: never)."""
        ...


# --- the fake BlueZ ---------------------------------------------------------------------------------------


def _dbus_failure(exc: Exception) -> str:
    name = getattr(exc, "get_dbus_name", lambda: type(exc).__name__)()
    message = getattr(exc, "get_dbus_message", lambda: str(exc))()
    return f"{name}: {message}"


def _dbus_exception() -> type[Exception]:
    import dbus

    error: type[Exception] = dbus.exceptions.DBusException
    return error


class FakeBlueZPeripheral:
    """A peripheral on a fake BlueZ. Each call is one blocking D-Bus call, made off the event loop."""

    def __init__(self, peripheral: FakePeripheral) -> None:
        self._peripheral = peripheral
        self.address = peripheral.address

    async def _call(self, method: Callable[..., _T], *args: Any) -> _T:
        try:
            return await asyncio.to_thread(method, *args)
        except _dbus_exception() as exc:
            raise LinkError("ble", self.address, _dbus_failure(exc)) from exc

    async def state(self) -> LinkState:
        state = await self._call(self._peripheral.state)
        return LinkState(connected=state["connected"], advertising=state["advertising"])

    async def push(self, characteristic: int, value: bytes) -> bool:
        return await self._call(self._peripheral.push, characteristic, value)

    async def advertise(self, advertising: bool = True) -> None:
        await self._call(self._peripheral.advertise, advertising)

    async def drop_link(self) -> None:
        # The client may have gone in the meantime; then the link is down already, as wanted.
        if (await self.state()).connected:
            with contextlib.suppress(LinkError):
                await self._call(functools.partial(self._peripheral.drop_link, advertise=False))

    async def set_records(self, records: Sequence[StoredRecord]) -> None:
        await self._call(self._peripheral.set_records, [(r.sequence_number, list(r.values)) for r in records])

    async def fail_racp_after(self, records: int | None) -> None:
        await self._call(self._peripheral.fail_racp_after, records)


class AttachedFakeBlueZ(FakeBlueZ):
    """A fake BlueZ that another process started: only its control interface is used, over ``address``."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self._address = address
        self._bus: Any = None

    @property
    def bus_address(self) -> str:
        return self._address

    def start(self) -> Self:
        import dbus.bus

        try:
            self._bus = dbus.bus.BusConnection(self._address)
        except _dbus_exception() as exc:
            raise LinkError("ble", self._address, f"no D-Bus there ({_dbus_failure(exc)})") from exc
        if not self._bus.name_has_owner(BLUEZ):
            self.stop()
            raise LinkError("ble", self._address, "no fake BlueZ on that bus")
        return self

    def stop(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.close()

    def control(self, method: str, *args: Any) -> Any:
        if self._bus is None:
            raise LinkError("ble", self._address, "not attached")
        proxy = self._bus.get_object(BLUEZ, "/", introspect=False)
        return proxy.get_dbus_method(method, CONTROL_IFACE)(*args)


@contextlib.asynccontextmanager
async def fake_bluez(dbus_address: str | None = None, root: Path | None = None) -> AsyncIterator[FakeBlueZ]:
    """A running fake BlueZ: started here (in ``root``, or a temporary folder), or the one at ``dbus_address``.

    LinkError, or devstack's ServerError (with the log tail), when it cannot be started or reached.
    """
    fake = AttachedFakeBlueZ(dbus_address) if dbus_address else FakeBlueZ(root)
    # Started on this (the main) thread, though it blocks for a moment: devstack makes a server die with its
    # parent only when the main thread forks it, and a killed hut-sim must not leave a D-Bus behind.
    fake.start()
    try:
        yield fake
    finally:
        await asyncio.to_thread(fake.stop)


async def add_fake_peripheral(
    fake: FakeBlueZ, device: GattDevice, address: str, adapter: str = "hci0"
) -> FakeBlueZPeripheral:
    """Add ``device`` to ``fake`` as a peripheral advertising its profile's service."""
    services = tuple(
        FakeGattService(
            service.uuid,
            tuple(FakeGattCharacteristic(c.uuid, c.flags, c.value) for c in service.characteristics),
        )
        for service in device.services()
    )
    add = functools.partial(
        fake.add_peripheral,
        address,
        device.local_name,
        services,
        adapter=adapter,
        advertised_services=[device.profile.service],
        # The player starts advertising once the device's first values (and records) are in place.
        advertising=False,
    )
    try:
        peripheral = await asyncio.to_thread(add)
    except _dbus_exception() as exc:
        raise LinkError("ble", address, f"cannot add the peripheral ({_dbus_failure(exc)})") from exc
    return FakeBlueZPeripheral(peripheral)


# --- bumble ---------------------------------------------------------------------------------------------


def bumble_available() -> bool:
    return importlib.util.find_spec("bumble") is not None


def require_bumble(transport: str | None) -> str:
    """The transport to open with bumble; LinkError saying what is needed when bumble or a transport is not."""
    if not bumble_available():
        raise LinkError(
            "ble",
            transport or "bumble",
            "--ble bumble needs the bumble package (pip install bumble), which is not installed; "
            f"then give the HCI dongle with --transport, for example {BUMBLE_TRANSPORTS}. "
            "Without Bluetooth hardware, use --ble fake-bluez.",
        )
    if not transport:
        raise LinkError(
            "ble",
            "bumble",
            f"--ble bumble needs --transport: {BUMBLE_TRANSPORTS}. Without Bluetooth hardware, use --ble fake-bluez.",
        )
    return transport
