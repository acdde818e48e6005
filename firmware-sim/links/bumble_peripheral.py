"""A simulated BLE device as a real GATT peripheral on bumble: advertising, notifications and indications, Current
Time writes and a glucose meter's RACP, over any HCI transport bumble opens (a USB dongle, an HCI socket, a UART),
or over bumble's virtual controllers in tests.

bumble is an optional dependency (the ``sim`` extra); this module imports it, so import the module only when
bumble is wanted (``links.ble.require_bumble`` says what is missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence

from bumble import gatt
from bumble.att import ATT_Error, ErrorCode
from bumble.core import UUID, AdvertisingData, BaseBumbleError
from bumble.device import Connection, Device
from bumble.hci import Address
from bumble.transport import open_transport

from healthhut.drivers.base import DecodeError
from healthhut.drivers.gatt.racp import RECORD_ACCESS_CONTROL_POINT, OpCode, Operator, ResponseCode, decode_racp
from healthhut.firmware_sim.errors import LinkError
from healthhut.firmware_sim.gatt_devices import CharacteristicSpec, GattDevice, StoredRecord
from healthhut.firmware_sim.links.ble import LinkState

log = logging.getLogger(__name__)

# Advertising Data flags: LE General Discoverable Mode, BR/EDR Not Supported (Core Supplement, Part A, 1.3).
ADVERTISING_FLAGS = AdvertisingData.LE_GENERAL_DISCOVERABLE_MODE_FLAG | AdvertisingData.BR_EDR_NOT_SUPPORTED_FLAG
# A health device wakes and advertises briefly, so it advertises fast (100 ms, Core Vol 6, Part B, 4.4.2.2).
ADVERTISING_INTERVAL_MS = 100.0
CCCD_NOTIFY, CCCD_INDICATE = 0x01, 0x02
RACP_OP_CODES = frozenset(OpCode)

_PROPERTIES = {
    "read": gatt.Characteristic.Properties.READ,
    "write": gatt.Characteristic.Properties.WRITE,
    "notify": gatt.Characteristic.Properties.NOTIFY,
    "indicate": gatt.Characteristic.Properties.INDICATE,
}


def advertising_data(device: GattDevice) -> bytes:
    """What the device advertises: flags, its profile's service UUID and its name."""
    structures = [
        (AdvertisingData.FLAGS, bytes([ADVERTISING_FLAGS])),
        (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, device.profile.service.to_bytes(2, "little")),
        (AdvertisingData.COMPLETE_LOCAL_NAME, device.local_name.encode()),
    ]
    return bytes(AdvertisingData(structures))


