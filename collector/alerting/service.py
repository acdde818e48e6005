"""The collector's alerting, put together: lifecycle, store, dispatcher, channels, acknowledgements.

:class:`AlertService` is what the ingest loop calls with each window's stored observations, before it
acknowledges them to the broker (so a collector that dies in between has them redelivered, and the
store's record of evaluated observations stops a second alert). Its ``run`` keeps the background work
going: the dispatcher, the lifecycle's clock (repeats, escalation, expiry), the MQTT link (alerts out
under ``hh/v1/alerts/{hut_id}``, an anonymous reading's alerts for the hut's own staff under
``hh/v1/alerts/{hut_id}/staff``, "measure again" commands to ``hh/v1/huts/{hut_id}/cmd``,
acknowledgements in on ``hh/v1/alerts/ack``) and the HTTP acknowledgement endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
from aiohttp import web

from healthhut.collector.alerting.dispatch import Dispatcher
from healthhut.collector.alerting.lifecycle import Lifecycle, Policy, Route, Router
from healthhut.collector.alerting.model import Audience
from healthhut.collector.alerting.notification import Attachment, Channel, DeliveryFailed, Notification
from healthhut.collector.alerting.store import Episode, SqliteAlertStore
from healthhut.collector.config import AlertingConfig, CollectorConfig, ContactConfig, Influx1Config, Influx2Config
from healthhut.collector.mqtt import make_client
from healthhut.collector.storage import query_influxql
from healthhut.protocol import Observation
from healthhut.protocol.topics import ALERTS, hut_topic, shared

log = logging.getLogger(__name__)

ACK_TOPIC = f"{ALERTS}/ack"


def staff_topic(hut_id: str) -> str:
    """Where a hut's own staff get its anonymous readings' alerts; the shipped ACL lets only that hut (its
    certificate) and the collectors read it, not the clinics' alerts-app."""
    return f"{ALERTS}/{hut_id}/staff"


# Fields of a stored ECG row that are the gateway's summary, not samples.
_SUMMARY_FIELDS = {
    "heart_rate",
    "rr_intervals",
    "signal_quality",
    "flags",
    "fit_for_alerting",
    "findings",
    "obs_id",
    "clock_gateway",
    "time",
    "hut",
    "subject",
    "driver",
    "device",
}
STRIP_SECONDS = 10.0
# How long to wait for an ECG strip to reach the database (it travels in its own message).
STRIP_WAIT_S = 5.0


def _read_secret(path: Path, what: str) -> str:
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the {what} ({exc.strerror})") from exc
    if not secret:
        raise ValueError(f"{path}: the {what} file is empty")
    return secret


class AckTokens:
    """Each contact's acknowledgement token; compared in constant time."""

    def __init__(self, config: AlertingConfig) -> None:
        self._tokens: list[tuple[bytes, ContactConfig]] = [
            (_read_secret(c.token_file, f"acknowledgement token of contact {c.name!r}").encode(), c)
            for c in config.contacts
            if c.token_file is not None
        ]
        health = config.http.health_token_file if config.http is not None else None
        self._monitor = _read_secret(health, "health token").encode() if health is not None else None

    def is_monitor(self, token: str | None) -> bool:
        """Is this the monitoring token (GET /v1/health only)?"""
        return bool(token) and self._monitor is not None and hmac.compare_digest(self._monitor, str(token).encode())

    def contact(self, token: str | None) -> ContactConfig | None:
        if not token:
            return None
        given = token.encode()
        found = None
        for secret, contact in self._tokens:
            if hmac.compare_digest(secret, given):
                found = contact
        return found

    def who(self, token: str | None) -> str | None:
        contact = self.contact(token)
        return contact.name if contact is not None else None


