"""SIGHUP (``systemctl reload hut-gateway``): the config is read again; devices are added and removed
while the others read on untouched, a broken config is refused naming its line and the running one is
kept, and settings that need a restart say so. Real hut-gateway, hut-sim and mosquitto processes."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import aiomqtt

from healthhut.devstack import LocalStack
from healthhut.devstack.programs import Programs
from healthhut.protocol import DeviceEvent, ObservationBatch, decode
from tests.conftest import eventually


def gateway_toml(tmp_path: Path, hut: str, port: int, devices: list[str], extra: str = "") -> str:
    text = f'hut_id = "{hut}"\nstate_dir = "{tmp_path / "state"}"\n[mqtt]\nport = {port}\n{extra}'
    for name in devices:
        text += (
            f'[[devices]]\ndriver = "contec-cms50"\nname = "{name}"\npath = "{tmp_path / name}"\n'
            "report_interval_s = 1\nstrip_seconds = 2\n"
        )
    return text


async def test_sighup_applies_devices_and_keeps_the_others_reading(
    stack: LocalStack, tmp_path: Path, unique: str
) -> None:
    hut = f"hut-{unique}"
    config = tmp_path / "gateway.toml"
    config.write_text(gateway_toml(tmp_path, hut, stack.mosquitto.port, ["ox-1"]))
    readings: Counter[str] = Counter()
    batches: set[int] = set()
    # By message number: a message the collector has not yet confirmed may come again (same number).
    events: dict[int, tuple[str, str]] = {}

    async with aiomqtt.Client("127.0.0.1", stack.mosquitto.port) as observer:
        await observer.subscribe(f"hh/v1/huts/{hut}/+", qos=1)

        async def watch() -> None:
            async for message in observer.messages:
                channel = str(message.topic).rsplit("/", 1)[1]
                if channel not in ("obs", "event"):
                    continue
                decoded = decode(channel, bytes(message.payload))  # type: ignore[arg-type]
                if isinstance(decoded, ObservationBatch) and decoded.seq not in batches:
                    batches.add(decoded.seq)
                    readings.update(o.device.device_id for o in decoded.observations)
                elif isinstance(decoded, DeviceEvent) and decoded.device is not None:
                    events[decoded.seq] = (decoded.device.device_id, decoded.event)

        watcher = asyncio.create_task(watch())
        try:
            with Programs(tmp_path / "logs") as programs:
                # A collector confirms what it stores, so the hut's window of unconfirmed messages moves.
                (tmp_path / "collector.toml").write_text(
                    f'[mqtt]\nport = {stack.mosquitto.port}\nclient_id = "c-{hut}"\nshare_group = "g{hut}"\n'
                    f'session_expiry_s = 30\n[storage]\ntype = "influxdb1"\nurl = "{stack.influxd.url}"\n'
                    f'database = "reload_{unique}"\n[dead_letters]\npath = "{tmp_path / "dead.sqlite"}"\n'
                )
                programs.start("collector", "hut-collector", "run", "--config", str(tmp_path / "collector.toml"))
                await asyncio.to_thread(programs.wait_for_log, "collector", "subscribed")
                for name in ("ox-1", "ox-2"):
                    programs.start(name, "hut-sim", "play", "contec-cms50", "--link", str(tmp_path / name), "-q")
                gateway = programs.start("gateway", "hut-gateway", "run", "--config", str(config))
                await eventually(lambda: readings["ox-1"] >= 2, within=30)

                # A device added: it starts; ox-1 is not touched.
                config.write_text(gateway_toml(tmp_path, hut, stack.mosquitto.port, ["ox-1", "ox-2"]))
                gateway.send_signal(signal.SIGHUP)
                await asyncio.to_thread(
                    programs.wait_for_log, "gateway", "config reloaded: 1 device(s) kept, 0 stopped, 1 started"
                )
                await eventually(lambda: readings["ox-2"] >= 2, within=30)

                # A broken config: refused with its line and key, and everything reads on.
                config.write_text(
                    gateway_toml(tmp_path, hut, stack.mosquitto.port, ["ox-1", "ox-2"]).replace(
                        "report_interval_s = 1", "report_intervals = 1", 1
                    )
                )
                gateway.send_signal(signal.SIGHUP)
                await asyncio.to_thread(programs.wait_for_log, "gateway", "reload refused")
                refused = next(line for line in programs.log("gateway").splitlines() if "reload refused" in line)
                assert f"{config}:" in refused and "report_intervals" in refused
                marks = readings.copy()
                await eventually(lambda: all(readings[n] >= marks[n] + 2 for n in ("ox-1", "ox-2")), within=30)

                # A device removed, and a setting that only a restart applies.
                config.write_text(gateway_toml(tmp_path, hut, stack.mosquitto.port, ["ox-1"], "keepalive = 45\n"))
                gateway.send_signal(signal.SIGHUP)
                await asyncio.to_thread(
                    programs.wait_for_log, "gateway", "config reloaded: 1 device(s) kept, 1 stopped, 0 started"
                )
                assert "reload: mqtt change only at a restart" in programs.log("gateway")
                marks = readings.copy()
                await eventually(lambda: readings["ox-1"] >= marks["ox-1"] + 2, within=30)
                await asyncio.sleep(2.5)  # what ox-2 had in flight when it stopped has arrived
                stopped_at = readings["ox-2"]
                await asyncio.sleep(2.5)
                assert readings["ox-2"] == stopped_at
                programs.check_running("gateway")
                assert programs.stop("gateway") == 0
        finally:
            watcher.cancel()

    # ox-1 was connected once and never dropped through three reloads.
    assert [event for device, event in events.values() if device == "ox-1"] == ["connected"]
