"""BLE blood-pressure cuffs of the Bluetooth SIG Blood Pressure Profile: service 0x1810, per the GSS."""

from __future__ import annotations

from typing import Literal

from healthhut.drivers.base import BleProfile, DriverSpec
from healthhut.drivers.gatt import GattProfileDecoder
from healthhut.drivers.gatt.config import GattDeviceConfig, profile_characteristics

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


def _new_decoder() -> GattProfileDecoder:
    return GattProfileDecoder(characteristics=CHARACTERISTICS)


def _decoder_for(config: BloodPressureConfig) -> GattProfileDecoder:
    return GattProfileDecoder(tz=config.tz, characteristics=CHARACTERISTICS)


DRIVER = DriverSpec(
    name="ble-blood-pressure",
    description="Bluetooth SIG Blood Pressure Profile cuff (service 0x1810)",
    transport="ble",
    config_model=BloodPressureConfig,
    new_decoder=_new_decoder,
    decoder_for=_decoder_for,
    ble=PROFILE,
)

__all__ = ["CHARACTERISTICS", "DRIVER", "PROFILE", "BloodPressureConfig"]
