"""The config fields every Bluetooth SIG health-profile device entry has."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, StringConstraints, field_validator

from healthhut.drivers.base import BleProfile, DeviceConfig, DriverSpec
from healthhut.drivers.gatt.decoder import DEFAULT_TIMEZONE

DeviceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
# A public or static random device address as BlueZ shows it.
MacAddress = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")]


class GattDeviceConfig(DeviceConfig):
    """One BLE health device. Without ``address`` the transport takes the first device offering the service.

    ``timezone`` is the zone the device's clock runs in: GATT time stamps carry none.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: DeviceName
    address: MacAddress | None = None
    timezone: str = DEFAULT_TIMEZONE
    # Pair on the first connect; without it the transport pairs only when the device refuses a request.
    pair: bool = False

    @field_validator("address")
    @classmethod
    def _upper_case(cls, value: str | None) -> str | None:
        # BlueZ names devices in upper case; one spelling keeps a device's identity stable.
        return None if value is None else value.upper()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        # OSError: a key that names a folder of the zone database ("Asia"), or is too long for a file name.
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"{value!r} is not an IANA time zone (for example Asia/Shanghai)") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def profile_characteristics(profile: BleProfile) -> frozenset[int]:
    """Every characteristic whose values the transport hands to the decoder."""
    return frozenset(profile.notify + profile.indicate + profile.read)


def gatt_driver(name: str, description: str, profile: BleProfile, config_model: type[GattDeviceConfig]) -> DriverSpec:
    """The DriverSpec of a SIG health profile: every one decodes with GattProfileDecoder limited to the
    profile's own characteristics, in the zone of the device entry's clock."""
    from healthhut.drivers.gatt.decoder import GattProfileDecoder

    characteristics = profile_characteristics(profile)

    def decoder_for(config: GattDeviceConfig) -> GattProfileDecoder:
        return GattProfileDecoder(tz=config.tz, characteristics=characteristics)

    return DriverSpec(
        name=name,
        description=description,
        transport="ble",
        config_model=config_model,
        new_decoder=lambda: GattProfileDecoder(characteristics=characteristics),
        decoder_for=decoder_for,
        ble=profile,
    )
