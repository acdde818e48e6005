"""The evdev transport on what this machine has: a FIFO standing in for /dev/input/eventN (the grab fails
and is logged, records are read as written, the writer going away is an unplug), a plain file, and the
kernel's ENODEV after an unplug."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path

import pytest

from healthhut.drivers.hid_scanner import encode_scan, pack_events
from healthhut.gateway.transports import TransportError, open_evdev
from healthhut.gateway.transports import evdev as evdev_module
from healthhut.gateway.transports.evdev import EVIOCGRAB
from tests.conftest import eventually


def test_eviocgrab_is_iow_e_0x90_int() -> None:
    # linux/input.h: #define EVIOCGRAB _IOW('E', 0x90, int); _IOW = dir 1 << 30 | size << 16 | type << 8 | nr.
    assert (1 << 30) | (4 << 16) | (ord("E") << 8) | 0x90 == EVIOCGRAB


async def open_writer(path: Path) -> int:
    """The FIFO's write end, once the transport has the read end open."""
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            assert exc.errno == errno.ENXIO
            await asyncio.sleep(0.01)


async def test_a_fifo_is_read_ungrabbed_and_its_writer_leaving_is_an_unplug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "event-kbd"
    os.mkfifo(path)
    caplog.set_level(logging.INFO, logger="healthhut.gateway.transports.evdev")
    stream = await open_evdev(str(path))
    try:
        assert not stream.grabbed
        assert f"input device {path} not grabbed" in caplog.text and "reach the kiosk's screen" in caplog.text
        writer = await open_writer(path)
        records = b"".join(pack_events(packet, 1.0) for packet in encode_scan("H1"))
        reading = asyncio.create_task(stream.read())
        await asyncio.sleep(0.05)
        assert not reading.done()  # nothing written yet: the read waits, it does not spin or fail
        os.write(writer, records)
        got = await asyncio.wait_for(reading, 5)
        while len(got) < len(records):
            got += await asyncio.wait_for(stream.read(), 5)
        assert got == records
        os.close(writer)
        with pytest.raises(TransportError) as caught:
            await asyncio.wait_for(stream.read(), 5)
        assert caught.value.unplugged and caught.value.path == str(path)
        with pytest.raises(TransportError, match="read-only"):
            await stream.write(b"\x00")
    finally:
        await stream.close()


async def test_an_absent_device_cannot_be_opened(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="cannot open") as caught:
        await open_evdev(str(tmp_path / "event99"))
    assert not caught.value.unplugged


async def test_a_plain_file_is_read_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "events.bin"
    records = b"".join(pack_events(packet, 1.0) for packet in encode_scan("H1"))
    path.write_bytes(records)
    async with await open_evdev(str(path)) as stream:
        assert await stream.read() == records
        with pytest.raises(TransportError, match="went away"):
            await stream.read()


async def test_enodev_after_an_unplug_is_an_unplug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "event-kbd"
    os.mkfifo(path)
    stream = await open_evdev(str(path))
    writer = await open_writer(path)
    real_read = os.read

    def unplugged(fd: int, count: int) -> bytes:
        if fd == stream._fd:  # what the kernel answers on the fd of a removed input device
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        return real_read(fd, count)

    monkeypatch.setattr(evdev_module.os, "read", unplugged)
    try:
        os.write(writer, b"\x00" * 24)
        with pytest.raises(TransportError, match="No such device") as caught:
            await asyncio.wait_for(stream.read(), 5)
        assert caught.value.unplugged
    finally:
        monkeypatch.undo()
        os.close(writer)
        await stream.close()
    await eventually(lambda: stream._fd == -1)
