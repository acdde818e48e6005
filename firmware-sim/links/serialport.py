"""A real serial port set to the device's line settings, for bench tests: the gateway reads the other adapter of
a USB-serial null-modem pair."""

from __future__ import annotations

import errno
import os
from types import TracebackType
from typing import Any, Self

from healthhut.drivers import SerialSettings
from healthhut.firmware_sim.errors import LinkError


class SerialPortLink:
    """Like :class:`PtyLink`, a write never blocks: what the port cannot take at once is dropped, as a device's
    UART would lose it."""

    def __init__(self, port: str, settings: SerialSettings) -> None:
        self.port = port
        self.settings = settings
        self.path = port
        self.bytes_written = 0
        self.bytes_dropped = 0
        self._serial: Any = None
        self._fd = -1

    def open(self) -> str:
        """Open the port with the device's line settings; LinkError if it cannot be opened."""
        import serial

        settings = self.settings
        try:
            port = serial.Serial(
                self.port,
                baudrate=settings.baudrate,
                bytesize=settings.bytesize,
                parity=settings.parity,
                stopbits=settings.stopbits,
                xonxoff=settings.xonxoff,
                timeout=0,
            )
        except (serial.SerialException, ValueError) as exc:
            raise LinkError("serial", self.port, str(exc)) from exc
        self._serial = port
        self._fd = port.fileno()
        # pyserial's own non-blocking write spins while the port is full; a plain non-blocking write drops.
        os.set_blocking(self._fd, False)
        return self.port

    def write(self, data: bytes) -> int:
        if self._fd < 0:
            self.bytes_dropped += len(data)
            return 0
        try:
            written = os.write(self._fd, data)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EIO):
                raise LinkError("serial", self.port, exc.strerror or str(exc)) from exc
            written = 0
        self.bytes_written += written
        self.bytes_dropped += len(data) - written
        return written

    def read(self) -> bytes:
        """What the host wrote since the last call; b"" when nothing."""
        if self._fd < 0:
            return b""
        try:
            return os.read(self._fd, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise LinkError("serial", self.port, exc.strerror or str(exc)) from exc
            return b""

    def close(self) -> None:
        """Release the port. On a real adapter the host sees silence, not an unplug: only pulling the
        cable (or a USB power switch) makes its device node vanish."""
        port, self._serial, self._fd = self._serial, None, -1
        if port is not None:
            port.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
