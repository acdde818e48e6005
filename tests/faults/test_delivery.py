"""Fault tests against real mosquitto and real InfluxDB: nothing accepted is lost, nothing is stored
twice, and every eviction is reported (issue 5)."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from healthhut.devstack import LocalStack
from tests.faults.harness import Hut

SLOW = os.environ.get("HEALTHHUT_SLOW") == "1"
# Real processes, real outages: these take longer than the suite's default per-test limit.
pytestmark = pytest.mark.timeout(600 if SLOW else 240)


@pytest.fixture
async def own_stack(tmp_path: Path) -> AsyncIterator[LocalStack]:
    """Servers of this test's own: these tests stop and kill them."""
    with LocalStack(tmp_path / "servers", victoria=False) as stack:
        yield stack


@pytest.fixture
async def hut(tmp_path: Path, own_stack: LocalStack, unique: str) -> AsyncIterator[Hut]:
    under_test = Hut(tmp_path, own_stack, f"hut-{unique}")
    try:
        yield under_test
    finally:
        await under_test.close()


async def finish(hut: Hut) -> tuple[int, int, int, int]:
    """Let the gateway deliver what it holds, then stop it and count."""
    await hut.settle()
    hut.stop_gateway()
    await hut.settle(within=10)
    return hut.verdict()


async def test_broker_restarts_while_readings_stream(hut: Hut) -> None:
    await hut.start()
    for _ in range(3):
        await asyncio.sleep(2)
        hut.stack.mosquitto.stop()  # a restart, as systemd does it: mosquitto saves its state
        await asyncio.sleep(1.5)
        hut.stack.mosquitto.start()
    await asyncio.sleep(2)
    accepted, stored, lost, duplicated = await finish(hut)
    assert accepted > 50
    assert (lost, duplicated) == (0, 0), f"{accepted} accepted, {stored} stored"


async def test_broker_unreachable_for_a_long_time(hut: Hut) -> None:
    outage = 300 if SLOW else 20
    await hut.start()
    await asyncio.sleep(2)
    hut.stack.mosquitto.stop()
    await asyncio.sleep(outage)
    backlog_before = len(hut.ledger.accepted)
    hut.stack.mosquitto.start()
    await asyncio.sleep(2)
    accepted, stored, lost, duplicated = await finish(hut)
    # During the outage the readings went on: a 5 Hz report rate from 2 devices over the whole outage.
    assert accepted - backlog_before > outage * 2 * 5 * 0.8
    assert (lost, duplicated) == (0, 0), f"{accepted} accepted, {stored} stored"


async def test_gateway_killed_at_random_moments(hut: Hut) -> None:
    cycles = 60 if SLOW else 12
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    await hut.start()
    for _ in range(cycles):
        await asyncio.sleep(rng.uniform(0.3, 2.0))
        hut.kill_gateway()
        await hut.start_gateway()
    await asyncio.sleep(2)
    accepted, stored, lost, duplicated = await finish(hut)
    assert accepted > cycles * 2
    assert (lost, duplicated) == (0, 0), f"seed {seed}: {accepted} accepted, {stored} stored"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """The gateway's state folder on a real 16 MiB filesystem (tmpfs). Needs root, as CI has."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


async def test_disk_fills_up(tmp_path: Path, own_stack: LocalStack, unique: str, small_disk: Path) -> None:
    # Strips of half a second make waveforms the bulk of the spool; the broker is down, so it only grows.
    hut = Hut(tmp_path, own_stack, f"hut-{unique}", state_dir=small_disk, spool_quota_mb=1000, strip_seconds=0.1)
    try:
        await hut.start()
        own_stack.mosquitto.stop()
        # Someone else's logs take the disk down to about 200 KiB above the spool's reserve.
        (small_disk / "someone-elses-logs").write_bytes(b"\0" * (16 * 1024 - 4 * 1024 - 200) * 1024)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 150
        while loop.time() < deadline:
            await asyncio.sleep(1)
            hut.read_spool()
            if hut.ledger.gaps:
                break
        assert hut.ledger.gaps, "the disk never filled"
        await asyncio.sleep(3)
        own_stack.mosquitto.start()
        accepted, stored, lost, duplicated = await finish(hut)
        # Evictions say what went; refusals (nothing left to evict) say how many were never accepted.
        reported = [gap for gap in hut.stored_gaps() if gap["cause"] == "spool_full"]
        # Waveforms go first; every eviction is reported upstream; vitals are lost only as reported.
        assert reported and reported[0]["channel"] == "wave"
        evicted_vitals = sum(gap["count"] for gap in reported if gap["channel"] == "obs")
        assert duplicated == 0 and lost <= evicted_vitals, f"{accepted} accepted, {stored} stored, {reported}"
        evicted = [gap for gap in hut.ledger.gaps if gap["cause"] == "spool_full"]
        assert {(g["channel"], g["count"]) for g in evicted} <= {(g["channel"], g["count"]) for g in reported}
    finally:
        await hut.close()
