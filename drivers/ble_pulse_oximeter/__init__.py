"""BLE pulse oximeters of the Bluetooth SIG Pulse Oximeter Profile: service 0x1822, per the GSS."""

from __future__ import annotations

from typing import Literal

from healthhut.drivers.base import BleProfile
from healthhut.drivers.gatt.config import GattDeviceConfig, gatt_driver, profile_characteristics

PROFILE = BleProfile(
    service=0x1822,
    notify=(0x2A5F,),
    indicate=(0x2A5E,),
    read=(0x2A60,),
    current_time=True,
)
CHARACTERISTICS = profile_characteristics(PROFILE)


class PulseOximeterConfig(GattDeviceConfig):
    """One device entry: ``name``, optional ``address`` (MAC) and the ``timezone`` of its clock."""

    driver: Literal["ble-pulse-oximeter"]


DRIVER = gatt_driver(
    "ble-pulse-oximeter",
    "Bluetooth SIG Pulse Oximeter Profile (service 0x1822)",
    PROFILE,
    PulseOximeterConfig,
)

__all__ = ["CHARACTERISTICS", "DRIVER", "PROFILE", "PulseOximeterConfig"]
