"""BLE glucose meters of the Bluetooth SIG Glucose Profile: service 0x1808, stored records through RACP, per the GSS."""

from __future__ import annotations

from typing import Literal

from healthhut.drivers.base import BleProfile
from healthhut.drivers.gatt.config import GattDeviceConfig, gatt_driver, profile_characteristics

PROFILE = BleProfile(
    service=0x1808,
    # Records (and their contexts) are notified in answer to an RACP request; RACP responses are indicated.
    notify=(0x2A18, 0x2A34),
    indicate=(0x2A52,),
    read=(0x2A51,),
    current_time=True,
    racp=True,
)
CHARACTERISTICS = profile_characteristics(PROFILE)


class GlucoseConfig(GattDeviceConfig):
    """One device entry: ``name``, optional ``address`` (MAC) and the ``timezone`` of its clock."""

    driver: Literal["ble-glucose"]


DRIVER = gatt_driver(
    "ble-glucose",
    "Bluetooth SIG Glucose Profile meter (service 0x1808), stored records through RACP",
    PROFILE,
    GlucoseConfig,
)

__all__ = ["CHARACTERISTICS", "DRIVER", "PROFILE", "GlucoseConfig"]
