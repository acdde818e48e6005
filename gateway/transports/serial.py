"""Serial devices through pyserial-asyncio-fast: open with the driver's line settings, detect unplugs."""

from __future__ import annotations

import asyncio
import logging
import os
import termios
from types import TracebackType
from typing import Self

import serial
import serial_asyncio_fast

from healthhut.drivers import SerialSettings
from healthhut.gateway.transports.base import TransportError

log = logging.getLogger(__name__)

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
_STOPBITS = {1: serial.STOPBITS_ONE, 1.5: serial.STOPBITS_ONE_POINT_FIVE, 2: serial.STOPBITS_TWO}
READ_CHUNK = 4096


class SerialStream:
    """An open serial port. Use :func:`open_serial`; close it with ``async with`` or ``close()``."""

    def __init__(self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        try:
            data = await self._reader.read(READ_CHUNK)
        except (serial.SerialException, OSError) as exc:
            raise TransportError(self.path, f"read failed: {exc}", unplugged=True) from exc
        if not data:
            # pyserial reports a vanished device (USB unplug, pty master closed) as EOF.
            raise TransportError(self.path, "device went away", unplugged=True)
        return data

    async def write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (serial.SerialException, OSError, ConnectionError) as exc:
            raise TransportError(self.path, f"write failed: {exc}", unplugged=True) from exc

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (serial.SerialException, OSError, ConnectionError) as exc:
            log.debug("closing %s: %s", self.path, exc)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def is_pty(path: str) -> bool:
    return os.path.realpath(path).startswith("/dev/pts/")


async def open_serial(path: str, settings: SerialSettings) -> SerialStream:
    """Open ``path`` with the driver's line settings. TransportError if it is absent or busy."""
    parity = settings.parity
    if is_pty(path):
        # Linux ptys carry bytes, not line settings, and refuse parity with EINVAL; the simulator's
        # ptys stand in for USB-serial adapters, so parity is dropped there and only there.
        parity = "N"
    try:
        reader, writer = await serial_asyncio_fast.open_serial_connection(
            url=path,
            baudrate=settings.baudrate,
            bytesize=settings.bytesize,
            parity=_PARITY[parity],
            stopbits=_STOPBITS[settings.stopbits],
            xonxoff=settings.xonxoff,
            exclusive=True,
        )
    except (serial.SerialException, OSError, ValueError, termios.error) as exc:
        raise TransportError(path, f"cannot open: {exc}") from exc
    log.info("opened serial device %s", path)
    return SerialStream(path, reader, writer)
