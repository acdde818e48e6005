"""The systemd units: systemd-analyze verify is clean (empty stderr) on the installed tree, and the units
say what the programs need: notify and watchdog, restart limits, a stop timeout longer than the drain,
the state and config directories the example configs use, and hardening."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

from healthhut.gateway.app import DRAIN_TIMEOUT_S
from healthhut.gateway.transports.evdev import OPEN_FLAGS as EVDEV_OPEN_FLAGS
from healthhut.protocol.cli import EXIT_CONFIG
from tests.conftest import ROOT
from tests.ops.conftest import Installed

UNITS = ("hut-gateway.service", "hut-collector.service")


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze", path="/usr/bin:/bin:/usr/sbin")
    assert found, "systemd-analyze is missing: install the Debian package 'systemd'"
    return found


def verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    # --root: ExecStart= is looked up in the installed tree; the units it pulls in are not ours to check.
    return subprocess.run(
        [systemd_analyze(), "verify", f"--root={root}", "--recursive-errors=no", unit],
        capture_output=True,
        text=True,
        check=False,
    )


def directives(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` to its values in order (a key may repeat); comments and blank lines skipped."""
    found: dict[str, list[str]] = defaultdict(list)
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found[f"{section}.{key}"].append(value)
    return dict(found)


def seconds(text: str) -> float:
    units = {"s": 1, "min": 60, "ms": 0.001}
    match = re.fullmatch(r"(\d+)(ms|s|min)", text)
    assert match, text
    return int(match[1]) * units[match[2]]


@pytest.mark.parametrize("unit", UNITS)
def test_verify_is_clean(installed: Installed, unit: str) -> None:
    result = verify(installed.root, unit)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_reports_a_broken_unit(installed: Installed) -> None:
    # The check above can fail: the same unit with one bad value and one unknown key does not pass.
    text = (installed.root / "etc/systemd/system/hut-gateway.service").read_text()
    broken = text.replace("WatchdogSec=30s", "WatchdogSec=thirty\nWatchdogSecs=30s")
    (installed.root / "etc/systemd/system/hut-broken.service").write_text(broken)
    result = verify(installed.root, "hut-broken.service")
    assert "Failed to parse sec value, ignoring: thirty" in result.stderr
    assert "Unknown key 'WatchdogSecs'" in result.stderr


@pytest.mark.parametrize(("unit", "most"), [("hut-gateway.service", 2.5), ("hut-collector.service", 1.5)])
def test_exposure_stays_low(installed: Installed, unit: str, most: float) -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", f"--root={installed.root}", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(rf"Overall exposure level for {unit}: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= most


@pytest.mark.parametrize("unit", UNITS)
def test_journald_reads_the_log_priority(unit: str) -> None:
    # The programs start each line on stderr with <N> when it is the journal (protocol/cli.py,
    # PriorityPrefix); SyslogLevelPrefix= (default true) is what makes journald read it.
    found = directives(ROOT / "systemd" / unit)
    assert found["Service.StandardError"] == ["journal"]
    assert found.get("Service.SyslogLevelPrefix", ["true"]) == ["true"]


def lifecycle(found: dict[str, list[str]]) -> dict[str, list[str]]:
    keys = [
        "Service.Type",
        "Service.NotifyAccess",
        "Service.WatchdogSec",
        "Service.Restart",
        "Service.RestartPreventExitStatus",
        "Unit.StartLimitIntervalSec",
        "Unit.StartLimitBurst",
        "Service.User",
        "Service.ConfigurationDirectory",
        "Service.CapabilityBoundingSet",
        "Service.NoNewPrivileges",
        "Service.ProtectSystem",
        "Service.ProtectHome",
        "Service.PrivateTmp",
        "Service.StandardOutput",
        "Service.StandardError",
    ]
    return {key: found.get(key, []) for key in keys}


LIFECYCLE = {
    "Service.Type": ["notify"],
    "Service.NotifyAccess": ["main"],
    "Service.WatchdogSec": ["30s"],
    "Service.Restart": ["always"],
    "Service.RestartPreventExitStatus": [str(EXIT_CONFIG)],
    "Unit.StartLimitIntervalSec": ["10min"],
    "Unit.StartLimitBurst": ["10"],
    "Service.User": ["healthhut"],
    "Service.ConfigurationDirectory": ["healthhut"],
    "Service.CapabilityBoundingSet": [""],
    "Service.NoNewPrivileges": ["true"],
    "Service.ProtectSystem": ["strict"],
    "Service.ProtectHome": ["true"],
    "Service.PrivateTmp": ["true"],
    "Service.StandardOutput": ["journal"],
    "Service.StandardError": ["journal"],
}


def test_gateway_unit(installed: Installed) -> None:
    found = directives(ROOT / "systemd/hut-gateway.service")
    assert lifecycle(found) == LIFECYCLE
    # The SIGTERM drain, then the spool's commit, fit in the stop timeout with room to spare.
    assert seconds(found["Service.TimeoutStopSec"][0]) >= DRAIN_TIMEOUT_S + 15
    example = tomllib.loads((ROOT / "gateway/gateway.example.toml").read_text())
    assert found["Service.StateDirectory"] == [Path(example["state_dir"]).relative_to("/var/lib").as_posix()]
    program, *args = found["Service.ExecStart"][0].split()
    assert program == "/opt/healthhut/venv/bin/hut-gateway"
    assert args == ["run", "--config", "/etc/healthhut/gateway.toml", "--log-format", "json"]
    assert (installed.root / program.lstrip("/")).is_file()
    # dialout for the serial devices, bluetooth for BlueZ, input for the hid-scanner's /dev/input/event*.
    assert found["Service.SupplementaryGroups"] == ["dialout bluetooth input"]
    assert found["Service.RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_BLUETOOTH"]
    assert found["Service.DevicePolicy"] == ["closed"]
    assert found["Service.DeviceAllow"] == [
        "char-ttyUSB rw",
        "char-ttyACM rw",
        "char-ttyAMA rw",
        "char-ttyS rw",
        "char-input r",  # the evdev transport opens the scanner read-only and grabs it
    ]
    # "r" is enough only while the transport opens it read-only: a write mode would be refused (EPERM).
    assert EVDEV_OPEN_FLAGS & os.O_ACCMODE == os.O_RDONLY
    # gateway/clock.py asks the kernel (ntp_adjtime) whether the clock is synchronised: @clock stays allowed
    # after @privileged is taken out, and ProtectClock=, which would deny it, is not set.
    assert found["Service.SystemCallFilter"] == ["@system-service", "~@privileged @resources", "@clock"]
    assert "Service.ProtectClock" not in found


def test_collector_unit(installed: Installed) -> None:
    found = directives(ROOT / "systemd/hut-collector.service")
    assert lifecycle(found) == LIFECYCLE
    example = tomllib.loads((ROOT / "collector/collector.example.toml").read_text())
    state = Path(example["dead_letters"]["path"]).parent
    assert found["Service.StateDirectory"] == [state.relative_to("/var/lib").as_posix()]
    program, *args = found["Service.ExecStart"][0].split()
    assert program == "/opt/healthhut/venv/bin/hut-collector"
    assert args == ["run", "--config", "/etc/healthhut/collector.toml", "--log-format", "json"]
    assert (installed.root / program.lstrip("/")).is_file()
    assert "Service.SupplementaryGroups" not in found
    assert found["Service.RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]
    assert found["Service.SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert found["Service.PrivateDevices"] == ["true"]
    assert found["Service.ProtectClock"] == ["true"]
