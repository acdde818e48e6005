"""BLE pulse oximeters of the Bluetooth SIG Pulse Oximeter Profile: service 0x1822, per the GSS."""

from __future__ import annotations

from typing import Literal

from healthhut.drivers.base import BleProfile, DriverSpec
from healthhut.drivers.gatt import GattProfileDecoder
from healthhut.drivers.gatt.config import GattDeviceConfig, profile_characteristics

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


def _new_decoder() -> GattProfileDecoder:
    return GattProfileDecoder(characteristics=CHARACTERISTICS)


def _decoder_for(config: PulseOximeterConfig) -> GattProfileDecoder:
    return GattProfileDecoder(tz=config.tz, characteristics=CHARACTERISTICS)


DRIVER = DriverSpec(
    name="ble-pulse-oximeter",
    description="Bluetooth SIG Pulse Oximeter Profile (service 0x1822)",
    transport="ble",
    config_model=PulseOximeterConfig,
    new_decoder=_new_decoder,
    decoder_for=_decoder_for,
    ble=PROFILE,
)

__all__ = ["CHARACTERISTICS", "DRIVER", "PROFILE", "PulseOximeterConfig"]
