"""BLE devices through bleak and BlueZ: one shared scanner (BleCentral) and one self-reconnecting link per
device (BleDeviceLink) that reports raw characteristic values and link events; it never decodes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import NoReturn, TypeVar

from bleak import BleakAdapter, BleakClient, BleakScanner
from bleak.args.bluez import BlueZAdapterArgs, BlueZScannerArgs
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode
from bleak.uuids import normalize_uuid_16
from bleak_retry_connector import establish_connection
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from healthhut.drivers import BleProfile
from healthhut.gateway.backoff import Backoff
from healthhut.gateway.transports.base import TransportError
from healthhut.gateway.transports.ble_policy import DEFAULT_POLICY, BlePolicy

log = logging.getLogger(__name__)

_T = TypeVar("_T")

CURRENT_TIME = 0x2A2B
RACP = 0x2A52
# Current Time Service 1.1, 3.1.2.1: the adjust reason bits.
ADJUST_MANUAL = 0x01
ADJUST_EXTERNAL_REFERENCE = 0x02
ADJUST_TIME_ZONE = 0x04
ADJUST_DST = 0x08
# Glucose Service 1.0, 3.2.3: "report stored records" with the "all records" operator, and the op codes of
# the two answers that end a procedure.
RACP_REPORT_ALL = bytes([0x01, 0x01])
_RACP_FINAL_OPCODES = frozenset({0x05, 0x06})

_SIG_SUFFIX = "-0000-1000-8000-00805f9b34fb"
# What bleak, dbus-fast and the D-Bus socket raise when the adapter, BlueZ or the link went away.
_BLE_FAILURES = (BleakError, DBusError, EOFError, OSError, TimeoutError)
_PAIRING_ERRORS = frozenset({"org.bluez.Error.NotPermitted", "org.bluez.Error.NotAuthorized"})
_PAIRING_ATT_CODES = frozenset(
    {
        BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION,
        BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION,
        BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION_KEY_SIZE,
        BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHORIZATION,
    }
)


class BleError(TransportError):
    """A BLE device could not be reached, set up or asked. ``path`` is its address (or the adapter),
    ``operation`` what failed ("connect", "setup", "racp", "scan"), ``unplugged`` whether the link dropped."""

    def __init__(self, path: str, operation: str, message: str, *, unplugged: bool = False) -> None:
        self.operation = operation
        super().__init__(path, f"{operation}: {message}", unplugged=unplugged)


# --- events -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BleValue:
    """A characteristic's value: read after connecting, or notified, or indicated. Raw bytes."""

    characteristic: int
    data: bytes


@dataclass(frozen=True, slots=True)
class BleConnected:
    address: str
    name: str | None


@dataclass(frozen=True, slots=True)
class BleDisconnected:
    address: str
    reason: str


@dataclass(frozen=True, slots=True)
class BleConnectFailed:
    """Connecting or setting up failed; ``failures`` counts the attempts since the last good link."""

    address: str
    error: str
    failures: int


BleEvent = BleValue | BleConnected | BleDisconnected | BleConnectFailed


@dataclass(frozen=True, slots=True)
class RacpResult:
    """The RACP response (op code 0x05 or 0x06 and its operand), and the values that arrived before it.

    The values went through the link's event callback as well; they are here for accounting only.
    """

    response: bytes
    values: tuple[BleValue, ...]


# --- pure helpers -----------------------------------------------------------------------------------------


def uuid16(uuid: str) -> int | None:
    """The 16-bit SIG UUID inside bleak's 128-bit form, or None for a vendor UUID."""
    uuid = uuid.lower()
    if uuid.startswith("0000") and uuid.endswith(_SIG_SUFFIX):
        return int(uuid[4:8], 16)
    return None


