"""Provisioning, as an operator does it: ``hut-collector ca`` makes the CA, the broker's and the collector's
certificates and signs what ``hut-gateway provision`` asks for; then real mosquitto, with the shipped
listener and ACL, holds each hut to its own subtree and admits no certificate from another CA."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import pwd
import re
import shutil
import socket
import ssl
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from healthhut.collector.cli import main as collector_main
from healthhut.devstack import LocalStack, free_port
from healthhut.gateway.cli import main as gateway_main
from healthhut.gateway.config import load_config
from healthhut.gateway.mqtt import PubackWatch, PublishRefusedError
from healthhut.protocol.configfile import TlsConfig
from healthhut.protocol.pki import SERVICE_NAMES
from tests.gateway.test_tls import SHIPPED, openssl, shipped_listener

Main = Callable[[list[str] | None], int]
MQTT_NOT_AUTHORIZED = 0x87


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


def cli(main: Main, *args: str | Path) -> Ran:
    """Run a program's ``main`` as its console script does, with what it prints."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in args])
    return Ran(code, out.getvalue(), err.getvalue())


def ok(main: Main, *args: str | Path) -> Ran:
    ran = cli(main, *args)
    assert ran.code == 0, ran.err
    assert "PRIVATE KEY" not in ran.out + ran.err
    return ran


@dataclass(frozen=True)
class Deployment:
    ca: Path
    broker: Path
    collector: Path
    hut_a_config: Path
    hut_b: Path


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    root = tmp_path_factory.mktemp("deployment")
    ca = root / "ca"
    ok(collector_main, "ca", "init", "--ca-dir", ca, "--name", "healthhut test CA", "--days", "2")
    # hut-a is set up from its gateway config, which already names its TLS files ...
    hut_a = root / "hut-a"
    hut_a.mkdir()
    config = hut_a / "gateway.toml"
    config.write_text(
        f'hut_id = "hut-a"\nstate_dir = "{hut_a / "state"}"\n[mqtt.tls]\n'
        f'ca_file = "{hut_a / "tls/ca.pem"}"\ncert_file = "{hut_a / "tls/hut.pem"}"\n'
        f'key_file = "{hut_a / "tls/hut.key"}"\n'
    )
    ran = ok(gateway_main, "provision", "--config", config)
    assert "hut-collector ca sign --csr hut-a.csr --out hut-a.pem" in ran.out
    ok(collector_main, "ca", "sign", "--ca-dir", ca, "--csr", hut_a / "tls/hut-a.csr", "--out", hut_a / "tls/hut.pem")
    shutil.copyfile(ca / "ca.pem", hut_a / "tls/ca.pem")
    # ... hut-b from its id alone, into a folder, its key given to the gateway's user as root would.
    hut_b = root / "hut-b"
    ok(gateway_main, "provision", "--hut-id", "hut-b", "--dir", hut_b, "--owner", "nobody")
    ok(collector_main, "ca", "sign", "--ca-dir", ca, "--csr", hut_b / "hut-b.csr", "--out", hut_b / "hut.pem")
    shutil.copyfile(ca / "ca.pem", hut_b / "ca.pem")
    broker, collector = root / "broker", root / "collector"
    ok(collector_main, "ca", "server", "--ca-dir", ca, "--name", "localhost", "--ip", "127.0.0.1", "--out-dir", broker)
    ok(collector_main, "ca", "client", "--ca-dir", ca, "--name", "collector", "--out-dir", collector)
    return Deployment(ca, broker, collector, config, hut_b)


def tls(folder: Path, name: str) -> ssl.SSLContext:
    return TlsConfig(
        ca_file=folder / "ca.pem", cert_file=folder / f"{name}.pem", key_file=folder / f"{name}.key"
    ).ssl_context()


@contextlib.contextmanager
def shipped_broker(deployment: Deployment, folder: Path) -> Iterator[tuple[int, LocalStack]]:
    """Real mosquitto with the TLS listener and ACL we ship, on a free port with the deployment's files."""
    port = free_port()
    listener = shipped_listener(port, deployment.broker)
    with LocalStack(folder, influxd=False, victoria=False, mosquitto_config=listener) as stack:
        yield port, stack


def client(port: int, name: str, context: ssl.SSLContext) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1", port, identifier=name, protocol=aiomqtt.ProtocolVersion.V5, tls_context=context, timeout=5
    )


