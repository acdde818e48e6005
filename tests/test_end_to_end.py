"""Readings end to end: hut-sim on a pty → hut-gateway → real mosquitto → hut-collector → real influxd.

All three programs run as separate processes, as installed. A test subscriber records what the
gateway published, so the values, units and times in InfluxDB are checked against the wire.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt

from healthhut.devstack import LocalStack
from healthhut.devstack.programs import Programs
from healthhut.protocol import (
    ObservationBatch,
    Status,
    StoreAck,
    WaveBatch,
    WaveStrip,
    decode,
    decode_ack,
    encode,
    hut_topic,
)
from tests.conftest import eventually

SPO2, PULSE = 95, 64


def ns(stamp: datetime) -> int:
    return int(stamp.replace(microsecond=0).timestamp()) * 1_000_000_000 + stamp.microsecond * 1000


def write_configs(tmp: Path, stack: LocalStack, hut: str, db: str) -> tuple[Path, Path]:
    collector = tmp / "collector.toml"
    collector.write_text(
        f'[mqtt]\nport = {stack.mosquitto.port}\nclient_id = "c-{hut}"\nshare_group = "g{hut}"\nsession_expiry_s = 30\n'
        f'[storage]\ntype = "influxdb1"\nurl = "{stack.influxd.url}"\ndatabase = "{db}"\n'
        f'[dead_letters]\npath = "{tmp / "dead.sqlite"}"\n'
    )
    gateway = tmp / "gateway.toml"
    gateway.write_text(
        f'hut_id = "{hut}"\nstate_dir = "{tmp / "state"}"\n[mqtt]\nport = {stack.mosquitto.port}\n'
        f"[uplink]\nbatch_interval_s = 0.5\n"
        f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-e2e"\npath = "{tmp / "ox"}"\nstrip_seconds = 2\n'
    )
    return collector, gateway


def ppg_rows(stack: LocalStack, db: str) -> list[tuple[int, float]]:
    result = stack.influxd.query('SELECT pleth FROM "ppg"', db=db, epoch="ns")
    series = result["results"][0].get("series", [])
    return [(values[0], values[1]) for values in series[0]["values"]] if series else []


def spo2_rows(stack: LocalStack, db: str) -> list[tuple[int, float, float, str]]:
    result = stack.influxd.query('SELECT spo2, pulse_rate, obs_id FROM "spo2"', db=db, epoch="ns")
    series = result["results"][0].get("series", [])
    return [tuple(values) for values in series[0]["values"]] if series else []  # type: ignore[misc]


async def test_simulated_readings_reach_influxdb(stack: LocalStack, tmp_path: Path, unique: str) -> None:
    hut, db = f"hut-{unique}", f"e2e_{unique}"
    collector_config, gateway_config = write_configs(tmp_path, stack, hut, db)
    published: list[tuple[bytes, ObservationBatch]] = []
    strips: list[WaveStrip] = []
    statuses: list[str] = []
    acks: list[StoreAck] = []
    began = datetime.now(UTC)

    def observed() -> int:
        return sum(1 for _, batch in published for obs in batch.observations if obs.kind == "spo2")

    async with aiomqtt.Client("127.0.0.1", stack.mosquitto.port) as observer:
        await observer.subscribe(f"hh/v1/huts/{hut}/#", qos=1)

        async def watch() -> None:
            async for message in observer.messages:
                payload = bytes(message.payload)  # type: ignore[arg-type]
                channel = str(message.topic).rsplit("/", 1)[1]
                if channel == "ack":
                    acks.append(decode_ack(payload))
                    continue
                if channel == "cmd":  # the collector's "please measure again"; not the hut's own messages
                    continue
                decoded = decode(channel, payload)
                if isinstance(decoded, ObservationBatch):
                    published.append((payload, decoded))
                elif isinstance(decoded, WaveBatch):
                    strips.extend(decoded.strips)
                elif isinstance(decoded, Status):
                    statuses.append(decoded.state)

        watcher = asyncio.create_task(watch())
        with Programs(tmp_path / "logs") as programs:
            programs.start("collector", "hut-collector", "run", "--config", str(collector_config))
            await asyncio.to_thread(programs.wait_for_log, "collector", "subscribed")
            sim_args = ["--spo2", str(SPO2), "--pulse-rate", str(PULSE), "--seed", "5", "--duration", "60", "-q"]
            programs.start("sim", "hut-sim", "play", "contec-cms50", "--link", str(tmp_path / "ox"), *sim_args)
            programs.start("gateway", "hut-gateway", "run", "--config", str(gateway_config))
            try:
                await eventually(lambda: observed() >= 6 and len(strips) >= 2, within=30)
            finally:
                programs.check_running("gateway", "collector")
            # On SIGTERM the gateway sends what it holds, then its "offline" status: the last word.
            assert programs.stop("gateway") == 0
            await eventually(lambda: statuses[-1:] == ["offline"])
            watcher.cancel()
            ended = datetime.now(UTC)
            everything = [obs for _, batch in published for obs in batch.observations]
            observations = [obs for obs in everything if obs.kind == "spo2"]
            # Every strip was analysed too: a ppg observation carries its pulse rate and quality.
            assert {obs.kind for obs in everything} == {"spo2", "ppg"}

            # Every published observation is in InfluxDB exactly once, with the same values and time.
            await eventually(lambda: len(spo2_rows(stack, db)) >= len(observations))
            expected = sorted(
                (ns(o.measured_at), o.values["spo2"].value, o.values["pulse_rate"].value, o.id) for o in observations
            )
            assert spo2_rows(stack, db) == expected
            for obs in observations:
                assert {name: q.unit for name, q in obs.values.items()} == {"spo2": "%", "pulse_rate": "/min"}
                assert began <= obs.measured_at <= ended and obs.clock == "gateway"
                # hut-sim wanders ±1 % and ±2 /min around what it was told, like the real device.
                assert abs(obs.values["spo2"].value - SPO2) <= 1  # type: ignore[operator]
                assert abs(obs.values["pulse_rate"].value - PULSE) <= 2  # type: ignore[operator]
            assert [b.seq for _, b in published] == sorted({b.seq for _, b in published})
            # The collector confirmed every batch it stored, so the gateway could let it go.
            confirmed = {seq for ack in acks if ack.outcome == "stored" for seq in ack.seqs}
            assert {b.seq for _, b in published} <= confirmed

            # Waveform strips: every sample at its own time, strips back to back at 60 Hz.
            for earlier, later in itertools.pairwise(strips):
                assert later.start - earlier.start == timedelta(seconds=earlier.n / earlier.fs)
            expected_wave = sorted(
                (ns(strip.start) + round(i * 1e9 / strip.fs), float(raw))
                for strip in strips
                for i, raw in enumerate(strip.samples())
            )
            await eventually(lambda: len(ppg_rows(stack, db)) >= len(expected_wave))
            assert ppg_rows(stack, db) == expected_wave

            # Status points carry the collector's receive time, so "offline" comes after "online".
            # (Filtered by hut: the collector also stores other huts' retained statuses from this broker.)
            status = stack.influxd.query(f"SELECT online FROM \"hut_status\" WHERE hut = '{hut}'", db=db, epoch="ns")
            assert [row[1] for row in status["results"][0]["series"][0]["values"]] == [1.0, 0.0]

            # A redelivered batch (the very same bytes, twice) adds no point. The collector handles
            # messages in order, so once a marker sent after them is stored, they were handled too.
            before = spo2_rows(stack, db)
            first = published[0][1]
            marker_obs = first.observations[0].model_copy(update={"id": "f" * 32, "measured_at": ended})
            marker = first.model_copy(update={"seq": 10**9, "observations": [marker_obs]})
            async with aiomqtt.Client("127.0.0.1", stack.mosquitto.port) as resender:
                for payload in (published[0][0], published[0][0], encode(marker)):
                    await resender.publish(hut_topic(hut, "obs"), payload, qos=1)
            await eventually(lambda: len(spo2_rows(stack, db)) > len(before))
            marker_row = (ns(ended), marker_obs.values["spo2"].value, marker_obs.values["pulse_rate"].value, "f" * 32)
            assert spo2_rows(stack, db) == sorted([*before, marker_row])
            assert programs.stop("collector") == 0
            assert "Traceback" not in programs.log("gateway") + programs.log("collector")
