"""BLE scales of the Bluetooth SIG Weight Scale Profile: service 0x181D, per the GSS."""

from __future__ import annotations

from typing import Literal

from healthhut.drivers.base import BleProfile, DriverSpec
from healthhut.drivers.gatt import GattProfileDecoder
from healthhut.drivers.gatt.config import GattDeviceConfig, profile_characteristics

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


def _new_decoder() -> GattProfileDecoder:
    return GattProfileDecoder(characteristics=CHARACTERISTICS)


def _decoder_for(config: WeightScaleConfig) -> GattProfileDecoder:
    return GattProfileDecoder(tz=config.tz, characteristics=CHARACTERISTICS)


DRIVER = DriverSpec(
    name="ble-weight-scale",
    description="Bluetooth SIG Weight Scale Profile (service 0x181D)",
    transport="ble",
    config_model=WeightScaleConfig,
    new_decoder=_new_decoder,
    decoder_for=_decoder_for,
    ble=PROFILE,
)

__all__ = ["CHARACTERISTICS", "DRIVER", "PROFILE", "WeightScaleConfig"]
