"""A device session over a real pty: readings flow, garbage is counted, an unplug is survived."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from healthhut.drivers import get_driver
from healthhut.drivers.contec_cms50 import Cms50Config
from healthhut.firmware_sim.encoders.contec_cms50 import Cms50Stream
from healthhut.firmware_sim.links import PtyLink
from healthhut.gateway.config import GatewayConfig
from healthhut.gateway.devices import DeviceSession
from healthhut.gateway.state import GatewayState
from healthhut.gateway.uplink import Uplink, _Event
from healthhut.protocol import Kind, Observation, WaveStrip
from tests.conftest import eventually


async def test_session_reads_survives_garbage_and_unplug(tmp_path: Path) -> None:
    config = GatewayConfig(hut_id="hut-1", state_dir=tmp_path / "state")
    state = GatewayState(config.state_dir)
    uplink = Uplink(config, state)
    device = Cms50Config(
        driver="contec-cms50", name="ox-1", path=str(tmp_path / "ox"), strip_seconds=1, report_interval_s=0.1
    )
    session = DeviceSession(device, get_driver("contec-cms50"), hut_id="hut-1", state=state, uplink=uplink)
    stream = Cms50Stream(96, 70, seed=9)
    link = PtyLink(tmp_path / "ox")
    link.open()
    task = asyncio.create_task(session.run())
    items = uplink._items

    def of(kind: type) -> list[object]:
        return [item for item in items if isinstance(item, kind)]

    try:
        await eventually(lambda: session.connected)
        for _ in range(20):  # a third of a second of frames at a time, with garbage in between
            link.write(stream.frames(20) + b"\x81\xff\x00garbage")
            await asyncio.sleep(0.05)
        await eventually(lambda: len(of(Observation)) >= 2 and len(of(WaveStrip)) >= 1)
        link.close()  # unplug
        await eventually(lambda: any(isinstance(i, _Event) and i.event == "disconnected" for i in items))
        link.open()  # plug back in at the same path
        await eventually(lambda: [i.event for i in of(_Event)].count("connected") == 2)
        before = len(of(Observation))
        for _ in range(10):
            link.write(stream.frames(30))
            await asyncio.sleep(0.05)
        await eventually(lambda: len(of(Observation)) > before)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        link.close()
    observations = of(Observation)
    assert all(o.kind is Kind.SPO2 and o.device.device_id == "ox-1" for o in observations)  # type: ignore[attr-defined]
    assert all(abs(o.values["spo2"].value - 96) <= 1 for o in observations)  # type: ignore[attr-defined]
    seqs = [o.device_seq for o in observations]  # type: ignore[attr-defined]
    assert len(set(seqs)) == len(seqs), "every observation has its own device number"
    assert [i.event for i in of(_Event)] == ["connected", "disconnected", "connected"]
    assert len({o.id for o in observations}) == len(observations)  # type: ignore[attr-defined]
