"""Mutual TLS end to end: the hut and the collector connect with client certificates, the shipped broker
config and ACL (``mosquitto/``) let a hut write only its own subtree (``%u`` is the certificate's name),
and DNS failure is survived."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from healthhut.collector.config import CollectorConfig
from healthhut.collector.deadletters import DeadLetterStore
from healthhut.collector.ingest import Ingest
from healthhut.collector.storage import Influx1Writer
from healthhut.devstack import LocalStack, free_port
from healthhut.gateway.config import GatewayConfig
from healthhut.gateway.outbox import Outbox, gap_item
from healthhut.gateway.spool import MemorySpool
from healthhut.gateway.state import GatewayState
from healthhut.gateway.uplink import Uplink
from healthhut.protocol import Device, Kind, Quantity, Reading, observation_from_reading
from healthhut.protocol.pki import CertificateAuthority, ensure_private_key, make_request
from tests.conftest import ROOT, eventually
from tests.tasks import running

SHIPPED = ROOT / "mosquitto"


def shipped_listener(port: int, certs: Path) -> list[str]:
    """The TLS listener block of the shipped broker config, on our port and with our certificates."""
    text = (SHIPPED / "healthhut.conf").read_text()
    block = text[text.index("\nlistener ") + 1 :].splitlines()
    replaced = [
        line.replace("/etc/mosquitto/certs/", f"{certs}/").replace(
            "/etc/mosquitto/healthhut.acl", str(SHIPPED / "healthhut.acl")
        )
        for line in block
        if line and not line.startswith("#")
    ]
    assert replaced[0] == "listener 8883"
    return [f"listener {port} 127.0.0.1", *replaced[1:]]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and the broker's, a hut's and the collector's keys and certificates, made as an operator makes
    them (``healthhut.protocol.pki``, behind ``hut-collector ca``), all in one folder."""
    folder = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.create(folder, "healthhut test CA", days=2)
    ca.issue_server("localhost", folder, ips=["127.0.0.1"], days=2, force=False)
    ca.issue_service("collector", folder, days=2)
    ensure_private_key(folder / "hut-a.key")
    make_request(folder / "hut-a.key", folder / "hut-a.csr", "hut-a")
    ca.sign_hut(folder / "hut-a.csr", folder / "hut-a.pem", days=2)
    return folder


def tls(certs: Path, name: str) -> dict[str, str]:
    return {
        "ca_file": str(certs / "ca.pem"),
        "cert_file": str(certs / f"{name}.pem"),
        "key_file": str(certs / f"{name}.key"),
    }


def reading(n: int) -> Reading:
    return Reading(kind=Kind.SPO2, values={"spo2": Quantity(90.0 + n, "%")})


async def test_huts_and_collector_over_mutual_tls(certs: Path, tmp_path: Path) -> None:
    port = free_port()
    listener = shipped_listener(port, certs)
    with LocalStack(tmp_path / "servers", victoria=False, mosquitto_config=listener) as stack:
        collector_config = CollectorConfig.model_validate(
            {
                "mqtt": {"port": port, "client_id": "collector", "tls": tls(certs, "collector")},
                "storage": {"type": "influxdb1", "url": stack.influxd.url, "database": "tls"},
                "dead_letters": {"path": str(tmp_path / "dead.sqlite")},
            }
        )
        writer = Influx1Writer(collector_config.storage)  # type: ignore[arg-type]
        await writer.ensure_database()
        ingest = Ingest(collector_config, writer, DeadLetterStore(collector_config.dead_letters.path))

        def uplink_for(hut_id: str, cert: str) -> tuple[Uplink, MemorySpool]:
            config = GatewayConfig.model_validate(
                {
                    "hut_id": hut_id,
                    "state_dir": str(tmp_path / hut_id),
                    "mqtt": {"port": port, "tls": tls(certs, cert)},
                    "uplink": {"batch_interval_s": 0.05, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5},
                }
            )
            spool = MemorySpool(10**7, gap_item)
            return Uplink(config, GatewayState(config.state_dir), spool), spool

        honest, honest_spool = uplink_for("hut-a", "hut-a")
        # A hut configured as hut-b but holding hut-a's certificate: the broker must refuse it.
        impostor, impostor_spool = uplink_for("hut-b", "hut-a")
        device = Device(driver="contec-cms50", device_id="ox-1")
        for n, (spool, hut) in enumerate(((honest_spool, "hut-a"), (impostor_spool, "hut-b"))):
            obs = observation_from_reading(
                reading(n), hut_id=hut, device=device, received_at=datetime.now(UTC), device_seq=n
            )
            await Outbox(spool).observation(obs)
        async with running(ingest.run()):
            await asyncio.wait_for(ingest.subscribed.wait(), 15)
            async with running(honest.run(), impostor.run()):
                await eventually(lambda: honest_spool.depth == 0)
                await eventually(lambda: impostor.stats.refused >= 2)
        assert ingest.stats.observations == 1 and impostor_spool.depth >= 1
        rows = stack.influxd.query('SELECT spo2, hut FROM "spo2"', db="tls")["results"][0]["series"][0]["values"]
        assert [row[1:] for row in rows] == [[90, "hut-a"]]
        await writer.close()


