"""The driver contract: a spec (name, transport, config model, decoder factory) and the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Literal, Protocol

from healthhut.protocol import Reading
from pydantic import BaseModel

ENTRY_POINT_GROUP = "healthhut.drivers"


class DecodeError(ValueError):
    """Bytes that are not a valid message of the device's protocol. The message says what is wrong."""


class DriverNotFoundError(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"no driver named {name!r}; installed drivers: {', '.join(known) or 'none'}")


class Decoder(Protocol):
    """A sans-I/O stream decoder. ``feed`` never raises on garbage: it resynchronises and counts."""

    frame_errors: int

    def feed(self, data: bytes) -> list[Reading]: ...


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Line settings a serial device needs. ptys ignore them; real USB-serial adapters do not."""

    baudrate: int
    bytesize: int = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: float = 1
    xonxoff: bool = False


class DeviceConfig(BaseModel):
    """Fields every device entry has. Each driver subclasses it with ``driver: Literal[...]``."""

    name: str
    driver: str


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """What the gateway and hut-sim need to know about one device family."""

    name: str
    description: str
    transport: Literal["serial", "ble"]
    config_model: type[DeviceConfig]
    new_decoder: Callable[[], Decoder]
    serial: SerialSettings | None = None
    # Bytes the host must write after opening the port to start the stream (some firmwares wait).
    start_command: bytes = b""


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
