"""The end-to-end demo: real servers, the collector, the gateway and simulated devices, then a summary.

``scripts/demo`` runs this after installing what is missing. Plain, it plays two oximeters and prints what
reached InfluxDB, read back from InfluxDB itself, not from any program's own counters. With ``--scenario``
it plays clinical scenarios (``healthhut.devstack.scenarios``) with alerting on and judges each by the
alerts that really arrived: at a signed webhook (its own receiver, or ``--alert-webhook``), on MQTT, and on
the hut staff's topic (``scenarios.expectation``: what a host clock that is not NTP-synchronised changes).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ipaddress
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
from aiohttp import web

from healthhut.collector.alerting.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from healthhut.collector.alerting.service import staff_topic
from healthhut.devstack.fakebluez import FakeBlueZ
from healthhut.devstack.programs import MODULES, Programs
from healthhut.devstack.scenarios import SCENARIOS, DemoScenario, Expectation, SimDevice, expectation
from healthhut.devstack.servers import Influxd1, LocalStack, ServerError, free_port
from healthhut.gateway.clock import kernel_clock_synchronised
from healthhut.protocol import Observation, ObservationBatch, StoreAck, decode, decode_ack, hut_topic
from healthhut.protocol.topics import ALERTS

DATABASE = "healthhut"
HUT_ID = "demo-hut-01"


@dataclass
class Device:
    """One simulated instrument: which driver hut-sim plays, and its settings."""

    driver: str
    name: str
    sim_args: tuple[str, ...]


DEVICES = (
    Device("contec-cms50", "oximeter-1", ("--spo2", "97", "--pulse-rate", "72", "--seed", "1")),
    Device("contec-cms50", "oximeter-2", ("--spo2", "93", "--pulse-rate", "88", "--seed", "2")),
)


def write_configs(folder: Path, stack: LocalStack) -> tuple[Path, Path]:
    mosquitto, influxd = stack.mosquitto, stack.influxd
    collector = folder / "collector.toml"
    collector.write_text(
        f"""[mqtt]
host = "127.0.0.1"
port = {mosquitto.port}
client_id = "demo-collector"

[storage]
type = "influxdb1"
url = "{influxd.url}"
database = "{DATABASE}"

[dead_letters]
path = "{folder / "dead-letters.sqlite"}"
"""
    )
    gateway = folder / "gateway.toml"
    devices = "".join(
        f"""
[[devices]]
driver = "{device.driver}"
name = "{device.name}"
path = "{folder / device.name}"
"""
        for device in DEVICES
    )
    gateway.write_text(
        f"""hut_id = "{HUT_ID}"
state_dir = "{folder / "gateway-state"}"

