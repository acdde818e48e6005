"""BLE scales of the Bluetooth SIG Weight Scale Profile: service 0x181D, per the GSS."""

from __future__ import annotations

from typing import Literal

from healthhut.drivers.base import BleProfile
from healthhut.drivers.gatt.config import GattDeviceConfig, gatt_driver, profile_characteristics

PROFILE = BleProfile(
    service=0x181D,
    indicate=(0x2A9D,),
    read=(0x2A9E,),
    current_time=True,
)
CHARACTERISTICS = profile_characteristics(PROFILE)


class WeightScaleConfig(GattDeviceConfig):
    """One device entry: ``name``, optional ``address`` (MAC) and the ``timezone`` of its clock."""

    driver: Literal["ble-weight-scale"]


DRIVER = gatt_driver(
    "ble-weight-scale",
    "Bluetooth SIG Weight Scale Profile (service 0x181D)",
    PROFILE,
    WeightScaleConfig,
)

__all__ = ["CHARACTERISTICS", "DRIVER", "PROFILE", "WeightScaleConfig"]
