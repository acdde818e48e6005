"""A private system D-Bus with a fake BlueZ on it (python-dbusmock), so the real bleak code runs without a
radio: point bleak at it with ``DBUS_SYSTEM_BUS_ADDRESS=fake.bus_address``."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from healthhut.devstack.servers import ServerError, ServerProcess

__all__ = ["FakeBlueZ", "FakeGattCharacteristic", "FakeGattService", "FakePeripheral"]

logger = logging.getLogger(__name__)

TEMPLATE = Path(__file__).with_name("bluez_template.py")
CONTROL_IFACE = "org.healthhut.FakeBlueZ1"
BLUEZ = "org.bluez"


def uuid_text(uuid: int | str) -> str:
    """A 16-bit SIG UUID as four hex digits; anything else as given (the fake expands short forms)."""
    return f"{uuid:04x}" if isinstance(uuid, int) else uuid


@dataclass(frozen=True, slots=True)
class FakeGattCharacteristic:
    """One characteristic: its UUID, BlueZ flags ("read", "write", "notify", "indicate", ...) and value."""

    uuid: int | str
    flags: tuple[str, ...]
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class FakeGattService:
    uuid: int | str
    characteristics: tuple[FakeGattCharacteristic, ...]


class _DbusDaemon(ServerProcess):
    """dbus-daemon as a private system bus on a unix socket, open to every local user."""

    name = "dbus-daemon"
    binary = "dbus-daemon"
    default_startup_timeout = 10.0

    def __init__(self, root: Path, socket_path: Path) -> None:
        super().__init__(root)
        self.socket_path = socket_path
        self.config_path = self.root / "system-bus.conf"

    def config_text(self) -> str:
        return f"""\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- Written by healthhut.devstack.fakebluez on every start. -->
