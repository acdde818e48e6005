"""Benchmark: the gateway's memory, descriptors and CPU over a long run with a full hut of six devices.

Everything is real and on loopback: mosquitto, the real ``hut-gateway`` process and one ``hut-sim play``
process per device. Two serial devices on ptys (a Contec CMS50 oximeter streaming SpO2 and pleth at 60/s,
a HealthyPi v4 streaming ECG, PPG, SpO2 and temperature) and four BLE devices on the fake BlueZ, reached by
the gateway's real bleak code over a private D-Bus (a blood-pressure cuff, a thermometer, a scale and a
glucose meter, each measuring every 15 s and dropping the link 8 s after it, so the gateway connects and
disconnects all through the run). A resident signs in at the kiosk API every 30 s, a new one each time.
A subscriber in this process stands in for the collector: it confirms every batch as stored, so the
gateway's spool drains, and counts the observations and strips forwarded.

The gateway is sampled from ``/proc/<pid>`` every few seconds: VmRSS, open descriptors, threads and
utime+stime. After ``--seconds`` of load the simulators are switched off, and after a settling time the
gateway's CPU is measured with nothing to do for ``--idle-seconds``. Medians of windows, not single
samples, because the machine is shared. Summary line:
``soak: rss_growth_mb=... steady_rss_mb=... idle_cpu_pct=... fds_growth=...``

What the growth within 10 minutes is (November 2026): in two 30-minute runs RSS rose about 1.3 MB, all of
it anonymous, and stopped by minute 17-20 (78.6 and 78.2 MB to the end, the second with MALLOC_ARENA_MAX=2);
under tracemalloc the gateway's live Python allocations stayed flat from minute 3. So it is the allocator
warming up, not a leak, and the least-squares trend of a 10-minute run overstates the long run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from healthhut.devstack import LocalStack, free_port
from healthhut.devstack.demo import start_program
from healthhut.devstack.fakebluez import FakeBlueZ
from healthhut.devstack.programs import Programs
from healthhut.protocol import ObservationBatch, ProtocolError, Status, StoreAck, WaveBatch, decode, encode, hut_topic
from healthhut.protocol.pseudonym import generate_key_file
from tests.benchmarks.bench_latency import kiosk_call

HUT = "soak-hut"
GOAL_GROWTH_MB = 5.0
GOAL_STEADY_MB = 100.0
GOAL_IDLE_PCT = 2.0
SESSION_EVERY_S = 30.0
SESSION_LENGTH_S = 20.0
BLE_INTERVAL_S = "15"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class SoakDevice:
    driver: str
    name: str
    sim_args: tuple[str, ...]
    ble_address: str | None = None
    gateway_keys: str = ""


DEVICES = (
    SoakDevice("contec-cms50", "oximeter-1", ("--seed", "1")),
    SoakDevice("healthypi", "vitals-1", ("--seed", "2"), gateway_keys='board = "v4"\nstrip_seconds = 10\n'),
    SoakDevice("ble-blood-pressure", "cuff-1", ("--interval", BLE_INTERVAL_S, "--seed", "3"), "C0:50:4B:00:00:01"),
    SoakDevice("ble-thermometer", "thermometer-1", ("--interval", BLE_INTERVAL_S, "--seed", "4"), "C0:50:4B:00:00:02"),
    SoakDevice("ble-weight-scale", "scale-1", ("--interval", BLE_INTERVAL_S, "--seed", "5"), "C0:50:4B:00:00:03"),
    SoakDevice("ble-glucose", "glucose-1", ("--interval", BLE_INTERVAL_S, "--seed", "6"), "C0:50:4B:00:00:04"),
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at the gateway: seconds since the phase began, and what /proc said."""

    t: float
    rss_kb: int
    anon_kb: int
    fds: int
    threads: int
    cpu_s: float
    readings: int


@dataclass
class Forwarded:
    """What the stand-in collector received and confirmed."""

    observations: int = 0
    strips: int = 0
    messages: int = 0
    rejected: int = 0

    @property
    def readings(self) -> int:
        return self.observations + self.strips