class BumblePeripheral:
    """``device``'s GATT table served by a powered-on bumble ``Device``; it satisfies ``links.ble.Peripheral``.

    Values are notified or indicated as the client's CCCD asks; a write to the Current Time is kept (and read
    back); a write to the RACP starts a transfer of the records :meth:`set_records` gave, as a meter does.
    """

    def __init__(self, radio: Device, device: GattDevice) -> None:
        self.radio = radio
        self.device = device
        self.address = str(radio.static_address)
        self._advertising_data = advertising_data(device)
        self._characteristics: dict[int, gatt.Characteristic[bytes]] = {}
        self._values: dict[int, bytes] = {}
        self._writes: dict[int, list[bytes]] = {}
        self._records: list[StoredRecord] = []
        self._racp_drop_after: int | None = None
        self._racp_task: asyncio.Task[None] | None = None
        # From a request until its response is on its way: the procedure a second request must not interrupt.
        self._racp_busy = False
        services = [
            gatt.Service(UUID.from_16_bits(service.uuid), [self._characteristic(c) for c in service.characteristics])
            for service in device.services()
        ]
        radio.gatt_server.add_services(services)

    def _characteristic(self, spec: CharacteristicSpec) -> gatt.Characteristic[bytes]:
        properties = gatt.Characteristic.Properties(0)
        for flag in spec.flags:
            properties |= _PROPERTIES[flag]
        permissions = gatt.Characteristic.Permissions(0)
        if "read" in spec.flags:
            permissions |= gatt.Characteristic.Permissions.READABLE
        if "write" in spec.flags:
            permissions |= gatt.Characteristic.Permissions.WRITEABLE
        uuid = spec.uuid
        self._values[uuid] = spec.value

        def read(_connection: Connection) -> bytes:
            return self._values[uuid]

        def write(connection: Connection, value: bytes) -> None:
            self._written(connection, uuid, value)

        characteristic: gatt.Characteristic[bytes] = gatt.Characteristic(
            UUID.from_16_bits(uuid), properties, permissions, gatt.CharacteristicValue(read=read, write=write)
        )
        self._characteristics[uuid] = characteristic
        return characteristic

    # -- what a client sees ------------------------------------------------------------------------------

    def writes(self, characteristic: int) -> list[bytes]:
        """Every value a client wrote to ``characteristic``, oldest first."""
        return list(self._writes.get(characteristic, []))

    def value(self, characteristic: int) -> bytes:
        return self._values[characteristic]

    def _connection(self) -> Connection | None:
        return next(iter(self.radio.connections.values()), None)

    def _cccd(self, connection: Connection, characteristic: int) -> int:
        """The CCCD bits the client of ``connection`` wrote for ``characteristic`` (0: not subscribed)."""
        handle = self._characteristics[characteristic].handle
        cccd = self.radio.gatt_server.subscribers.get(connection, {}).get(handle, b"\0\0")
        return cccd[0] if len(cccd) == 2 else 0

    def _written(self, connection: Connection, characteristic: int, value: bytes) -> None:
        if characteristic == RECORD_ACCESS_CONTROL_POINT:
            self._racp_request(connection, value)
        self._writes.setdefault(characteristic, []).append(value)
        self._values[characteristic] = value
        log.debug("peripheral %s write %04x %s", self.address, characteristic, value.hex())

    # -- links.ble.Peripheral -----------------------------------------------------------------------------

    async def state(self) -> LinkState:
        return LinkState(connected=self._connection() is not None, advertising=bool(self.radio.is_advertising))

    async def push(self, characteristic: int, value: bytes) -> bool:
        connection = self._connection()
        if connection is None:
            return False
        return await self._send(connection, characteristic, value)

    async def _send(self, connection: Connection, characteristic: int, value: bytes) -> bool:
        """Indicate ``value`` (waiting for the confirmation) or notify it, as the client subscribed; False if
        it has not, or the link went meanwhile."""
        cccd = self._cccd(connection, characteristic)
        attribute = self._characteristics[characteristic]
        self._values[characteristic] = value
        if cccd & CCCD_INDICATE:
            sent = self.radio.indicate_subscriber(connection, attribute, value)
        elif cccd & CCCD_NOTIFY:
            sent = self.radio.notify_subscriber(connection, attribute, value)
        else:
            return False
        try:
            return await _unless_disconnected(connection, sent)
        except (BaseBumbleError, TimeoutError) as exc:
            log.debug("peripheral %s: %04x not delivered: %s", self.address, characteristic, exc)
            return False

    async def advertise(self, advertising: bool = True) -> None:
        if advertising:
            await self.radio.start_advertising(
                advertising_data=self._advertising_data,
                advertising_interval_min=ADVERTISING_INTERVAL_MS,
                advertising_interval_max=ADVERTISING_INTERVAL_MS,
            )
        else:
            await self.radio.stop_advertising()

    async def drop_link(self) -> None:
        connection = self._connection()
        if connection is not None:
            # The client may be ending it at the same moment; then it is down already, as wanted.
            with contextlib.suppress(BaseBumbleError):
                await connection.disconnect()

    async def set_records(self, records: Sequence[StoredRecord]) -> None:
        self._records = list(records)

    async def fail_racp_after(self, records: int | None) -> None:
        self._racp_drop_after = records

    # -- RACP (Glucose Service 1.0, 3.2.3) ------------------------------------------------------------------

    def _racp_request(self, connection: Connection, request: bytes) -> None:
        """Check a write to the RACP (an ATT error refuses it) and answer it after the write response."""
        if not self._cccd(connection, RECORD_ACCESS_CONTROL_POINT) & CCCD_INDICATE:
            raise ATT_Error(ErrorCode.CCCD_IMPROPERLY_CONFIGURED)
        if self._racp_busy and request[:1] != bytes([OpCode.ABORT_OPERATION]):
            raise ATT_Error(ErrorCode.PROCEDURE_ALREADY_IN_PROGRESS)
        if self._racp_task is not None:
            self._racp_task.cancel()
        self._racp_busy = True
        self._racp_task = asyncio.get_running_loop().create_task(
            self._racp_answer(connection, request), name=f"racp:{self.address}"
        )

    async def _racp_answer(self, connection: Connection, request: bytes) -> None:
        try:
            await self._racp_procedure(connection, request)
        finally:
            # A link lost in the middle ends the procedure too; an aborted one's successor is not this task.
            if self._racp_task is asyncio.current_task():
                self._racp_busy = False

    async def _racp_procedure(self, connection: Connection, request: bytes) -> None:
        op_code = request[0] if request else 0
        try:
            command = decode_racp(request)
        except DecodeError:
            code = ResponseCode.INVALID_OPERATOR if op_code in RACP_OP_CODES else ResponseCode.OP_CODE_NOT_SUPPORTED
            await self._racp_response(connection, op_code, code)
            return
        if command.op_code == OpCode.ABORT_OPERATION:
            await self._racp_response(connection, op_code, ResponseCode.SUCCESS)
            return
        selected = select_records(self._records, command.operator, command.sequence_filter)
        if selected is None:
            await self._racp_response(connection, op_code, ResponseCode.OPERATOR_NOT_SUPPORTED)
        elif command.op_code == OpCode.REPORT_STORED_RECORDS:
            await self._report(connection, selected)
        elif command.op_code == OpCode.REPORT_NUMBER_OF_STORED_RECORDS:
            count = bytes([OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, Operator.NULL]) + len(selected).to_bytes(
                2, "little"
            )
            self._racp_busy = False
            await self._send(connection, RECORD_ACCESS_CONTROL_POINT, count)
        elif command.op_code == OpCode.DELETE_STORED_RECORDS:
            self._records = [r for r in self._records if r not in selected]
            found = ResponseCode.SUCCESS if selected else ResponseCode.NO_RECORDS_FOUND
            await self._racp_response(connection, op_code, found)
        else:
            await self._racp_response(connection, op_code, ResponseCode.OP_CODE_NOT_SUPPORTED)

    async def _report(self, connection: Connection, records: list[StoredRecord]) -> None:
        for index, record in enumerate(records):
            if self._racp_drop_after is not None and index >= self._racp_drop_after:
                log.info("peripheral %s drops the link after %d records (fault)", self.address, index)
                self._racp_busy = False
                await self.drop_link()
                return
            for characteristic, value in record.values:
                await self._send(connection, characteristic, value)
        found = ResponseCode.SUCCESS if records else ResponseCode.NO_RECORDS_FOUND
        await self._racp_response(connection, OpCode.REPORT_STORED_RECORDS, found)

    async def _racp_response(self, connection: Connection, op_code: int, code: ResponseCode) -> None:
        response = bytes([OpCode.RESPONSE_CODE, Operator.NULL, op_code, code])
        self._racp_busy = False
        await self._send(connection, RECORD_ACCESS_CONTROL_POINT, response)