<busconfig>
  <type>system</type>
  <listen>unix:path={self.socket_path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

    def _build_command(self, executable: Path) -> list[str]:
        self.config_path.write_text(self.config_text())
        return [str(executable), "--nofork", "--nopidfile", "--nosyslog", f"--config-file={self.config_path}"]

    def _listen_ports(self) -> tuple[int, ...]:
        return ()

    def _probe(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(str(self.socket_path))
            except OSError:
                return False
        return True


class _BlueZMock(ServerProcess):
    """python-dbusmock serving the fake BlueZ template on the private bus."""

    name = "fake-bluez"
    binary = sys.executable
    default_startup_timeout = 15.0

    def __init__(self, root: Path, bus_address: str, connection: Any, advertise_interval: float) -> None:
        super().__init__(root)
        self.bus_address = bus_address
        self.connection = connection
        self.advertise_interval = advertise_interval

    def _build_command(self, executable: Path) -> list[str]:
        parameters = json.dumps({"advertise_interval_ms": max(1, round(self.advertise_interval * 1000))})
        return [str(executable), "-m", "dbusmock", "--system", "-t", str(TEMPLATE), "-p", parameters]

    def _child_env(self) -> dict[str, str]:
        env = super()._child_env()
        env["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus_address
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _listen_ports(self) -> tuple[int, ...]:
        return ()

    def _probe(self) -> bool:
        return bool(self.connection.name_has_owner(BLUEZ))


class FakePeripheral:
    """A peripheral of a :class:`FakeBlueZ`; every method is one call to the fake over D-Bus."""

    def __init__(self, fake: FakeBlueZ, path: str, address: str) -> None:
        self._fake = fake
        self.path = path
        self.address = address

    def _call(self, method: str, *args: Any) -> Any:
        return self._fake.control(method, _dbus().ObjectPath(self.path), *args)

    def push(self, characteristic: int | str, value: bytes) -> bool:
        """Notify or indicate ``value``; False if the client has not subscribed (nothing is sent then)."""
        return bool(self._call("Notify", uuid_text(characteristic), _bytes(value)))

    def set_value(self, characteristic: int | str, value: bytes) -> None:
        """What the next read of ``characteristic`` returns."""
        self._call("SetValue", uuid_text(characteristic), _bytes(value))

    def writes(self, characteristic: int | str) -> list[bytes]:
        """Every value written to ``characteristic``, oldest first."""
        return [bytes(w) for w in self._call("GetWrites", uuid_text(characteristic))]

    def is_notifying(self, characteristic: int | str) -> bool:
        return bool(self._call("IsNotifying", uuid_text(characteristic)))

    def set_records(self, records: Sequence[tuple[int, Sequence[tuple[int | str, bytes]]]]) -> None:
        """Stored records for RACP: each a sequence number and the notifications (UUID, value) that carry it."""
        dbus = _dbus()
        payload = dbus.Array(
            [
                dbus.Struct(
                    (
                        dbus.UInt16(seq),
                        dbus.Array(
                            [dbus.Struct((uuid_text(uuid), _bytes(value))) for uuid, value in notifications],
                            signature="(say)",
                        ),
                    )
                )
                for seq, notifications in records
            ],
            signature="(qa(say))",
        )
        self._call("SetRecords", payload)

    def fail_racp_after(self, records: int | None) -> None:
        """Drop the link after sending this many records of an RACP transfer (None: never)."""
        self._call("FailRacpAfter", -1 if records is None else records)

    def advertise(self, advertising: bool = True) -> None:
        """Start (or stop) advertising, as a cuff or meter does after a measurement."""
        self._call("SetAdvertising", advertising)

    def connect(self) -> None:
        """Connect it as another client would, and leave it so: a gateway run that ended without disconnecting."""
        self._call("Connect")

    def drop_link(self, *, advertise: bool = False) -> None:
        """Link loss: services unresolved, Connected false, GATT objects removed; then maybe advertise again."""
        self._call("DropLink", advertise)

    def state(self) -> dict[str, bool]:
        """``connected``, ``paired``, ``advertising`` and ``known`` (the device object exists)."""
        return {str(k): bool(v) for k, v in self._call("GetState").items()}

    def __repr__(self) -> str:
        return f"<FakePeripheral {self.address} {self.path}>"


class FakeBlueZ:
    """dbus-daemon plus the fake BlueZ, started together; ``stop()`` ends both and removes their folder.

    Needs Debian's ``dbus-daemon`` and python-dbusmock (with dbus-python, from the dev extra); they are
    imported or run only when a fake starts, and their absence raises ServerError.

    ``adapters`` are added at start (``hci0`` by default). Peripherals advertise every
    ``advertise_interval`` seconds while an adapter is discovering.
    """

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        adapters: Sequence[str] = ("hci0",),
        advertise_interval: float = 0.1,
    ) -> None:
        self._given_root = None if root is None else Path(root)
        self._adapters = tuple(adapters)
        self.advertise_interval = advertise_interval
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._daemon: _DbusDaemon | None = None
        self._mock: _BlueZMock | None = None
        self._connection: Any = None
        self._socket_path: Path | None = None

    @property
    def bus_address(self) -> str:
        """The D-Bus address to put in ``DBUS_SYSTEM_BUS_ADDRESS``."""
        if self._socket_path is None:
            raise ServerError("not started", server="fake-bluez")
        return f"unix:path={self._socket_path}"

    @property
    def log_path(self) -> Path:
        """The fake's log: one line per control call and per link event."""
        if self._mock is None:
            raise ServerError("not started", server="fake-bluez")
        return self._mock.log_path

    def start(self) -> Self:
        """Start the bus and the fake; ServerError (with the log tail) if either does not come up."""
        dbus = _dbus()
        _require_dbusmock()
        # A unix socket path must fit in 108 bytes, so the socket lives in a short folder of its own.
        self._tempdir = tempfile.TemporaryDirectory(prefix="hh-bluez-")
        short = Path(self._tempdir.name)
        root = self._given_root or short
        root.mkdir(parents=True, exist_ok=True)
        self._socket_path = short / "system_bus_socket"
        try:
            self._daemon = _DbusDaemon(root / "dbus", self._socket_path).start()
            self._connection = dbus.bus.BusConnection(self.bus_address)
            self._mock = _BlueZMock(root / "bluez", self.bus_address, self._connection, self.advertise_interval)
            self._mock.start()
            for name in self._adapters:
                self.add_adapter(name)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the fake and the bus (each even if the other fails) and remove the owned folder."""
        with contextlib.ExitStack() as cleanup:
            if self._tempdir is not None:
                cleanup.callback(self._tempdir.cleanup)
            if self._daemon is not None:
                cleanup.callback(self._daemon.stop)
            if self._connection is not None:
                cleanup.callback(self._connection.close)
            if self._mock is not None:
                cleanup.callback(self._mock.stop)
        self._tempdir = None
        self._connection = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def control(self, method: str, *args: Any) -> Any:
        """Call a method of the fake's control interface (see bluez_template.py) and return its answer."""
        if self._connection is None:
            raise ServerError("not started", server="fake-bluez")
        proxy = self._connection.get_object(BLUEZ, "/", introspect=False)
        return proxy.get_dbus_method(method, CONTROL_IFACE)(*args)

    def add_adapter(self, name: str = "hci0", address: str | None = None) -> str:
        """Plug in an adapter (again); returns its object path."""
        number = int(name.removeprefix("hci") or 0)
        return str(self.control("AddAdapter", name, address or f"00:1A:7D:DA:71:{number:02X}"))

    def remove_adapter(self, name: str = "hci0") -> None:
        """Unplug an adapter: its connected peripherals drop their links and its device objects vanish."""
        self.control("RemoveAdapter", name)

    def set_powered(self, powered: bool, name: str = "hci0") -> None:
        """Power an adapter off (its links drop, discovery ends) or on, as an adapter reset does."""
        self.control("SetPowered", name, powered)

    def add_peripheral(
        self,
        address: str,
        name: str,
        services: Sequence[FakeGattService],
        *,
        adapter: str = "hci0",
        advertised_services: Sequence[int | str] | None = None,
        manufacturer_data: Mapping[int, bytes] | None = None,
        service_data: Mapping[int | str, bytes] | None = None,
        advertising: bool = True,
        pairing_required: bool = False,
        rssi: int = -60,
    ) -> FakePeripheral:
        """Add an LE peripheral near ``adapter``. It advertises ``advertised_services`` (by default the UUIDs
        of ``services``); with ``pairing_required`` its GATT answers "Not paired" until it is paired."""
        dbus = _dbus()
        advertised = [s.uuid for s in services] if advertised_services is None else list(advertised_services)
        gatt = dbus.Array(
            [
                dbus.Struct(
                    (
                        uuid_text(service.uuid),
                        dbus.Array(
                            [
                                dbus.Struct((uuid_text(c.uuid), dbus.Array(c.flags, signature="s"), _bytes(c.value)))
                                for c in service.characteristics
                            ],
                            signature="(sasay)",
                        ),
                    )
                )
                for service in services
            ],
            signature="(sa(sasay))",
        )
        options = dbus.Dictionary(
            {
                "advertising": dbus.Boolean(advertising),
                "pairing_required": dbus.Boolean(pairing_required),
                "rssi": dbus.Int16(rssi),
                "manufacturer_data": dbus.Dictionary(
                    {dbus.UInt16(k): _bytes(v) for k, v in (manufacturer_data or {}).items()}, signature="qv"
                ),
                "service_data": dbus.Dictionary(
                    {uuid_text(k): _bytes(v) for k, v in (service_data or {}).items()}, signature="sv"
                ),
            },
            signature="sv",
        )
        path = self.control(
            "AddPeripheral",
            adapter,
            address,
            name,
            dbus.Array([uuid_text(u) for u in advertised], signature="s"),
            gatt,
            options,
        )
        return FakePeripheral(self, str(path), address.upper())

    def log_lines(self) -> Iterator[str]:
        """The fake's log so far, for assertions and for failure messages."""
        with contextlib.suppress(OSError):
            yield from self.log_path.read_text().splitlines()


def _dbus() -> Any:
    try:
        import dbus
        import dbus.bus
    except ImportError as exc:
        raise ServerError(
            "dbus-python is missing; install the dev extra (pip install -e '.[dev]'), which brings python-dbusmock",
            server="fake-bluez",
        ) from exc
    return dbus


def _require_dbusmock() -> None:
    try:
        import dbusmock  # noqa: F401
    except ImportError as exc:
        raise ServerError(
            "python-dbusmock is missing; install the dev extra (pip install -e '.[dev]')", server="fake-bluez"
        ) from exc


def _bytes(value: bytes) -> Any:
    dbus = _dbus()
    return dbus.Array([dbus.Byte(b) for b in value], signature="y")
