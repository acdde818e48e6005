"""The end-to-end demo: real servers, the collector, the gateway and simulated devices, then a summary.

``scripts/demo`` runs this after installing what is missing. The summary is read back from InfluxDB,
not from any program's own counters, so it shows what really arrived.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from healthhut.devstack.programs import Programs
from healthhut.devstack.servers import Influxd1, LocalStack, ServerError

DATABASE = "healthhut"
HUT_ID = "demo-hut-01"


@dataclass
class Device:
    """One simulated instrument: which driver hut-sim plays, and its settings."""

    driver: str
    name: str
    sim_args: tuple[str, ...]


DEVICES = (
    Device("contec-cms50", "oximeter-1", ("--spo2", "97", "--pulse-rate", "72", "--seed", "1")),
    Device("contec-cms50", "oximeter-2", ("--spo2", "93", "--pulse-rate", "88", "--seed", "2")),
)


def write_configs(folder: Path, stack: LocalStack) -> tuple[Path, Path]:
    mosquitto, influxd = stack.mosquitto, stack.influxd
    collector = folder / "collector.toml"
    collector.write_text(
        f"""[mqtt]
host = "127.0.0.1"
port = {mosquitto.port}
client_id = "demo-collector"

[storage]
type = "influxdb1"
url = "{influxd.url}"
database = "{DATABASE}"

[dead_letters]
path = "{folder / "dead-letters.sqlite"}"
"""
    )
    gateway = folder / "gateway.toml"
    devices = "".join(
        f"""
[[devices]]
driver = "{device.driver}"
name = "{device.name}"
path = "{folder / device.name}"
"""
        for device in DEVICES
    )
    gateway.write_text(
        f"""hut_id = "{HUT_ID}"
state_dir = "{folder / "gateway-state"}"

[mqtt]
host = "127.0.0.1"
port = {mosquitto.port}
{devices}"""
    )
    return collector, gateway


def _query(influxd: Influxd1, q: str) -> list[dict[str, Any]]:
    result = influxd.query(q, db=DATABASE)
    rows: list[dict[str, Any]] = []
    for statement in result.get("results", []):
        for series in statement.get("series", []):
            for values in series.get("values", []):
                row = dict(zip(series["columns"], values, strict=True))
                row.update(series.get("tags") or {})
                row["_measurement"] = series["name"]
                rows.append(row)
    return rows


def summary(influxd: Influxd1) -> tuple[str, int]:
    """What reached InfluxDB, per kind; and how many spot observations that is."""
    lines = [f"What reached InfluxDB ({influxd.url}, database {DATABASE!r}):"]
    try:
        measurements = [row["name"] for row in _query(influxd, "SHOW MEASUREMENTS")]
    except ServerError as exc:  # no database: the collector never wrote anything
        measurements = []
        lines.append(f"  ({exc.args[0]})")
    spot = 0
    for name in measurements:
        counts = _query(influxd, f'SELECT COUNT(*) FROM "{name}"')
        n = max((v for k, v in counts[0].items() if k.startswith("count_")), default=0) if counts else 0
        first = _query(influxd, f'SELECT * FROM "{name}" ORDER BY time ASC LIMIT 1')
        last = _query(influxd, f'SELECT * FROM "{name}" ORDER BY time DESC LIMIT 1')
        span = f"  {first[0]['time']} .. {last[0]['time']}" if first and last else ""
        lines.append(f"  {name:<16} {n:>7} points{span}")
        if name == "spo2":
            spot += n
            for row in _query(
                influxd,
                'SELECT COUNT(spo2), MEAN(spo2), MIN(spo2), MAX(spo2), MEAN(pulse_rate) FROM "spo2" GROUP BY device',
            ):
                lines.append(
                    f"      {row.get('device', '?')}: {row['count']} observations, SpO2 mean {row['mean']:.1f} % "
                    f"(min {row['min']:.0f}, max {row['max']:.0f}), pulse rate mean {row['mean_1']:.1f} /min"
                )
    if not measurements:
        lines.append("  nothing")
    return "\n".join(lines), spot


def _stored_spo2(influxd: Influxd1) -> int:
    try:
        count = _query(influxd, 'SELECT COUNT(spo2) FROM "spo2"')
    except ServerError:  # the collector has not created the database yet
        return 0
    return int(count[0]["count"]) if count else 0


def run(duration: float, keep: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="healthhut-demo-") as tmp:
        folder = Path(tmp)
        print(f"starting mosquitto and influxd in {folder} ...", flush=True)
        with LocalStack(folder / "servers", mosquitto=True, influxd=True, victoria=False) as stack:
            print(f"  mosquitto on 127.0.0.1:{stack.mosquitto.port}, influxd on {stack.influxd.url}", flush=True)
            collector_config, gateway_config = write_configs(folder, stack)
            with Programs(folder / "logs") as programs:
                programs.start("collector", "hut-collector", "run", "--config", str(collector_config))
                # The collector's broker session must exist before huts publish, or the first batches
                # would go to nobody (in production that session persists).
                programs.wait_for_log("collector", "subscribed")
                for device in DEVICES:
                    programs.start(
                        f"sim-{device.name}",
                        "hut-sim",
                        "play",
                        device.driver,
                        "--link",
                        str(folder / device.name),
                        "--duration",
                        str(duration + 5),
                        "--quiet",
                        *device.sim_args,
                    )
                programs.start("gateway", "hut-gateway", "run", "--config", str(gateway_config))
                print(f"collector, gateway and {len(DEVICES)} simulated device(s) running for {duration:.0f} s")
                started = time.monotonic()
                while (elapsed := time.monotonic() - started) < duration:
                    time.sleep(min(10.0, duration - elapsed))
                    programs.check_running("collector", "gateway")
                    stored = _stored_spo2(stack.influxd)
                    print(f"  {time.monotonic() - started:>5.0f} s: {stored} SpO2 observations stored")
                # The gateway first, so that it drains what it holds; then the collector.
                programs.stop("gateway")
                programs.stop("collector")
                logs = {name: programs.log(name) for name in programs.processes}
            text, spot = summary(stack.influxd)
            print(text)
            if keep:
                input(f"everything is in {folder}; press Enter to stop the servers and remove it ")
            if spot == 0:
                print("demo FAILED: no observation reached InfluxDB. Logs:", file=sys.stderr)
                for name, text in logs.items():
                    print(f"--- {name}\n{text}", file=sys.stderr)
                return 1
            print("demo OK")
            return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description="Run a simulated health hut end to end on this machine and show what reached InfluxDB.",
        epilog="example:  scripts/demo --duration 60",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    parser.add_argument("--keep", action="store_true", help="wait for Enter before removing everything")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run(args.duration, args.keep)


if __name__ == "__main__":
    sys.exit(main())
