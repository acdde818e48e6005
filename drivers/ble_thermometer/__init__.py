"""BLE thermometers of the Bluetooth SIG Health Thermometer Profile: service 0x1809, per the GSS."""

from __future__ import annotations

from typing import Literal

from healthhut.drivers.base import BleProfile, DriverSpec
from healthhut.drivers.gatt import GattProfileDecoder
from healthhut.drivers.gatt.config import GattDeviceConfig, profile_characteristics

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


def _new_decoder() -> GattProfileDecoder:
    return GattProfileDecoder(characteristics=CHARACTERISTICS)


def _decoder_for(config: ThermometerConfig) -> GattProfileDecoder:
    return GattProfileDecoder(tz=config.tz, characteristics=CHARACTERISTICS)


DRIVER = DriverSpec(
    name="ble-thermometer",
    description="Bluetooth SIG Health Thermometer Profile (service 0x1809)",
    transport="ble",
    config_model=ThermometerConfig,
    new_decoder=_new_decoder,
    decoder_for=_decoder_for,
    ble=PROFILE,
)

__all__ = ["CHARACTERISTICS", "DRIVER", "PROFILE", "ThermometerConfig"]
