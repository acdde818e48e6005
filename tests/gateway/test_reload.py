"""SIGHUP (``systemctl reload hut-gateway``): the config is read again; devices are added and removed
while the others read on untouched, a broken config is refused naming its line and the running one is
kept, and settings that need a restart say so; through it all no reading is lost or sent twice (the
numbers on the wire run on without a hole). Real hut-gateway, hut-sim and mosquitto processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections import Counter
from pathlib import Path

import aiomqtt

from healthhut.devstack import LocalStack
from healthhut.devstack.programs import Programs
from healthhut.protocol import DeviceEvent, ObservationBatch, Status, WaveBatch, WaveStrip, decode, observation_id
from tests.conftest import eventually


def gateway_toml(tmp_path: Path, hut: str, port: int, devices: list[str], extra: str = "") -> str:
    text = f'hut_id = "{hut}"\nstate_dir = "{tmp_path / "state"}"\n[mqtt]\nport = {port}\n{extra}'
    for name in devices:
        text += (
            f'[[devices]]\ndriver = "contec-cms50"\nname = "{name}"\npath = "{tmp_path / name}"\n'
            "report_interval_s = 1\nstrip_seconds = 2\n"
        )
    return text


def strip_number(strip: WaveStrip, hut: str, epoch: str, *, limit: int) -> int:
    """The reading number a strip was given: a device without a clock keys its id with it (observation_id)."""
    for number in range(limit):
        if observation_id(hut, strip.device, strip.kind, number, epoch) == strip.id:
            return number
    raise AssertionError(f"strip {strip.id} of {strip.device.device_id} has no reading number below {limit}")


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
    # Every message the hut numbered (obs, wave, event, status), and the first bytes seen under each number.
    messages: dict[int, bytes] = {}
    # Per device, the reading numbers (device_seq) of its observations, and its strips (whose number the
    # wire carries only inside their id), one entry per sending.
    device_seqs: dict[str, list[int]] = {}
    strips: list[WaveStrip] = []
    offline = asyncio.Event()

    async with aiomqtt.Client("127.0.0.1", stack.mosquitto.port) as observer:
        await observer.subscribe(f"hh/v1/huts/{hut}/+", qos=1)

        async def watch() -> None:
            async for message in observer.messages:
                channel = str(message.topic).rsplit("/", 1)[1]
                if channel not in ("obs", "wave", "event", "status"):
                    continue
                payload = bytes(message.payload)  # type: ignore[arg-type]
                decoded = decode(channel, payload)
                assert not isinstance(decoded, list)
                if decoded.seq in messages:
                    # A resend is the very same message, never new content under an old number.
                    assert messages[decoded.seq] == payload, decoded.seq
                    continue
                messages[decoded.seq] = payload
                if isinstance(decoded, ObservationBatch) and decoded.seq not in batches:
                    batches.add(decoded.seq)
                    readings.update(o.device.device_id for o in decoded.observations)
                    for o in decoded.observations:
                        device_seqs.setdefault(o.device.device_id, []).append(o.device_seq)
                elif isinstance(decoded, WaveBatch):
                    strips.extend(decoded.strips)
                elif isinstance(decoded, DeviceEvent) and decoded.device is not None:
                    events[decoded.seq] = (decoded.device.device_id, decoded.event)
                elif isinstance(decoded, Status) and decoded.state == "offline":
                    offline.set()

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
                # Its last word: the drain is done and everything it sent has arrived.
                await asyncio.wait_for(offline.wait(), 15)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher  # if it died, this is why

    # ox-1 was connected once and never dropped through three reloads.
    assert [event for device, event in events.values() if device == "ox-1"] == ["connected"]
    # No reading lost or sent twice across the reloads: each device's reading numbers (shared by its
    # observations and strips) run from 0 without a hole, each sent once; ox-2's up to when it was removed.
    epoch = json.loads((tmp_path / "state" / "state.json").read_text())["epoch"]
    for strip in strips:
        device_seqs[strip.device.device_id].append(strip_number(strip, hut, epoch, limit=len(messages) * 200))
    assert set(device_seqs) == {"ox-1", "ox-2"} and {s.device.device_id for s in strips} == {"ox-1", "ox-2"}
    for device, seqs in device_seqs.items():
        assert sorted(seqs) == list(range(len(seqs))), (device, sorted(set(range(max(seqs) + 1)) - set(seqs)))
    # Nor a message: the hut's numbers run on without a hole from its first "online" (number 1 went to
    # the Last Will, which the broker sends only if the connection dies) to its "offline".
    assert sorted(messages) == list(range(2, max(messages) + 1))
