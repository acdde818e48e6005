"""The driver contract: a spec (name, transport, config model, decoder factory) and the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from healthhut.protocol import Reading

ENTRY_POINT_GROUP = "healthhut.drivers"


class DecodeError(ValueError):
    """Bytes that are not a valid message of the device's protocol. The message says what is wrong."""


class DriverNotFoundError(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"no driver named {name!r}; installed drivers: {', '.join(known) or 'none'}")


@runtime_checkable
class StreamDecoder(Protocol):
    """A sans-I/O byte-stream decoder. ``feed`` never raises on garbage: it resynchronises and counts."""

    frame_errors: int

    def feed(self, data: bytes) -> list[Reading]: ...


@runtime_checkable
class GattDecoder(Protocol):
    """A sans-I/O decoder of GATT characteristic values, with the context a profile needs (features,
    a glucose context waiting for its measurement). A malformed value is counted, never raised."""

    frame_errors: int

    def on_value(self, characteristic: int, data: bytes) -> list[Reading]: ...


@runtime_checkable
class IdentityDecoder(Protocol):
    """A sans-I/O decoder of an identity source (a card scanner): ``feed`` returns the codes read, which
    the gateway turns into pseudonyms at once. Garbage is counted, never raised."""

    frame_errors: int
    # What the latest frame errors were, in words that never quote what was read (for the kiosk).
    errors: list[str]

    def feed(self, data: bytes) -> list[str]: ...


Decoder = StreamDecoder | GattDecoder | IdentityDecoder


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Line settings a serial device needs. ptys ignore them; real USB-serial adapters do not."""

    baudrate: int
    bytesize: int = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: float = 1
    xonxoff: bool = False


@dataclass(frozen=True, slots=True)
class SerialLink:
    """How to hold a serial device's stream open: line settings, a start command and a keep-alive."""

    settings: SerialSettings
    # Written once after the port opens (some firmwares stream only when asked).
    start_command: bytes = b""
    # Written every ``keepalive_interval_s`` while connected (some firmwares stop when not prodded).
    keepalive: bytes = b""
    keepalive_interval_s: float = 0.0


@dataclass(frozen=True, slots=True)
class BleProfile:
    """What a BLE driver needs from the transport: the service to find and the characteristics to use.

    Characteristics are 16-bit SIG UUIDs. ``current_time`` asks the transport to write the Current Time
    characteristic (0x2A2B) where the device offers it; ``racp`` to fetch stored records (0x2A52).
    """

    service: int
    notify: tuple[int, ...] = ()
    indicate: tuple[int, ...] = ()
    read: tuple[int, ...] = ()
    current_time: bool = False
    racp: bool = False


class DeviceConfig(BaseModel):
    """Fields every device entry has. Each driver subclasses it with ``driver: Literal[...]``."""

    name: str
    driver: str


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """What the gateway and hut-sim need to know about one device family.

    ``new_decoder()`` gives a decoder with the driver's defaults; ``decoder_for`` and ``serial_link_for``,
    where a driver has them, tune the decoder and the link to one device entry (a strip length, a
    protocol generation). The gateway uses :meth:`decoder` and :meth:`serial_link`.
    """

    name: str
    description: str
    # "evdev": a Linux input device (a keyboard-style scanner), read by the gateway's evdev transport.
    transport: Literal["serial", "ble", "evdev"]
    config_model: type[DeviceConfig]
    new_decoder: Callable[[], Decoder]
    serial: SerialLink | None = None
    ble: BleProfile | None = None
    decoder_for: Callable[[Any], Decoder] | None = None
    serial_link_for: Callable[[Any], SerialLink] | None = None
    # "identity": the device says who is being measured (its decoder is an IdentityDecoder), not what.
    role: Literal["measurement", "identity"] = "measurement"

    @property
    def keeps_records(self) -> bool:
        """The device keeps a memory of past readings, which the gateway fetches (a glucose meter's RACP store)."""
        return self.ble is not None and self.ble.racp

    def decoder(self, config: DeviceConfig) -> Decoder:
        return self.decoder_for(config) if self.decoder_for is not None else self.new_decoder()

    def serial_link(self, config: DeviceConfig) -> SerialLink | None:
        return self.serial_link_for(config) if self.serial_link_for is not None else self.serial


@cache
def _registry() -> dict[str, DriverSpec]:
    found: dict[str, DriverSpec] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        spec = entry.load()
        if not isinstance(spec, DriverSpec) or spec.name != entry.name:
            raise TypeError(f"entry point {entry.name} = {entry.value} is not a DriverSpec named {entry.name!r}")
        found[entry.name] = spec
    return found


def available_drivers() -> list[str]:
    return sorted(_registry())


def get_driver(name: str) -> DriverSpec:
    """The registered driver called ``name``; DriverNotFoundError lists the installed ones."""
    try:
        return _registry()[name]
    except KeyError:
        raise DriverNotFoundError(name, available_drivers()) from None
