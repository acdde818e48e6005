"""Benchmark: observations per second end to end (MQTT -> validate -> InfluxDB) for one collector process.

Huts' messages (ObservationBatch, a few observations each, as gateways send them) are published over
real mosquitto, and a collector writes them to real VictoriaMetrics through the InfluxDB v2 write API.

- **healthhut**: ``hut-collector run`` as its own process, as deployed. Done when it has confirmed every
  message to its hut (the StoreAck it sends only after the database write).
- **naive**: what a user might write first: a paho ``on_message`` callback that validates the message
  with the same protocol models and makes one synchronous influxdb-client write per message, with QoS 1.

Both get the same messages from the same publisher, against the same servers, in the same run; median
of the runs. The clock starts once every message waits in the broker (the collector process is paused
with SIGSTOP while they are published; the naive callback waits on a gate), so the publisher's own
speed is not measured. The CPU time each process used (collector, mosquitto, victoria-metrics) over the run says
where the ceiling is. Summary line: ``collector: obs_per_s=... naive_obs_per_s=... ratio=...``
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
from influxdb_client import InfluxDBClient
from influxdb_client.client.write.point import Point
from influxdb_client.client.write_api import SYNCHRONOUS

from healthhut.devstack import LocalStack
from healthhut.devstack.programs import Programs
from healthhut.protocol import (
    Device,
    Kind,
    ObservationBatch,
    Quantity,
    Reading,
    decode,
    decode_ack,
    encode,
    hut_topic,
    observation_from_reading,
)

HUTS = 100
MESSAGES_PER_HUT = 60
OBS_PER_MESSAGE = 5
RUNS = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")


def messages(tag: str) -> list[tuple[str, bytes]]:
    """Each hut: MESSAGES_PER_HUT messages of OBS_PER_MESSAGE pulse-oximeter and cuff observations."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    out: list[tuple[str, bytes]] = []
    for m in range(MESSAGES_PER_HUT):
        for h in range(HUTS):
            hut = f"hut-{tag}-{h:03d}"
            observations = []
            for k in range(OBS_PER_MESSAGE):
                t = start + timedelta(seconds=m * OBS_PER_MESSAGE + k)
                if k % 2:
                    reading = Reading(
                        kind=Kind.BLOOD_PRESSURE,
                        values={
                            "systolic": Quantity(120.0 + k, "mm[Hg]"),
                            "diastolic": Quantity(80.0, "mm[Hg]"),
                            "pulse_rate": Quantity(70.0, "/min"),
                        },
                    )
                    device = Device(driver="ble-blood-pressure", device_id="cuff-1")
                else:
                    reading = Reading(
                        kind=Kind.SPO2, values={"spo2": Quantity(97.0, "%"), "pulse_rate": Quantity(71.0, "/min")}
                    )
                    device = Device(driver="contec-cms50", device_id="ox-1")
                observations.append(
                    observation_from_reading(
                        reading, hut_id=hut, device=device, received_at=t, device_seq=m * OBS_PER_MESSAGE + k
                    )
                )
            batch = ObservationBatch(hut_id=hut, boot_id="bench", seq=m + 1, sent_at=t, observations=observations)
            out.append((hut_topic(hut, "obs"), encode(batch)))
    return out