def make_router(config: AlertingConfig, *, webhook: bool, email: bool, mqtt: bool) -> Router:
    """Clinician and technician alerts: the webhook and MQTT ``hh/v1/alerts/{hut_id}`` carry every event.
    Hut-staff alerts (anonymous readings): only the hut's staff topic, never the webhook. Email goes to the
    contacts who cover the episode's audience and hut, at its escalation level (the highest level there is
    for them, once escalation has run out)."""

    def route(episode: Episode, event: str) -> list[Route]:
        audience, hut = episode.audience, episode.hut_id
        routes: list[Route] = []
        if audience == Audience.HUT_STAFF:
            if mqtt:
                routes.append(Route("staff"))
        else:
            if webhook:
                routes.append(Route("webhook"))
            if mqtt:
                routes.append(Route("mqtt"))
        contacts = [c for c in config.contacts if c.covers(audience, hut)]
        if email and event != "acknowledged" and contacts:
            available = sorted({c.level for c in contacts})
            at = available[min(episode.escalation_level, len(available) - 1)]
            addresses = tuple(c.email for c in contacts if c.email and c.level == at)
            if addresses:
                routes.append(Route("email", addresses))
        return routes

    return route


def escalation_levels(config: AlertingConfig) -> int:
    return max(1, len({c.level for c in config.contacts}))


class MqttLink:
    """The alerting's own broker connection: publishes alerts and commands, takes acknowledgements."""

    def __init__(self, config: CollectorConfig, on_ack: Any) -> None:
        self.config = config
        self.on_ack = on_ack
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()

    async def run(self) -> None:
        mqtt = self.config.mqtt
        delay = 0.5
        while True:
            try:
                async with make_client(mqtt, f"{mqtt.client_id}-alerts") as client:
                    await client.subscribe(shared(ACK_TOPIC, f"{mqtt.share_group}-alerts"), qos=1)
                    self.client = client
                    self.connected.set()
                    delay = 0.5
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        await self.on_ack(payload)
            except aiomqtt.MqttError as exc:
                log.warning("alerting: broker unavailable (%s); retrying in %.1f s", exc, delay)
            finally:
                self.client = None
                self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def publish(self, topic: str, document: Mapping[str, Any]) -> None:
        client = self.client
        if client is None:
            raise DeliveryFailed("not connected to the broker")
        try:
            payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
            await asyncio.wait_for(client.publish(topic, payload, qos=1), timeout=10)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            raise DeliveryFailed(f"publish to {topic} failed: {exc}") from exc


class MqttAlertChannel:
    """Clinician and technician alerts under hh/v1/alerts/{hut_id}, for dashboards and the clinics' alerts-app
    (no pictures). A hut-staff alert never goes here: :class:`HutStaffChannel`."""

    name = "mqtt"

    def __init__(self, link: MqttLink) -> None:
        self.link = link

    async def send(self, notification: Notification) -> None:
        await self.link.publish(f"{ALERTS}/{notification.document['hut_id']}", notification.document)

    async def close(self) -> None:
        return None


class HutStaffChannel:
    """A hut-staff alert under hh/v1/alerts/{hut_id}/staff: the hut's own staff channel (no pictures)."""

    name = "staff"

    def __init__(self, link: MqttLink) -> None:
        self.link = link

    async def send(self, notification: Notification) -> None:
        await self.link.publish(staff_topic(str(notification.document["hut_id"])), notification.document)

    async def close(self) -> None:
        return None


class HutCommandChannel:
    """ "Please measure again" to the hut that took the reading."""

    name = "command"

    def __init__(self, link: MqttLink) -> None:
        self.link = link

    async def send(self, notification: Notification) -> None:
        await self.link.publish(hut_topic(notification.recipients[0], "cmd"), notification.document)

    async def close(self) -> None:
        return None