[mqtt]
host = "127.0.0.1"
port = {mosquitto.port}
{devices}"""
    )
    return collector, gateway


def _query(influxd: Influxd1, q: str) -> list[dict[str, Any]]:
    result = influxd.query(q, db=DATABASE)
    rows: list[dict[str, Any]] = []
    for statement in result.get("results", []):
        for series in statement.get("series", []):
            for values in series.get("values", []):
                row = dict(zip(series["columns"], values, strict=True))
                row.update(series.get("tags") or {})
                row["_measurement"] = series["name"]
                rows.append(row)
    return rows


def summary(influxd: Influxd1) -> tuple[str, int]:
    """What reached InfluxDB, per kind; and how many spot observations that is."""
    lines = [f"What reached InfluxDB ({influxd.url}, database {DATABASE!r}):"]
    try:
        measurements = [row["name"] for row in _query(influxd, "SHOW MEASUREMENTS")]
    except ServerError as exc:  # no database: the collector never wrote anything
        measurements = []
        lines.append(f"  ({exc.args[0]})")
    spot = 0
    for name in measurements:
        counts = _query(influxd, f'SELECT COUNT(*) FROM "{name}"')
        n = max((v for k, v in counts[0].items() if k.startswith("count_")), default=0) if counts else 0
        first = _query(influxd, f'SELECT * FROM "{name}" ORDER BY time ASC LIMIT 1')
        last = _query(influxd, f'SELECT * FROM "{name}" ORDER BY time DESC LIMIT 1')
        span = f"  {first[0]['time']} .. {last[0]['time']}" if first and last else ""
        lines.append(f"  {name:<16} {n:>7} points{span}")
        if name == "spo2":
            spot += n
            for row in _query(
                influxd,
                'SELECT COUNT(spo2), MEAN(spo2), MIN(spo2), MAX(spo2), MEAN(pulse_rate) FROM "spo2" GROUP BY device',
            ):
                lines.append(
                    f"      {row.get('device', '?')}: {row['count']} observations, SpO2 mean {row['mean']:.1f} % "
                    f"(min {row['min']:.0f}, max {row['max']:.0f}), pulse rate mean {row['mean_1']:.1f} /min"
                )
    if not measurements:
        lines.append("  nothing")
    return "\n".join(lines), spot


def _stored_spo2(influxd: Influxd1) -> int:
    try:
        count = _query(influxd, 'SELECT COUNT(spo2) FROM "spo2"')
    except ServerError:  # the collector has not created the database yet
        return 0
    return int(count[0]["count"]) if count else 0


def run(duration: float, keep: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="healthhut-demo-") as tmp:
        folder = Path(tmp)
        print(f"starting mosquitto and influxd in {folder} ...", flush=True)
        with LocalStack(folder / "servers", mosquitto=True, influxd=True, victoria=False) as stack:
            print(f"  mosquitto on 127.0.0.1:{stack.mosquitto.port}, influxd on {stack.influxd.url}", flush=True)
            collector_config, gateway_config = write_configs(folder, stack)
            with Programs(folder / "logs") as programs:
                programs.start("collector", "hut-collector", "run", "--config", str(collector_config))
                # The collector's broker session must exist before huts publish, or the first batches
                # would go to nobody (in production that session persists).
                programs.wait_for_log("collector", "subscribed")
                for device in DEVICES:
                    programs.start(
                        f"sim-{device.name}",
                        "hut-sim",
                        "play",
                        device.driver,
                        "--link",
                        str(folder / device.name),
                        "--duration",
                        str(duration + 5),
                        "--quiet",
                        *device.sim_args,
                    )
                programs.start("gateway", "hut-gateway", "run", "--config", str(gateway_config))
                print(f"collector, gateway and {len(DEVICES)} simulated device(s) running for {duration:.0f} s")
                started = time.monotonic()
                while (elapsed := time.monotonic() - started) < duration:
                    time.sleep(min(10.0, duration - elapsed))
                    programs.check_running("collector", "gateway")
                    stored = _stored_spo2(stack.influxd)
                    print(f"  {time.monotonic() - started:>5.0f} s: {stored} SpO2 observations stored")
                # The gateway first, so that it drains what it holds; then the collector.
                programs.stop("gateway")
                programs.stop("collector")
                logs = {name: programs.log(name) for name in programs.processes}
            text, spot = summary(stack.influxd)
            print(text)
            if keep:
                input(f"everything is in {folder}; press Enter to stop the servers and remove it ")
            if spot == 0:
                print("demo FAILED: no observation reached InfluxDB. Logs:", file=sys.stderr)
                for name, text in logs.items():
                    print(f"--- {name}\n{text}", file=sys.stderr)
                return 1
            print("demo OK")
            return 0


# --- clinical scenarios ---------------------------------------------------------------------------------------

PROGRESS_EVERY_S = 5.0
# After what a scenario waits for has happened: time for anything else already on its way to arrive.
SETTLE_S = 3.0
# After the redelivery: time for the collector to confirm the resent messages and for any alert to follow.
RESEND_WAIT_S = 15.0
RESEND_QUIET_S = 3.0
# The collector's per-hut burst is 500 messages: resend at a pace it takes whole.
RESEND_PER_S = 40
PROGRAM_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ReceivedAlert:
    """An alert document as it arrived: at the webhook (with its attachments) or on MQTT, and when."""

    document: Mapping[str, Any]
    arrived_at: float  # time.time() at receipt
    channel: str  # "webhook", "mqtt", or "staff" (MQTT, the hut staff's topic: anonymous readings' alerts)

    @property
    def key(self) -> tuple[str, str]:
        return str(self.document.get("alert_id")), str(self.document.get("event"))

    @property
    def latency_s(self) -> float | None:
        """From the reading entering the gateway to this alert's arrival."""
        received = self.document.get("received_at")
        if not isinstance(received, str):
            return None
        return self.arrived_at - datetime.fromisoformat(received.replace("Z", "+00:00")).timestamp()


