"""A fake bluetoothd for python-dbusmock: adapters, LE peripherals with GATT, and control hooks for tests.

Run by :mod:`healthhut.devstack.fakebluez` as ``python -m dbusmock --system -t <this file>``; never imported.
"""

# No "from __future__ import annotations": dbusmock execs this file outside sys.modules, where dataclasses
# cannot resolve string annotations.
import ctypes
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dbus
import dbus.lowlevel
import dbus.service
from dbusmock import OBJECT_MANAGER_IFACE

BUS_NAME = "org.bluez"
MAIN_OBJ = "/"
SYSTEM_BUS = True
IS_OBJECT_MANAGER = True

CONTROL_IFACE = "org.healthhut.FakeBlueZ1"
AGENT_MANAGER_IFACE = "org.bluez.AgentManager1"
PROFILE_MANAGER_IFACE = "org.bluez.ProfileManager1"
ADAPTER_IFACE = "org.bluez.Adapter1"
DEVICE_IFACE = "org.bluez.Device1"
SERVICE_IFACE = "org.bluez.GattService1"
CHARACTERISTIC_IFACE = "org.bluez.GattCharacteristic1"
DESCRIPTOR_IFACE = "org.bluez.GattDescriptor1"
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"

SIG_BASE = "-0000-1000-8000-00805f9b34fb"
RACP_UUID = f"00002a52{SIG_BASE}"
CCCD_UUID = f"00002902{SIG_BASE}"
# A connect to a peripheral that does not advertise fails like a real LE create-connection timeout. Not
# "le-connection-abort-by-local": bleak waits for a Connected change after that one.
CONNECT_FAILURE = "Software caused connection abort"

# RACP (Glucose Service 1.0, 3.2.3): op codes, operators and response codes the fake understands.
RACP_REPORT, RACP_DELETE, RACP_ABORT, RACP_REPORT_COUNT = 0x01, 0x02, 0x03, 0x04
RACP_COUNT_RESPONSE, RACP_RESPONSE = 0x05, 0x06
RACP_SUCCESS, RACP_OP_NOT_SUPPORTED, RACP_NO_RECORDS = 0x01, 0x02, 0x06

CONNECT_REPLY_DELAY_MS = 20

GSourceFunc = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


def full_uuid(uuid: str) -> str:
    uuid = str(uuid).lower()
    return f"0000{uuid}{SIG_BASE}" if len(uuid) == 4 else uuid


def byte_array(data: bytes | list[int]) -> Any:
    return dbus.Array([dbus.Byte(b) for b in bytes(data)], signature="y")


def dbus_error(name: str, message: str) -> Any:
    return dbus.exceptions.DBusException(message, name=f"org.bluez.Error.{name}")


@dataclass
class Characteristic:
    uuid: str
    flags: list[str]
    value: bytes
    path: str = ""
    cccd_path: str | None = None
    notifying: bool = False
    writes: list[bytes] = field(default_factory=list)
    obj: Any = None


@dataclass
class Service:
    uuid: str
    characteristics: list[Characteristic]
    path: str = ""
    obj: Any = None


@dataclass
class Peripheral:
    path: str
    adapter: str
    address: str
    name: str
    advertised_uuids: list[str]
    manufacturer_data: dict[int, bytes]
    service_data: dict[str, bytes]
    services: list[Service]
    pairing_required: bool
    rssi: int
    advertising: bool = True
    connected: bool = False
    paired: bool = False
    obj: Any = None
    # Each stored record (for RACP) is its sequence number and the notifications that carry it.
    records: list[tuple[int, list[tuple[str, bytes]]]] = field(default_factory=list)
    racp_drop_after: int | None = None
    adverts: int = 0

    def characteristics(self) -> Iterator[Characteristic]:
        for service in self.services:
            yield from service.characteristics

    def characteristic(self, uuid: str) -> Characteristic:
        wanted = full_uuid(uuid)
        for char in self.characteristics():
            if char.uuid == wanted:
                return char
        raise dbus_error("DoesNotExist", f"{self.address} has no characteristic {wanted}")


@dataclass
class Adapter:
    name: str
    path: str
    address: str
    obj: Any
    # BlueZ keeps one discovery session per D-Bus client; discovery runs while any client has one.
    discovery_sessions: dict[str, Any] = field(default_factory=dict)


