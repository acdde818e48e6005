"""Benchmark: from an alarming reading entering the gateway to its alert reaching the clinician's webhook.

Everything is real and on loopback: hut-sim plays a CMS50 oximeter on a pty reading SpO2 88 % (NEWS2
red); the real ``hut-gateway`` reads it, with a resident session opened through its kiosk API; real
mosquitto; the real ``hut-collector`` stores to real influxd and alerts; a webhook receiver in this
process takes the signed POSTs. A new resident's session starts every few seconds, so every session is
a new episode: the first low reading opens it, the next confirms it (``confirm_min_gap_s`` = 0.5 here),
and the alert goes out. Latency = the receiver's clock at the POST minus the alert's ``received_at``
(the gateway's clock when the confirming reading arrived from the device): one host, one clock.

In the same run, the comparison is the alerting a user would otherwise set up: a rule that queries
InfluxDB on a schedule (Grafana alerting's or a Kapacitor batch task's way), evaluated every 10 s, the
shortest interval Grafana allows by default; it posts when a subject's SpO2 is below 92 %, and its
latency is counted from the same readings' gateway time.

Summary line: ``latency: p50_ms=... p99_ms=... max_ms=... alerts=... poll10s_p50_ms=... ratio=...``
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from healthhut.collector.alerting.channels import verify_signature
from healthhut.devstack import LocalStack, free_port
from healthhut.devstack.programs import Programs
from healthhut.protocol.pseudonym import generate_key_file

SESSIONS = 50
SESSION_S = 4.0
SECRET = "latency-benchmark-secret"
POLL_S = 10.0
HUT = "bench-hut"


class Receiver:
    """The clinician side: an aiohttp server on its own thread, noting when each signed alert arrives."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.bad_signatures = 0
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/alerts", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.time()
        headers = request.headers
        if not verify_signature(
            SECRET.encode(), headers["X-Healthhut-Timestamp"], body, headers["X-Healthhut-Signature"]
        ):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.arrivals.append((arrived, json.loads(body)))
        return web.Response(status=204)


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Poller:
    """The comparison: an alert rule that queries InfluxDB every ``POLL_S`` seconds."""

    def __init__(self, influx_url: str, database: str) -> None:
        self.url, self.database = influx_url, database
        self.latencies_ms: list[float] = []
        self._alerted: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _query(self, q: str) -> dict[str, Any]:
        params = urllib.parse.urlencode({"q": q, "db": self.database, "epoch": "ns"})
        with urllib.request.urlopen(f"{self.url}/query?{params}", timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                reply = self._query(
                    'SELECT "spo2" FROM "spo2" WHERE "spo2" < 92 AND time > now() - 1m GROUP BY "subject"'
                )
            except OSError:
                continue
            fired = time.time()
            for series in reply["results"][0].get("series", []):
                subject = series["tags"]["subject"]
                if subject in self._alerted or subject == "anonymous":
                    continue
                self._alerted.add(subject)
                # Counted from the second low reading, as the collector's confirmed alert is.
                values = series["values"]
                first = values[1][0] if len(values) > 1 else values[0][0]
                self.latencies_ms.append((fired - first / 1e9) * 1000)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def _configs(folder: Path, stack: LocalStack, receiver: Receiver, kiosk_port: int) -> tuple[Path, Path]:
    secret = folder / "webhook.key"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    key_file = folder / "pseudonym.key"
    generate_key_file(key_file)
    collector = folder / "collector.toml"
    collector.write_text(
        f'[mqtt]\nport = {stack.mosquitto.port}\nclient_id = "bench-collector"\n'
        f'[storage]\ntype = "influxdb1"\nurl = "{stack.influxd.url}"\ndatabase = "bench"\n'
        f'[dead_letters]\npath = "{folder / "dead.sqlite"}"\n'
        f"[alerting]\nconfirm_min_gap_s = 0.5\nflap_window_s = 0\ntick_s = 1\n"
        f'[alerting.webhook]\nurl = "http://127.0.0.1:{receiver.port}/alerts"\nsecret_file = "{secret}"\n'
    )
    gateway = folder / "gateway.toml"
    gateway.write_text(
        f'hut_id = "{HUT}"\nstate_dir = "{folder / "state"}"\n[mqtt]\nport = {stack.mosquitto.port}\n'
        # Residents change every few seconds here; a reading within ambiguity_s of a change stays anonymous.
        f'[identity]\nkey_file = "{key_file}"\nkiosk_port = {kiosk_port}\nambiguity_s = 1\n'
        f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-1"\npath = "{folder / "ox"}"\n'
    )
    return collector, gateway


def kiosk_call(method: str, url: str, body: dict[str, Any] | None = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def run() -> int:
    with tempfile.TemporaryDirectory(prefix="hh-latency-") as tmp:
        folder = Path(tmp)
        with LocalStack(folder / "servers", mosquitto=True, influxd=True, victoria=False) as stack:
            receiver = Receiver()
            kiosk_port = free_port()
            collector, gateway = _configs(folder, stack, receiver, kiosk_port)
            with Programs(folder / "logs") as programs:
                programs.start("collector", "hut-collector", "run", "--config", str(collector))
                programs.wait_for_log("collector", "subscribed")
                programs.start(
                    "sim",
                    "hut-sim",
                    "play",
                    "contec-cms50",
                    "--link",
                    str(folder / "ox"),
                    "-q",
                    "--spo2",
                    "88",
                    "--pulse-rate",
                    "104",
                )
                programs.start("gateway", "hut-gateway", "run", "--config", str(gateway))
                programs.wait_for_log("gateway", "kiosk API")
                poller = Poller(stack.influxd.url, "bench")
                url = f"http://127.0.0.1:{kiosk_port}/v1/session"
                for n in range(SESSIONS):
                    status = kiosk_call("POST", url, {"resident_id": f"B{n:09d}", "age_band": "70-79y"})
                    if status != 201:
                        print(f"kiosk refused session {n}: HTTP {status}", file=sys.stderr)
                    time.sleep(SESSION_S)
                    kiosk_call("DELETE", url)
                    if n % 10 == 9:
                        print(f"  {n + 1}/{SESSIONS} sessions, {len(receiver.arrivals)} alerts so far", flush=True)
                time.sleep(POLL_S + 2)
                poller.stop()
                programs.check_running("collector", "gateway")
    fired = [(at, doc) for at, doc in receiver.arrivals if doc.get("event") == "fired"]
    latencies = [(at - _seconds(doc["received_at"])) * 1000 for at, doc in fired]
    if not latencies:
        print("latency: FAILED, no alert arrived", file=sys.stderr)
        return 1
    p50, p99 = statistics.median(latencies), percentile(latencies, 99)
    poll = statistics.median(poller.latencies_ms) if poller.latencies_ms else float("nan")
    print(f"alerts: {len(fired)} from {SESSIONS} sessions; bad signatures: {receiver.bad_signatures}")
    print(f"collector alerting: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(latencies):.0f} ms")
    print(f"10 s polling rule (comparison): p50 {poll:.0f} ms over {len(poller.latencies_ms)} subjects")
    print(
        f"latency: p50_ms={p50:.0f} p99_ms={p99:.0f} max_ms={max(latencies):.0f} alerts={len(fired)} "
        f"poll10s_p50_ms={poll:.0f} ratio={poll / p50:.1f}"
    )
    print(f"goal p99 < 1000 ms: {'met' if p99 < 1000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
