"""The collector's TOML config: broker, storage backend (InfluxDB 1.x or the v2 API) and dead letters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from healthhut.protocol.configfile import FrozenConfig, TlsConfig, load_toml


class MqttConfig(FrozenConfig):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(default="collector-1", min_length=1, max_length=64)
    share_group: str = Field(default="collectors", pattern=r"^[A-Za-z0-9_-]+$")
    username: str | None = None
    password: str | None = None
    keepalive: int = Field(default=30, ge=5, le=3600)
    # MQTT 5 Receive Maximum: how many unacknowledged messages the broker may push at once.
    receive_maximum: int = Field(default=64, ge=1, le=65535)
    # How long the broker keeps this collector's session (its subscription and the messages waiting for
    # it) while it is disconnected. Longer than any restart; not forever, or a retired collector's
    # share group would collect every hut's messages on the broker indefinitely.
    session_expiry_s: int = Field(default=3600, ge=0, le=2**32 - 1)
    tls: TlsConfig | None = None


class Influx1Config(FrozenConfig):
    """InfluxDB 1.x through its ``/write`` endpoint (Debian's influxdb 1.6.7)."""

    type: Literal["influxdb1"]
    url: str = "http://127.0.0.1:8086"
    database: str = "healthhut"
    username: str | None = None
    password: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)


class Influx2Config(FrozenConfig):
    """InfluxDB 2.x / 3.x / Cloud (and VictoriaMetrics) through influxdb-client's v2 write API."""

    type: Literal["influxdb2"]
    url: str
    org: str = "healthhut"
    bucket: str = "healthhut"
    token: str = ""
    timeout_s: float = Field(default=10.0, gt=0)


StorageConfig = Annotated[Influx1Config | Influx2Config, Field(discriminator="type")]


class DeadLetterConfig(FrozenConfig):
    path: Path
    max_payload_bytes: int = Field(default=16 * 1024, ge=256)


class IngestConfig(FrozenConfig):
    """How messages are taken in: written to the database a window at a time, and limited per hut."""

    # One database write carries the points of up to this many messages (never more than the broker may
    # have unacknowledged, MQTT Receive Maximum) ...
    window_messages: int = Field(default=64, ge=1, le=65535)
    # ... and stops taking messages once it holds this many points (a waveform message is thousands).
    window_points: int = Field(default=20_000, ge=1)
    # A message larger than this is refused as "too_large" (the protocol's own limit is 256 KiB).
    max_message_bytes: int = Field(default=256 * 1024, ge=1024)
    # Per hut: a sustained rate and a burst. A message over the limit is neither stored nor confirmed, so
    # the hut keeps it in its spool and sends it again later; nothing is lost.
    hut_messages_per_s: float = Field(default=50.0, gt=0)
    hut_burst: int = Field(default=500, ge=1)


class SequenceConfig(FrozenConfig):
    """The ledger of each hut's message numbers (gaps and duplicates). Collectors on one host that share
    a subscription must point at the same file."""

    path: Path | None = None  # default: sequence.sqlite beside the dead letters
    # How long a hole may stay open after a later number arrived before it is reported as a gap.
    grace_s: float = Field(default=600.0, gt=0)
    sweep_interval_s: float = Field(default=60.0, gt=0)


class CollectorConfig(FrozenConfig):
    mqtt: MqttConfig = MqttConfig()
    storage: StorageConfig
    dead_letters: DeadLetterConfig
    ingest: IngestConfig = IngestConfig()
    sequence: SequenceConfig = SequenceConfig()

    @property
    def sequence_path(self) -> Path:
        return self.sequence.path or self.dead_letters.path.with_name("sequence.sqlite")


def load_config(path: Path | str) -> CollectorConfig:
    return load_toml(path, CollectorConfig)