def sample(pid: int, t: float, readings: int) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    # The command name in field 2 may hold spaces; what follows its closing parenthesis is fixed.
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(stat[11]), int(stat[12])
    return Sample(
        t=t,
        rss_kb=int(fields["VmRSS"].split()[0]),
        anon_kb=int(fields["RssAnon"].split()[0]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(fields["Threads"]),
        cpu_s=(utime + stime) / CLOCK_TICKS,
        readings=readings,
    )


async def confirm_everything(port: int, forwarded: Forwarded, ready: asyncio.Event) -> None:
    """Stands in for the collector: every batch and event is confirmed as stored as soon as it arrives."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="soak-collector") as client:
        for channel in ("obs", "wave", "event"):
            await client.subscribe(hut_topic(HUT, channel), qos=1)
        ready.set()
        async for message in client.messages:
            channel = str(message.topic).rsplit("/", 1)[1]
            try:
                decoded = decode(channel, bytes(message.payload))
            except ProtocolError:
                forwarded.rejected += 1
                continue
            if isinstance(decoded, Status):
                continue
            forwarded.messages += 1
            if isinstance(decoded, ObservationBatch):
                forwarded.observations += len(decoded.observations)
            elif isinstance(decoded, WaveBatch):
                forwarded.strips += len(decoded.strips)
            ack = StoreAck(hut_id=HUT, boot_id=decoded.boot_id, seqs=[decoded.seq], outcome="stored")
            await client.publish(hut_topic(HUT, "ack"), encode(ack), qos=1)


async def residents(kiosk_port: int, refused: list[int]) -> None:
    """A new resident every SESSION_EVERY_S, signed out after SESSION_LENGTH_S, as on a busy morning."""
    url = f"http://127.0.0.1:{kiosk_port}/v1/session"
    for n in range(10**6):
        status = await asyncio.to_thread(kiosk_call, "POST", url, {"resident_id": f"S{n:09d}", "age_band": "70-79y"})
        if status != 201:
            refused.append(status)
        await asyncio.sleep(SESSION_LENGTH_S)
        await asyncio.to_thread(kiosk_call, "DELETE", url)
        await asyncio.sleep(SESSION_EVERY_S - SESSION_LENGTH_S)


def gateway_config(folder: Path, port: int, kiosk_port: int) -> Path:
    key = folder / "pseudonym.key"
    generate_key_file(key)
    entries = []
    for device in DEVICES:
        where = f'address = "{device.ble_address}"' if device.ble_address else f'path = "{folder / device.name}"'
        entries.append(
            f'[[devices]]\ndriver = "{device.driver}"\nname = "{device.name}"\n{where}\n{device.gateway_keys}'
        )
    path = folder / "gateway.toml"
    path.write_text(
        f'hut_id = "{HUT}"\nstate_dir = "{folder / "state"}"\n[mqtt]\nport = {port}\n'
        f'[identity]\nkey_file = "{key}"\nkiosk_port = {kiosk_port}\n' + "".join(entries)
    )
    return path


def start_simulators(programs: Programs, folder: Path, bluez: FakeBlueZ) -> list[str]:
    names = []
    for device in DEVICES:
        if device.ble_address:
            link: tuple[str, ...] = (
                "--link", "ble", "--ble", "fake-bluez", "--dbus-address", bluez.bus_address,
                "--address", device.ble_address,
            )  # fmt: skip
        else:
            link = ("--link", str(folder / device.name))
        name = f"sim-{device.name}"
        programs.start(name, "hut-sim", "play", device.driver, *link, "--quiet", *device.sim_args)
        names.append(name)
    return names


async def watch(
    pid: int, seconds: float, every: float, readings: Forwarded, check: asyncio.Future[None] | None, say: str
) -> list[Sample]:
    """Samples every ``every`` s for ``seconds``, on a fixed schedule; a progress row each minute."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    samples = [sample(pid, 0.0, readings.readings)]
    next_row = 60.0
    while (elapsed := loop.time() - began) < seconds:
        await asyncio.sleep(min(every * len(samples), seconds) - elapsed)
        if check is not None and check.done():
            check.result()
        samples.append(sample(pid, loop.time() - began, readings.readings))
        if samples[-1].t >= next_row or samples[-1].t >= seconds:
            print(f"  {say} {row(samples[-1], samples)}", flush=True)
            next_row += 60.0
    return samples


def row(last: Sample, samples: list[Sample]) -> str:
    return (
        f"{last.t:>5.0f} s  rss {last.rss_kb / 1024:6.1f} MB (anon {last.anon_kb / 1024:5.1f})  "
        f"fds {last.fds:>3}  threads {last.threads:>2}  "
        f"cpu {last.cpu_s - samples[0].cpu_s:6.1f} s  readings {last.readings - samples[0].readings:>6}"
    )


def window_median(samples: list[Sample], value: str) -> float:
    return statistics.median(float(getattr(s, value)) for s in samples)


@dataclass(frozen=True, slots=True)
class Figures:
    steady_rss_mb: float
    rss_growth_mb: float
    anon_growth_mb: float
    rss_slope_mb_per_h: float
    fds_growth: int
    fds_max: int
    threads_growth: int
    load_cpu_pct: float
    cpu_s_per_1000: float
    readings: int
    idle_cpu_pct: float
    idle_cpu_max_pct: float


def figures(load: list[Sample], idle: list[Sample], warmup: float, seconds: float) -> Figures:
    steady = [s for s in load if s.t >= warmup]
    # Windows at each end of the steady phase: a minute each in a full run, a quarter of it in a short one.
    span = steady[-1].t - steady[0].t
    width = min(60.0, span / 4)
    first = [s for s in steady if s.t <= steady[0].t + width]
    last = [s for s in steady if s.t >= steady[-1].t - width]
    late = [s for s in load if s.t >= seconds / 2]
    slope = statistics.linear_regression([s.t for s in steady], [s.rss_kb / 1024 for s in steady]).slope
    cpu = steady[-1].cpu_s - steady[0].cpu_s
    readings = steady[-1].readings - steady[0].readings
    idle_cpu = idle[-1].cpu_s - idle[0].cpu_s
    per_interval = [100 * (b.cpu_s - a.cpu_s) / (b.t - a.t) for a, b in itertools.pairwise(idle) if b.t > a.t]
    return Figures(
        steady_rss_mb=window_median(late, "rss_kb") / 1024,
        rss_growth_mb=(window_median(last, "rss_kb") - window_median(first, "rss_kb")) / 1024,
        anon_growth_mb=(window_median(last, "anon_kb") - window_median(first, "anon_kb")) / 1024,
        rss_slope_mb_per_h=slope * 3600,
        fds_growth=round(window_median(last, "fds") - window_median(first, "fds")),
        fds_max=max(s.fds for s in load),
        threads_growth=round(window_median(last, "threads") - window_median(first, "threads")),
        load_cpu_pct=100 * cpu / span,
        cpu_s_per_1000=1000 * cpu / readings if readings else float("nan"),
        readings=readings,
        idle_cpu_pct=100 * idle_cpu / (idle[-1].t - idle[0].t),
        idle_cpu_max_pct=max(per_interval, default=float("nan")),
    )


def report(f: Figures, forwarded: Forwarded, seconds: float, idle_seconds: float) -> None:
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    rows = [
        ("RSS at steady state (MB)", f"{f.steady_rss_mb:.1f}", "< 100", verdict(f.steady_rss_mb < GOAL_STEADY_MB)),
        ("RSS growth after warm-up (MB)", f"{f.rss_growth_mb:.2f}", "<= 5", verdict(f.rss_growth_mb <= GOAL_GROWTH_MB)),
        ("  of which anonymous (heap) (MB)", f"{f.anon_growth_mb:.2f}", "", "(the rest: pages of code and files)"),
        ("RSS trend (MB/h, least squares)", f"{f.rss_slope_mb_per_h:.2f}", "", ""),
        ("open descriptors growth", f"{f.fds_growth}", "0", f"(max {f.fds_max} open)"),
        ("threads growth", f"{f.threads_growth}", "", ""),
        ("CPU under load (% of a core)", f"{f.load_cpu_pct:.1f}", "", ""),
        ("CPU s per 1,000 readings", f"{f.cpu_s_per_1000:.2f}", "", f"({f.readings} readings after warm-up)"),
        ("idle CPU (% of a core)", f"{f.idle_cpu_pct:.2f}", "< 2", verdict(f.idle_cpu_pct < GOAL_IDLE_PCT)),
        ("idle CPU, busiest interval (%)", f"{f.idle_cpu_max_pct:.2f}", "", ""),
    ]
    print(f"\nsix devices for {seconds:.0f} s, then {idle_seconds:.0f} s idle; medians of windows")
    print(f"  {'measure':<34} {'value':>10}  {'goal':>6}")
    for label, value, goal, note in rows:
        print(f"  {label:<34} {value:>10}  {goal:>6}  {note}".rstrip())
    print(
        f"forwarded: {forwarded.observations} observations and {forwarded.strips} strips in {forwarded.messages} "
        f"messages, all confirmed; {forwarded.rejected} undecodable"
    )
    print(f"cpu_s_per_1000={f.cpu_s_per_1000:.2f} readings={f.readings} rss_slope_mb_per_h={f.rss_slope_mb_per_h:.2f}")
    print(
        f"soak: rss_growth_mb={f.rss_growth_mb:.2f} steady_rss_mb={f.steady_rss_mb:.1f} "
        f"idle_cpu_pct={f.idle_cpu_pct:.2f} fds_growth={f.fds_growth}"
    )


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await task


async def soak(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as cleanup:
        if args.keep is not None:
            folder = args.keep
            folder.mkdir(parents=True)
        else:
            folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="hh-soak-")))
        with LocalStack(folder / "servers", mosquitto=True, influxd=False, victoria=False) as stack:
            bluez = await asyncio.to_thread(FakeBlueZ(folder / "bluez").start)
            programs = Programs(folder / "logs")
            forwarded = Forwarded()
            ready = asyncio.Event()
            collector = asyncio.create_task(confirm_everything(stack.mosquitto.port, forwarded, ready))
            try:
                await asyncio.wait_for(ready.wait(), 10)
                return await _run(args, folder, stack.mosquitto.port, bluez, programs, forwarded, collector)
            finally:
                await cancel(collector)
                # The programs first let go of the fake BlueZ's bus.
                await asyncio.to_thread(programs.stop_all)
                await asyncio.to_thread(bluez.stop)


