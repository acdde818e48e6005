"""The hut-sim command line: listings, help with examples, refusals that say why, and the serial links (a pty
with its symlink, a real serial port) with an unplug in the middle of a frame."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from healthhut.drivers import available_drivers
from healthhut.drivers.contec_cms50 import Cms50Decoder
from healthhut.firmware_sim.cli import build_parser, main
from healthhut.firmware_sim.faults import FAULTS
from healthhut.firmware_sim.links import ble as ble_link
from healthhut.firmware_sim.scenarios import SCENARIOS
from healthhut.protocol import Kind


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_shows_every_registered_driver_with_its_links(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == available_drivers()
    links = {
        name: line.split("links:")[1].strip()
        for name, line in zip(
            [line.split()[0] for line in lines if not line.startswith(" ")],
            [line for line in lines if "links:" in line],
            strict=True,
        )
    }
    assert links["contec-cms50"] == links["healthypi"] == "pty, serial, mqtt"
    assert {links[name] for name in available_drivers() if name.startswith("ble-")} == {"ble, mqtt"}


def test_list_scenarios_and_faults(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_main(capsys, "list", "scenarios")
    assert [line.split()[0] for line in out.splitlines()] == list(SCENARIOS)
    _, out, _ = run_main(capsys, "list", "faults")
    assert [line.split()[0] for line in out.splitlines() if not line.startswith(" ")] == list(FAULTS)


@pytest.mark.parametrize("command", ["list", "play", "hut", "load"])
def test_every_command_has_help_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, command, "--help")
    assert code == 0
    examples = out.split("examples:\n", 1)[1]
    assert sum(line.strip().startswith(f"hut-sim {command}") for line in examples.splitlines()) >= 3
    assert "examples:" in build_parser().format_help()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["play", "pulse-meter-9000"], 2, "no driver named 'pulse-meter-9000'; installed drivers: ble-blood-pressure"),
        (["play", "contec-cms50", "--link", "ble"], 2, "contec-cms50 plays over pty, serial, mqtt, not ble"),
        (["play", "ble-glucose", "--link", "pty"], 2, "ble-glucose plays over ble, mqtt, not pty"),
        (["play", "healthypi", "--protocol", "9-byte"], 2, "healthypi has no board '9-byte'; it has: v4, v5"),
        (
            ["play", "ble-heart-rate", "--fault", "clock-reset"],
            2,
            "--fault clock-reset: ble-heart-rate cannot show it; its faults: garbage, out-of-range",
        ),
        (["play", "ble-thermometer", "--fault", "unplug-mid-frame"], 2, "not on the ble link (only pty, serial)"),
        (["play", "contec-cms50", "--fault", "racp-link-loss"], 2, "--fault racp-link-loss: not on the pty link"),
        (["play", "contec-cms50", "--link", "serial"], 2, "--link serial needs --port"),
        (["play", "ble-weight-scale", "--scenario", "flu"], 2, "invalid choice: 'flu'"),
        (["play", "ble-weight-scale", "--spo2", "120"], 2, "spo2 must be in 50..100, not 120"),
        (["play", "ble-weight-scale", "--address", "nowhere"], 2, "is not a Bluetooth address"),
        (["play", "ble-weight-scale", "--link", "mqtt"], 2, "--hut-id is required"),
        (["hut", "--hut-id", "Hut A"], 2, "hut id 'Hut A' must match"),
        (["hut", "--hut-id", "h1", "--devices", "ble-heart-rate", "--fault", "clock-reset"], 2, "can show clock-reset"),
        (["load", "--huts", "0"], 2, "--huts, --rate and --batch-interval must be positive"),
        (["hut", "--hut-id", "h1", "--devices", "pulse-meter-9000"], 2, "no driver named 'pulse-meter-9000'"),
        (["hut", "--hut-id", "h1", "--devices", "ble-glucose:v2"], 2, "ble-glucose has no protocol generations"),
        (["hut", "--hut-id", "h1", "--devices", "healthypi:v2"], 2, "healthypi has no board 'v2'"),
        (["play", "ble-heart-rate", "--transport", "usb:0", "--dbus-address", "unix:path=/x"], 2, "--dbus-address is"),
    ],
)
def test_refusals_say_why(args: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    got, _, err = run_main(capsys, *args)
    assert got == code
    assert message in err


def test_without_bumble_installed_hut_sim_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ble_link, "bumble_available", lambda: False)
    code, _, err = run_main(capsys, "play", "ble-heart-rate", "--transport", "usb:0")
    assert code == 1
    assert "--ble bumble needs the bumble package (pip install bumble)" in err and "--ble fake-bluez" in err


def test_the_bumble_error_names_the_transports() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "healthhut.firmware_sim.cli", "play", "ble-heart-rate", "--ble", "bumble"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "usb:0" in result.stderr and "serial:/dev/ttyACM0" in result.stderr and "--ble fake-bluez" in result.stderr


@contextlib.contextmanager
def hut_sim(*args: str) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [sys.executable, "-m", "healthhut.firmware_sim.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as sim:
        try:
            yield sim
        finally:
            sim.terminate()
            sim.communicate(timeout=10)


def read_until_gone(fd: int, within: float) -> tuple[bytes, bool]:
    """Everything readable from ``fd`` until the other side hangs up (True) or ``within`` passes (False)."""
    data = bytearray()
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return bytes(data), True
            raise
        if not chunk:
            return bytes(data), True
        data += chunk
    return bytes(data), False


def open_when_there(path: Path, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    while True:
        try:
            return os.open(path, os.O_RDONLY | os.O_NOCTTY)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_an_unplug_in_the_middle_of_a_frame_and_the_replug(tmp_path: Path) -> None:
    link = tmp_path / "oximeter"
    with hut_sim(
        "play", "contec-cms50", "--link", str(link), "--fault", "unplug-mid-frame", "--unplug-every", "1.5",
        "--unplug-for", "0.5", "--seed", "3", "--quiet",
    ) as sim:  # fmt: skip
        assert sim.stdout is not None
        assert sim.stdout.readline().strip() == str(link)
        fd = open_when_there(link)
        try:
            before, unplugged = read_until_gone(fd, within=5)
        finally:
            os.close(fd)
        assert unplugged
        # The cable came out part-way through a 5-byte frame: the stream read since the open ends short.
        assert len(before) % 5 != 0
        decoder = Cms50Decoder()
        readings = decoder.feed(before)
        assert readings and all(r.kind is Kind.SPO2 for r in readings)
        # Plugged in again behind the same symlink, streaming whole frames from a new start.
        fd = open_when_there(link)
        try:
            after, _ = read_until_gone(fd, within=0.5)
        finally:
            os.close(fd)
        fresh = Cms50Decoder()
        assert fresh.feed(after) and fresh.frame_errors == 0


def test_a_real_serial_port_gets_the_devices_line_settings_and_its_frames() -> None:
    import termios

    controller, port = os.openpty()
    try:
        port_path = os.ttyname(port)
        with hut_sim(
            "play", "contec-cms50", "--link", "serial", "--port", port_path, "--scenario", "hypoxaemia",
            "--duration", "1.5", "--quiet",
        ) as sim:  # fmt: skip
            assert sim.stdout is not None
            assert sim.stdout.readline().strip() == port_path
            data, _ = read_until_gone(controller, within=1.2)
            attributes = termios.tcgetattr(port)
        readings = Cms50Decoder().feed(data)
        assert len(readings) >= 30
        assert all(abs(r.values["spo2"].value - 88) <= 1 for r in readings)  # type: ignore[operator]
        # The CMS50's 19200 baud, as the driver's serial link sets it. (A pty keeps the speed but forces 8N1,
        # so the odd parity cannot be seen here.)
        assert attributes[4] == attributes[5] == termios.B19200
    finally:
        os.close(controller)
        os.close(port)
