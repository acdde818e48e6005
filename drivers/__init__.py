"""healthhut.drivers: one subpackage per device family, each a sans-I/O codec plus its config model.

A driver registers in the entry-point group ``healthhut.drivers`` with one line in pyproject.toml, and
:func:`get_driver` finds it by name. Drivers never open a port or a BLE connection: the gateway's
transports own all I/O and hand bytes to ``spec.new_decoder().feed()``.
"""

from __future__ import annotations

from healthhut.drivers.base import (
    DecodeError,
    Decoder,
    DeviceConfig,
    DriverNotFoundError,
    DriverSpec,
    SerialSettings,
    available_drivers,
    get_driver,
)

__all__ = [
    "DecodeError",
    "Decoder",
    "DeviceConfig",
    "DriverNotFoundError",
    "DriverSpec",
    "SerialSettings",
    "available_drivers",
    "get_driver",
]