async def test_a_hut_certificate_publishes_only_under_its_own_hut_id(deployment: Deployment, tmp_path: Path) -> None:
    hut_a_tls = load_config(deployment.hut_a_config).mqtt.tls  # the files hut-gateway provision filled in
    assert hut_a_tls is not None
    with shipped_broker(deployment, tmp_path) as (port, _):
        async with (
            client(port, "collector-1", tls(deployment.collector, "collector")) as collector,
            client(port, "hut-a", hut_a_tls.ssl_context()) as hut_a,
            client(port, "hut-b", tls(deployment.hut_b, "hut")) as hut_b,
        ):
            await collector.subscribe("hh/v1/huts/+/event", qos=1)
            hut_a_puback = PubackWatch(hut_a)
            await hut_a_puback.publish("hh/v1/huts/hut-a/event", b"from hut-a")
            with pytest.raises(PublishRefusedError) as refused:
                await hut_a_puback.publish("hh/v1/huts/hut-b/event", b"hut-a's certificate, as hut-b")
            await PubackWatch(hut_b).publish("hh/v1/huts/hut-b/event", b"from hut-b")
            received: list[tuple[str, bytes]] = []
            async with asyncio.timeout(10):
                async for message in collector.messages:
                    assert isinstance(message.payload, bytes)
                    received.append((message.topic.value, message.payload))
                    if message.payload == b"from hut-b":
                        break
    assert (refused.value.topic, refused.value.code) == ("hh/v1/huts/hut-b/event", MQTT_NOT_AUTHORIZED)
    # hut-b's own message came after the refused one, so the refused one would have arrived before it.
    assert received == [("hh/v1/huts/hut-a/event", b"from hut-a"), ("hh/v1/huts/hut-b/event", b"from hut-b")]


async def test_a_certificate_from_another_ca_is_refused_at_the_handshake(
    deployment: Deployment, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca"
    ok(collector_main, "ca", "init", "--ca-dir", other, "--name", "healthhut test CA", "--days", "2")
    ok(gateway_main, "provision", "--hut-id", "hut-a", "--dir", tmp_path / "forged")
    ok(collector_main, "ca", "sign", "--ca-dir", other, "--csr", tmp_path / "forged/hut-a.csr",
       "--out", tmp_path / "forged/hut.pem")  # fmt: skip
    # The client trusts the real CA, so the broker's certificate passes; only the hut's can fail.
    shutil.copyfile(deployment.ca / "ca.pem", tmp_path / "forged/ca.pem")
    with shipped_broker(deployment, tmp_path / "servers") as (port, stack):
        forged = refusal(port, tls(tmp_path / "forged", "hut"))
        # The broker's own certificate is for serverAuth only: it does not pass as a client's either.
        server_as_client = refusal(port, tls(deployment.broker, "server"))
        async with client(port, "hut-b", tls(deployment.hut_b, "hut")) as hut_b:  # and the broker still works
            await PubackWatch(hut_b).publish("hh/v1/huts/hut-b/event", b"from hut-b")
        log = stack.mosquitto.log_tail(200)
    assert (forged, server_as_client) == ("TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE")
    assert log.count("certificate verify failed") == 2, log


def refusal(port: int, context: ssl.SSLContext) -> str:
    """The TLS alert with which the broker refuses this client's certificate. In TLS 1.3 it judges the
    certificate once the client's side of the handshake is done, so the verdict is the first thing read."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as connection,
        ):
            connection.recv(1)
    except ssl.SSLError as exc:
        return str(exc.reason)
    raise AssertionError("the broker did not refuse the certificate")


def request_by_hand(folder: Path, subject: str, *, rsa_bits: int | None = None) -> Path:
    """A signing request made with openssl itself, as someone trying their luck would make it."""
    newkey = ["-newkey", f"rsa:{rsa_bits}"] if rsa_bits else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    openssl("req", "-new", *newkey, "-nodes", "-subj", subject, "-keyout", "by-hand.key", "-out", "by-hand.csr",
            cwd=folder)  # fmt: skip
    return folder / "by-hand.csr"


def alter(request: Path, old: bytes, new: bytes) -> None:
    """Change the request's contents after it was signed (the hut id in its subject, say)."""
    lines = request.read_text().strip().splitlines()
    der = base64.b64decode("".join(lines[1:-1]))
    assert der.count(old) == 1
    body = base64.encodebytes(der.replace(old, new)).decode()
    request.write_text(f"{lines[0]}\n{body}{lines[-1]}\n")


# Each: the request's subject, and what the refusal must say (None: signed, the control case).
SIGN_CASES: dict[str, tuple[str, str | None]] = {
    "a hut id": ("/CN=hut-c", None),
    "not a hut id": ("/CN=Hut C", "must match"),
    "a service's name": ("/CN=collector", "a service, which may read every hut"),
    "more than a CN": ("/CN=hut-c/O=healthhut", "must be a CN alone"),
    "two CNs": ("/CN=hut-c/CN=hut-d", "must match"),
    "no CN": ("/O=healthhut", "must be a CN alone"),
    "a short RSA key": ("/CN=hut-c", "RSA key has 1024 bits, under 2048"),
    "altered after signing": ("/CN=hut-c", "does not match its contents: it was altered"),
}


@pytest.mark.parametrize("case", list(SIGN_CASES))
def test_ca_sign_signs_only_a_hut_ids_own_request(deployment: Deployment, tmp_path: Path, case: str) -> None:
    subject, refusal = SIGN_CASES[case]
    request = request_by_hand(tmp_path, subject, rsa_bits=1024 if "RSA" in case else None)
    if case == "altered after signing":
        alter(request, b"hut-c", b"hut-d")
    out = tmp_path / "issued.pem"
    ran = cli(collector_main, "ca", "sign", "--ca-dir", deployment.ca, "--csr", request, "--out", out)
    if refusal is None:
        assert (ran.code, ran.err) == (0, "")
        assert ran.out.startswith(f"{out}: CN=hut-c, serial ")
        return
    assert (ran.code, ran.out, out.exists()) == (1, "", False)
    assert ran.err.startswith(f"hut-collector: {request}: ")
    assert refusal in ran.err and "refusing" in ran.err


@pytest.mark.parametrize("hut_id", ["collector", "Hut C"])
def test_provision_refuses_a_name_that_is_not_a_hut_id(tmp_path: Path, hut_id: str) -> None:
    ran = cli(gateway_main, "provision", "--hut-id", hut_id, "--dir", tmp_path / "tls")
    assert (ran.code, ran.out, (tmp_path / "tls").exists()) == (1, "", False)
    assert ran.err.startswith(f"hut-gateway: {hut_id!r} ") or ran.err.startswith(f"hut-gateway: hut id {hut_id!r} ")


def test_private_keys_are_their_owners_alone(deployment: Deployment) -> None:
    keys = [
        deployment.ca / "ca.key",
        deployment.hut_a_config.parent / "tls/hut.key",
        deployment.hut_b / "hut.key",
        deployment.broker / "server.key",
        deployment.collector / "collector.key",
    ]
    assert [stat.S_IMODE(key.stat().st_mode) for key in keys] == [0o600] * len(keys)
    # As root, provision hands the hut's key to the user the gateway runs as (--owner).
    expected = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert (deployment.hut_b / "hut.key").stat().st_uid == expected


def public_key(*args: str | Path) -> bytes:
    return subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True).stdout


