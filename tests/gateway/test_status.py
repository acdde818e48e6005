"""``hut-gateway status``: the running daemon's own report (real processes, broker and pty), and what a
stale or missing report says."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt

from healthhut.devstack import LocalStack
from healthhut.devstack.programs import Programs
from healthhut.gateway.outbox import Outbox, gap_item
from healthhut.gateway.spool import open_spool
from healthhut.gateway.status import INTERVAL_S, health, render, snapshot
from healthhut.gateway.uplink import UplinkStats
from healthhut.protocol import Device, Kind, Quantity, Reading, Status, decode, observation_from_reading
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


# -- the spool's part, from a real SQLite spool holding items of known times ---------------------------------

OX = Device(driver="contec-cms50", device_id="ox-1")


async def fill_spool(path: Path, hut: str, received: list[datetime]) -> list[str]:
    """A real spool holding one observation received at each of these times, and then an event; the
    observations' ids."""
    spool, problem = open_spool(path, 10**7, gap_item)
    assert problem is None
    outbox = Outbox(spool)
    ids = []
    for n, at in enumerate(received):
        reading = Reading(kind=Kind.SPO2, values={"spo2": Quantity(95.0, "%")})
        obs = observation_from_reading(reading, hut_id=hut, device=OX, received_at=at, device_seq=n)
        assert await outbox.observation(obs)
        ids.append(obs.id)
    assert await outbox.event("connected", OX)
    await spool.close()
    return ids


def spool_rows(path: Path) -> tuple[int, int, str]:
    """What the spool file holds: items, their bytes, and the key of the first one."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        depth, size = db.execute("SELECT COUNT(*), SUM(size) FROM items").fetchone()
        (first,) = db.execute("SELECT key FROM items ORDER BY rowid LIMIT 1").fetchone()
    finally:
        db.close()
    return depth, size, first


async def test_snapshot_of_a_real_spool_gives_depth_bytes_and_the_oldest_unsent_age(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    # Put in this order: the one put first (rowid order) is the oldest waiting, whatever the times.
    received = [now - timedelta(seconds=3725.5), now - timedelta(seconds=60), now - timedelta(seconds=7200)]
    path = tmp_path / "spool.sqlite"
    await fill_spool(path, "hut-1", received)
    depth, size, _ = spool_rows(path)
    spool, _ = open_spool(path, 10**7, gap_item)
    try:
        status = await snapshot("hut-1", "boot-1", [], spool, UplinkStats())
    finally:
        await spool.close()
    taken = datetime.fromisoformat(status["at"])
    assert (depth, size > 0) == (4, True)
    assert status["spool"] == {
        "depth": 4,
        "bytes": size,
        "evicted": 0,
        "oldest_unsent_s": round((taken - received[0]).total_seconds(), 1),
    }
    assert 3725.5 <= status["spool"]["oldest_unsent_s"] < 3735
    assert health(status).spool.model_dump() == status["spool"]
    text, _ = render(status, taken)
    assert f"  spool: 4 item(s), {size / 2**20:.1f} MiB, oldest unsent 3726 s old; 0 evicted" in text.splitlines()

    empty, _ = open_spool(tmp_path / "empty.sqlite", 10**7, gap_item)
    try:
        nothing = await snapshot("hut-1", "boot-1", [], empty, UplinkStats())
    finally:
        await empty.close()
    assert nothing["spool"] == {"depth": 0, "bytes": 0, "evicted": 0, "oldest_unsent_s": None}
    assert "  spool: 0 item(s), 0.0 MiB; 0 evicted" in render(nothing, taken)[0].splitlines()


async def test_the_backlog_has_an_age_when_an_event_waits_first(tmp_path: Path) -> None:
    # Every boot spools a "started" event first: without a time of its own, a hut offline since it booted
    # showed no age for its backlog at all.
    spool, _ = open_spool(tmp_path / "spool.sqlite", 10**7, gap_item)
    try:
        before = datetime.now(UTC)
        assert await Outbox(spool).event("started", devices=2)
        await asyncio.sleep(0.3)
        status = await snapshot("hut-1", "boot-1", [], spool, UplinkStats())
    finally:
        await spool.close()
    taken = datetime.fromisoformat(status["at"])
    assert 0.3 <= status["spool"]["oldest_unsent_s"] <= round((taken - before).total_seconds(), 1) + 0.1


async def test_a_running_gateway_reports_its_backlog_in_status_and_on_the_wire(
    stack: LocalStack, tmp_path: Path, unique: str
) -> None:
    # Readings spooled an hour ago, and no collector to confirm them: they stay, and the gateway says so.
    hut = f"hut-{unique}"
    oldest = datetime.now(UTC) - timedelta(hours=1)
    state = tmp_path / "state"
    ids = await fill_spool(state / "spool.sqlite", hut, [oldest, oldest + timedelta(minutes=30)])
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'hut_id = "{hut}"\nstate_dir = "{state}"\n[mqtt]\nport = {stack.mosquitto.port}\n'
        "[uplink]\nstatus_interval_s = 1\n"
    )
    status_file = state / "status.json"
    with Programs(tmp_path / "logs") as programs:
        programs.start("gateway", "hut-gateway", "run", "--config", str(config))
        await eventually(status_file.exists, within=30)
        retained = await asyncio.wait_for(retained_backlog(stack.mosquitto.port, hut), 20)
        result = await asyncio.to_thread(hut_gateway, "status", "--json", "--config", str(config))
        shown = await asyncio.to_thread(hut_gateway, "status", "--config", str(config))
        depth, size, first = spool_rows(state / "spool.sqlite")
        programs.check_running("gateway")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    # The two readings, the "connected" event, and what the gateway itself spooled at start ("started").
    assert (depth, first) == (4, ids[0])
    taken = datetime.fromisoformat(status["at"])
    assert status["spool"] == {
        "depth": depth,
        "bytes": size,
        "evicted": 0,
        "oldest_unsent_s": round((taken - oldest).total_seconds(), 1),
    }
    # The text report was read after the JSON one: from the same status file, or one written since.
    found = re.search(r"^  spool: 4 item\(s\), 0\.0 MiB, oldest unsent (\d+) s old; 0 evicted$", shown.stdout, re.M)
    assert found is not None, shown.stdout
    assert -0.5 <= int(found.group(1)) - status["spool"]["oldest_unsent_s"] <= INTERVAL_S + 1
    assert retained.health is not None
    wire = retained.health.spool
    assert (wire.depth, wire.bytes, wire.evicted) == (depth, size, 0)
    # Computed when that message was made: an hour, plus the seconds the gateway has run.
    assert wire.oldest_unsent_s is not None
    assert abs(wire.oldest_unsent_s - (retained.sent_at - oldest).total_seconds()) <= 1.5


async def retained_backlog(port: int, hut: str) -> Status:
    """The hut's retained status once it reports its spool."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(f"hh/v1/huts/{hut}/status", qos=1)
        async for message in client.messages:
            status = decode("status", bytes(message.payload))  # type: ignore[arg-type]
            assert isinstance(status, Status)
            if status.health is not None and status.health.spool.depth:
                return status
    raise AssertionError("the subscription ended")
