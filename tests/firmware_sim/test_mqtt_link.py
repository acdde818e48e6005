"""hut-sim straight into a real mosquitto as whole huts: numbered batches the protocol decodes, the birth record
and the Last Will, load with expected counts, and mutual TLS against a TLS listener.

A missing mosquitto or openssl fails these tests; it never skips them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from healthhut.devstack import LocalStack, free_port
from healthhut.firmware_sim.gatt_devices import BloodPressureCuff, GlucoseMeter
from healthhut.firmware_sim.hut import GattFeed, HutSimulation, SerialFeed
from healthhut.firmware_sim.links.mqtt import Broker, HutRun, MqttCounters, run_hut
from healthhut.firmware_sim.players import PLAYERS
from healthhut.firmware_sim.scenarios import SCENARIOS
from healthhut.protocol import DeviceEvent, Message, ObservationBatch, Status, WaveBatch, decode
from tests.conftest import eventually


@dataclass(frozen=True)
class Tls:
    port: int
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class BrokerUnderTest:
    port: int
    tls: Tls


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder: Path) -> tuple[Path, Path, Path, Path, Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, all EC P-256, valid for a day."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=hut-sim test CA",
        cwd=folder,
    )
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, subject in (("server", "/CN=localhost"), ("client", "/CN=load")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=folder)
        extra = ("-extfile", "server.ext") if name == "server" else ()
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", *extra, cwd=folder,
        )  # fmt: skip
    return (folder / p for p in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    """One mosquitto: its plain loopback listener, and a TLS listener that wants a client certificate."""
    root = tmp_path_factory.mktemp("mqtt-link")
    ca, server_cert, server_key, client_cert, client_key = make_certificates(root / "tls")
    tls_port = free_port()
    config = [
        f"listener {tls_port} 127.0.0.1",
        f"cafile {ca}",
        f"certfile {server_cert}",
        f"keyfile {server_key}",
        "require_certificate true",
    ]
    with LocalStack(root / "servers", influxd=False, victoria=False, mosquitto_config=config) as stack:
        yield BrokerUnderTest(stack.mosquitto.port, Tls(tls_port, ca, client_cert, client_key))


@dataclass
class Seen:
    """What a subscriber got, per hut, in arrival order."""

    messages: dict[str, list[Message]] = field(default_factory=lambda: defaultdict(list))
    raw: int = 0

    def of(self, hut_id: str, kind: type[Message]) -> list[Message]:
        return [m for m in self.messages[hut_id] if isinstance(m, kind)]


@contextlib.asynccontextmanager
async def watching(port: int, topic: str = "hh/v1/huts/+/+") -> AsyncIterator[Seen]:
    """Every message on the hut topics, decoded (a message that does not decode fails the test)."""
    seen = Seen()
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topic, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                _, _, _, hut_id, channel = str(message.topic).split("/")
                payload = message.payload
                assert isinstance(payload, bytes)
                seen.raw += 1
                seen.messages[hut_id].append(decode(channel, payload))

        task = asyncio.create_task(collect())
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def hut_sim(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "healthhut.firmware_sim.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_a_hut_publishes_numbered_batches_the_protocol_decodes(broker: BrokerUnderTest, unique: str) -> None:
    hut_id = f"hut-{unique}"
    crisis = SCENARIOS["hypertensive-crisis"]
    feeds = [
        GattFeed("cuff", BloodPressureCuff(crisis, steady=True, interval=1, seed=1)),
        GattFeed("meter", GlucoseMeter(crisis, steady=True, interval=1, seed=1)),
        SerialFeed("ox", PLAYERS["contec-cms50"], crisis, seed=1),
    ]
    sim = HutSimulation(hut_id, feeds)
    counters = MqttCounters()
    async with watching(broker.port) as seen:
        await run_hut(sim, Broker("127.0.0.1", broker.port), HutRun(duration=2.5, batch_interval=0.5), counters)
        await eventually(lambda: seen.of(hut_id, Status)[-1:] and seen.of(hut_id, Status)[-1].state == "offline")
    messages = seen.messages[hut_id]
    # Numbered in order from 1 (0 is the Last Will, which a clean exit never sends), all of one boot.
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    assert {m.boot_id for m in messages} == {sim.boot_id}
    assert [(type(m), getattr(m, "state", None)) for m in (messages[0], messages[-1])] == [
        (Status, "online"),
        (Status, "offline"),
    ]
    events = seen.of(hut_id, DeviceEvent)
    assert [(e.event, e.device.device_id if e.device else None) for e in events] == [  # type: ignore[attr-defined]
        ("connected", "cuff"),
        ("connected", "meter"),
        ("connected", "ox"),
    ]
    observations = [o for batch in seen.of(hut_id, ObservationBatch) for o in batch.observations]  # type: ignore[attr-defined]
    by_kind = Counter(o.kind.value for o in observations)
    assert by_kind["blood_pressure"] == 3 and by_kind["spo2"] in (2, 3)
    assert by_kind["blood_glucose"] == GlucoseMeter.HISTORY_TIMES.__len__() + 2 + 3  # five old records, three new
    assert {o.values["systolic"].value for o in observations if o.kind.value == "blood_pressure"} == {185.0}
    assert counters.messages == len(seen.of(hut_id, ObservationBatch)) + len(seen.of(hut_id, WaveBatch))
    assert counters.items == len(observations) and counters.errors == 0
    # The last status stays retained for whoever subscribes later.
    async with watching(broker.port, f"hh/v1/huts/{hut_id}/status") as later:
        await eventually(lambda: later.of(hut_id, Status))
    assert [(s.state, s.seq) for s in later.of(hut_id, Status)] == [("offline", messages[-1].seq)]  # type: ignore[attr-defined]


async def test_the_last_will_says_offline_when_a_hut_dies(broker: BrokerUnderTest, unique: str) -> None:
    hut_id = f"hut-{unique}"
    async with watching(broker.port) as seen:
        sim = hut_sim(
            "hut", "--mqtt", f"127.0.0.1:{broker.port}", "--hut-id", hut_id, "--devices", "ble-heart-rate", "-q"
        )
        try:
            await eventually(lambda: seen.of(hut_id, ObservationBatch), within=15)
            sim.send_signal(signal.SIGKILL)
            await eventually(lambda: seen.of(hut_id, Status)[-1].state == "offline", within=15)  # type: ignore[attr-defined]
        finally:
            sim.kill()
            sim.communicate()
    online, will = seen.of(hut_id, Status)[0], seen.of(hut_id, Status)[-1]
    # The will was numbered first, at connect time, with the same boot id.
    assert (will.seq, will.boot_id) == (0, online.boot_id)


async def test_load_of_five_huts_sends_the_expected_messages(broker: BrokerUnderTest, unique: str) -> None:
    prefix = f"l{unique}"
    async with watching(broker.port) as seen:
        sim = hut_sim(
            "load", "--mqtt", f"127.0.0.1:{broker.port}", "--huts", "5", "--rate", "4", "--duration", "2",
            "--batch-interval", "0.5", "--hut-prefix", prefix, "--seed", "1", "-q",
        )  # fmt: skip
        out, err = await asyncio.to_thread(sim.communicate, timeout=60)
        assert sim.returncode == 0, err
        huts = [f"{prefix}-{n:04d}" for n in range(1, 6)]
        await eventually(
            lambda: all(seen.of(h, Status)[-1:] and seen.of(h, Status)[-1].state == "offline" for h in huts)
        )  # type: ignore[attr-defined]
    assert set(seen.messages) >= set(huts)
    for hut in huts:
        batches = seen.of(hut, ObservationBatch)
        # Four batches of 2 s / 0.5 s, with 4 readings a second between them; one connected event per device.
        assert [len(b.observations) for b in batches] == [2, 2, 2, 2]  # type: ignore[attr-defined]
        assert len(seen.of(hut, DeviceEvent)) == 8
        assert [s.state for s in seen.of(hut, Status)] == ["online", "offline"]  # type: ignore[attr-defined]
        seqs = [m.seq for m in seen.messages[hut]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert out.strip().splitlines()[-1].startswith("load: huts=5 messages=20 readings=40 garbage=0 errors=0")


async def test_load_over_mutual_tls(broker: BrokerUnderTest, unique: str) -> None:
    prefix = f"t{unique}"
    tls = broker.tls
    async with watching(broker.port) as seen:
        sim = hut_sim(
            "load", "--mqtt", f"127.0.0.1:{tls.port}", "--ca", str(tls.ca), "--cert", str(tls.cert),
            "--key", str(tls.key), "--huts", "2", "--rate", "2", "--duration", "1", "--hut-prefix", prefix, "-q",
        )  # fmt: skip
        out, err = await asyncio.to_thread(sim.communicate, timeout=60)
        assert sim.returncode == 0, err
        huts = [f"{prefix}-0001", f"{prefix}-0002"]
        await eventually(lambda: all(len(seen.of(h, ObservationBatch)) == 1 for h in huts))
    assert [len(seen.of(h, ObservationBatch)[0].observations) for h in huts] == [2, 2]  # type: ignore[attr-defined]
    assert "load: huts=2 messages=2 readings=4" in out


async def test_a_tls_listener_refuses_a_hut_without_a_client_certificate(broker: BrokerUnderTest) -> None:
    tls = broker.tls
    sim = hut_sim(
        "load", "--mqtt", f"127.0.0.1:{tls.port}", "--ca", str(tls.ca), "--huts", "1", "--duration", "1", "-q",
        "--connect-timeout", "1",
    )  # fmt: skip
    _, err = await asyncio.to_thread(sim.communicate, timeout=60)
    assert sim.returncode == 1
    assert f"hut-sim: error: mqtt link mqtts://127.0.0.1:{tls.port}:" in err


async def test_a_missing_broker_fails_at_once(unique: str) -> None:
    port = free_port()
    sim = hut_sim("hut", "--mqtt", f"127.0.0.1:{port}", "--hut-id", f"hut-{unique}", "--duration", "5", "-q")
    _, err = await asyncio.to_thread(sim.communicate, timeout=30)
    assert sim.returncode == 1
    assert f"mqtt link mqtt://127.0.0.1:{port}" in err