async def _unless_disconnected(connection: Connection, sending: Awaitable[None]) -> bool:
    """Await ``sending``; False as soon as ``connection`` ends first. (bumble forgets an indication's pending
    confirmation on a disconnection, so the indication alone would wait for the 30 s GATT timeout.)"""
    if connection.handle not in connection.device.connections:
        return False
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_gone(*_: object) -> None:
        if not gone.done():
            gone.set_result(None)

    connection.on(connection.EVENT_DISCONNECTION, on_gone)
    task = asyncio.ensure_future(sending)
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        connection.remove_listener(connection.EVENT_DISCONNECTION, on_gone)
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()
    return True


def select_records(
    records: Sequence[StoredRecord], operator: int, sequence_filter: tuple[int, ...] | None
) -> list[StoredRecord] | None:
    """The records an RACP operator picks (sequence-number filters only); None for an operator not supported."""
    if operator == Operator.ALL_RECORDS:
        return list(records)
    if operator == Operator.FIRST_RECORD:
        return list(records[:1])
    if operator == Operator.LAST_RECORD:
        return list(records[-1:])
    if not sequence_filter:
        return None
    if operator == Operator.LESS_THAN_OR_EQUAL_TO:
        return [r for r in records if r.sequence_number <= sequence_filter[0]]
    if operator == Operator.GREATER_THAN_OR_EQUAL_TO:
        return [r for r in records if r.sequence_number >= sequence_filter[0]]
    if operator == Operator.WITHIN_RANGE_OF and len(sequence_filter) == 2:
        return [r for r in records if sequence_filter[0] <= r.sequence_number <= sequence_filter[1]]
    return None


@contextlib.asynccontextmanager
async def bumble_peripheral(transport: str, device: GattDevice, address: str) -> AsyncIterator[BumblePeripheral]:
    """``device`` on the HCI controller bumble reaches through ``transport`` (a bumble transport name, e.g.
    ``usb:0``), powered on and not yet advertising. LinkError says why the controller cannot be used."""
    try:
        hci = await open_transport(transport)
    except (BaseBumbleError, OSError, ValueError) as exc:
        raise LinkError("ble", transport, f"bumble cannot open the HCI transport: {exc}") from exc
    try:
        radio = Device.with_hci(device.local_name, Address(address), hci.source, hci.sink)
        peripheral = BumblePeripheral(radio, device)
        try:
            await radio.power_on()
        except (BaseBumbleError, OSError, TimeoutError) as exc:
            raise LinkError("ble", transport, f"the HCI controller did not start: {exc}") from exc
        try:
            yield peripheral
        finally:
            with contextlib.suppress(BaseBumbleError, OSError, TimeoutError):
                await radio.power_off()
    finally:
        await hci.close()
