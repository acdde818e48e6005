"""A whole hut under test: hut-sim devices on ptys, hut-gateway, hut-collector, real mosquitto and influxd.

Used by the fault tests and by ``scripts/bench faults``. It knows what the gateway accepted (what its
spool holds whenever the gateway is stopped or killed, plus everything it published, recorded by an
observer with a persistent MQTT session) and what reached InfluxDB, so a test can say: nothing accepted
was lost, nothing was stored twice, and every eviction was reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from healthhut.devstack import LocalStack
from healthhut.devstack.programs import Programs
from healthhut.protocol import ObservationBatch, decode


@dataclass
class Ledger:
    """What the gateway accepted, as observation ids, and the gap events it sent."""

    published: set[str] = field(default_factory=set)
    spooled: set[str] = field(default_factory=set)
    gaps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> set[str]:
        return self.published | self.spooled


class Hut:
    def __init__(
        self,
        root: Path,
        stack: LocalStack,
        hut: str,
        *,
        devices: int = 2,
        state_dir: Path | None = None,
        spool_quota_mb: float = 64,
        strip_seconds: float = 2,
    ) -> None:
        self.root = root
        self.stack = stack
        self.hut = hut
        self.db = f"db_{hut.replace('-', '_')}"
        self.devices = [f"ox-{n}" for n in range(devices)]
        self.state_dir = state_dir or root / "state"
        self.programs = Programs(root / "logs")
        self.ledger = Ledger()
        self.boots = 0
        self._observer: asyncio.Task[None] | None = None
        self._observer_ready = asyncio.Event()
        self.collector_config = root / "collector.toml"
        self.collector_config.write_text(
            f'[mqtt]\nport = {stack.mosquitto.port}\nclient_id = "c-{hut}"\nshare_group = "g{hut}"\n'
            "session_expiry_s = 30\n"
            f'[storage]\ntype = "influxdb1"\nurl = "{stack.influxd.url}"\ndatabase = "{self.db}"\n'
            f'[dead_letters]\npath = "{root / "dead.sqlite"}"\n'
        )
        entries = "".join(
            f'[[devices]]\ndriver = "contec-cms50"\nname = "{name}"\npath = "{root / name}"\n'
            f"report_interval_s = 0.2\nstrip_seconds = {strip_seconds}\n"
            for name in self.devices
        )
        self.gateway_config = root / "gateway.toml"
        self.gateway_config.write_text(
            f'hut_id = "{hut}"\nstate_dir = "{self.state_dir}"\n[mqtt]\nport = {stack.mosquitto.port}\n'
            f"[uplink]\nbatch_interval_s = 0.2\nreconnect_min_s = 0.2\nreconnect_max_s = 2.0\n"
            f"[spool]\nquota_mb = {spool_quota_mb}\n{entries}"
        )

    # -- programs ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._observer = asyncio.create_task(self._observe())
        await asyncio.wait_for(self._observer_ready.wait(), 20)
        self.programs.start("collector", "hut-collector", "run", "--config", str(self.collector_config))
        await asyncio.to_thread(self.programs.wait_for_log, "collector", "subscribed")
        for seed, name in enumerate(self.devices):
            self.programs.start(
                f"sim-{name}",
                "hut-sim",
                "play",
                "contec-cms50",
                "--link",
                str(self.root / name),
                "--seed",
                str(seed),
                "--spo2",
                str(95 + seed),
                "--pulse-rate",
                str(70 + seed),
                "-q",
            )
        await self.start_gateway()

    async def start_gateway(self) -> None:
        """Start the gateway and return once it reads its devices, so that a kill finds it working."""
        self.boots += 1
        self.programs.start("gateway", "hut-gateway", "run", "--config", str(self.gateway_config))
        wanted = self.boots * len(self.devices)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while self.programs.log("gateway", tail=10**9).count("opened serial device") < wanted:
            self.programs.check_running("gateway")
            if loop.time() > deadline:
                raise RuntimeError(f"the gateway did not open its devices within 60 s:\n{self.programs.log('gateway')}")
            await asyncio.sleep(0.05)

    def kill_gateway(self) -> None:
        """SIGKILL: no chance to flush or say goodbye. What the spool holds then was accepted."""
        process = self.programs.processes["gateway"]
        process.kill()
        process.wait()
        self.read_spool()

    def stop_gateway(self) -> None:
        # As systemd would allow it (TimeoutStopSec): the drain may take its full ten seconds.
        self.programs.stop("gateway", timeout=30)
        self.read_spool()

    def read_spool(self) -> None:
        path = self.state_dir / "spool.sqlite"
        if not path.exists():
            return
        db = sqlite3.connect(path)
        try:
            rows = db.execute("SELECT channel, key, body FROM items").fetchall()
        finally:
            db.close()
        for channel, key, body in rows:
            if channel == "obs":
                self.ledger.spooled.add(key)
            elif channel == "event" and json.loads(body)["event"] == "gap":
                self.ledger.gaps.append(json.loads(body)["detail"])

    async def _observe(self) -> None:
        """A persistent-session subscriber: sees every observation batch the broker accepted."""
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.stack.mosquitto.port, identifier=f"observer-{self.hut}", clean_session=False
                ) as client:
                    await client.subscribe(f"hh/v1/huts/{self.hut}/obs", qos=1)
                    await client.subscribe(f"hh/v1/huts/{self.hut}/event", qos=1)
                    self._observer_ready.set()
                    async for message in client.messages:
                        channel = str(message.topic).rsplit("/", 1)[1]
                        decoded = decode(channel, bytes(message.payload))  # type: ignore[arg-type]
                        if isinstance(decoded, ObservationBatch):
                            self.ledger.published.update(o.id for o in decoded.observations)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self._observer is not None:
            self._observer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._observer
        self.programs.stop_all()

    # -- what reached InfluxDB ----------------------------------------------------------------------
    def stored(self) -> list[str]:
        """obs_id of every observation point in InfluxDB, of every kind (a duplicate would appear twice)."""
        try:
            result = self.stack.influxd.query("SELECT obs_id FROM /.*/", db=self.db)
        except Exception:  # noqa: BLE001 - the database appears with the collector's first write
            return []
        return [
            row[1]
            for series in result["results"][0].get("series", [])
            for row in series["values"]
            if row[1] is not None
        ]

    def stored_gaps(self) -> list[dict[str, Any]]:
        result = self.stack.influxd.query('SELECT detail FROM "hut_event" WHERE "event" = \'gap\'', db=self.db)
        series = result["results"][0].get("series", [])
        return [json.loads(row[1]) for row in series[0]["values"]] if series else []

    async def settle(self, within: float = 60.0) -> None:
        """Wait until the spool holds no observation and everything accepted is stored (or the time is up;
        the caller then asserts)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            pending = self.pending()
            self.ledger.spooled |= pending
            if not pending and self.ledger.accepted <= set(self.stored()):
                return
            await asyncio.sleep(0.25)

    def pending(self) -> set[str]:
        """Observation ids in the spool now (the gateway may be running: WAL lets us read alongside)."""
        path = self.state_dir / "spool.sqlite"
        if not path.exists():
            return set()
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return {key for (key,) in db.execute("SELECT key FROM items WHERE channel = 'obs'")}
        finally:
            db.close()

    def verdict(self) -> tuple[int, int, int, int]:
        """(accepted, stored, lost, duplicated) observation counts."""
        stored = self.stored()
        lost = len(self.ledger.accepted - set(stored))
        return len(self.ledger.accepted), len(set(stored)), lost, len(stored) - len(set(stored))
