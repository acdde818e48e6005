"""``hut-gateway status``: the running daemon's own report (real processes, broker and pty), and what a
stale or missing report says."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt

from healthhut.devstack import LocalStack
from healthhut.devstack.programs import Programs
from healthhut.gateway.status import render
from healthhut.protocol import Status, decode
from tests.conftest import eventually


def hut_gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "healthhut.gateway.cli", *args], check=False, capture_output=True, text=True, timeout=60
    )


async def test_status_of_a_running_gateway(stack: LocalStack, tmp_path: Path, unique: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'hut_id = "hut-{unique}"\nstate_dir = "{tmp_path / "state"}"\n[mqtt]\nport = {stack.mosquitto.port}\n'
        f"[uplink]\nstatus_interval_s = 1\n"
        f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-1"\npath = "{tmp_path / "ox"}"\n'
        f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-2"\npath = "{tmp_path / "absent"}"\n'
    )
    status_file = tmp_path / "state" / "status.json"
    with Programs(tmp_path / "logs") as programs:
        programs.start("sim", "hut-sim", "play", "contec-cms50", "--link", str(tmp_path / "ox"), "-q")
        programs.start("gateway", "hut-gateway", "run", "--config", str(config))

        def ox1_counted() -> bool:
            if not status_file.exists():
                return False
            devices = json.loads(status_file.read_text())["devices"]
            return bool(devices[0]["readings"]) and devices[0]["connected"]

        await eventually(ox1_counted, within=40)
        result = await asyncio.to_thread(hut_gateway, "status", "--config", str(config))
        retained = await asyncio.wait_for(retained_status(stack.mosquitto.port, f"hut-{unique}"), 10)
        programs.check_running("gateway")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"hut hut-{unique} (boot ")
    assert any(line.startswith("  broker: connected;") for line in lines)
    assert any(line.startswith("  spool: ") for line in lines)
    ox1 = next(line for line in lines if line.startswith("  device ox-1 (contec-cms50): connected, "))
    assert "last contact" in ox1 and "never" not in ox1
    assert any(
        line.startswith("  device ox-2 (contec-cms50): NOT connected, 0 reading(s), last contact never")
        for line in lines
    )
    assert any(
        line.startswith("  device ox-2 (contec-cms50): NOT connected") and "not available" in line for line in lines
    )
    # Counts and times only: no reading's value is in the status.
    assert '"spo2"' not in status_file.read_text()

    # The same data, retained on the hut's status topic for the operator's dashboards.
    assert retained.state == "online" and retained.health is not None
    ox1_wire, ox2_wire = retained.health.devices
    assert (ox1_wire.name, ox1_wire.connected, ox2_wire.name, ox2_wire.connected) == ("ox-1", True, "ox-2", False)
    assert ox1_wire.readings > 0 and ox1_wire.last_contact is not None
    assert ox2_wire.errors == 1 and (ox2_wire.last_error or "").startswith("not available: ")
    assert retained.health.uplink.connected and retained.health.uplink.published > 0


async def retained_status(port: int, hut: str) -> Status:
    """The hut's retained status, as a new subscriber gets it, once it carries a device's readings."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(f"hh/v1/huts/{hut}/status", qos=1)
        async for message in client.messages:
            status = decode("status", bytes(message.payload))  # type: ignore[arg-type]
            assert isinstance(status, Status)
            if status.health is not None and status.health.devices[0].readings > 0:
                return status
    raise AssertionError("the subscription ended")


def test_a_stale_or_missing_status_says_the_gateway_is_not_running(tmp_path: Path) -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    status = {
        "hut_id": "hut-1",
        "boot_id": "b",
        "at": (now - timedelta(minutes=5)).isoformat(),
        "devices": [],
        "spool": {"depth": 3, "bytes": 2048, "evicted": 0, "oldest_unsent_s": 400.0},
        "uplink": {
            "connected": True, "published": 1, "confirmed": 1, "resent": 0, "refused": 0,
            "last_confirmed": (now - timedelta(minutes=6)).isoformat(), "last_error": None,
        },
    }  # fmt: skip
    text, healthy = render(status, now)
    assert not healthy and "is it running?" in text and "oldest unsent 400 s old" in text
    text, healthy = render({**status, "at": now.isoformat()}, now)
    assert healthy and "last 6 min ago" in text
    config = tmp_path / "gateway.toml"
    config.write_text(f'hut_id = "hut-1"\nstate_dir = "{tmp_path / "state"}"\n')
    result = hut_gateway("status", "--config", str(config))
    assert result.returncode == 1 and "has not run with this state folder" in result.stderr
