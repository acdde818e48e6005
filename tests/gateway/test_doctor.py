"""``hut-gateway doctor`` against real parts: a real broker, a real pty, a real (or damaged) spool file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from healthhut.devstack import LocalStack, free_port
from healthhut.firmware_sim.links import PtyLink
from healthhut.gateway import cli
from healthhut.protocol.pseudonym import generate_key_file


def write_config(tmp_path: Path, port: int, devices: str, identity: str = "") -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'hut_id = "hut-doc"\nstate_dir = "{tmp_path / "state"}"\n[mqtt]\nport = {port}\n{identity}{devices}'
    )
    return path


def lines(output: str) -> dict[str, tuple[str, str]]:
    """check name -> (verdict, detail)"""
    found = {}
    for line in output.splitlines()[1:-1]:
        verdict, rest = line.split(maxsplit=1)
        check, detail = rest.split("  ", 1)
        found[check.strip()] = (verdict, detail.strip())
    return found


def test_a_healthy_hut_passes(stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "pseudonym.key"
    generate_key_file(key)
    link = PtyLink(tmp_path / "ox")
    link.open()
    try:
        devices = f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-1"\npath = "{tmp_path / "ox"}"\n'
        config = write_config(tmp_path, stack.mosquitto.port, devices, f'[identity]\nkey_file = "{key}"\n')
        code = cli.main(["doctor", "--config", str(config)])
    finally:
        link.close()
    out = capsys.readouterr().out
    found = lines(out)
    assert code == 0, out
    assert found["broker"] == ("PASS", f"connected to 127.0.0.1:{stack.mosquitto.port}")
    assert found["device ox-1"][0] == "PASS" and found["pseudonym key"][0] == "PASS"
    assert found["state folder"][0] == "PASS" and found["spool"][0] == "PASS" and found["free disk"][0] == "PASS"
    assert found["clock"][0] in ("PASS", "WARN")  # this machine's clock may not be synchronised
    assert "bluetooth" not in found  # no BLE device configured: nothing to check


def test_each_broken_part_is_a_failure_with_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "pseudonym.key"
    key.write_text("ab" * 32)
    key.chmod(0o644)
    spool = tmp_path / "state" / "spool.sqlite"
    spool.parent.mkdir(parents=True)
    spool.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)  # a header and then nothing sane
    devices = (
        f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-1"\npath = "{tmp_path / "unplugged"}"\n'
        '[[devices]]\ndriver = "ble-thermometer"\nname = "th-1"\n'
    )
    config = write_config(tmp_path, free_port(), devices, f'[identity]\nkey_file = "{key}"\n')
    code = cli.main(["doctor", "--config", str(config)])
    out = capsys.readouterr().out
    found = lines(out)
    assert code == 1, out
    assert found["broker"][0] == "FAIL" and "check the address" in found["broker"][1]
    assert found["device ox-1"] == ("FAIL", f"{tmp_path / 'unplugged'} does not exist: is the contec-cms50 plugged in?")
    assert found["spool"][0] == "FAIL" and "move it aside" in found["spool"][1]
    assert found["pseudonym key"][0] == "FAIL" and "owner only" in found["pseudonym key"][1]
    assert found["bluetooth"][0] == "FAIL"
    assert out.strip().endswith("warning(s)") and out.splitlines()[-1].startswith("5 failure(s)")
    assert "ab" * 32 not in out  # never the key


def test_an_input_device_is_opened_read_only_as_the_gateway_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An input event device is read, never written: doctor opens it read-only, as the evdev transport does,
    # so a scanner the gateway can use passes where a serial port's read-write open would fail. The tests
    # run as root, whom no permission bit stops, so the device sits on a read-only bind mount instead.
    source, mounted = tmp_path / "dev", tmp_path / "ro"
    source.mkdir()
    mounted.mkdir()
    # (A regular file: a read-only mount lets device files and FIFOs be opened for writing.)
    (source / "scanner-event-kbd").write_bytes(b"")
    subprocess.run(["mount", "--bind", str(source), str(mounted)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], check=True)
        scanner, port = mounted / "scanner-event-kbd", mounted / "ttyUSB0"
        with pytest.raises(OSError):
            port.touch()  # read-only indeed
        devices = (
            f'[[devices]]\ndriver = "hid-scanner"\nname = "hid-1"\npath = "{scanner}"\n'
            f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-1"\npath = "{scanner}"\n'
        )
        code = cli.main(["doctor", "--config", str(write_config(tmp_path, free_port(), devices))])
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    found = lines(capsys.readouterr().out)
    assert found["device hid-1"] == ("PASS", f"{scanner} opens")
    assert found["device ox-1"][0] == "FAIL" and "Read-only file system" in found["device ox-1"][1]
    assert code == 1
