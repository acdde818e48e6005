"""BLE thermometers of the Bluetooth SIG Health Thermometer Profile: service 0x1809, per the GSS."""

from __future__ import annotations

from typing import Literal

from healthhut.drivers.base import BleProfile
from healthhut.drivers.gatt.config import GattDeviceConfig, gatt_driver, profile_characteristics

PROFILE = BleProfile(
    service=0x1809,
    notify=(0x2A1E,),
    indicate=(0x2A1C,),
    current_time=True,
)
CHARACTERISTICS = profile_characteristics(PROFILE)


class ThermometerConfig(GattDeviceConfig):
    """One device entry: ``name``, optional ``address`` (MAC) and the ``timezone`` of its clock."""

    driver: Literal["ble-thermometer"]


DRIVER = gatt_driver(
    "ble-thermometer",
    "Bluetooth SIG Health Thermometer Profile (service 0x1809)",
    PROFILE,
    ThermometerConfig,
)

__all__ = ["CHARACTERISTICS", "DRIVER", "PROFILE", "ThermometerConfig"]
