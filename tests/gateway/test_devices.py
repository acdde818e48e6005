"""A device session over a real pty: readings flow into the spool, garbage is counted, an unplug is
survived and reported."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from healthhut.drivers import get_driver
from healthhut.drivers.contec_cms50 import Cms50Config
from healthhut.firmware_sim.encoders.contec_cms50 import Cms50Stream
from healthhut.firmware_sim.links import PtyLink
from healthhut.gateway.devices import DeviceSession
from healthhut.gateway.outbox import Outbox, gap_item
from healthhut.gateway.spool import MemorySpool, SpoolItem
from healthhut.gateway.state import GatewayState
from healthhut.protocol import Kind, Observation, WaveStrip
from tests.conftest import eventually


def spooled(spool: MemorySpool, channel: str) -> list[SpoolItem]:
    return [item for item in spool._rows.values() if item.channel == channel]


async def test_session_reads_survives_garbage_and_unplug(tmp_path: Path) -> None:
    state = GatewayState(tmp_path / "state")
    spool = MemorySpool(10**8, gap_item)
    device = Cms50Config(
        driver="contec-cms50", name="ox-1", path=str(tmp_path / "ox"), strip_seconds=1, report_interval_s=0.1
    )
    session = DeviceSession(device, get_driver("contec-cms50"), hut_id="hut-1", state=state, outbox=Outbox(spool))
    stream = Cms50Stream(96, 70, seed=9)
    link = PtyLink(tmp_path / "ox")
    link.open()
    task = asyncio.create_task(session.run())

    def events() -> list[str]:
        return [json.loads(item.body)["event"] for item in spooled(spool, "event")]

    try:
        await eventually(lambda: session.connected)
        for _ in range(20):  # a third of a second of frames at a time, with garbage in between
            link.write(stream.frames(20) + b"\x81\xff\x00garbage")
            await asyncio.sleep(0.05)
        await eventually(lambda: len(spooled(spool, "obs")) >= 2 and len(spooled(spool, "wave")) >= 1)
        link.close()  # unplug
        await eventually(lambda: "disconnected" in events())
        link.open()  # plug back in at the same path
        await eventually(lambda: events().count("connected") == 2)
        before = len(spooled(spool, "obs"))
        for _ in range(10):
            link.write(stream.frames(30))
            await asyncio.sleep(0.05)
        await eventually(lambda: len(spooled(spool, "obs")) > before)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        link.close()
    everything = [Observation.model_validate_json(item.body) for item in spooled(spool, "obs")]
    observations = [o for o in everything if o.kind is Kind.SPO2]
    # Each pleth strip was analysed: a ppg observation with its signal quality. (One-second strips are
    # too short for a pulse rate; tests/dsp checks the rates.)
    summaries = [o for o in everything if o.kind is Kind.PPG]
    assert summaries and len(summaries) + len(observations) == len(everything)
    assert all("signal_quality" in o.values for o in summaries)
    assert all(o.device.device_id == "ox-1" for o in everything)
    assert all(abs(o.values["spo2"].value - 96) <= 1 for o in observations)  # type: ignore[operator]
    seqs = [o.device_seq for o in observations]
    assert len(set(seqs)) == len(seqs), "every observation has its own device number"
    assert len({o.id for o in observations}) == len(observations)
    assert [item.key for item in spooled(spool, "obs")] == [o.id for o in everything]
    strips = [WaveStrip.model_validate_json(item.body) for item in spooled(spool, "wave")]
    assert all(s.n == 60 and s.fs == 60 for s in strips)
    assert events() == ["connected", "disconnected", "connected"]