def test_provision_again_keeps_the_key_unless_forced(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    key, request = folder / "hut.key", folder / "hut-c.csr"
    first = ok(gateway_main, "provision", "--hut-id", "hut-c", "--dir", folder, "--key-type", "rsa")
    original = key.read_bytes()
    assert first.out.startswith(f"hut hut-c: made a new private key {key} (mode 0600)")
    again = ok(gateway_main, "provision", "--hut-id", "hut-c", "--dir", folder)
    assert again.out.startswith(f"hut hut-c: kept the private key {key}")
    assert key.read_bytes() == original
    # The fresh request (a renewal) is for the same key.
    assert public_key("req", "-in", request, "-noout", "-pubkey") == public_key("pkey", "-in", key, "-pubout")
    forced = ok(gateway_main, "provision", "--hut-id", "hut-c", "--dir", folder, "--force")
    assert forced.out.startswith(f"hut hut-c: made a new private key {key}")
    assert key.read_bytes() != original and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert public_key("req", "-in", request, "-noout", "-pubkey") == public_key("pkey", "-in", key, "-pubout")
    assert sorted(path.name for path in folder.iterdir()) == ["hut-c.csr", "hut.key"]  # no leftovers
    key.chmod(0o640)
    ran = cli(gateway_main, "provision", "--hut-id", "hut-c", "--dir", folder)
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == f"hut-gateway: {key}: the private key is readable by others (mode 0640): chmod 600 it\n"


def test_the_ca_and_the_broker_key_are_never_replaced_unasked(deployment: Deployment) -> None:
    ca_key, server_key = (deployment.ca / "ca.key").read_bytes(), (deployment.broker / "server.key").read_bytes()
    again = cli(collector_main, "ca", "init", "--ca-dir", deployment.ca)
    assert (again.code, again.out) == (1, "")
    assert again.err.startswith(f"hut-collector: {deployment.ca / 'ca.key'}: a CA is already here")
    server = cli(collector_main, "ca", "server", "--ca-dir", deployment.ca, "--name", "localhost",
                 "--out-dir", deployment.broker)  # fmt: skip
    assert (server.code, server.out) == (1, "")
    assert "refusing to overwrite it without --force" in server.err
    assert (deployment.ca / "ca.key").read_bytes() == ca_key
    assert (deployment.broker / "server.key").read_bytes() == server_key


def test_the_services_refused_to_huts_are_the_users_of_the_shipped_acl() -> None:
    acl = (SHIPPED / "healthhut.acl").read_text()
    assert set(re.findall(r"^user (\S+)$", acl, re.MULTILINE)) == SERVICE_NAMES


@pytest.mark.parametrize(
    ("main", "argv", "example"),
    [
        (gateway_main, ["provision"], "hut-gateway provision --hut-id"),
        (collector_main, ["ca"], "hut-collector ca init"),
        (collector_main, ["ca", "init"], "hut-collector ca init"),
        (collector_main, ["ca", "sign"], "hut-collector ca sign --csr"),
        (collector_main, ["ca", "server"], "hut-collector ca server --name"),
        (collector_main, ["ca", "client"], "hut-collector ca client --name"),
    ],
)
def test_help_shows_examples(capsys: pytest.CaptureFixture[str], main: Main, argv: list[str], example: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    assert example in capsys.readouterr().out.split("examples:", 1)[1]


async def test_a_revoked_hut_certificate_is_refused_at_the_handshake(deployment: Deployment, tmp_path: Path) -> None:
    # A copy of the CA and of the broker's folder, so the other tests' deployment stays as it was.
    ca, broker = tmp_path / "ca", tmp_path / "broker"
    shutil.copytree(deployment.ca, ca)
    shutil.copytree(deployment.broker, broker)
    assert "No Revoked Certificates" in crl_text(broker / "crl.pem")  # ca server wrote an empty list
    ran = ok(collector_main, "ca", "revoke", "--ca-dir", ca, "--hut", "hut-b", "--reason", "keyCompromise")
    assert "CN=hut-b" in ran.out and "/etc/mosquitto/certs/crl.pem" in ran.out
    again = ok(collector_main, "ca", "revoke", "--ca-dir", ca, "--cert", deployment.hut_b / "hut.pem")
    assert "CN=hut-b" in again.out  # revoking twice is harmless
    listed = crl_text(ca / "crl.pem")
    assert listed.count("Serial Number") == 1 and "Key Compromise" in listed
    with shipped_broker(deployment, tmp_path / "before") as (port, _):
        async with client(port, "hut-b", tls(deployment.hut_b, "hut")):  # the broker's list is still the old one
            pass
    shutil.copyfile(ca / "crl.pem", broker / "crl.pem")
    revoked = Deployment(ca, broker, deployment.collector, deployment.hut_a_config, deployment.hut_b)
    hut_a_tls = load_config(deployment.hut_a_config).mqtt.tls
    assert hut_a_tls is not None
    with shipped_broker(revoked, tmp_path / "after") as (port, stack):
        assert refusal(port, tls(deployment.hut_b, "hut")) == "SSLV3_ALERT_CERTIFICATE_REVOKED"
        async with client(port, "hut-a", hut_a_tls.ssl_context()) as hut_a:  # the others still connect
            await PubackWatch(hut_a).publish("hh/v1/huts/hut-a/event", b"from hut-a")
        assert stack.mosquitto.log_tail(200).count("certificate verify failed") == 1


def test_revoking_names_what_it_cannot_find(deployment: Deployment, tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    shutil.copytree(deployment.ca, ca)
    unknown = cli(collector_main, "ca", "revoke", "--ca-dir", ca, "--hut", "hut-zz")
    assert unknown.code == 1 and "no certificate of hut-zz on record" in unknown.err
    other = tmp_path / "other-ca"
    ok(collector_main, "ca", "init", "--ca-dir", other, "--name", "another CA", "--days", "2")
    foreign = cli(collector_main, "ca", "revoke", "--ca-dir", other, "--cert", deployment.hut_b / "hut.pem")
    assert foreign.code == 1 and "hut.pem" in foreign.err and "issued" in foreign.err
    assert not (other / "crl.pem").exists()


def crl_text(path: Path) -> str:
    return subprocess.run(
        ["openssl", "crl", "-in", str(path), "-noout", "-text"], check=True, capture_output=True, text=True
    ).stdout


# -- what the shipped ACL keeps from a hut, against real mosquitto with real certificates --------------------


async def test_a_hut_reads_only_its_own_subtree(deployment: Deployment, tmp_path: Path) -> None:
    hut_a_tls = load_config(deployment.hut_a_config).mqtt.tls
    assert hut_a_tls is not None
    # What the collector sends each hut, and what a hut sends, retained (a roster, a status) or not.
    for_each = ["roster", "cmd", "ack"]
    with shipped_broker(deployment, tmp_path) as (port, _):
        async with (
            client(port, "collector-1", tls(deployment.collector, "collector")) as collector,
            client(port, "hut-b", tls(deployment.hut_b, "hut")) as hut_b,
        ):
            sender = PubackWatch(collector)
            for hut in ("hut-a", "hut-b"):
                await sender.publish(f"hh/v1/huts/{hut}/roster", f"roster of {hut}".encode(), retain=True)
            await PubackWatch(hut_b).publish("hh/v1/huts/hut-b/status", b"status of hut-b", retain=True)
            async with client(port, "hut-a", hut_a_tls.ssl_context()) as hut_a:
                # Every way of asking for hut-b's messages, by name and by wildcard, and the alerts.
                for pattern in ("hh/v1/huts/hut-b/#", "hh/v1/huts/+/+", "hh/v1/huts/#", "hh/v1/alerts/#", "#"):
                    await hut_a.subscribe(pattern, qos=1)
                for channel in for_each:
                    await hut_a.subscribe(f"hh/v1/huts/hut-b/{channel}", qos=1)
                for hut in ("hut-b", "hut-a"):
                    for channel in ("cmd", "ack"):
                        await sender.publish(f"hh/v1/huts/{hut}/{channel}", f"{channel} for {hut}".encode())
                    await sender.publish(f"hh/v1/alerts/{hut}", f"alert at {hut}".encode())
                await PubackWatch(hut_b).publish("hh/v1/huts/hut-b/obs", b"readings of hut-b")
                # Last, to hut-a: once it has arrived, whatever came before would have too.
                await sender.publish("hh/v1/huts/hut-a/cmd", b"end")
                received: set[tuple[str, bytes]] = set()
                async with asyncio.timeout(10):
                    async for message in hut_a.messages:
                        assert isinstance(message.payload, bytes)
                        received.add((message.topic.value, message.payload))
                        if message.payload == b"end":
                            break
    # Its own roster (retained) and commands and confirmations, each however it subscribed, and nothing else.
    assert received == {
        ("hh/v1/huts/hut-a/roster", b"roster of hut-a"),
        ("hh/v1/huts/hut-a/cmd", b"cmd for hut-a"),
        ("hh/v1/huts/hut-a/ack", b"ack for hut-a"),
        ("hh/v1/huts/hut-a/cmd", b"end"),
    }


@pytest.mark.parametrize(
    "topic",
    [
        # What the collectors send a hut: a hut forging its own would fake confirmations (its readings
        # would leave its spool unstored), commands or a roster of residents.
        "hh/v1/huts/hut-a/ack",
        "hh/v1/huts/hut-a/cmd",
        "hh/v1/huts/hut-a/roster",
        "hh/v1/huts/hut-a/other",
        # The collectors' and the alerts' topics.
        "hh/v1/collectors/status",
        "hh/v1/alerts/hut-a",
        "hh/v1/alerts/ack",
        # Another hut's readings.
        "hh/v1/huts/hut-b/obs",
    ],
)
async def test_a_hut_cannot_write_what_the_collectors_send_it(
    deployment: Deployment, tmp_path: Path, topic: str
) -> None:
    hut_a_tls = load_config(deployment.hut_a_config).mqtt.tls
    assert hut_a_tls is not None
    with shipped_broker(deployment, tmp_path) as (port, _):
        async with (
            client(port, "collector-1", tls(deployment.collector, "collector")) as collector,
            client(port, "hut-a", hut_a_tls.ssl_context()) as hut_a,
        ):
            await collector.subscribe("#", qos=1)
            puback = PubackWatch(hut_a)
            with pytest.raises(PublishRefusedError) as refused:
                await puback.publish(topic, b"forged", retain=True)
            await puback.publish("hh/v1/huts/hut-a/event", b"allowed")  # the control: its own event goes
            async with asyncio.timeout(10):
                async for message in collector.messages:
                    assert message.payload == b"allowed", (message.topic.value, message.payload)
                    break
    assert (refused.value.topic, refused.value.code) == (topic, MQTT_NOT_AUTHORIZED)