async def _run(
    args: argparse.Namespace,
    folder: Path,
    port: int,
    bluez: FakeBlueZ,
    programs: Programs,
    forwarded: Forwarded,
    collector: asyncio.Task[None],
) -> int:
    kiosk_port = free_port()
    config = gateway_config(folder, port, kiosk_port)
    sims = start_simulators(programs, folder, bluez)
    start_program(
        programs, "gateway", "hut-gateway", "run", "--config", str(config),
        env={"DBUS_SYSTEM_BUS_ADDRESS": bluez.bus_address},
    )  # fmt: skip
    await asyncio.to_thread(programs.wait_for_log, "gateway", "kiosk API on", 30)
    pid = programs.processes["gateway"].pid
    refused: list[int] = []
    sessions = asyncio.create_task(residents(kiosk_port, refused))
    print(f"gateway pid {pid}: {len(DEVICES)} devices ({', '.join(d.name for d in DEVICES)}) for {args.seconds:.0f} s")
    try:
        load = await watch(pid, args.seconds, args.sample_every, forwarded, collector, "load")
        await asyncio.to_thread(programs.check_running, "gateway", *sims)
    finally:
        await cancel(sessions)
    for name in sims:
        await asyncio.to_thread(programs.stop, name)
    print(f"devices switched off; {args.settle_seconds:.0f} s to settle, then {args.idle_seconds:.0f} s idle")
    await asyncio.sleep(args.settle_seconds)
    idle = await watch(pid, args.idle_seconds, args.sample_every, forwarded, collector, "idle")
    status = json.loads((folder / "state" / "status.json").read_text())
    code = await asyncio.to_thread(programs.stop, "gateway")
    log = programs.log("gateway", tail=10**9)
    if code != 0 or "Traceback" in log:
        print(f"soak: FAILED, the gateway exited with {code}:\n{log[-4000:]}", file=sys.stderr)
        return 1
    per_device = ", ".join(f"{d['name']} {d['readings']}" for d in status["devices"])
    print(f"gateway's own count of readings: {per_device}")
    print(f"kiosk sessions refused: {len(refused)}; warnings in the gateway's log: {log.count(' WARNING ')}")
    report(figures(load, idle, args.warmup, args.seconds), forwarded, args.seconds, args.idle_seconds)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_soak", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=600.0, help="seconds of load with six devices (600)")
    parser.add_argument("--idle-seconds", type=float, default=120.0, help="seconds measured with the devices off (120)")
    parser.add_argument("--settle-seconds", type=float, default=20.0, help="after switching off, before idle (20)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of load left out of the figures (60)")
    parser.add_argument("--keep", type=Path, help="work in this new folder and leave it there (configs, logs)")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples (5)")
    args = parser.parse_args(argv)
    if args.keep is not None and args.keep.exists():
        # A key file, spool or state left by another run would change this one.
        parser.error(f"--keep {args.keep}: give a folder that does not exist yet")
    # A short run keeps a third of its load for the warm-up at most, so that steady windows remain.
    args.warmup = min(args.warmup, args.seconds / 3)
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