@dataclass
class Watch:
    """What the demo sees of one hut while a scenario runs: its observation messages (kept byte for byte, to
    send again), the collector's confirmations and commands to it, its alerts on both channels, and the
    alerts for its own staff (MQTT only: they never go to the webhook)."""

    hut_id: str
    obs_messages: list[tuple[str, bytes]] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    acks: list[tuple[float, StoreAck]] = field(default_factory=list)
    webhook: list[ReceivedAlert] = field(default_factory=list)
    mqtt: list[ReceivedAlert] = field(default_factory=list)
    staff: list[ReceivedAlert] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    news: asyncio.Event = field(default_factory=asyncio.Event)

    def heard(self) -> None:
        self.news.set()

    async def next_news(self, within: float) -> None:
        """Wait until something new arrives, or ``within`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.news.wait(), max(within, 0.0))
        self.news.clear()

    def observations_by_device(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for obs in self.observations:
            counts[obs.device.device_id] = counts.get(obs.device.device_id, 0) + 1
        return counts


@dataclass
class ScenarioResult:
    """One scenario's verdict and everything it was judged on. ``alerts`` are the documents of the channel
    the demo trusts: its signed webhook, or MQTT when the webhook is someone else's (``--alert-webhook``);
    ``staff_alerts`` those on the hut staff's topic. ``expect`` is what it was judged by, for this host's
    clock (``clock_synchronised``, as the kernel said)."""

    name: str
    hut_id: str
    passed: bool
    reason: str
    alerts: list[ReceivedAlert]
    mqtt_alerts: list[ReceivedAlert]
    staff_alerts: list[ReceivedAlert]
    commands: list[dict[str, Any]]
    observations: int
    started_at: float
    expect: Expectation
    clock_synchronised: bool | None
    expected_after_s: float | None = None
    resent: int = 0
    confirmed_again: int = 0
    new_after_resend: int = 0
    redelivery: str = ""
    secret_file: Path | None = None
    logs: dict[str, str] = field(default_factory=dict)


def _write_secret(path: Path, nbytes: int) -> None:
    """A random hex key, readable by its owner only from the moment it exists."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as key:
        key.write(secrets.token_hex(nbytes) + "\n")


def _toml(value: str | int | float) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def scenario_collector_config(folder: Path, stack: LocalStack, token: str, webhook_url: str, secret: Path) -> Path:
    """The collector of one scenario: its own client, share group and state, alerting with a 1 s clock, the
    webhook, and the acknowledgement endpoint on a free port."""
    path = folder / "collector.toml"
    path.write_text(
        f"""[mqtt]
host = "127.0.0.1"
port = {stack.mosquitto.port}
client_id = "demo-collector-{token}"
share_group = "demo-{token}"
# Short: this collector's share group must not collect later scenarios' messages once it is gone.
session_expiry_s = 30

[storage]
type = "influxdb1"
url = "{stack.influxd.url}"
database = "{DATABASE}"

[dead_letters]
path = "{folder / "dead-letters.sqlite"}"

[alerting]
tick_s = 1

[alerting.webhook]
url = {_toml(webhook_url)}
secret_file = "{secret}"

[alerting.http]
host = "127.0.0.1"
port = 0
"""
    )
    return path


def scenario_gateway_config(
    folder: Path, stack: LocalStack, hut_id: str, kiosk_port: int, devices: Sequence[SimDevice]
) -> Path:
    key = folder / "pseudonym.key"
    _write_secret(key, 32)
    entries = []
    for device in devices:
        where = f'address = "{ble_address(device)}"' if device.link == "ble" else f'path = "{folder / device.name}"'
        extra = "".join(f"\n{name} = {_toml(value)}" for name, value in device.gateway.items())
        entries.append(f'\n[[devices]]\ndriver = "{device.driver}"\nname = "{device.name}"\n{where}{extra}\n')
    path = folder / "gateway.toml"
    path.write_text(
        f"""hut_id = "{hut_id}"
state_dir = "{folder / "gateway-state"}"

[mqtt]
host = "127.0.0.1"
port = {stack.mosquitto.port}

[identity]
key_file = "{key}"
kiosk_port = {kiosk_port}
{"".join(entries)}"""
    )
    return path


def ble_address(device: SimDevice) -> str:
    """A static random address (top bits 11) per demo device, so that the gateway takes exactly it."""
    number = sum(device.name.encode()) % 250 + 1
    return f"C0:48:48:44:00:{number:02X}"


