"""BLE heart-rate sensors of the Bluetooth SIG Heart Rate Profile: service 0x180D, per the GSS."""

from __future__ import annotations

from typing import Literal

from healthhut.drivers.base import BleProfile
from healthhut.drivers.gatt.config import GattDeviceConfig, gatt_driver, profile_characteristics

PROFILE = BleProfile(
    service=0x180D,
    # The measurement carries no time stamp: there is no clock to set.
    notify=(0x2A37,),
)
CHARACTERISTICS = profile_characteristics(PROFILE)


class HeartRateConfig(GattDeviceConfig):
    """One device entry: ``name``, optional ``address`` (MAC) and the ``timezone`` of its clock."""

    driver: Literal["ble-heart-rate"]


DRIVER = gatt_driver(
    "ble-heart-rate",
    "Bluetooth SIG Heart Rate Profile sensor (service 0x180D)",
    PROFILE,
    HeartRateConfig,
)

__all__ = ["CHARACTERISTICS", "DRIVER", "PROFILE", "HeartRateConfig"]