class State:
    def __init__(self) -> None:
        self.root: Any = None
        self.adapters: dict[str, Adapter] = {}
        self.peripherals: dict[str, Peripheral] = {}
        self.glib: Any = None
        # GLib holds only raw pointers to these callbacks; keeping them here keeps them alive.
        self.ticker: Any = None
        self.pending: list[Any] = []
        self.fired: list[Any] = []


STATE = State()


# --- D-Bus plumbing ------------------------------------------------------------------------------------


def log(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def export(
    obj: Any,
    interface: str,
    name: str,
    in_sig: str,
    out_sig: str,
    function: Callable[..., Any],
    *,
    reply_later: bool = False,
    sender: bool = False,
) -> None:
    """Serve ``function`` as ``interface.name`` on one mock object (not on every object of the class)."""
    options: dict[str, Any] = {}
    if reply_later:
        # The method replies through these callbacks, so it can answer first and send signals after,
        # in the order bluetoothd does (a write's reply, then the indications it caused).
        options["async_callbacks"] = ("reply", "error")
    if sender:
        options["sender_keyword"] = "sender"
    function.__name__ = name
    method = dbus.service.method(interface, in_signature=in_sig, out_signature=out_sig, **options)(function)
    obj.methods.setdefault(interface, {})[name] = (in_sig, out_sig, "", method)


def signal(obj: Any, interface: str, member: str, signature: str, *args: Any) -> None:
    message = dbus.lowlevel.SignalMessage(obj.path, interface, member)
    message.append(*args, signature=signature)
    for connection, *_where in obj.locations:
        connection.send_message(message)


def properties_changed(obj: Any, interface: str, changed: dict[str, Any]) -> None:
    obj.props[interface].update(changed)
    signal(
        obj,
        PROPERTIES_IFACE,
        "PropertiesChanged",
        "sa{sv}as",
        interface,
        dbus.Dictionary(changed, signature="sv"),
        dbus.Array([], signature="s"),
    )


def add_object(path: str, interface: str, props: dict[str, Any]) -> Any:
    root = STATE.root
    root.AddObject(path, interface, props, [])
    obj = root_objects()[path]
    signal(
        root,
        OBJECT_MANAGER_IFACE,
        "InterfacesAdded",
        "oa{sa{sv}}",
        dbus.ObjectPath(path),
        dbus.Dictionary({interface: dbus.Dictionary(props, signature="sv")}, signature="sa{sv}"),
    )
    return obj


def remove_object(obj: Any) -> None:
    interfaces = [name for name in obj.props if name != ""]
    STATE.root.RemoveObject(obj.path)
    signal(
        STATE.root,
        OBJECT_MANAGER_IFACE,
        "InterfacesRemoved",
        "oas",
        dbus.ObjectPath(obj.path),
        dbus.Array(interfaces, signature="s"),
    )


def root_objects() -> dict[str, Any]:
    from dbusmock import mockobject

    objects: dict[str, Any] = mockobject.objects
    return objects


def later(delay_ms: int, function: Callable[[], None]) -> None:
    """Run ``function`` once, ``delay_ms`` from now, on the mock's GLib main loop."""
    # A callback may not be freed while GLib is still inside it, so fired ones go at the next call.
    STATE.fired.clear()

    def fire(_data: Any) -> int:
        STATE.pending.remove(source)
        STATE.fired.append(source)
        try:
            function()
        except Exception as exc:  # noqa: BLE001 - nothing above a GLib callback would see it
            log(f"deferred call failed: {exc!r}")
        return 0  # once

    source = GSourceFunc(fire)
    STATE.pending.append(source)
    STATE.glib.g_timeout_add(delay_ms, source, None)


# --- adapters -------------------------------------------------------------------------------------------


def adapter_props(name: str, address: str) -> dict[str, Any]:
    return {
        "Address": dbus.String(address),
        "AddressType": dbus.String("public"),
        "Name": dbus.String(f"healthhut-{name}"),
        "Alias": dbus.String(f"healthhut-{name}"),
        "Class": dbus.UInt32(0),
        "Powered": dbus.Boolean(True),
        "Discoverable": dbus.Boolean(False),
        "DiscoverableTimeout": dbus.UInt32(180),
        "Pairable": dbus.Boolean(True),
        "PairableTimeout": dbus.UInt32(0),
        "Discovering": dbus.Boolean(False),
        "UUIDs": dbus.Array([full_uuid("1800"), full_uuid("1801")], signature="s"),
        "Modalias": dbus.String("usb:v1D6Bp0246d0542"),
        # bleak picks the default adapter among those with the "central" role.
        "Roles": dbus.Array(["central", "peripheral"], signature="s"),
        "ExperimentalFeatures": dbus.Array([], signature="s"),
    }


def add_adapter(_root: Any, name: str, address: str) -> Any:
    path = f"/org/bluez/{name}"
    if name in STATE.adapters:
        raise dbus_error("AlreadyExists", f"adapter {name} exists")
    obj = add_object(path, ADAPTER_IFACE, adapter_props(name, address))
    adapter = Adapter(name=name, path=path, address=address, obj=obj)
    STATE.adapters[name] = adapter
    export(obj, ADAPTER_IFACE, "StartDiscovery", "", "", start_discovery, sender=True)
    export(obj, ADAPTER_IFACE, "StopDiscovery", "", "", stop_discovery, sender=True)
    export(obj, ADAPTER_IFACE, "SetDiscoveryFilter", "a{sv}", "", set_discovery_filter, sender=True)
    export(obj, ADAPTER_IFACE, "GetDiscoveryFilters", "", "as", get_discovery_filters)
    export(obj, ADAPTER_IFACE, "RemoveDevice", "o", "", remove_device)
    log(f"adapter {name} added")
    return dbus.ObjectPath(path)


def remove_adapter(_root: Any, name: str) -> None:
    """Unplug: connected peripherals drop their link, then every device object and the adapter vanish."""
    adapter = STATE.adapters.pop(name, None)
    if adapter is None:
        raise dbus_error("DoesNotExist", f"no adapter {name}")
    for peripheral in STATE.peripherals.values():
        if peripheral.adapter == name:
            if peripheral.connected:
                drop(peripheral, "org.bluez.Reason.Local")
            unexport_device(peripheral)
    remove_object(adapter.obj)
    log(f"adapter {name} removed")


def set_powered(_root: Any, name: str, powered: bool) -> None:
    """Power the adapter off (links drop, discovery ends) or on again, as a reset does."""
    adapter = STATE.adapters.get(name)
    if adapter is None:
        raise dbus_error("DoesNotExist", f"no adapter {name}")
    if not powered:
        for peripheral in STATE.peripherals.values():
            if peripheral.adapter == name and peripheral.connected:
                drop(peripheral, "org.bluez.Reason.Local")
        adapter.discovery_sessions.clear()
        set_discovering(adapter)
    properties_changed(adapter.obj, ADAPTER_IFACE, {"Powered": dbus.Boolean(powered)})
    log(f"adapter {name} powered {'on' if powered else 'off'}")


def adapter_of(obj: Any) -> Adapter:
    for adapter in STATE.adapters.values():
        if adapter.obj is obj:
            return adapter
    raise dbus_error("DoesNotExist", f"no adapter at {obj.path}")


def set_discovering(adapter: Adapter) -> None:
    discovering = bool(adapter.discovery_sessions)
    if bool(adapter.obj.props[ADAPTER_IFACE]["Discovering"]) != discovering:
        properties_changed(adapter.obj, ADAPTER_IFACE, {"Discovering": dbus.Boolean(discovering)})


def start_discovery(obj: Any, sender: str) -> None:
    adapter = adapter_of(obj)
    if not adapter.obj.props[ADAPTER_IFACE]["Powered"]:
        raise dbus_error("NotReady", "Resource Not Ready")
    if sender in adapter.discovery_sessions:
        raise dbus_error("InProgress", "Operation already in progress")
    adapter.discovery_sessions[sender] = {}
    set_discovering(adapter)


def stop_discovery(obj: Any, sender: str) -> None:
    adapter = adapter_of(obj)
    if sender not in adapter.discovery_sessions:
        raise dbus_error("Failed", "No discovery started")
    del adapter.discovery_sessions[sender]
    set_discovering(adapter)


def set_discovery_filter(obj: Any, discovery_filter: Any, sender: str) -> None:
    # The filter only narrows which advertisements a client hears; every client here hears all of them.
    adapter_of(obj)
    _ = (discovery_filter, sender)


def get_discovery_filters(_obj: Any) -> Any:
    return dbus.Array(["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable"], signature="s")


def remove_device(obj: Any, path: str) -> None:
    adapter_of(obj)
    peripheral = STATE.peripherals.get(str(path))
    if peripheral is None or peripheral.obj is None:
        raise dbus_error("DoesNotExist", "Does Not Exist")
    if peripheral.connected:
        drop(peripheral)
    unexport_device(peripheral)


# --- peripherals ----------------------------------------------------------------------------------------


def device_props(peripheral: Peripheral) -> dict[str, Any]:
    return {
        "Address": dbus.String(peripheral.address),
        "AddressType": dbus.String("public"),
        "Name": dbus.String(peripheral.name),
        "Alias": dbus.String(peripheral.name),
        "Adapter": dbus.ObjectPath(f"/org/bluez/{peripheral.adapter}"),
        "Paired": dbus.Boolean(peripheral.paired),
        "Bonded": dbus.Boolean(peripheral.paired),
        "Trusted": dbus.Boolean(False),
        "Blocked": dbus.Boolean(False),
        "LegacyPairing": dbus.Boolean(False),
        "Connected": dbus.Boolean(peripheral.connected),
        "ServicesResolved": dbus.Boolean(peripheral.connected),
        "UUIDs": dbus.Array(peripheral.advertised_uuids, signature="s"),
        "RSSI": dbus.Int16(peripheral.rssi),
        "TxPower": dbus.Int16(0),
        # Dicts, as bluetoothd sends them (the stock template's empty arrays break bleak's scanner).
        "ManufacturerData": dbus.Dictionary(
            {dbus.UInt16(k): byte_array(v) for k, v in peripheral.manufacturer_data.items()}, signature="qv"
        ),
        "ServiceData": dbus.Dictionary(
            {dbus.String(k): byte_array(v) for k, v in peripheral.service_data.items()}, signature="sv"
        ),
        "AdvertisingFlags": byte_array(b"\x06"),
        "WakeAllowed": dbus.Boolean(False),
    }


def add_peripheral(
    _root: Any, adapter: str, address: str, name: str, advertised: Any, services: Any, options: Any
) -> Any:
    """Add an LE peripheral. ``services`` is a(sa(sasay)): service UUID, then (UUID, flags, value) per
    characteristic. The device object appears, as in bluetoothd, once a discovery sees it advertise."""
    path = f"/org/bluez/{adapter}/dev_{address.upper().replace(':', '_')}"
    if path in STATE.peripherals:
        raise dbus_error("AlreadyExists", f"peripheral {address} exists")
    peripheral = Peripheral(
        path=path,
        adapter=str(adapter),
        address=str(address).upper(),
        name=str(name),
        advertised_uuids=[full_uuid(u) for u in advertised],
        manufacturer_data={int(k): bytes(v) for k, v in options.get("manufacturer_data", {}).items()},
        service_data={full_uuid(k): bytes(v) for k, v in options.get("service_data", {}).items()},
        services=[
            Service(
                uuid=full_uuid(service_uuid),
                characteristics=[
                    Characteristic(uuid=full_uuid(uuid), flags=[str(f) for f in flags], value=bytes(value))
                    for uuid, flags, value in chars
                ],
            )
            for service_uuid, chars in services
        ],
        pairing_required=bool(options.get("pairing_required", False)),
        rssi=int(options.get("rssi", -60)),
        advertising=bool(options.get("advertising", True)),
    )
    assign_handles(peripheral)
    STATE.peripherals[path] = peripheral
    if options.get("known", False):
        export_device(peripheral)
    log(f"peripheral {address} added")
    return dbus.ObjectPath(path)


def assign_handles(peripheral: Peripheral) -> None:
    # bleak reads attribute handles from the last four hex digits of each object path.
    handle = 0x000A
    for service in peripheral.services:
        service.path = f"{peripheral.path}/service{handle:04x}"
        handle += 1
        for char in service.characteristics:
            char.path = f"{service.path}/char{handle:04x}"
            handle += 2  # declaration and value
            if "notify" in char.flags or "indicate" in char.flags:
                char.cccd_path = f"{char.path}/desc{handle:04x}"
                handle += 1


def export_device(peripheral: Peripheral) -> None:
    if STATE.adapters.get(peripheral.adapter) is None or peripheral.obj is not None:
        return
    obj = add_object(peripheral.path, DEVICE_IFACE, device_props(peripheral))
    peripheral.obj = obj
    export(obj, DEVICE_IFACE, "Connect", "", "", device_connect, reply_later=True)
    export(obj, DEVICE_IFACE, "Disconnect", "", "", device_disconnect, reply_later=True)
    export(obj, DEVICE_IFACE, "Pair", "", "", device_pair)
    export(obj, DEVICE_IFACE, "CancelPairing", "", "", lambda _obj: None)
    export(obj, DEVICE_IFACE, "ConnectProfile", "s", "", lambda _obj, _uuid: None)
    export(obj, DEVICE_IFACE, "DisconnectProfile", "s", "", lambda _obj, _uuid: None)


def unexport_device(peripheral: Peripheral) -> None:
    if peripheral.obj is not None:
        remove_object(peripheral.obj)
        peripheral.obj = None


def peripheral_at(path: str) -> Peripheral:
    peripheral = STATE.peripherals.get(str(path))
    if peripheral is None:
        raise dbus_error("DoesNotExist", f"no peripheral at {path}")
    return peripheral


def device_connect(obj: Any, reply: Callable[[], None], error: Callable[[Exception], None]) -> None:
    peripheral = peripheral_at(obj.path)
    if peripheral.connected:
        error(dbus_error("AlreadyConnected", "Already Connected"))
        return
    if not peripheral.advertising:
        error(dbus_error("Failed", CONNECT_FAILURE))
        return
    peripheral.connected = True
    # Peripherals stop advertising once connected; they advertise again when told to (a new measurement).
    peripheral.advertising = False
    properties_changed(obj, DEVICE_IFACE, {"Connected": dbus.Boolean(True)})
    export_gatt(peripheral)
    properties_changed(obj, DEVICE_IFACE, {"ServicesResolved": dbus.Boolean(True)})
    log(f"peripheral {peripheral.address} connected")
    # bluetoothd answers Connect well after these signals. Clients read replies and signals on different
    # connections, so an immediate reply could overtake them (bleak would then see Connected still false).
    later(CONNECT_REPLY_DELAY_MS, reply)


def device_disconnect(obj: Any, reply: Callable[[], None], error: Callable[[Exception], None]) -> None:
    peripheral = peripheral_at(obj.path)
    if not peripheral.connected:
        error(dbus_error("NotConnected", "Not Connected"))
        return
    reply()
    drop(peripheral, "org.bluez.Reason.Local")


def device_pair(obj: Any) -> None:
    peripheral = peripheral_at(obj.path)
    if peripheral.paired:
        raise dbus_error("AlreadyExists", "Already Exists")
    if not peripheral.connected and not peripheral.advertising:
        raise dbus_error("ConnectionAttemptFailed", "Page Timeout")
    peripheral.paired = True
    properties_changed(obj, DEVICE_IFACE, {"Paired": dbus.Boolean(True), "Bonded": dbus.Boolean(True)})
    log(f"peripheral {peripheral.address} paired")


def drop(peripheral: Peripheral, reason: str = "org.bluez.Reason.Timeout") -> None:
    """The link ends: services unresolved, disconnected, and (not bonded) the GATT objects go away."""
    peripheral.connected = False
    for char in peripheral.characteristics():
        char.notifying = False
    if peripheral.obj is not None:
        properties_changed(peripheral.obj, DEVICE_IFACE, {"ServicesResolved": dbus.Boolean(False)})
        # bluetoothd 5.82 and later also say why, in the Device1.Disconnected signal.
        signal(peripheral.obj, DEVICE_IFACE, "Disconnected", "ss", reason, reason.rsplit(".", 1)[-1])
        properties_changed(peripheral.obj, DEVICE_IFACE, {"Connected": dbus.Boolean(False)})
    unexport_gatt(peripheral)
    log(f"peripheral {peripheral.address} disconnected")


# --- GATT -----------------------------------------------------------------------------------------------


def export_gatt(peripheral: Peripheral) -> None:
    for index, service in enumerate(peripheral.services):
        service.obj = add_object(
            service.path,
            SERVICE_IFACE,
            {
                "UUID": dbus.String(service.uuid),
                "Device": dbus.ObjectPath(peripheral.path),
                "Primary": dbus.Boolean(True),
                "Includes": dbus.Array([], signature="o"),
                "Handle": dbus.UInt16(0x000A + index),
            },
        )
        for char in service.characteristics:
            char.obj = add_object(
                char.path,
                CHARACTERISTIC_IFACE,
                {
                    "UUID": dbus.String(char.uuid),
                    "Service": dbus.ObjectPath(service.path),
                    "Value": byte_array(char.value),
                    "Notifying": dbus.Boolean(False),
                    "Flags": dbus.Array(char.flags, signature="s"),
                    "MTU": dbus.UInt16(247),
                },
            )
            export(char.obj, CHARACTERISTIC_IFACE, "ReadValue", "a{sv}", "ay", char_read)
            export(char.obj, CHARACTERISTIC_IFACE, "WriteValue", "aya{sv}", "", char_write, reply_later=True)
            export(char.obj, CHARACTERISTIC_IFACE, "StartNotify", "", "", char_start_notify)
            export(char.obj, CHARACTERISTIC_IFACE, "StopNotify", "", "", char_stop_notify)
            if char.cccd_path is not None:
                cccd = add_object(
                    char.cccd_path,
                    DESCRIPTOR_IFACE,
                    {
                        "UUID": dbus.String(CCCD_UUID),
                        "Characteristic": dbus.ObjectPath(char.path),
                        "Value": byte_array(b"\x00\x00"),
                        "Flags": dbus.Array(["read", "write"], signature="s"),
                    },
                )
                export(
                    cccd,
                    DESCRIPTOR_IFACE,
                    "ReadValue",
                    "a{sv}",
                    "ay",
                    lambda obj, _o: obj.props[DESCRIPTOR_IFACE]["Value"],
                )


def unexport_gatt(peripheral: Peripheral) -> None:
    objects = root_objects()
    for service in peripheral.services:
        for char in service.characteristics:
            if char.cccd_path is not None and char.cccd_path in objects:
                remove_object(objects[char.cccd_path])
            if char.obj is not None:
                remove_object(char.obj)
                char.obj = None
        if service.obj is not None:
            remove_object(service.obj)
            service.obj = None


def find_characteristic(obj: Any) -> tuple[Peripheral, Characteristic]:
    for peripheral in STATE.peripherals.values():
        for char in peripheral.characteristics():
            if char.obj is obj:
                return peripheral, char
    raise dbus.exceptions.DBusException(f"{obj.path} is gone", name="org.freedesktop.DBus.Error.UnknownObject")


def check_access(peripheral: Peripheral) -> None:
    if not peripheral.connected:
        raise dbus_error("Failed", "Not connected")
    if peripheral.pairing_required and not peripheral.paired:
        # What bluetoothd answers for an ATT insufficient authentication or encryption error.
        raise dbus_error("NotPermitted", "Not paired")


def char_read(obj: Any, _options: Any) -> Any:
    peripheral, char = find_characteristic(obj)
    check_access(peripheral)
    if "read" not in char.flags:
        raise dbus_error("NotPermitted", "Read not permitted")
    return byte_array(char.value)


def char_write(
    obj: Any, value: Any, _options: Any, reply: Callable[[], None], error: Callable[[Exception], None]
) -> None:
    try:
        peripheral, char = find_characteristic(obj)
        check_access(peripheral)
        if "write" not in char.flags and "write-without-response" not in char.flags:
            raise dbus_error("NotPermitted", "Write not permitted")
        if char.uuid == RACP_UUID and not char.notifying:
            # ATT error 0xFD: indications on the RACP must be enabled before a request.
            raise dbus_error(
                "ImproperlyConfigured", "Client Characteristic Configuration Descriptor Improperly Configured"
            )
    except dbus.exceptions.DBusException as exc:
        error(exc)
        return
    data = bytes(value)
    char.writes.append(data)
    reply()
    log(f"peripheral {peripheral.address} write {char.uuid[4:8]} {data.hex()}")
    if char.uuid == RACP_UUID:
        racp_request(peripheral, char, data)


def char_start_notify(obj: Any) -> None:
    peripheral, char = find_characteristic(obj)
    check_access(peripheral)
    if "notify" not in char.flags and "indicate" not in char.flags:
        raise dbus_error("NotSupported", "Operation is not supported")
    char.notifying = True
    properties_changed(obj, CHARACTERISTIC_IFACE, {"Notifying": dbus.Boolean(True)})


def char_stop_notify(obj: Any) -> None:
    _peripheral, char = find_characteristic(obj)
    char.notifying = False
    properties_changed(obj, CHARACTERISTIC_IFACE, {"Notifying": dbus.Boolean(False)})


def send_value(char: Characteristic, data: bytes) -> bool:
    """A notification or indication: only while the client has subscribed, as the CCCD decides."""
    if char.obj is None or not char.notifying:
        return False
    char.value = data
    properties_changed(char.obj, CHARACTERISTIC_IFACE, {"Value": byte_array(data)})
    return True


def racp_request(peripheral: Peripheral, racp: Characteristic, request: bytes) -> None:
    op = request[0] if request else 0
    operator = request[1] if len(request) > 1 else 0
    selected = select_records(peripheral.records, operator, request[2:])
    if op == RACP_REPORT and selected is not None:
        for index, (_seq, notifications) in enumerate(selected):
            if peripheral.racp_drop_after is not None and index >= peripheral.racp_drop_after:
                drop(peripheral)
                return
            for uuid, data in notifications:
                send_value(peripheral.characteristic(uuid), data)
        send_value(racp, bytes([RACP_RESPONSE, 0x00, op, RACP_SUCCESS if selected else RACP_NO_RECORDS]))
    elif op == RACP_REPORT_COUNT and selected is not None:
        send_value(racp, bytes([RACP_COUNT_RESPONSE, 0x00]) + len(selected).to_bytes(2, "little"))
    elif op == RACP_DELETE and selected is not None:
        peripheral.records = [r for r in peripheral.records if r not in selected]
        send_value(racp, bytes([RACP_RESPONSE, 0x00, op, RACP_SUCCESS if selected else RACP_NO_RECORDS]))
    elif op == RACP_ABORT:
        send_value(racp, bytes([RACP_RESPONSE, 0x00, op, RACP_SUCCESS]))
    else:
        send_value(racp, bytes([RACP_RESPONSE, 0x00, op, RACP_OP_NOT_SUPPORTED]))


def select_records(
    records: list[tuple[int, list[tuple[str, bytes]]]], operator: int, operand: bytes
) -> list[tuple[int, list[tuple[str, bytes]]]] | None:
    """Records an RACP operator picks (filter type 0x01, sequence number, only); None if unsupported."""

    def sequence(offset: int) -> int:
        return int.from_bytes(operand[1 + offset : 3 + offset], "little")

    if operator == 0x01:  # all records
        return list(records)
    if operator == 0x05:  # first record
        return records[:1]
    if operator == 0x06:  # last record
        return records[-1:]
    if not operand or operand[0] != 0x01:
        return None
    if operator == 0x02:  # less than or equal to
        return [r for r in records if r[0] <= sequence(0)]
    if operator == 0x03:  # greater than or equal to
        return [r for r in records if r[0] >= sequence(0)]
    if operator == 0x04:  # within range
        return [r for r in records if sequence(0) <= r[0] <= sequence(2)]
    return None


# --- advertising ----------------------------------------------------------------------------------------


def advertise_tick(_data: Any) -> int:
    """Each advertising peripheral near a discovering adapter is heard again (new RSSI), as a radio would."""
    try:
        for peripheral in STATE.peripherals.values():
            adapter = STATE.adapters.get(peripheral.adapter)
            if adapter is None or not adapter.discovery_sessions:
                continue
            if not peripheral.advertising or peripheral.connected:
                continue
            if peripheral.obj is None:
                export_device(peripheral)
                continue
            peripheral.adverts += 1
            changed: dict[str, Any] = {"RSSI": dbus.Int16(peripheral.rssi - peripheral.adverts % 2)}
            if peripheral.manufacturer_data:
                changed["ManufacturerData"] = device_props(peripheral)["ManufacturerData"]
            properties_changed(peripheral.obj, DEVICE_IFACE, changed)
    except Exception as exc:  # noqa: BLE001 - an exception would end the GLib timer, and with it advertising
        log(f"advertising failed: {exc!r}")
    return 1  # keep the timer


# --- control interface (for tests) ----------------------------------------------------------------------


def control_set_advertising(_root: Any, path: str, advertising: bool) -> None:
    peripheral_at(path).advertising = bool(advertising)


def control_connect(_root: Any, path: str) -> None:
    """Connected by some other client (a gateway run that ended without disconnecting), as BlueZ keeps it."""
    peripheral = peripheral_at(path)
    if peripheral.obj is None:
        export_device(peripheral)
    if peripheral.connected or peripheral.obj is None:
        raise dbus_error("Failed", f"cannot connect {peripheral.address}")
    peripheral.connected = True
    peripheral.advertising = False
    properties_changed(peripheral.obj, DEVICE_IFACE, {"Connected": dbus.Boolean(True)})
    export_gatt(peripheral)
    properties_changed(peripheral.obj, DEVICE_IFACE, {"ServicesResolved": dbus.Boolean(True)})


def control_drop_link(_root: Any, path: str, advertise: bool) -> None:
    peripheral = peripheral_at(path)
    if not peripheral.connected:
        raise dbus_error("NotConnected", "Not Connected")
    drop(peripheral)
    peripheral.advertising = bool(advertise)


def control_notify(_root: Any, path: str, uuid: str, value: Any) -> bool:
    peripheral = peripheral_at(path)
    return send_value(peripheral.characteristic(uuid), bytes(value))


def control_set_value(_root: Any, path: str, uuid: str, value: Any) -> None:
    peripheral_at(path).characteristic(uuid).value = bytes(value)


def control_get_writes(_root: Any, path: str, uuid: str) -> Any:
    writes = peripheral_at(path).characteristic(uuid).writes
    return dbus.Array([byte_array(w) for w in writes], signature="ay")


def control_is_notifying(_root: Any, path: str, uuid: str) -> bool:
    return peripheral_at(path).characteristic(uuid).notifying


def control_set_records(_root: Any, path: str, records: Any) -> None:
    peripheral_at(path).records = [
        (int(seq), [(full_uuid(uuid), bytes(value)) for uuid, value in notifications]) for seq, notifications in records
    ]


def control_fail_racp_after(_root: Any, path: str, count: int) -> None:
    peripheral_at(path).racp_drop_after = None if count < 0 else int(count)


def control_get_state(_root: Any, path: str) -> Any:
    peripheral = peripheral_at(path)
    return dbus.Dictionary(
        {
            "connected": dbus.Boolean(peripheral.connected),
            "paired": dbus.Boolean(peripheral.paired),
            "advertising": dbus.Boolean(peripheral.advertising),
            "known": dbus.Boolean(peripheral.obj is not None),
        },
        signature="sv",
    )


# --- bluetoothd's manager objects -----------------------------------------------------------------------


def load(mock: Any, parameters: dict[str, Any]) -> None:
    STATE.root = mock
    interval_ms = int(parameters.get("advertise_interval_ms", 100))
    mock.AddObject("/org/bluez", AGENT_MANAGER_IFACE, {}, [])
    manager = root_objects()["/org/bluez"]
    export(manager, AGENT_MANAGER_IFACE, "RegisterAgent", "os", "", lambda _obj, _path, _cap: None)
    export(manager, AGENT_MANAGER_IFACE, "UnregisterAgent", "o", "", lambda _obj, _path: None)
    export(manager, AGENT_MANAGER_IFACE, "RequestDefaultAgent", "o", "", lambda _obj, _path: None)
    export(manager, PROFILE_MANAGER_IFACE, "RegisterProfile", "osa{sv}", "", lambda _obj, _p, _u, _o: None)
    export(manager, PROFILE_MANAGER_IFACE, "UnregisterProfile", "o", "", lambda _obj, _p: None)

    export(mock, CONTROL_IFACE, "AddAdapter", "ss", "o", add_adapter)
    export(mock, CONTROL_IFACE, "RemoveAdapter", "s", "", remove_adapter)
    export(mock, CONTROL_IFACE, "AddPeripheral", "sssasa(sa(sasay))a{sv}", "o", add_peripheral)
    export(mock, CONTROL_IFACE, "SetAdvertising", "ob", "", control_set_advertising)
    export(mock, CONTROL_IFACE, "SetPowered", "sb", "", set_powered)
    export(mock, CONTROL_IFACE, "Connect", "o", "", control_connect)
    export(mock, CONTROL_IFACE, "DropLink", "ob", "", control_drop_link)
    export(mock, CONTROL_IFACE, "Notify", "osay", "b", control_notify)
    export(mock, CONTROL_IFACE, "SetValue", "osay", "", control_set_value)
    export(mock, CONTROL_IFACE, "GetWrites", "os", "aay", control_get_writes)
    export(mock, CONTROL_IFACE, "IsNotifying", "os", "b", control_is_notifying)
    export(mock, CONTROL_IFACE, "SetRecords", "oa(qa(say))", "", control_set_records)
    export(mock, CONTROL_IFACE, "FailRacpAfter", "oi", "", control_fail_racp_after)
    export(mock, CONTROL_IFACE, "GetState", "o", "a{sv}", control_get_state)

    # dbusmock runs a GLib main loop through ctypes; GLib timers are how repeated advertising and delayed
    # replies get into it.
    glib = ctypes.CDLL("libglib-2.0.so.0")
    glib.g_timeout_add.argtypes = [ctypes.c_uint, GSourceFunc, ctypes.c_void_p]
    glib.g_timeout_add.restype = ctypes.c_uint
    STATE.glib = glib
    STATE.ticker = GSourceFunc(advertise_tick)
    glib.g_timeout_add(interval_ms, STATE.ticker, None)
