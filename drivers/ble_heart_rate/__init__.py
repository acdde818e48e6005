"""BLE heart-rate sensors of the Bluetooth SIG Heart Rate Profile: service 0x180D, per the GSS."""

from __future__ import annotations

from typing import Literal

from healthhut.drivers.base import BleProfile, DriverSpec
from healthhut.drivers.gatt import GattProfileDecoder
from healthhut.drivers.gatt.config import GattDeviceConfig, profile_characteristics

PROFILE = BleProfile(
    service=0x180D,
    # The measurement carries no time stamp: there is no clock to set.
    notify=(0x2A37,),
)
CHARACTERISTICS = profile_characteristics(PROFILE)


class HeartRateConfig(GattDeviceConfig):
    """One device entry: ``name``, optional ``address`` (MAC) and the ``timezone`` of its clock."""

    driver: Literal["ble-heart-rate"]


def _new_decoder() -> GattProfileDecoder:
    return GattProfileDecoder(characteristics=CHARACTERISTICS)


def _decoder_for(config: HeartRateConfig) -> GattProfileDecoder:
    return GattProfileDecoder(tz=config.tz, characteristics=CHARACTERISTICS)


DRIVER = DriverSpec(
    name="ble-heart-rate",
    description="Bluetooth SIG Heart Rate Profile sensor (service 0x180D)",
    transport="ble",
    config_model=HeartRateConfig,
    new_decoder=_new_decoder,
    decoder_for=_decoder_for,
    ble=PROFILE,
)

__all__ = ["CHARACTERISTICS", "DRIVER", "PROFILE", "HeartRateConfig"]