def start_program(
    programs: Programs, name: str, program: str, *args: str, env: Mapping[str, str] | None = None
) -> None:
    """Programs.start, with extra environment variables (the fake BlueZ's bus for the gateway)."""
    if not env:
        programs.start(name, program, *args)
        return
    with open(programs.log_path(name), "ab") as log:
        programs.processes[name] = subprocess.Popen(
            [sys.executable, "-m", MODULES[program], *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )


async def watch_hut(watch: Watch, port: int, ready: asyncio.Event) -> None:
    """Subscribe to the hut's observations, confirmations and commands and to its alerts (its staff's too),
    and keep them."""
    hut = watch.hut_id
    staff = staff_topic(hut)
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=f"demo-watch-{hut}"[:64], protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        for topic in (hut_topic(hut, "obs"), hut_topic(hut, "ack"), hut_topic(hut, "cmd"), f"{ALERTS}/{hut}", staff):
            await client.subscribe(topic, qos=1)
        ready.set()
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            topic = str(message.topic)
            at = time.time()
            if topic.endswith("/obs"):
                watch.obs_messages.append((topic, payload))
                batch = decode("obs", payload)
                assert isinstance(batch, ObservationBatch)
                watch.observations.extend(batch.observations)
            elif topic.endswith("/ack"):
                watch.acks.append((at, decode_ack(payload)))
            elif topic.endswith("/cmd"):
                watch.commands.append(json.loads(payload))
            elif topic == staff:
                watch.staff.append(ReceivedAlert(json.loads(payload), at, "staff"))
            else:
                watch.mqtt.append(ReceivedAlert(json.loads(payload), at, "mqtt"))
            watch.heard()


@contextlib.asynccontextmanager
async def webhook_receiver(secret: bytes, watch: Watch) -> AsyncIterator[str]:
    """An alert receiver on loopback that checks each POST's signature, as a clinic's system must."""

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not verify_signature(secret, timestamp, body, signature):
            watch.refused.append(request.headers.get("X-Healthhut-Alert-Id", "?"))
            watch.heard()
            return web.Response(status=401)
        watch.webhook.append(ReceivedAlert(json.loads(body), time.time(), "webhook"))
        watch.heard()
        return web.Response(status=204)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/alerts", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/alerts"
    finally:
        await runner.cleanup()


def _matches(rule: str, expected: Sequence[str]) -> bool:
    return any(rule == e or (e.endswith(".") and rule.startswith(e)) or rule.startswith(e + ".") for e in expected)


class Judge:
    """Whether a scenario has shown what it should, and what it must not, by ``expect`` (the scenario's
    expectation for this host's clock, ``scenarios.expectation``)."""

    def __init__(self, scenario: DemoScenario, watch: Watch, trusted: str, expect: Expectation) -> None:
        self.scenario = scenario
        self.watch = watch
        self.trusted = trusted
        self.expect = expect

    @property
    def alerts(self) -> list[ReceivedAlert]:
        return self.watch.webhook if self.trusted == "webhook" else self.watch.mqtt

    def clinician(self) -> list[ReceivedAlert]:
        return [a for a in self.alerts if a.document.get("audience") == "clinician"]

    def fired(self, rule: str, audience: str = "clinician") -> ReceivedAlert | None:
        """The first "fired" alert of ``rule`` for a clinician, or for the hut's staff (``"hut_staff"``)."""
        alerts = self.watch.staff if audience == "hut_staff" else self.clinician()
        return next(
            (a for a in alerts if a.document.get("event") == "fired" and _matches(str(a.document["rule"]), (rule,))),
            None,
        )

    def expected(self) -> list[tuple[str, str]]:
        """(audience, rule) of every alert that must fire."""
        return [("clinician", rule) for rule in self.expect.clinician] + [
            ("hut_staff", rule) for rule in self.expect.hut_staff
        ]

    def quality_seen(self, flag: str) -> int:
        """Commands and technician alerts that name ``flag``."""
        commands = sum(
            1 for c in self.watch.commands if c.get("type") == "remeasure" and flag in (c.get("quality") or [])
        )
        technician = sum(
            1
            for a in self.alerts
            if a.document.get("audience") == "technician" and flag in str(a.document.get("message_en", ""))
        )
        return commands + technician

    def problem(self) -> str | None:
        """What already fails the scenario, whatever else happens."""
        if self.watch.refused:
            return f"{len(self.watch.refused)} webhook request(s) with a bad signature"
        expect = self.expect
        for alert in self.clinician():
            rule = str(alert.document.get("rule"))
            if not _matches(rule, expect.clinician):
                return f"unexpected clinician alert {rule} {alert.document.get('severity')}"
        for alert in [*self.watch.webhook, *self.watch.mqtt]:
            if alert.document.get("audience") == "hut_staff":
                return f"hut-staff alert {alert.document.get('rule')} by {alert.channel}, a clinicians' channel"
        for alert in self.watch.staff:
            rule = str(alert.document.get("rule"))
            if alert.document.get("subject") is not None:
                return f"hut-staff alert {rule} names a subject: the hut's staff must get anonymous readings only"
            if not _matches(rule, expect.hut_staff):
                return f"unexpected hut-staff alert {rule} {alert.document.get('severity')}"
        return None

    def done(self, elapsed: float) -> bool:
        expect = self.expect
        if expected := self.expected():
            return all(self.fired(rule, audience) is not None for audience, rule in expected)
        counts = self.watch.observations_by_device()
        enough = all(counts.get(d.name, 0) >= expect.min_observations for d in self.scenario.devices)
        if expect.quality:
            enough = enough and all(self.quality_seen(flag) >= 2 for flag in expect.quality)
        return enough and elapsed >= expect.min_s

    def missing(self) -> str:
        expect = self.expect
        if expected := self.expected():
            absent = [f"{audience} {rule}" for audience, rule in expected if self.fired(rule, audience) is None]
            return "no " + ", ".join(absent) + " alert"
        counts = self.watch.observations_by_device()
        short = [f"{d.name} {counts.get(d.name, 0)}" for d in self.scenario.devices]
        quality = [f"{flag}: {self.quality_seen(flag)}" for flag in expect.quality]
        return f"not enough seen (observations: {', '.join(short)}; quality commands: {', '.join(quality) or '-'})"

    def cross_check(self) -> str | None:
        """Every alert the webhook had went out on MQTT too, and the other way round."""
        if self.trusted != "webhook":
            return None
        webhook = {a.key for a in self.watch.webhook}
        mqtt = {a.key for a in self.watch.mqtt}
        if webhook != mqtt:
            return f"webhook and MQTT differ: only webhook {sorted(webhook - mqtt)}, only MQTT {sorted(mqtt - webhook)}"
        return None


def _progress(name: str, elapsed: float, watch: Watch, judge: Judge) -> str:
    kinds: dict[str, int] = {}
    for obs in watch.observations:
        kinds[obs.kind.value] = kinds.get(obs.kind.value, 0) + 1
    seen = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none yet"
    staff = f" and {len(watch.staff)} for the hut's staff" if watch.staff else ""
    return (
        f"  {name} {elapsed:>4.0f} s: observations {seen}; {len(judge.alerts)} alert(s){staff}, "
        f"{len(watch.commands)} command(s) to the hut"
    )


async def run_scenario(
    scenario: DemoScenario,
    stack: LocalStack,
    folder: Path,
    *,
    alert_webhook: str | None = None,
    say: Callable[[str], None] = print,
) -> ScenarioResult:
    """Play ``scenario`` against a running ``stack`` (mosquitto and influxd): its own collector (alerting on),
    gateway, fake BlueZ and hut-sim devices under ``folder``, with a hut id of its own; judge it; then send
    its observation messages again and count the alerts that adds.

    The scenario is judged by what the hut really does on this host: the kernel is asked, as the gateway
    asks it, whether the clock is NTP-synchronised (``scenarios.expectation``), and the demo says so when
    that changes who is alerted.

    The result holds every alert document received, each with the ``time.time()`` it arrived, so that
    arrival minus the document's ``received_at`` is the way from the gateway to the clinician.
    """
    token = uuid.uuid4().hex[:8]
    run = ScenarioRun(scenario, stack, folder, f"demo-{scenario.name}-{token}", token, alert_webhook, say)
    async with asyncio.TaskGroup() as group:
        ready = asyncio.Event()
        listener = group.create_task(watch_hut(run.watch, stack.mosquitto.port, ready), name=f"watch:{run.hut_id}")
        try:
            await asyncio.wait_for(ready.wait(), PROGRAM_TIMEOUT_S)
            result = await run.play()
        finally:
            listener.cancel()
    return result


class ScenarioRun:
    """One scenario from its collector's start to its verdict and the redelivery check."""

    def __init__(
        self,
        scenario: DemoScenario,
        stack: LocalStack,
        folder: Path,
        hut_id: str,
        token: str,
        alert_webhook: str | None,
        say: Callable[[str], None],
    ) -> None:
        self.scenario = scenario
        self.stack = stack
        self.folder = folder
        self.hut_id = hut_id
        self.token = token
        self.alert_webhook = alert_webhook
        self.say = say
        self.watch = Watch(hut_id)
        self.clock_synchronised = kernel_clock_synchronised()
        self.expect = expectation(scenario, self.clock_synchronised)
        self.judge = Judge(scenario, self.watch, "mqtt" if alert_webhook else "webhook", self.expect)
        folder.mkdir(parents=True, exist_ok=True)
        self.secret_file = folder / "webhook.key"
        _write_secret(self.secret_file, 32)
        self.secret = self.secret_file.read_text().strip().encode()
        self.sims: list[str] = []
        self.started = time.time()

    def result(self, passed: bool, reason: str, **more: Any) -> ScenarioResult:
        return ScenarioResult(
            name=self.scenario.name,
            hut_id=self.hut_id,
            passed=passed,
            reason=reason,
            alerts=list(self.judge.alerts),
            mqtt_alerts=list(self.watch.mqtt),
            staff_alerts=list(self.watch.staff),
            commands=list(self.watch.commands),
            observations=len(self.watch.observations),
            started_at=self.started,
            expect=self.expect,
            clock_synchronised=self.clock_synchronised,
            secret_file=self.secret_file,
            **more,
        )

    async def play(self) -> ScenarioResult:
        async with contextlib.AsyncExitStack() as resources:
            if self.alert_webhook is not None:
                url = self.alert_webhook
            else:
                url = await resources.enter_async_context(webhook_receiver(self.secret, self.watch))
            self.say(f"scenario {self.scenario.name}: {self.scenario.description}")
            self.say(f"  hut {self.hut_id}; alerts go to {url}, signed with the key in {self.secret_file}")
            if self.expect.note:
                self.say(f"  expected here: {self.expect.note}")
            bluez: FakeBlueZ | None = None
            if any(d.link == "ble" for d in self.scenario.devices):
                bluez = await asyncio.to_thread(FakeBlueZ(self.folder / "bluez").start)
                resources.push_async_callback(asyncio.to_thread, bluez.stop)
            # Stopped before the fake BlueZ: the programs first let go of its bus.
            programs = Programs(self.folder / "logs")
            resources.push_async_callback(asyncio.to_thread, programs.stop_all)
            try:
                result = await self._run(programs, bluez, url)
            except (RuntimeError, ServerError, TimeoutError) as exc:
                result = self.result(False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            result.logs = {name: programs.log(name) for name in programs.processes}
            return result

    async def _run(self, programs: Programs, bluez: FakeBlueZ | None, url: str) -> ScenarioResult:
        scenario, folder = self.scenario, self.folder
        collector = scenario_collector_config(folder, self.stack, self.token, url, self.secret_file)
        programs.start("collector", "hut-collector", "run", "--config", str(collector))
        await asyncio.to_thread(programs.wait_for_log, "collector", "subscribed")
        kiosk_port = free_port()
        gateway = scenario_gateway_config(folder, self.stack, self.hut_id, kiosk_port, scenario.devices)
        env = {"DBUS_SYSTEM_BUS_ADDRESS": bluez.bus_address} if bluez is not None else None
        start_program(programs, "gateway", "hut-gateway", "run", "--config", str(gateway), env=env)
        await asyncio.to_thread(programs.wait_for_log, "gateway", "kiosk API on")
        kiosk = f"http://127.0.0.1:{kiosk_port}"
        if scenario.resident.after is None:
            await self._sign_in(programs, kiosk)
        self.started = time.time()
        for device in scenario.devices:
            self._start_sim(programs, device, bluez)
        if scenario.resident.after is not None:
            await self._records_fetched(programs, scenario.resident.after)
            await self._sign_in(programs, kiosk)
            self.started = time.time()
        verdict = await self._judge(programs)
        if not verdict.passed:
            return verdict
        return await self._resend(programs, verdict)

    async def _sign_in(self, programs: Programs, kiosk: str) -> None:
        resident = self.scenario.resident
        if resident.age_days is not None:
            birth = datetime.now(UTC).date() - timedelta(days=resident.age_days)
            age = ("--birth-date", birth.isoformat())
        else:
            age = ("--age-band", resident.age_band or "")
        process = programs.start(
            "session", "hut-sim", "session", "start", "--kiosk", kiosk, "--resident", resident.code, *age
        )
        code = await asyncio.to_thread(process.wait, PROGRAM_TIMEOUT_S)
        said = programs.log("session").strip().splitlines()
        if code != 0:
            raise RuntimeError(f"hut-sim session start failed ({code}): {said[-1] if said else ''}")
        self.say(f"  kiosk: {said[-1] if said else 'session started'}")

    def _start_sim(self, programs: Programs, device: SimDevice, bluez: FakeBlueZ | None) -> None:
        duration = str(self.scenario.timeout_s + 120)
        if device.link == "ble":
            assert bluez is not None
            link: tuple[str, ...] = (
                "--link", "ble", "--ble", "fake-bluez", "--dbus-address", bluez.bus_address,
                "--address", ble_address(device),
            )  # fmt: skip
        else:
            link = ("--link", str(self.folder / device.name))
        name = f"sim-{device.name}"
        programs.start(
            name, "hut-sim", "play", device.driver, *link, "--duration", duration, "--quiet", *device.sim_args
        )
        self.sims.append(name)
        self.say(f"  hut-sim play {device.driver} {' '.join(device.sim_args)}")

    def _check_running(self, programs: Programs) -> None:
        programs.check_running("collector", "gateway", *self.sims)

    async def _records_fetched(self, programs: Programs, after: tuple[str, int]) -> None:
        kind, count = after
        deadline = time.monotonic() + self.scenario.timeout_s
        self.say(f"  waiting for the device's {count} stored {kind} records before the resident signs in")
        while sum(o.kind.value == kind for o in self.watch.observations) < count:
            self._check_running(programs)
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway sent fewer than {count} {kind} observations")
            await self.watch.next_news(PROGRESS_EVERY_S)

    async def _judge(self, programs: Programs) -> ScenarioResult:
        judge, name = self.judge, self.scenario.name
        next_progress = time.time() + PROGRESS_EVERY_S
        while True:
            now = time.time()
            elapsed = now - self.started
            self._check_running(programs)
            problem = judge.problem()
            if problem is not None:
                return self.result(False, problem)
            if judge.done(elapsed):
                break
            if elapsed > self.scenario.timeout_s:
                return self.result(False, f"{judge.missing()} within {self.scenario.timeout_s:.0f} s")
            if now >= next_progress:
                self.say(_progress(name, elapsed, self.watch, judge))
                next_progress = now + PROGRESS_EVERY_S
            await self.watch.next_news(min(next_progress, self.started + self.scenario.timeout_s) - now + 0.01)
        settle_until = time.time() + SETTLE_S
        while (left := settle_until - time.time()) > 0:
            await self.watch.next_news(left)
        problem = judge.problem() or judge.cross_check()
        if problem is not None:
            return self.result(False, problem)
        return self.result(True, self._success(time.time() - self.started), expected_after_s=self._expected_after())

    def _expected_after(self) -> float | None:
        arrivals = [a.arrived_at for audience, rule in self.judge.expected() if (a := self.judge.fired(rule, audience))]
        return max(arrivals) - self.started if arrivals else None

    def _success(self, elapsed: float) -> str:
        expect = self.expect
        if expected := self.judge.expected():
            parts = []
            for audience, rule in expected:
                alert = self.judge.fired(rule, audience)
                assert alert is not None
                doc = alert.document
                whom = "clinician alert" if audience == "clinician" else "hut-staff alert (anonymous)"
                parts.append(f"{whom} {doc['rule']} {doc['severity']} after {alert.arrived_at - self.started:.0f} s")
            if not expect.clinician:
                parts.append("no clinician alert")
            return ", ".join(parts)
        if expect.quality:
            seen = ", ".join(f"{self.judge.quality_seen(flag)} for {flag}" for flag in expect.quality)
            technician = sum(a.document.get("audience") == "technician" for a in self.judge.alerts)
            return (
                f"no clinician alert in {elapsed:.0f} s; measure-again commands and technician alerts: {seen} "
                f"({technician} technician alert(s))"
            )
        return f"no alert in {elapsed:.0f} s of {len(self.watch.observations)} observations"

    async def _resend(self, programs: Programs, verdict: ScenarioResult) -> ScenarioResult:
        """Stop the devices and the gateway, send every observation message the hut sent again, byte for
        byte, and count what that adds: nothing, as every observation was evaluated once already."""
        for name in self.sims:
            await asyncio.to_thread(programs.stop, name)
        await asyncio.to_thread(programs.stop, "gateway")
        await self._quiet()
        alerts_before, mqtt_before, staff_before, commands_before = (
            len(self.judge.alerts),
            len(self.watch.mqtt),
            len(self.watch.staff),
            len(self.watch.commands),
        )
        messages = list(self.watch.obs_messages)
        seqs = {decode("obs", payload).seq for _, payload in messages}
        resent_at = time.time()
        async with aiomqtt.Client(
            "127.0.0.1",
            self.stack.mosquitto.port,
            identifier=f"demo-resend-{self.token}",
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:
            for index, (topic, payload) in enumerate(messages, 1):
                await client.publish(topic, payload, qos=1)
                if index % RESEND_PER_S == 0:
                    await asyncio.sleep(1.0)
        deadline = time.time() + RESEND_WAIT_S
        while (confirmed := self._confirmed_since(resent_at) & seqs) != seqs and time.time() < deadline:
            await self.watch.next_news(deadline - time.time())
        await self._quiet()
        # Nothing new on any channel: the trusted one, MQTT as the cross-check, and the hut staff's topic.
        new_alerts = len(self.judge.alerts) - alerts_before + len(self.watch.staff) - staff_before
        if self.judge.trusted == "webhook":
            new_alerts += len(self.watch.mqtt) - mqtt_before
        new_commands = len(self.watch.commands) - commands_before
        line = (
            f"resent {len(messages)} observation messages: {new_alerts} new alerts, {new_commands} new commands "
            f"(the collector confirmed {len(confirmed)} of them as stored again)"
        )
        verdict.redelivery = line
        verdict.resent, verdict.confirmed_again, verdict.new_after_resend = len(messages), len(confirmed), new_alerts
        verdict.alerts, verdict.mqtt_alerts = list(self.judge.alerts), list(self.watch.mqtt)
        verdict.staff_alerts = list(self.watch.staff)
        verdict.commands = list(self.watch.commands)
        if new_alerts or new_commands:
            verdict.passed, verdict.reason = False, line
        elif len(confirmed) != len(seqs):
            verdict.passed = False
            verdict.reason = f"the collector confirmed only {len(confirmed)} of {len(seqs)} resent messages"
        return verdict

    def _confirmed_since(self, since: float) -> set[int]:
        return {seq for at, ack in self.watch.acks if at >= since and ack.outcome == "stored" for seq in ack.seqs}

    async def _quiet(self) -> None:
        """Until nothing has arrived for RESEND_QUIET_S."""
        while True:
            self.watch.news.clear()
            try:
                await asyncio.wait_for(self.watch.news.wait(), RESEND_QUIET_S)
            except TimeoutError:
                return


def report(result: ScenarioResult, say: Callable[[str], None] = print) -> None:
    """Each alert received (rule, severity, audience, the messages, the attachments), the commands to the
    hut, and the verdict line."""
    for alert in [*result.alerts, *result.staff_alerts]:
        doc = alert.document
        latency = alert.latency_s
        via = f"{latency:.1f} s after the reading entered the gateway" if latency is not None else ""
        say(
            f"  alert {doc.get('event')} {doc.get('rule')} {doc.get('severity')} for the {doc.get('audience')}, "
            f"after {alert.arrived_at - result.started_at:.1f} s ({via}, by {alert.channel})"
        )
        say(f"      {doc.get('message')}")
        say(f"      {doc.get('message_en')}")
        for attachment in doc.get("attachments") or []:
            size = len(base64.b64decode(attachment.get("data_base64", "")))
            say(f"      attachment {attachment.get('filename')} ({attachment.get('content_type')}, {size} bytes)")
    reasons: dict[str, int] = {}
    for command in result.commands:
        key = f"{command.get('reason')} ({', '.join(command.get('quality') or []) or command.get('kind')})"
        reasons[key] = reasons.get(key, 0) + 1
    if reasons:
        said = "; ".join(f"{key} x{count}" for key, count in sorted(reasons.items()))
        say(f"  'measure again' commands to the hut: {said}")
    if result.redelivery:
        say(f"  {result.redelivery}")
    say(f"scenario {result.name}: {'PASS' if result.passed else 'FAIL'} ({result.reason})")


async def _play_all(
    names: Sequence[str], stack: LocalStack, folder: Path, alert_webhook: str | None
) -> list[ScenarioResult]:
    results = []
    for name in names:
        result = await run_scenario(SCENARIOS[name], stack, folder / name, alert_webhook=alert_webhook)
        report(result)
        if not result.passed:
            for program in ("collector", "gateway"):
                tail = "\n".join(result.logs.get(program, "").splitlines()[-25:])
                print(f"--- {program} (last lines)\n{tail}", file=sys.stderr)
        results.append(result)
    return results


def _webhook_allowed(url: str) -> bool:
    """What the collector's webhook channel accepts (it says so too, but only in its log)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "https" and parsed.hostname:
        return True
    if parsed.scheme != "http" or not parsed.hostname:
        return False
    if parsed.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parsed.hostname).is_loopback
    except ValueError:
        return False


def run_scenarios(names: Sequence[str], alert_webhook: str | None, keep: bool) -> int:
    chosen = list(SCENARIOS) if "all" in names else list(dict.fromkeys(names))
    with tempfile.TemporaryDirectory(prefix="healthhut-demo-") as tmp:
        folder = Path(tmp)
        print(f"starting mosquitto and influxd in {folder} ...", flush=True)
        with LocalStack(folder / "servers", mosquitto=True, influxd=True, victoria=False) as stack:
            print(f"  mosquitto on 127.0.0.1:{stack.mosquitto.port}, influxd on {stack.influxd.url}", flush=True)
            results = asyncio.run(_play_all(chosen, stack, folder, alert_webhook))
            if keep:
                input(f"everything is in {folder}; press Enter to stop the servers and remove it ")
    print("\nscenario              verdict  alerts  time to expected alert")
    for result in results:
        after = f"{result.expected_after_s:.0f} s" if result.expected_after_s is not None else "-"
        alerts = len(result.alerts) + len(result.staff_alerts)
        print(f"{result.name:<21} {'PASS' if result.passed else 'FAIL':<8} {alerts:>6}  {after}")
    failed = [r.name for r in results if not r.passed]
    print(f"demo FAILED: {', '.join(failed)}" if failed else "demo OK")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description="Run a simulated health hut end to end on this machine and show what reached InfluxDB; "
        "with --scenario, play clinical scenarios and check the alerts they raise.",
        epilog="examples:\n  scripts/demo --duration 60\n  scripts/demo --scenario hypoxia --scenario lead-off\n"
        "  scripts/demo --scenario all\n"
        "  scripts/demo --scenario hypertensive-crisis --alert-webhook https://alerts.example.org/hook",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60; not with --scenario)")
    parser.add_argument("--keep", action="store_true", help="wait for Enter before removing everything")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*SCENARIOS, "all"],
        metavar="NAME",
        help="play a clinical scenario and check its alerts (repeatable): " + ", ".join(SCENARIOS) + ", or all",
    )
    parser.add_argument(
        "--alert-webhook",
        metavar="URL",
        help="the collector posts alerts here (https, or http on loopback), signed with the key whose path "
        "the demo prints; the demo then judges by the same alerts on MQTT",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.scenario:
        if args.alert_webhook and not _webhook_allowed(args.alert_webhook):
            parser.error("--alert-webhook must be https, or http to a loopback address: the alerts hold health values")
        return run_scenarios(args.scenario, args.alert_webhook, args.keep)
    if args.alert_webhook:
        parser.error("--alert-webhook goes with --scenario")
    return run(args.duration, args.keep)


if __name__ == "__main__":
    sys.exit(main())
