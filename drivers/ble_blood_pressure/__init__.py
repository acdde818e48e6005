"""BLE blood-pressure cuffs of the Bluetooth SIG Blood Pressure Profile: service 0x1810, per the GSS."""

from __future__ import annotations

from typing import Literal

from healthhut.drivers.base import BleProfile
from healthhut.drivers.gatt.config import GattDeviceConfig, gatt_driver, profile_characteristics

PROFILE = BleProfile(
    service=0x1810,
    # Intermediate Cuff Pressure is notified during inflation; the result is indicated when the cuff is done.
    notify=(0x2A36,),
    indicate=(0x2A35,),
    read=(0x2A49,),
    current_time=True,
)
CHARACTERISTICS = profile_characteristics(PROFILE)


class BloodPressureConfig(GattDeviceConfig):
    """One device entry: ``name``, optional ``address`` (MAC) and the ``timezone`` of its clock."""

    driver: Literal["ble-blood-pressure"]


DRIVER = gatt_driver(
    "ble-blood-pressure",
    "Bluetooth SIG Blood Pressure Profile cuff (service 0x1810)",
    PROFILE,
    BloodPressureConfig,
)

__all__ = ["CHARACTERISTICS", "DRIVER", "PROFILE", "BloodPressureConfig"]
