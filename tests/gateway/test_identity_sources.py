"""The gateway reading the two other identity sources end to end: an RDM6300 card reader on a real pty and
a keyboard-style scanner's input events through a FIFO (the evdev transport). A good read starts the
resident's session under a pseudonym only; a damaged one is told to the kiosk and starts nothing; an
unplug mid-frame loses only that frame; and no log line holds what was read."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from healthhut.drivers import DeviceConfig, get_driver
from healthhut.drivers.card_reader import CardReaderConfig, encode_frame
from healthhut.drivers.hid_scanner import HidScannerConfig, encode_scan, pack_events
from healthhut.drivers.hid_scanner.codec import Packet, key_strokes
from healthhut.firmware_sim.links import PtyLink
from healthhut.gateway.devices import DeviceSession
from healthhut.gateway.identity import SessionBook
from healthhut.gateway.outbox import Outbox, gap_item
from healthhut.gateway.spool import MemorySpool
from healthhut.gateway.state import GatewayState
from healthhut.protocol.pseudonym import PseudonymKey, generate_key_file
from tests import tasks
from tests.conftest import eventually

CARD, OTHER_CARD = "62E3086CED", "01000734E0"
RESIDENT, OTHER_RESIDENT = "11010519491231002X", "H1234567890"


@pytest.fixture
def key(tmp_path: Path) -> PseudonymKey:
    path = tmp_path / "pseudonym.key"
    generate_key_file(path)
    return PseudonymKey.load(path)


@contextlib.asynccontextmanager
async def running(
    config: DeviceConfig, residents: SessionBook, key: PseudonymKey, tmp: Path
) -> AsyncIterator[DeviceSession]:
    session = DeviceSession(
        config,
        get_driver(config.driver),
        hut_id="hut-1",
        state=GatewayState(tmp / "state"),
        outbox=Outbox(MemorySpool(10**6, gap_item)),
        residents=residents,
        pseudonyms=key,
    )
    async with tasks.running(session.run()):
        yield session


def last_problem(residents: SessionBook) -> str:
    assert residents.last_error is not None
    return str(residents.last_error[-1])


async def test_a_card_on_the_reader_starts_one_session_and_a_bad_frame_starts_none(
    tmp_path: Path, key: PseudonymKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    residents = SessionBook()
    config = CardReaderConfig(driver="card-reader", name="reader", path=str(tmp_path / "reader"))
    link = PtyLink(tmp_path / "reader")
    link.open()
    async with running(config, residents, key, tmp_path) as session:
        await eventually(lambda: session.connected)
        frame = encode_frame(CARD)
        link.write(frame[:11] + b"09\x03")  # a bad checksum: nothing starts, and the kiosk is told
        await eventually(lambda: residents.last_error is not None)
        assert residents.active is None and "a frame with a bad checksum" in last_problem(residents)
        for _ in range(20):  # the card held on the reader for a second: one read, one session
            link.write(frame)
            await asyncio.sleep(0.05)
        await eventually(lambda: residents.active is not None)
        active = residents.active
        assert active is not None and active.pseudonym == key.pseudonym(CARD)
        assert (active.source, session.readings) == ("scanner:reader", 1)
        # Unplugged in the middle of a frame, plugged in again, another card: only the cut frame is lost.
        link.write(encode_frame(OTHER_CARD)[:6])
        await asyncio.sleep(0.05)
        link.close()
        await eventually(lambda: not session.connected)
        link = PtyLink(tmp_path / "reader")
        link.open()
        await eventually(lambda: session.connected)
        link.write(encode_frame(OTHER_CARD))
        await eventually(lambda: residents.active is not None and residents.active.pseudonym != active.pseudonym)
        assert residents.active is not None and residents.active.pseudonym == key.pseudonym(OTHER_CARD)
        assert session.readings == 2
    link.close()
    for secret in (CARD, OTHER_CARD, CARD[2:], str(int(CARD[2:], 16))):
        assert secret not in caplog.text


async def test_a_keyboard_scanner_through_its_event_device_starts_the_residents_session(
    tmp_path: Path, key: PseudonymKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    residents = SessionBook()
    path = tmp_path / "event-kbd"
    os.mkfifo(path)
    config = HidScannerConfig(driver="hid-scanner", name="hid", path=str(path))

    async def plug_in() -> int:
        while True:
            try:
                return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                assert exc.errno == errno.ENXIO  # the gateway has not opened it yet
                await asyncio.sleep(0.02)

    async def type_out(fd: int, packets: list[Packet], at: float = 0.0) -> None:
        for i, packet in enumerate(packets):
            os.write(fd, pack_events(packet, 1_700_000_000 + at + i * 0.004))
            await asyncio.sleep(0.001)

    async with running(config, residents, key, tmp_path) as session:
        scanner = await plug_in()
        await eventually(lambda: session.connected)
        assert "not grabbed" in caplog.text  # a FIFO cannot be grabbed; the gateway reads it anyway
        good = encode_scan(RESIDENT)
        await type_out(scanner, good[:8] + key_strokes(59) + good[8:])  # F1 in the middle: a bad scan
        await eventually(lambda: residents.last_error is not None)
        assert residents.active is None and "a key that is not part of a code" in last_problem(residents)
        await type_out(scanner, good, at=10)
        await eventually(lambda: residents.active is not None)
        active = residents.active
        assert active is not None and active.pseudonym == key.pseudonym(RESIDENT)
        assert (active.source, session.readings) == ("scanner:hid", 1)
        # Unplugged in the middle of a scan, plugged in again, the next resident scans.
        await type_out(scanner, encode_scan(OTHER_RESIDENT)[:10], at=20)
        os.close(scanner)
        await eventually(lambda: not session.connected)
        scanner = await plug_in()
        await eventually(lambda: session.connected)
        await type_out(scanner, encode_scan(OTHER_RESIDENT), at=30)
        await eventually(lambda: residents.active is not None and residents.active.pseudonym != active.pseudonym)
        assert residents.active is not None and residents.active.pseudonym == key.pseudonym(OTHER_RESIDENT)
        assert session.readings == 2
        os.close(scanner)
    for secret in (RESIDENT, OTHER_RESIDENT, RESIDENT.lower(), "1101051949"):
        assert secret not in caplog.text