async def test_an_unresolvable_broker_name_is_retried_not_fatal(tmp_path: Path) -> None:
    config = GatewayConfig.model_validate(
        {
            "hut_id": "hut-dns",
            "state_dir": str(tmp_path / "state"),
            # RFC 6761: never resolves. Plaintext, said explicitly: the name is not this machine.
            "mqtt": {"host": "broker.invalid", "insecure_plaintext": True},
            "uplink": {"reconnect_min_s": 0.05, "reconnect_max_s": 0.1},
        }
    )
    uplink = Uplink(config, GatewayState(config.state_dir), MemorySpool(10**6, gap_item))
    async with running(uplink.run()):
        await eventually(lambda: uplink.stats.last_error is not None, within=20)
        await asyncio.sleep(0.5)
    assert not uplink.stats.connected and uplink.stats.connects == 0


async def test_a_hut_started_before_it_is_provisioned_keeps_its_readings_and_connects_once_it_is(
    certs: Path, tmp_path: Path
) -> None:
    # The installed config points at /etc/healthhut/tls before provisioning has put anything there: the
    # uplink must keep retrying (the devices keep spooling), not end the gateway with a traceback.
    port = free_port()
    pending = tmp_path / "tls"
    config = GatewayConfig.model_validate(
        {
            "hut_id": "hut-a",
            "state_dir": str(tmp_path / "state"),
            "mqtt": {"port": port, "tls": tls(pending, "hut-a")},
            "uplink": {"batch_interval_s": 0.05, "reconnect_min_s": 0.1, "reconnect_max_s": 0.2},
        }
    )
    spool = MemorySpool(10**7, gap_item)
    uplink = Uplink(config, GatewayState(config.state_dir), spool)
    device = Device(driver="contec-cms50", device_id="ox-1")
    with LocalStack(
        tmp_path / "servers", influxd=False, victoria=False, mosquitto_config=shipped_listener(port, certs)
    ):
        async with running(uplink.run()):
            await eventually(lambda: uplink.stats.last_error is not None)
            assert "provision" in (uplink.stats.last_error or "") and uplink.stats.connects == 0
            obs = observation_from_reading(
                reading(1), hut_id="hut-a", device=device, received_at=datetime.now(UTC), device_seq=1
            )
            await Outbox(spool).observation(obs)
            await asyncio.sleep(0.5)
            assert spool.depth == 1
            pending.mkdir()
            for name in ("ca.pem", "hut-a.pem", "hut-a.key"):
                shutil.copy(certs / name, pending / name)
            await eventually(lambda: uplink.stats.connects >= 1 and uplink.stats.published_messages >= 1)


def test_the_shipped_broker_config_starts_mosquitto(certs: Path, tmp_path: Path) -> None:
    port = free_port()
    text = (SHIPPED / "healthhut.conf").read_text()
    text = text.replace("listener 8883", f"listener {port} 127.0.0.1").replace("/etc/mosquitto/certs/", f"{certs}/")
    text = text.replace("/etc/mosquitto/healthhut.acl", str(SHIPPED / "healthhut.acl"))
    extra = f"persistence_location {tmp_path}/\n" + ("user root\n" if os.geteuid() == 0 else "")
    (tmp_path / "broker.conf").write_text(extra + text)
    log = tmp_path / "broker.log"
    with open(log, "wb") as sink:
        broker = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "broker.conf")], stderr=sink)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            assert broker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the shipped config did not bring mosquitto up"
            time.sleep(0.1)
    finally:
        broker.terminate()
        broker.wait(10)


@pytest.mark.parametrize("model", [GatewayConfig, CollectorConfig])
def test_plaintext_only_to_this_machine_unless_said_explicitly(model: type[BaseModel], tmp_path: Path) -> None:
    def config(**mqtt: object) -> BaseModel:
        base: dict[str, object] = {
            "hut_id": "hut-a",
            "state_dir": str(tmp_path),
            "storage": {"type": "influxdb1"},
            "dead_letters": {"path": str(tmp_path / "d.sqlite")},
        }
        fields = model.model_fields
        return model.model_validate({k: v for k, v in base.items() if k in fields} | {"mqtt": mqtt})

    for host in ("127.0.0.1", "127.0.2.9", "::1", "localhost", "LOCALHOST."):
        config(host=host)
    tls = {"ca_file": str(tmp_path / "ca.pem")}
    for host in ("broker.example.org", "10.0.0.7", "localhost.example.org", "0.0.0.0"):
        with pytest.raises(ValidationError) as refused:
            config(host=host)
        (error,) = refused.value.errors(include_url=False)
        assert (error["type"], error["loc"]) == ("plaintext_broker", ("mqtt", "host"))
        assert error["msg"].startswith(f"the broker {host!r} is not on this machine and there is no [mqtt.tls]")
        config(host=host, tls=tls)
        config(host=host, insecure_plaintext=True)
    # A wrong [mqtt.tls] is the error shown, not the plaintext one it would otherwise look like.
    with pytest.raises(ValidationError) as wrong:
        config(host="broker.example.org", tls={"ca_fil": "x"})
    assert {e["type"] for e in wrong.value.errors()} == {"missing", "extra_forbidden"}