class StripReader:
    """Reads an ECG strip back from InfluxDB by InfluxQL, for the picture an ECG alert carries."""

    def __init__(self, storage: Influx1Config | Influx2Config) -> None:
        self.storage = storage

    def read(self, spec: Mapping[str, Any]) -> tuple[list[float], float]:
        end = datetime.fromisoformat(str(spec["end"]).replace("Z", "+00:00"))
        start = end - timedelta(seconds=STRIP_SECONDS + 5)
        tags = {"hut": spec["hut_id"], "driver": spec["driver"], "device": spec["device_id"]}
        where = " AND ".join(f"\"{k}\" = '{str(v).replace(chr(39), '')}'" for k, v in tags.items())
        query = (
            f'SELECT * FROM "ecg" WHERE {where} AND time >= {int(start.timestamp() * 1e9)} '
            f"AND time <= {int((end + timedelta(seconds=2)).timestamp() * 1e9)} ORDER BY time ASC"
        )
        reply = query_influxql(self.storage, query)
        columns: list[str] = []
        rows: list[list[Any]] = []
        for result in reply.get("results", []):
            for series in result.get("series", []):
                columns = series["columns"]
                rows.extend(series["values"])
        if not rows:
            return [], 0.0
        best, count = None, 0
        for index, name in enumerate(columns):
            if name in _SUMMARY_FIELDS:
                continue
            n = sum(1 for row in rows if isinstance(row[index], (int, float)) and not isinstance(row[index], bool))
            if n > count:
                best, count = index, n
        if best is None or count < 2:
            return [], 0.0
        points = [(row[0], float(row[best])) for row in rows if isinstance(row[best], (int, float))]
        steps = sorted(b[0] - a[0] for a, b in itertools.pairwise(points))
        fs = 1e9 / steps[len(steps) // 2] if steps and steps[len(steps) // 2] > 0 else 0.0
        if fs <= 0:
            return [], 0.0
        keep = round(STRIP_SECONDS * fs)
        return [value for _, value in points[-keep:]], fs


class AlertService:
    def __init__(self, config: CollectorConfig) -> None:
        alerting = config.alerting
        self.config = config
        self.store = SqliteAlertStore(config.alerting_path)
        self.tokens = AckTokens(alerting)
        # The ingest's counts for GET /v1/health (set by the collector's run); None: not known here.
        self.health: Callable[[], dict[str, Any]] | None = None
        self.link = MqttLink(config, self._mqtt_ack)
        channels: dict[str, Channel] = {"command": HutCommandChannel(self.link)}
        if alerting.mqtt:
            channels["mqtt"] = MqttAlertChannel(self.link)
            channels["staff"] = HutStaffChannel(self.link)
        if alerting.webhook is not None:
            from healthhut.collector.alerting.channels import WebhookChannel

            secret = _read_secret(alerting.webhook.secret_file, "webhook secret").encode()
            channels["webhook"] = WebhookChannel(alerting.webhook.url, secret, timeout_s=alerting.webhook.timeout_s)
        if alerting.email is not None:
            from healthhut.collector.alerting.channels import EmailChannel, SmtpSettings

            smtp = alerting.email
            password = _read_secret(smtp.password_file, "SMTP password") if smtp.password_file else None
            channels["email"] = EmailChannel(
                SmtpSettings(
                    host=smtp.host,
                    port=smtp.port,
                    sender=smtp.sender,
                    starttls=smtp.starttls,
                    username=smtp.username,
                    password=password,
                    ca_file=smtp.ca_file,
                    timeout_s=smtp.timeout_s,
                )
            )
        self.channels = channels
        policy = Policy(
            confirm_window_s=alerting.confirm_window_s,
            confirm_min_gap_s=alerting.confirm_min_gap_s,
            repeat_interval_s=alerting.repeat_interval_s,
            escalate_after_s=alerting.escalate_after_s,
            levels=escalation_levels(alerting),
            flap_window_s=alerting.flap_window_s,
            device_failures=alerting.device_failures,
            device_failure_window_s=alerting.device_failure_window_s,
            visit_window_s=alerting.visit_window_s,
        )
        router = make_router(alerting, webhook="webhook" in channels, email="email" in channels, mqtt=alerting.mqtt)
        public = alerting.http.public_url if alerting.http is not None else None
        self.lifecycle = Lifecycle(self.store, policy, router, ack_base=public)
        self.dispatcher = Dispatcher(
            self.store,
            channels,
            self.render,
            max_attempts=alerting.max_attempts,
            backoff_max_s=alerting.backoff_max_s,
        )
        self.strips = StripReader(config.storage)
        self.http_port: int | None = None
        self.errors = 0

    # -- from the ingest loop ----------------------------------------------------------------------
    async def observe(self, observations: Sequence[Observation]) -> None:
        if not observations:
            return
        outcome = await asyncio.to_thread(self.lifecycle.observe, observations, time.time())
        if outcome.notifications or outcome.commands:
            self.dispatcher.wake()
        for alert_id, event in outcome.events:
            # Which alert and what happened; never the subject or a value (they are in the alert itself).
            log.info("alert %s %s", alert_id, event)

    # -- background --------------------------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.dispatcher.run(), name="alert-dispatch")
            group.create_task(self._clock(), name="alert-clock")
            group.create_task(self.link.run(), name="alert-mqtt")
            if self.config.alerting.http is not None:
                group.create_task(self._serve_http(), name="alert-http")

    async def close(self) -> None:
        for channel in self.channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
        self.store.close()

    async def _clock(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(self.config.alerting.tick_s)
            now = time.time()
            outcome = await asyncio.to_thread(self.lifecycle.tick, now)
            if outcome.notifications:
                self.dispatcher.wake()
            if now - last_prune > 3600:
                # Keep what the trend baseline needs, and a redelivery's memory well beyond any spool's age.
                await asyncio.to_thread(self.store.prune, now - 40 * 86400)
                last_prune = now

    # -- pictures ----------------------------------------------------------------------------------
    async def render(self, attach: Mapping[str, Any]) -> tuple[Attachment, ...]:
        from healthhut.collector.alerting import plots

        pictures: list[Attachment] = []
        strip = attach.get("ecg_strip")
        if strip is not None:
            deadline = time.monotonic() + STRIP_WAIT_S
            samples, fs = await asyncio.to_thread(self.strips.read, strip)
            while not samples and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                samples, fs = await asyncio.to_thread(self.strips.read, strip)
            if samples:
                png = await asyncio.to_thread(_ecg_picture, samples, fs, strip)
                pictures.append(Attachment("ecg-strip.png", "image/png", png))
            else:
                log.warning("alert picture: no ECG strip in the database for %s yet", strip.get("end"))
        trend = attach.get("trend")
        if trend is not None:
            history = [(datetime.fromisoformat(at.replace("Z", "+00:00")), float(v)) for at, v in trend["history"]]
            at, value = trend["current"]
            png = await asyncio.to_thread(
                plots.trend_png,
                history,
                (datetime.fromisoformat(at.replace("Z", "+00:00")), float(value)),
                float(trend["baseline_median"]),
                float(trend["threshold"]),
                label=str(trend["name"]),
                unit="mmHg" if trend["unit"] == "mm[Hg]" else str(trend["unit"]),
                title=f"{trend['name']}: 30-day baseline",
            )
            pictures.append(Attachment("trend.png", "image/png", png))
        return tuple(pictures)

    # -- acknowledgements --------------------------------------------------------------------------
    async def acknowledge(self, alert_id: str, token: str | None) -> tuple[int, dict[str, Any]]:
        """A contact acknowledges an alert of its own audience and huts only: hut staff cannot silence a
        clinician's alert, nor a clinician one meant for a hut's staff."""
        contact = self.tokens.contact(token)
        if contact is None:
            return 401, {"error": "a valid contact token is required"}
        found = await asyncio.to_thread(self.lifecycle.episode, alert_id)
        if found is None:
            return 404, {"error": f"no alert {alert_id!r}"}
        if not contact.covers(found.audience, found.hut_id):
            return 403, {"error": f"contact {contact.name!r} does not handle {found.audience} alerts of this hut"}
        episode = await asyncio.to_thread(self.lifecycle.acknowledge, alert_id, contact.name, time.time())
        if episode is None:
            return 404, {"error": f"no alert {alert_id!r}"}
        self.dispatcher.wake()
        log.info("alert %s acknowledged by %s", alert_id, contact.name)
        return 200, _episode_summary(episode)

    async def _mqtt_ack(self, payload: bytes) -> None:
        try:
            request = json.loads(payload)
            alert_id, token = str(request["alert_id"]), str(request["token"])
        except (ValueError, KeyError, TypeError):
            log.warning('alerting: an acknowledgement on %s that is not {"alert_id", "token"} JSON', ACK_TOPIC)
            return
        status, _ = await self.acknowledge(alert_id, token)
        if status != 200:
            log.warning("alerting: acknowledgement of %s over MQTT refused (%d)", alert_id, status)

    async def _serve_http(self) -> None:
        http = self.config.alerting.http
        assert http is not None
        app = web.Application()
        app.router.add_post("/v1/alerts/{alert_id}/ack", self._http_ack)
        app.router.add_get("/v1/alerts", self._http_list)
        app.router.add_get("/v1/health", self._http_health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, http.host, http.port)
        await site.start()
        self.http_port = int(runner.addresses[0][1])
        log.info("alert acknowledgements on http://%s:%d/v1/alerts/{alert_id}/ack", http.host, self.http_port)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    @staticmethod
    def _bearer(request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        return header[7:].strip() if header.lower().startswith("bearer ") else None

    async def _http_ack(self, request: web.Request) -> web.Response:
        status, body = await self.acknowledge(request.match_info["alert_id"], self._bearer(request))
        return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    async def _http_health(self, request: web.Request) -> web.Response:
        """For monitoring: is the collector subscribed, what has it handled, and are alerts going out.
        Counts only. 200 when healthy, 503 when not (not subscribed, or notifications dead-lettered)."""
        token = self._bearer(request)
        if self.tokens.who(token) is None and not self.tokens.is_monitor(token):
            return web.json_response({"error": "a valid health or contact token is required"}, status=401)
        ingest = self.health() if self.health is not None else {}
        open_alerts = await asyncio.to_thread(self.store.episodes, open_only=True)
        dead = await asyncio.to_thread(self.store.outbox, "dead", 1000)
        healthy = bool(ingest.get("subscribed", True)) and not dead and self.link.connected.is_set()
        body = {
            "status": "ok" if healthy else "degraded",
            "ingest": ingest,
            "alerts": {"open": len(open_alerts), "undelivered": len(dead), "mqtt": self.link.connected.is_set()},
        }
        return web.json_response(body, status=200 if healthy else 503)

    async def _http_list(self, request: web.Request) -> web.Response:
        """The open alerts the token's contact handles (its audiences, its huts)."""
        contact = self.tokens.contact(self._bearer(request))
        if contact is None:
            return web.json_response({"error": "a valid contact token is required"}, status=401)
        episodes = await asyncio.to_thread(self.store.episodes, open_only=True)
        return web.json_response(
            [_episode_summary(e) for e in episodes if contact.covers(e.audience, e.hut_id)],
            dumps=lambda o: json.dumps(o, ensure_ascii=False),
        )


def _episode_summary(episode: Episode) -> dict[str, Any]:
    return {
        "alert_id": episode.alert_id,
        "rule": episode.rule,
        "severity": episode.severity,
        "audience": episode.audience,
        "hut_id": episode.hut_id,
        "state": episode.state,
        "message": episode.detail.get("message"),
        "message_en": episode.detail.get("message_en"),
        "observed_at": episode.detail.get("observed_at"),
        "acknowledged": {"by": episode.acked_by, "at": episode.acked_at} if episode.acked_at else None,
    }


def _ecg_picture(samples: list[float], fs: float, strip: Mapping[str, Any]) -> bytes:
    import numpy as np

    from healthhut.collector.alerting import plots

    signal = np.asarray(samples, dtype=float)
    if not np.all(np.isfinite(signal)):
        signal = np.nan_to_num(signal)
    rr = [float(v) for v in strip.get("rr_intervals") or [] if math.isfinite(float(v))]
    beats = plots.locate_beats(signal, fs, rr)
    title = f"{strip['hut_id']}  ECG  {strip['end']}  (25 mm/s, 10 mm/mV)"
    png: bytes = plots.ecg_strip_png(signal, fs, beats, title=title)
    return png
