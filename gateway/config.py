"""The gateway's TOML config: hut identity, broker, uplink tuning and one entry per device.

Each ``[[devices]]`` entry is validated by its own driver's model (found through the registry), so a
wrong key in a device entry is reported with the file, the line and the key.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from healthhut.drivers import DeviceConfig, DriverNotFoundError, get_driver
from healthhut.protocol.configfile import (
    BrokerConfig,
    ConfigError,
    FrozenConfig,
    key_path,
    locate,
    read_toml,
    validate,
)
from healthhut.protocol.topics import HUT_ID_PATTERN


class MqttConfig(BrokerConfig):
    """The broker: host, port and [mqtt.tls] (or insecure_plaintext) are BrokerConfig's."""

    keepalive: int = Field(default=30, ge=5, le=3600)
    username: str | None = None
    password: str | None = None


class UplinkConfig(FrozenConfig):
    batch_max: int = Field(default=100, ge=1, le=500)
    # How long a batch may wait for more items before it is sent. Short, because an alarming reading
    # must reach a clinician within a second of entering the gateway (scripts/bench latency); a backlog
    # still goes in full batches, since the spool then holds more than one batch.
    batch_interval_s: float = Field(default=0.2, gt=0, le=60)
    in_flight: int = Field(default=8, ge=1, le=64)
    # A message the collector has not confirmed as stored within this time is sent again.
    store_ack_timeout_s: float = Field(default=15.0, gt=0)
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    # While connected, the retained status (with device, spool and uplink health) is republished this often.
    status_interval_s: float = Field(default=60.0, ge=1, le=3600)


class ClockConfig(FrozenConfig):
    # A device clock further than this from the gateway's marks its readings clock_unverified.
    max_device_skew_s: float = Field(default=300, gt=0)


class SignalConfig(FrozenConfig):
    # Mains frequency for the ECG notch filter: 50 Hz in China, 60 Hz in some other countries.
    mains_hz: Literal[50, 60] = 50


class SpoolConfig(FrozenConfig):
    # Default: spool.sqlite in state_dir.
    path: Path | None = None
    quota_mb: float = Field(default=512, gt=0)


class IdentityConfig(FrozenConfig):
    """Resident sessions: the pseudonym key and the kiosk's local API (see gateway/identity)."""

    # HMAC key turning resident identifiers into pseudonyms: hex, readable by the gateway's user only.
    key_file: Path
    # The kiosk app's local API; loopback only. Port 0 picks a free one (tests).
    kiosk_host: str = "127.0.0.1"
    kiosk_port: int = Field(default=8765, ge=0, le=65535)
    # A session with no reading for this long ends by itself.
    idle_timeout_s: float = Field(default=300, gt=0)
    # A reading without a device time arriving this soon after one resident's session ended and
    # another's began is nobody's: it is kept anonymous and flagged subject_conflict. A live device
    # silent this long has ended its measurement run (see gateway/identity/sessions.py).
    ambiguity_s: float = Field(default=10, ge=0)

    @field_validator("kiosk_host")
    @classmethod
    def _loopback(cls, host: str) -> str:
        # An address, not a name: what "localhost" resolves to is up to /etc/hosts.
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"write a loopback address (127.0.0.1 or ::1), not {host[:64]!r}") from None
        if not address.is_loopback:
            raise ValueError(f"the kiosk API listens on loopback only (127.0.0.1 or ::1), not {host}")
        return host


class GatewayConfig(FrozenConfig):
    hut_id: Annotated[str, StringConstraints(pattern=HUT_ID_PATTERN)]
    state_dir: Path
    mqtt: MqttConfig = MqttConfig()
    uplink: UplinkConfig = UplinkConfig()
    spool: SpoolConfig = SpoolConfig()
    clock: ClockConfig = ClockConfig()
    signal: SignalConfig = SignalConfig()
    identity: IdentityConfig | None = None
    devices: list[dict[str, Any]] = Field(default_factory=list)
    # Filled by load_config from ``devices``; not a TOML key.
    device_configs: tuple[DeviceConfig, ...] = Field(default=(), exclude=True)

    @property
    def spool_path(self) -> Path:
        return self.spool.path or self.state_dir / "spool.sqlite"


def load_config(path: Path | str) -> GatewayConfig:
    """Load and validate the gateway config; ConfigError names the file, line and key."""
    path = Path(path)
    text, data = read_toml(path)
    if "device_configs" in data:
        raise ConfigError(path, "device_configs", "unknown key (check its spelling)", locate(text, ("device_configs",)))
    config = validate(path, text, data, GatewayConfig)
    devices: list[DeviceConfig] = []
    seen: set[str] = set()
    for index, entry in enumerate(config.devices):
        where: tuple[int | str, ...] = ("devices", index)
        driver_name = entry.get("driver")
        if not isinstance(driver_name, str):
            loc = (*where, "driver")
            if driver_name is None:
                raise ConfigError(path, key_path(loc), "required key is missing", locate(text, where))
            kind = {bool: "a boolean", int: "an integer", float: "a float", dict: "a table", list: "an array"}
            message = f"must be a driver's name in quotes, not {kind.get(type(driver_name), 'a date or time')}"
            raise ConfigError(path, key_path(loc), message, locate(text, loc))
        try:
            spec = get_driver(driver_name)
        except DriverNotFoundError as exc:
            loc = (*where, "driver")
            raise ConfigError(path, key_path(loc), str(exc), locate(text, loc)) from None
        device = validate(path, text, entry, spec.config_model, prefix=where)
        if device.name in seen:
            loc = (*where, "name")
            raise ConfigError(path, key_path(loc), f"device name {device.name!r} is used twice", locate(text, loc))
        seen.add(device.name)
        devices.append(device)
    return config.model_copy(update={"device_configs": tuple(devices)})
