"""The collector's TOML config: broker, storage backend (InfluxDB 1.x or the v2 API) and dead letters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from healthhut.collector.alerting.model import Audience
from healthhut.protocol.configfile import BrokerConfig, FrozenConfig, load_toml
from healthhut.protocol.wire import HutId


class MqttConfig(BrokerConfig):
    """The broker: host, port and [mqtt.tls] (or insecure_plaintext) are BrokerConfig's."""

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


class WebhookConfig(FrozenConfig):
    url: str = Field(pattern=r"^https?://")

    @field_validator("url")
    @classmethod
    def _reachable_safely(cls, url: str) -> str:
        from healthhut.collector.alerting.channels import check_webhook_url

        return check_webhook_url(url)

    # The HMAC-SHA256 key the receiver checks signatures with (the file's bytes, stripped).
    secret_file: Path
    timeout_s: float = Field(default=10.0, gt=0)


class EmailConfig(FrozenConfig):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    starttls: bool = True
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    timeout_s: float = Field(default=20.0, gt=0)


class ContactConfig(FrozenConfig):
    """Someone alerts go to. Level 0 is told first; an alert nobody acknowledges in ``escalate_after_s``
    goes to level 1, and so on (within the alert's audience: a hut-staff alert never escalates to a
    clinician). ``huts`` limits the contact to those huts' alerts; a contact whose audience includes
    ``hut_staff`` must name its huts, since a hut's anonymous alerts are for that hut's own staff only."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    level: int = Field(default=0, ge=0, le=9)
    audience: list[Audience] = Field(default_factory=lambda: [Audience.CLINICIAN], min_length=1)
    # Only these huts' alerts (email, acknowledgement, GET /v1/alerts); None: every hut's.
    huts: list[HutId] | None = Field(default=None, min_length=1, validate_default=True)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    # A secret this contact acknowledges alerts with (HTTP bearer token, or "token" in an MQTT ack).
    token_file: Path | None = None

    @field_validator("huts")
    @classmethod
    def _hut_staff_name_their_huts(cls, huts: list[str] | None, info: ValidationInfo) -> list[str] | None:
        audience = info.data.get("audience") or []
        if huts is None and Audience.HUT_STAFF in audience:
            raise ValueError('huts is missing: a hut_staff contact must list its huts (huts = ["hut-id", ...])')
        if huts is not None and len(set(huts)) != len(huts):
            raise ValueError("a hut is listed more than once")
        return huts

    def covers(self, audience: str, hut_id: str) -> bool:
        """Is an alert for ``audience`` at ``hut_id`` this contact's to receive and acknowledge?"""
        return audience in self.audience and (self.huts is None or hut_id in self.huts)


class AlertHttpConfig(FrozenConfig):
    """The collector's HTTP endpoints, each needing a bearer token: POST /v1/alerts/{alert_id}/ack and
    GET /v1/alerts (a contact's token), GET /v1/health (the health token, or a contact's)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8470, ge=0, le=65535)
    # The address clinicians reach it at, for the ack link in each alert (behind a TLS proxy).
    public_url: str | None = Field(default=None, pattern=r"^https?://")
    # A secret for monitoring: GET /v1/health with it as the bearer token (a contact's token works too).
    health_token_file: Path | None = None


class AlertingConfig(FrozenConfig):
    """Alert rules, lifecycle and channels; README.md ("Alerts") explains each setting."""

    enabled: bool = True
    path: Path | None = None  # default: alerts.sqlite beside the dead letters
    confirm_window_s: float = Field(default=900.0, gt=0)
    confirm_min_gap_s: float = Field(default=10.0, ge=0)
    repeat_interval_s: float = Field(default=3600.0, gt=0)
    escalate_after_s: float = Field(default=900.0, gt=0)
    flap_window_s: float = Field(default=1800.0, ge=0)
    device_failures: int = Field(default=3, ge=1)
    device_failure_window_s: float = Field(default=3600.0, gt=0)
    # One visit's readings add up to the partial NEWS2 total.
    visit_window_s: float = Field(default=1800.0, gt=0)
    tick_s: float = Field(default=5.0, gt=0)
    # Delivery: attempts per notification before it is dead-lettered, with exponential backoff between.
    max_attempts: int = Field(default=10, ge=1)
    backoff_max_s: float = Field(default=600.0, gt=0)
    # Publish alerts under hh/v1/alerts/{hut_id} and take acknowledgements on hh/v1/alerts/ack.
    mqtt: bool = True
    webhook: WebhookConfig | None = None
    email: EmailConfig | None = None
    http: AlertHttpConfig | None = None
    contacts: list[ContactConfig] = Field(default_factory=list)


class CollectorConfig(FrozenConfig):
    mqtt: MqttConfig = MqttConfig()
    storage: StorageConfig
    dead_letters: DeadLetterConfig
    ingest: IngestConfig = IngestConfig()
    sequence: SequenceConfig = SequenceConfig()
    alerting: AlertingConfig = AlertingConfig()

    @property
    def alerting_path(self) -> Path:
        return self.alerting.path or self.dead_letters.path.with_name("alerts.sqlite")

    @property
    def sequence_path(self) -> Path:
        return self.sequence.path or self.dead_letters.path.with_name("sequence.sqlite")


def load_config(path: Path | str) -> CollectorConfig:
    return load_toml(path, CollectorConfig)
