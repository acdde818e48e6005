"""``hut-gateway doctor``: a technician's pass/fail check of everything the gateway depends on.

Each check says, in plain words, what it looked at and what to do when it fails. A FAIL stops the
gateway from doing its job; a WARN degrades it (readings still flow, but flagged or at risk). The
report never shows a health value, a resident identifier or a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import sqlite3
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiomqtt

from healthhut.gateway.clock import kernel_clock_synchronised
from healthhut.gateway.config import GatewayConfig
from healthhut.gateway.spool.sqlite import check_database
from healthhut.gateway.transports import evdev
from healthhut.protocol.configfile import TlsConfig, is_loopback
from healthhut.protocol.pseudonym import PseudonymKey, PseudonymKeyError

Verdict = Literal["PASS", "WARN", "FAIL"]
# Below this much free space the spool cannot take a morning's readings.
MIN_FREE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Finding:
    verdict: Verdict
    check: str
    detail: str


def _state_dir(config: GatewayConfig) -> Finding:
    folder = config.state_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".doctor-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return Finding("FAIL", "state folder", f"{folder}: cannot write ({exc.strerror}); fix its owner or mode")
    return Finding("PASS", "state folder", f"{folder} is writable")


def _disk(config: GatewayConfig) -> Finding:
    folder = config.spool_path.parent if config.spool_path.parent.exists() else config.state_dir
    try:
        stats = os.statvfs(folder)
    except OSError as exc:
        return Finding("FAIL", "free disk", f"{folder}: {exc.strerror}")
    free = stats.f_bavail * stats.f_frsize
    quota = int(config.spool.quota_mb * 1024 * 1024)
    text = f"{free / 2**20:.0f} MiB free at {folder}; spool quota {quota / 2**20:.0f} MiB"
    if free < MIN_FREE_BYTES:
        return Finding("FAIL", "free disk", f"{text}: too little to keep readings; free some space")
    if free < quota:
        return Finding("WARN", "free disk", f"{text}: the spool will evict waveforms before reaching its quota")
    return Finding("PASS", "free disk", text)


def _spool(config: GatewayConfig) -> Finding:
    path = config.spool_path
    if not path.exists():
        return Finding("PASS", "spool", f"{path} does not exist yet; it is created at start")
    problem = check_database(path)  # what the gateway itself checks at start
    if problem is not None:
        return Finding("FAIL", "spool", f"{path} is damaged ({problem}); the gateway will move it aside")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            depth, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM items").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return Finding("FAIL", "spool", f"{path}: {exc}; the gateway will move it aside and start a new one")
    age = time.time() - path.stat().st_mtime
    waiting = f"{depth} item(s), {size / 2**20:.1f} MiB waiting to be sent" if depth else "empty"
    detail = f"{path}: sound, {waiting}"
    if depth and age > 3600:
        return Finding("WARN", "spool", f"{detail}; nothing written for {age / 3600:.0f} h: is the gateway running?")
    return Finding("PASS", "spool", detail)


def _clock() -> Finding:
    synced = kernel_clock_synchronised()
    if synced is None:
        return Finding("WARN", "clock", "cannot ask the kernel whether the clock is synchronised")
    if not synced:
        return Finding(
            "WARN",
            "clock",
            "the clock is not NTP-synchronised: readings are flagged clock_unverified; check network time "
            "(timedatectl status)",
        )
    return Finding("PASS", "clock", "NTP-synchronised")


def _identity(config: GatewayConfig) -> Finding | None:
    if config.identity is None:
        return None
    try:
        PseudonymKey.load(config.identity.key_file)
    except PseudonymKeyError as exc:
        return Finding("FAIL", "pseudonym key", str(exc))
    return Finding("PASS", "pseudonym key", f"{config.identity.key_file} is readable by its owner only")


# How the gateway opens a device file of each transport, and the group whose members may (Debian's udev
# rules: serial ports belong to dialout; the evdev transport says its own).
DEVICE_ACCESS = {
    "serial": (os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK, "dialout"),
    "evdev": (evdev.OPEN_FLAGS, evdev.ACCESS_GROUP),
}


def _serial(config: GatewayConfig) -> list[Finding]:
    from healthhut.drivers import get_driver

    findings = []
    for device in config.device_configs:
        path = getattr(device, "path", None)
        if not isinstance(path, str):
            continue
        name = f"device {device.name}"
        if not os.path.exists(path):
            findings.append(Finding("FAIL", name, f"{path} does not exist: is the {device.driver} plugged in?"))
            continue
        mode, group = DEVICE_ACCESS.get(get_driver(device.driver).transport, DEVICE_ACCESS["serial"])
        try:
            descriptor = os.open(path, mode)
        except OSError as exc:
            hint = f"; the gateway's user needs the {group} group" if exc.errno == errno.EACCES else ""
            findings.append(Finding("FAIL", name, f"{path}: cannot open ({exc.strerror}){hint}"))
            continue
        os.close(descriptor)
        findings.append(Finding("PASS", name, f"{path} opens"))
    return findings


async def _bluetooth(config: GatewayConfig) -> Finding | None:
    from healthhut.drivers import get_driver

    if not any(get_driver(device.driver).transport == "ble" for device in config.device_configs):
        return None
    from bleak import BleakAdapter

    try:
        await asyncio.wait_for(BleakAdapter.get(), 10)
    except Exception as exc:  # noqa: BLE001 - bleak, dbus-fast and the socket each raise their own
        text = str(exc) or type(exc).__name__
        return Finding("FAIL", "bluetooth", f"no usable adapter ({text}); check bluetoothd and the adapter")
    return Finding("PASS", "bluetooth", "a Bluetooth adapter is available through BlueZ")


def _broker_security(config: GatewayConfig) -> Finding:
    mqtt = config.mqtt
    if mqtt.tls is None:
        if is_loopback(mqtt.host):
            return Finding("PASS", "broker security", f"plaintext to {mqtt.host}, which is this machine")
        return Finding(
            "FAIL",
            "broker security",
            f"plaintext to {mqtt.host}, another machine (insecure_plaintext = true): readings travel "
            "unencrypted and unauthenticated; configure [mqtt.tls] and provision this hut",
        )
    if mqtt.tls.cert_file is None:
        return Finding(
            "WARN",
            "broker security",
            "TLS without a client certificate: the shipped broker admits huts by certificate only; "
            "set cert_file and key_file in [mqtt.tls]",
        )
    return Finding("PASS", "broker security", "mutual TLS (a client certificate and the deployment CA)")


def _missing_tls_file(tls: TlsConfig) -> str | None:
    named = [
        ("ca_file", tls.ca_file, "the deployment CA's certificate"),
        ("cert_file", tls.cert_file, "this hut's certificate"),
        ("key_file", tls.key_file, "this hut's private key"),
    ]
    for key, path, what in named:
        if path is not None and not path.is_file():
            return (
                f"[mqtt.tls] {key} {path} does not exist: put {what} there "
                "(hut-gateway provision, then the certificate the CA signed)"
            )
    return None


# In TLS 1.3 the broker judges the client's certificate after the client has finished its side of the
# handshake, and says so with an alert: this long is waited for one (a broker that accepts sends nothing).
VERDICT_WAIT_S = 2.0


def _handshake(host: str, port: int, context: ssl.SSLContext, tls: TlsConfig) -> str | None:
    """What is wrong with the TLS handshake with the broker, in a technician's words; None if it is sound.
    Done here, not by paho, to tell which side refused which certificate (and paho leaves the socket of a
    failed handshake open)."""
    try:
        with (
            socket.create_connection((host, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as connection,
        ):
            connection.settimeout(VERDICT_WAIT_S)
            with contextlib.suppress(TimeoutError):
                connection.recv(1)
    except ssl.SSLCertVerificationError as exc:
        return (
            f"the broker's certificate does not verify against ca_file {tls.ca_file} ({exc.verify_message}): "
            "is it the deployment CA's certificate, and is the host name the one the broker's certificate names?"
        )
    except ssl.SSLError as exc:
        return (
            f"the broker refused this hut's certificate {tls.cert_file} ({exc.reason}): was it signed by the "
            "deployment CA, is it still valid, and not revoked?"
        )
    except OSError as exc:
        return f"{exc.strerror or exc}; check the address and the network"
    return None


async def _broker(config: GatewayConfig) -> Finding:
    mqtt = config.mqtt
    where = f"{mqtt.host}:{mqtt.port}" + (" over TLS" if mqtt.tls else "")
    tls: ssl.SSLContext | None = None
    if mqtt.tls is not None:
        if (missing := _missing_tls_file(mqtt.tls)) is not None:
            return Finding("FAIL", "broker", f"cannot connect to {where}: {missing}")
        try:
            tls = mqtt.tls.ssl_context()
        except ssl.SSLError as exc:  # a file that is not a key or certificate, or a key that is not the cert's
            return Finding("FAIL", "broker", f"cannot use the files of [mqtt.tls]: {exc}; provision this hut again")
        if (problem := await asyncio.to_thread(_handshake, mqtt.host, mqtt.port, tls, mqtt.tls)) is not None:
            return Finding("FAIL", "broker", f"cannot connect to {where}: {problem}")
    try:
        async with aiomqtt.Client(
            mqtt.host,
            mqtt.port,
            identifier=f"doctor-{config.hut_id}-{os.getpid()}",
            username=mqtt.username,
            password=mqtt.password,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=tls,
            timeout=5,
        ):
            pass
    except (aiomqtt.MqttError, OSError, ValueError) as exc:
        return Finding(
            "FAIL", "broker", f"cannot connect to {where}: {exc}; check the address, network and certificates"
        )
    return Finding("PASS", "broker", f"connected to {where}")


async def examine(config: GatewayConfig) -> list[Finding]:
    findings = [_state_dir(config), _disk(config), _spool(config), _clock(), _broker_security(config)]
    optional: list[Finding | None] = [_identity(config)]
    findings += [f for f in optional if f is not None]
    findings += _serial(config)
    checks: list[Callable[[GatewayConfig], Awaitable[Finding | None]]] = [_bluetooth, _broker]
    for check in checks:
        finding = await check(config)
        if finding is not None:
            findings.append(finding)
    return findings


def report(config_path: Path, findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    lines = [f"hut-gateway doctor: {config_path}"]
    lines += [f"  {f.verdict:4}  {f.check:<{width}}  {f.detail}" for f in findings]
    failed = sum(f.verdict == "FAIL" for f in findings)
    warned = sum(f.verdict == "WARN" for f in findings)
    lines.append(f"{failed} failure(s), {warned} warning(s)" if failed or warned else "all checks passed")
    return "\n".join(lines)
