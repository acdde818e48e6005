"""healthhut.drivers: one subpackage per device family, each a sans-I/O codec plus its config model.

A driver registers in the entry-point group ``healthhut.drivers`` with one line in pyproject.toml, and
:func:`get_driver` finds it by name. Drivers never open a port or a BLE connection: the gateway's
transports own all I/O and hand bytes to ``spec.decoder(config).feed()`` (serial) or characteristic
values to ``.on_value()`` (BLE).
"""

from __future__ import annotations

from healthhut.drivers.base import (
    BleProfile,
    DecodeError,
    Decoder,
    DeviceConfig,
    DriverNotFoundError,
    DriverSpec,
    GattDecoder,
    IdentityDecoder,
    SerialLink,
    SerialSettings,
    StreamDecoder,
    available_drivers,
    get_driver,
)

__all__ = [
    "BleProfile",
    "DecodeError",
    "Decoder",
    "DeviceConfig",
    "DriverNotFoundError",
    "DriverSpec",
    "GattDecoder",
    "IdentityDecoder",
    "SerialLink",
    "SerialSettings",
    "StreamDecoder",
    "available_drivers",
    "get_driver",
]