def current_time_bytes(now: datetime, adjust_reason: int = ADJUST_EXTERNAL_REFERENCE) -> bytes:
    """The 10-byte Current Time value (0x2A2B): Date Time, Day of Week, Fractions256, Adjust Reason."""
    return (
        now.year.to_bytes(2, "little")
        + bytes([now.month, now.day, now.hour, now.minute, now.second, now.isoweekday()])
        + bytes([now.microsecond * 256 // 1_000_000, adjust_reason])
    )


def racp_report_after(sequence: int) -> bytes:
    """RACP "report stored records" for sequence numbers after ``sequence`` (operator >=, filter 0x01)."""
    if not 0 <= sequence < 0xFFFF:
        raise ValueError(f"no sequence number follows {sequence}")
    return bytes([0x01, 0x03, 0x01]) + (sequence + 1).to_bytes(2, "little")


@dataclass(frozen=True, slots=True)
class BleTarget:
    """Which device a link wants: a configured address, or else the first device advertising ``service``."""

    service: int | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        if self.service is None and self.address is None:
            raise ValueError("a BLE target needs a service UUID or an address")

    def describe(self) -> str:
        return self.address.upper() if self.address else f"service 0x{self.service:04X}"

    def matches(self, device: BLEDevice, advertisement: AdvertisementData) -> bool:
        if self.address is not None:
            return device.address.upper() == self.address.upper()
        assert self.service is not None
        return normalize_uuid_16(self.service) in (u.lower() for u in advertisement.service_uuids)


# --- the shared scanner -----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Waiter:
    target: BleTarget
    found: asyncio.Future[BLEDevice]


@dataclass(eq=False)
class _Watch:
    """Signals from BlueZ the scanner and the links must react to, which bleak does not pass on."""

    on_adapter_change: Callable[[], None]
    on_device_removed: Callable[[str], None]
    bus: MessageBus | None = None
    _bus_watcher: asyncio.Task[None] | None = None

    _RULES = (
        "type='signal',sender='org.bluez',interface='org.freedesktop.DBus.ObjectManager',path='/'",
        "type='signal',sender='org.bluez',interface='org.freedesktop.DBus.Properties',"
        "member='PropertiesChanged',arg0='org.bluez.Adapter1'",
        "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='org.bluez'",
    )

    async def open(self) -> None:
        bus = MessageBus(bus_type=BusType.SYSTEM)
        try:
            await bus.connect()
            bus.add_message_handler(self._on_message)
            for rule in self._RULES:
                reply = await bus.call(
                    Message(
                        destination="org.freedesktop.DBus",
                        path="/org/freedesktop/DBus",
                        interface="org.freedesktop.DBus",
                        member="AddMatch",
                        signature="s",
                        body=[rule],
                    )
                )
                if reply.message_type == MessageType.ERROR:
                    raise BleError("system bus", "scan", f"cannot watch BlueZ: {reply.error_name}")
        except BaseException:
            bus.disconnect()
            raise
        self.bus = bus
        self._bus_watcher = asyncio.create_task(self._until_bus_dies(bus), name="ble-bluez-watch")

    async def _until_bus_dies(self, bus: MessageBus) -> None:
        # A restarted dbus-daemon takes BlueZ, the scan and every link with it.
        with contextlib.suppress(*_BLE_FAILURES):
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]  # dbus-fast leaves it unannotated
        self.on_adapter_change()

    def close(self) -> None:
        if self._bus_watcher is not None:
            self._bus_watcher.cancel()
            self._bus_watcher = None
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None

    def _on_message(self, message: Message) -> None:
        if message.message_type != MessageType.SIGNAL:
            return
        if message.member == "InterfacesAdded":
            if "org.bluez.Adapter1" in message.body[1]:
                self.on_adapter_change()
        elif message.member == "InterfacesRemoved":
            path, interfaces = message.body
            if "org.bluez.Adapter1" in interfaces:
                self.on_adapter_change()
            if "org.bluez.Device1" in interfaces:
                self.on_device_removed(path)
        elif message.member == "PropertiesChanged":
            if "Powered" in message.body[1]:
                self.on_adapter_change()
        elif message.member == "NameOwnerChanged":
            # bluetoothd restarted: its adapters and devices are new objects.
            self.on_adapter_change()


class BleCentral:
    """Scans for every :class:`BleDeviceLink` of one adapter while any of them waits for its device.

    Run :meth:`run` as a task for as long as the links run. A missing, unplugged or powered-off adapter
    stops the scan; it restarts when the adapter is back (or after a backoff, on other errors).
    """

    def __init__(self, adapter: str | None = None, *, policy: BlePolicy = DEFAULT_POLICY) -> None:
        self.adapter = adapter
        self.policy = policy
        self.scanning = False
        self._waiters: list[_Waiter] = []
        # Addresses that links hold (found by service and now connecting or connected) or are configured for.
        self._claimed: set[str] = set()
        self._reserved: dict[str, int] = {}
        self._removal_callbacks: dict[str, list[Callable[[], None]]] = {}
        self._wakeup = asyncio.Event()
        self._adapter_changed = False
        self._failures = 0

    # -- for links --

    async def wait_for(self, target: BleTarget) -> BLEDevice:
        """``target`` once it advertises (or if BlueZ has it connected already); the address is then
        claimed until :meth:`release`."""
        device = await self._already_connected(target)
        if device is not None:
            return device
        waiter = _Waiter(target, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._wakeup.set()
        try:
            return await waiter.found
        finally:
            self._waiters.remove(waiter)
            self._wakeup.set()

    async def _already_connected(self, target: BleTarget) -> BLEDevice | None:
        # BlueZ keeps a link that a process left open (a crash, a restart): the device does not advertise
        # while connected, so it is taken from BlueZ's connected devices instead.
        # Without a service to look for, GAP and GATT: BlueZ lists them for every LE device.
        services = [0x1800, 0x1801] if target.service is None else [target.service]
        bluez: BlueZAdapterArgs = {} if self.adapter is None else {"adapter": self.adapter}
        try:
            adapter = await BleakAdapter.get(bluez=bluez)
            devices = await adapter.get_connected_devices([normalize_uuid_16(s) for s in services])
        except _BLE_FAILURES as exc:
            log.debug("cannot list connected BLE devices: %s", exc)
            return None
        for device in devices:
            address = device.address.upper()
            if address in self._claimed or (target.address is None and address in self._reserved):
                continue
            if target.address is None or address == target.address.upper():
                log.info("BLE device %s is connected already; taking over the link", address)
                self._claimed.add(address)
                return device
        return None

    def release(self, address: str) -> None:
        self._claimed.discard(address.upper())

    @contextlib.contextmanager
    def reserved(self, address: str | None) -> Iterator[None]:
        """Keep links that look for a service away from a device that another link is configured for."""
        if address is None:
            yield
            return
        key = address.upper()
        self._reserved[key] = self._reserved.get(key, 0) + 1
        try:
            yield
        finally:
            self._reserved[key] -= 1
            if not self._reserved[key]:
                del self._reserved[key]

    def watch_removal(self, device_path: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` if BlueZ drops the device object (an unplugged adapter may not say
        "disconnected" first); returns the function that stops watching."""
        self._removal_callbacks.setdefault(device_path, []).append(callback)

        def unwatch() -> None:
            callbacks = self._removal_callbacks.get(device_path, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._removal_callbacks.pop(device_path, None)

        return unwatch

    # -- the scan loop --

    async def run(self) -> NoReturn:
        backoff = Backoff(self.policy.adapter_retry_min_s, self.policy.adapter_retry_max_s)
        while True:
            watch = _Watch(self._on_adapter_change, self._on_device_removed)
            try:
                await watch.open()
                await self._scan_while_wanted(backoff)
            except (BleError, *_BLE_FAILURES) as exc:
                self._failures += 1
                # Say it once, then keep trying quietly: an adapter being reset is expected now and then.
                (log.warning if self._failures == 1 else log.debug)("BLE scanning stopped: %s", exc)
            finally:
                self.scanning = False
                watch.close()
            await self._wait_adapter_or(backoff.next_delay())
            if self._adapter_changed:
                # The adapter came back (or changed again): try at once, and from the shortest delay.
                self._adapter_changed = False
                backoff.reset()

    async def _scan_while_wanted(self, backoff: Backoff) -> None:
        bluez: BlueZScannerArgs = {} if self.adapter is None else {"adapter": self.adapter}
        while True:
            while not self._waiters:
                await self._next_wakeup()
            self._adapter_changed = False
            scanner = BleakScanner(self._on_advertisement, bluez=bluez)
            await scanner.start()
            self.scanning = True
            self._failures = 0
            backoff.reset()
            log.debug("BLE scan started on %s", self.adapter or "the default adapter")
            try:
                while self._waiters and not self._adapter_changed:
                    await self._next_wakeup()
            finally:
                self.scanning = False
                # Stopping fails when the adapter is gone, which is often why the scan ends.
                with contextlib.suppress(*_BLE_FAILURES):
                    await scanner.stop()
            if self._adapter_changed:
                raise BleError(self.adapter or "adapter", "scan", "the adapter changed (removed, reset or powered)")

    async def _next_wakeup(self) -> None:
        await self._wakeup.wait()
        self._wakeup.clear()

    async def _wait_adapter_or(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                while not self._adapter_changed:
                    await self._next_wakeup()

    def _on_adapter_change(self) -> None:
        self._adapter_changed = True
        self._wakeup.set()

    def _on_device_removed(self, path: str) -> None:
        for callback in list(self._removal_callbacks.get(path, ())):
            callback()

    def _on_advertisement(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        address = device.address.upper()
        if address in self._claimed:
            return
        for waiter in self._waiters:
            if waiter.found.done() or not waiter.target.matches(device, advertisement):
                continue
            if waiter.target.address is None and address in self._reserved:
                continue
            self._claimed.add(address)
            waiter.found.set_result(device)
            return


# --- one device -------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _RacpTransfer:
    done: asyncio.Future[bytes]
    values: list[BleValue] = field(default_factory=list)


class BleDeviceLink:
    """Keeps one BLE device connected whenever it is in reach, and reports what it sends.

    ``run(on_event)`` never returns. On each connection ``on_event`` receives the ``read`` values, then
    :class:`BleConnected` once the link is set up (clock written, subscribed), then notified and indicated
    values, and :class:`BleDisconnected` when the link drops; :class:`BleConnectFailed` follows each failed
    connect or setup. It is called from bleak's callbacks, so it must be quick and must not raise.

    ``pair`` pairs on the first connect; without it, the link pairs only when the device refuses a request
    for lack of pairing. Pairing is best-effort: with no agent registered BlueZ pairs "Just Works", so a
    device that needs a passkey must be paired once by a technician (bluetoothctl).
    """

    def __init__(
        self,
        central: BleCentral,
        target: BleTarget,
        profile: BleProfile,
        *,
        name: str,
        timezone: tzinfo = UTC,
        pair: bool = False,
        racp_command: Callable[[], bytes | None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        policy: BlePolicy = DEFAULT_POLICY,
    ) -> None:
        self.central = central
        self.target = target
        self.profile = profile
        self.name = name
        self.timezone = timezone
        self.pair = pair
        self.racp_command = racp_command
        self.clock = clock
        self.policy = policy
        self.address: str | None = None
        self.connected = False
        self._client: BleakClient | None = None
        self._on_event: Callable[[BleEvent], None] = lambda _event: None
        self._transfer: _RacpTransfer | None = None
        self._racp_lock = asyncio.Lock()
        self._pairing_tried = False

    async def run(self, on_event: Callable[[BleEvent], None]) -> NoReturn:
        self._on_event = on_event
        backoff = Backoff(self.policy.reconnect_min_s, self.policy.reconnect_max_s)
        failures = 0
        with self.central.reserved(self.target.address):
            while True:
                device = await self.central.wait_for(self.target)
                self.address = device.address.upper()
                try:
                    lasted = await self._connection(device)
                except BleError as exc:
                    failures += 1
                    (log.warning if failures == 1 else log.debug)("BLE device %s: %s", self.name, exc)
                    self._on_event(BleConnectFailed(self.address, str(exc), failures))
                    await backoff.wait()
                    continue
                finally:
                    self.central.release(device.address)
                failures = 0
                if lasted >= self.policy.stable_link_s:
                    backoff.reset()
                else:
                    # A link that drops at once, again and again, must not become a tight loop.
                    await backoff.wait()

    async def racp(self, command: bytes, *, idle_timeout: float | None = None) -> RacpResult:
        """Write ``command`` to the Record Access Control Point and collect values until its response.

        The transfer fails (BleError) when the link drops or nothing arrives for ``idle_timeout`` seconds.
        """
        client = self._client
        address = self.address or self.target.describe()
        if client is None or not client.is_connected:
            raise BleError(address, "racp", "not connected")
        char = client.services.get_characteristic(normalize_uuid_16(RACP))
        if char is None:
            raise BleError(address, "racp", "the device has no Record Access Control Point")
        idle = self.policy.racp_idle_timeout_s if idle_timeout is None else idle_timeout
        async with self._racp_lock:
            transfer = _RacpTransfer(asyncio.get_running_loop().create_future())
            self._transfer = transfer
            try:
                await client.write_gatt_char(char, command, response=True)
                while not transfer.done.done():
                    seen = len(transfer.values)
                    await asyncio.wait({transfer.done}, timeout=idle)
                    if not transfer.done.done() and len(transfer.values) == seen:
                        raise BleError(address, "racp", f"no record and no response for {idle:g} s")
                response = transfer.done.result()
            except _BLE_FAILURES as exc:
                raise BleError(address, "racp", str(exc), unplugged=not client.is_connected) from exc
            finally:
                self._transfer = None
                transfer.done.cancel()
                if not transfer.done.cancelled():
                    transfer.done.exception()  # a link loss that the write already reported: seen
        return RacpResult(response, tuple(transfer.values))

    # -- one connection --

    async def _connection(self, device: BLEDevice) -> float:
        """Connect, set up, and wait for the link to drop; returns how long it lasted."""
        address = device.address.upper()
        lost = asyncio.Event()

        def on_lost(_client: BleakClient | None = None) -> None:
            lost.set()
            self._fail_transfer(BleError(address, "racp", "the link dropped", unplugged=True))

        try:
            client = await establish_connection(
                BleakClient,
                device,
                self.name,
                disconnected_callback=on_lost,
                max_attempts=self.policy.connect_attempts,
                # bleak pairs only a device that BlueZ does not already have paired.
                pair=self.pair,
            )
        except _BLE_FAILURES as exc:
            raise BleError(address, "connect", str(exc) or type(exc).__name__) from exc
        self._pairing_tried = self.pair
        loop = asyncio.get_running_loop()
        started = loop.time()
        path = device.details.get("path") if isinstance(device.details, dict) else None
        unwatch = self.central.watch_removal(path, on_lost) if isinstance(path, str) else lambda: None
        self._client = client
        try:
            try:
                async with asyncio.timeout(self.policy.setup_timeout_s):
                    await self._set_up(client, address)
            except _BLE_FAILURES as exc:
                raise BleError(address, "setup", str(exc) or type(exc).__name__, unplugged=lost.is_set()) from exc
            # Connected means usable: read, clock set and subscribed.
            self.connected = True
            self._on_event(BleConnected(address, device.name))
            log.info("BLE device %s connected (%s)", self.name, address)
            await self._fetch_stored_records(address)
            await lost.wait()
        finally:
            unwatch()
            self._client = None
            self._fail_transfer(BleError(address, "racp", "the link dropped", unplugged=True))
            reason = "link lost" if lost.is_set() else "closed"
            with contextlib.suppress(*_BLE_FAILURES):
                async with asyncio.timeout(self.policy.disconnect_timeout_s):
                    await client.disconnect()
            if self.connected:
                self.connected = False
                log.info("BLE device %s disconnected (%s): %s", self.name, address, reason)
                self._on_event(BleDisconnected(address, reason))
        return loop.time() - started

    async def _set_up(self, client: BleakClient, address: str) -> None:
        services = client.services
        profile = self.profile
        if services.get_service(normalize_uuid_16(profile.service)) is None:
            raise BleError(address, "setup", f"no service 0x{profile.service:04X}: not the configured kind of device")
        for uuid in profile.read:
            char = services.get_characteristic(normalize_uuid_16(uuid))
            if char is None:
                log.debug("BLE device %s has no characteristic 0x%04X to read", self.name, uuid)
                continue
            data = await self._with_pairing(client, functools.partial(client.read_gatt_char, char))
            self._on_event(BleValue(uuid, bytes(data)))
        if profile.current_time:
            await self._set_clock(client)
        subscriptions = [*profile.notify, *profile.indicate]
        if profile.racp and RACP not in subscriptions:
            subscriptions.append(RACP)
        for uuid in subscriptions:
            char = services.get_characteristic(normalize_uuid_16(uuid))
            if char is None:
                log.debug("BLE device %s has no characteristic 0x%04X to subscribe to", self.name, uuid)
                continue
            await self._with_pairing(client, functools.partial(client.start_notify, char, self._on_value))

    async def _set_clock(self, client: BleakClient) -> None:
        char = client.services.get_characteristic(normalize_uuid_16(CURRENT_TIME))
        if char is None or not {"write", "write-without-response"} & set(char.properties):
            log.debug("BLE device %s offers no writable Current Time", self.name)
            return
        value = current_time_bytes(self.clock().astimezone(self.timezone))
        try:
            await self._with_pairing(
                client, lambda: client.write_gatt_char(char, value, response="write" in char.properties)
            )
        except BleakError as exc:
            # A device keeps measuring with a wrong clock; its readings get flagged, so carry on.
            log.warning("BLE device %s: could not set its clock: %s", self.name, exc)

    async def _fetch_stored_records(self, address: str) -> None:
        if not self.profile.racp or self.racp_command is None:
            return
        command = self.racp_command()
        if command is None:
            return
        try:
            result = await self.racp(command)
        except BleError as exc:
            log.warning("BLE device %s: fetching stored records failed: %s", self.name, exc)
            return
        log.info("BLE device %s (%s): %d values in the RACP transfer", self.name, address, len(result.values))

    async def _with_pairing(self, client: BleakClient, operation: Callable[[], Awaitable[_T]]) -> _T:
        """Run a GATT request; if the device refuses it for lack of pairing, pair once and run it again."""
        try:
            return await operation()
        except (BleakDBusError, BleakGATTProtocolError) as exc:
            if self._pairing_tried or not _needs_pairing(exc):
                raise
        self._pairing_tried = True
        log.info("BLE device %s asks to be paired; pairing", self.name)
        await client.pair()
        return await operation()

    def _on_value(self, characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        uuid = uuid16(characteristic.uuid)
        if uuid is None:
            return
        value = BleValue(uuid, bytes(data))
        transfer = self._transfer
        if transfer is not None and not transfer.done.done():
            if uuid == RACP and data and data[0] in _RACP_FINAL_OPCODES:
                transfer.done.set_result(bytes(data))
            else:
                transfer.values.append(value)
        self._on_event(value)

    def _fail_transfer(self, error: BleError) -> None:
        transfer = self._transfer
        if transfer is not None and not transfer.done.done():
            transfer.done.set_exception(error)


def _needs_pairing(exc: BleakDBusError | BleakGATTProtocolError) -> bool:
    if isinstance(exc, BleakGATTProtocolError):
        return exc.code in _PAIRING_ATT_CODES
    # bluetoothd turns the ATT "insufficient authentication/encryption" errors into NotPermitted "Not paired".
    return exc.dbus_error in _PAIRING_ERRORS and (
        exc.dbus_error == "org.bluez.Error.NotAuthorized" or "paired" in str(exc.dbus_error_details or "").lower()
    )