async def publish(port: int, batch: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client(
        "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, max_inflight_messages=200
    ) as client:
        for i in range(0, len(batch), 200):
            await asyncio.gather(*(client.publish(topic, payload, qos=1) for topic, payload in batch[i : i + 200]))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def ours(stack: LocalStack, folder: Path, tag: str) -> tuple[float, dict[str, float]]:
    batch = messages(tag)
    config = folder / f"collector-{tag}.toml"
    config.write_text(
        f"""
[mqtt]
port = {stack.mosquitto.port}
client_id = "bench-{tag}"
share_group = "bench{tag}"
receive_maximum = 256
[storage]
type = "influxdb2"
url = "{stack.victoria.url}"
[dead_letters]
path = "{folder / f"dead-{tag}.sqlite"}"
[ingest]
window_messages = 256
hut_messages_per_s = 100000.0
"""
    )
    programs = Programs(folder / "logs")
    try:
        collector = programs.start(tag, "hut-collector", "run", "--config", str(config))
        programs.wait_for_log(tag, "subscribed")

        async def run() -> float:
            confirmed: set[tuple[str, int]] = set()
            done = asyncio.Event()
            async with aiomqtt.Client("127.0.0.1", stack.mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5) as acks:
                await acks.subscribe("hh/v1/huts/+/ack", qos=1)

                async def listen() -> None:
                    async for message in acks.messages:
                        assert isinstance(message.payload, bytes)
                        ack = decode_ack(message.payload)
                        assert ack.outcome == "stored", ack
                        confirmed.update((ack.hut_id, seq) for seq in ack.seqs)
                        if len(confirmed) == len(batch):
                            done.set()

                listener = asyncio.create_task(listen())
                collector.send_signal(signal.SIGSTOP)
                try:
                    await publish(stack.mosquitto.port, batch)
                    await asyncio.sleep(1.0)  # the broker has pushed what the collector's window allows
                finally:
                    collector.send_signal(signal.SIGCONT)
                start = time.perf_counter()
                await asyncio.wait_for(done.wait(), 600)
                elapsed = time.perf_counter() - start
                listener.cancel()
                return elapsed

        before = {name: cpu_seconds(pid) for name, pid in pids(stack, collector.pid).items()}
        elapsed = asyncio.run(run())
        cpu = {name: (cpu_seconds(pid) - before[name]) / elapsed for name, pid in pids(stack, collector.pid).items()}
        programs.check_running(tag)
    finally:
        programs.stop_all()
    return len(batch) * OBS_PER_MESSAGE / elapsed, cpu


def pids(stack: LocalStack, collector: int) -> dict[str, int]:
    mosquitto, victoria = stack.mosquitto.pid, stack.victoria.pid
    assert mosquitto is not None and victoria is not None
    return {"collector": collector, "mosquitto": mosquitto, "victoria": victoria}


def naive(stack: LocalStack, tag: str) -> float:
    batch = messages(tag)
    influx = InfluxDBClient(url=stack.victoria.url, token="", org="o")
    write_api = influx.write_api(write_options=SYNCHRONOUS)
    handled = 0
    done = threading.Event()
    gate = threading.Event()

    def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        nonlocal handled
        gate.wait()
        hut = message.topic.split("/")[3]
        parsed = decode("obs", message.payload)
        assert isinstance(parsed, ObservationBatch)
        points = []
        for obs in parsed.observations:
            point = Point(obs.kind.value).tag("hut", hut).tag("device", obs.device.device_id)
            for name, quantity in obs.values.items():
                point.field(name, quantity.value)
            points.append(point.time(obs.measured_at))
        write_api.write(bucket="b", record=points)
        handled += 1
        if handled == len(batch):
            done.set()

    subscribed = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"naive-{tag}", protocol=paho.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", stack.mosquitto.port)
    client.subscribe("hh/v1/huts/+/obs", qos=1)
    client.loop_start()
    subscribed.wait(10)
    asyncio.run(publish(stack.mosquitto.port, batch))
    time.sleep(1.0)
    start = time.perf_counter()
    gate.set()
    if not done.wait(900):
        raise RuntimeError(f"naive pipeline handled only {handled} of {len(batch)} messages")
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    influx.close()
    return len(batch) * OBS_PER_MESSAGE / elapsed


def mqtt_only(stack: LocalStack, tag: str) -> float:
    """The ceiling an MQTT client library sets: receive and acknowledge the same backlog, doing nothing
    else (aiomqtt over paho, manual acknowledgement, as the collector uses it)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from healthhut.collector.mqtt import acknowledge, enable_manual_ack

    batch = messages(tag)

    def client() -> aiomqtt.Client:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        properties.ReceiveMaximum = 256
        made = aiomqtt.Client(
            "127.0.0.1",
            stack.mosquitto.port,
            identifier=f"rx-{tag}",
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
        )
        enable_manual_ack(made)
        return made

    async def run() -> float:
        async with client() as subscriber:
            await subscriber.subscribe(f"$share/rx{tag}/hh/v1/huts/+/obs", qos=1)
        await publish(stack.mosquitto.port, batch)
        await asyncio.sleep(1.0)
        async with client() as subscriber:
            start, count = time.perf_counter(), 0
            async for message in subscriber.messages:
                acknowledge(subscriber, message)
                count += 1
                if count == len(batch):
                    break
            return time.perf_counter() - start

    return len(batch) / asyncio.run(run())


def main() -> None:
    ours_rates: list[float] = []
    naive_rates: list[float] = []
    cpus: list[dict[str, float]] = []
    ceilings: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp) / "servers", influxd=False) as stack:
        for run in range(RUNS):
            ceilings.append(mqtt_only(stack, f"m{run}"))
            rate, cpu = ours(stack, Path(tmp), f"o{run}")
            ours_rates.append(rate)
            cpus.append(cpu)
            naive_rates.append(naive(stack, f"n{run}"))
            print(f"  run {run + 1}: healthhut {rate:8.0f} obs/s   naive {naive_rates[-1]:8.0f} obs/s", file=sys.stderr)
    ours_median, naive_median = statistics.median(ours_rates), statistics.median(naive_rates)
    cpu = {name: statistics.median(c[name] for c in cpus) for name in cpus[0]}
    total = HUTS * MESSAGES_PER_HUT
    print(f"{total} messages of {OBS_PER_MESSAGE} observations from {HUTS} huts; {RUNS} runs; medians")
    print(f"  healthhut collector: {ours_median:8.0f} observations/s  (runs {[round(r) for r in ours_rates]})")
    print(f"  naive paho + sync write: {naive_median:8.0f} observations/s  (runs {[round(r) for r in naive_rates]})")
    ceiling = statistics.median(ceilings)
    print(
        f"  MQTT client alone (receive + acknowledge, no work): {ceiling:8.0f} messages/s = "
        f"{ceiling * OBS_PER_MESSAGE:.0f} observations/s at this message size  (runs {[round(c) for c in ceilings]})"
    )
    print(
        "  CPU over the healthhut runs, in cores: "
        + ", ".join(f"{name} {share:.2f}" for name, share in cpu.items())
        + f" (machine has {os.cpu_count()})"
    )
    # What that serves. The drain benchmark's busy hut gives 3 spot observations a second without pause: an
    # upper bound on one hut's load. A hut at a queue's pace, one resident a minute measuring six things,
    # gives 0.1 a second. (Waveform strips are another load, measured by the drain benchmark.)
    print(
        f"  one collector serves {ours_median / 3:.0f} huts at the busy hut's 3 observations/s, "
        f"or {ours_median / 0.1:.0f} huts at one resident a minute with six readings (0.1/s)"
    )
    ratio = ours_median / naive_median
    print(f"collector: obs_per_s={ours_median:.0f} naive_obs_per_s={naive_median:.0f} ratio={ratio:.1f}")


if __name__ == "__main__":
    main()
