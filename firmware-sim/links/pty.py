"""A pseudo-terminal that looks like a USB-serial device to the gateway.

The simulator keeps both ends open so the line stays up between gateway restarts. Like a real device
nobody reads, bytes that the gateway does not collect are lost rather than queued: when more than
``stale_limit`` bytes wait unread, the simulator flushes them. Closing the link is how an unplug looks.
What the gateway writes (a start command, keep-alives) can be read back with :meth:`PtyLink.read`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import termios
import tty
from pathlib import Path
from types import TracebackType
from typing import Self

log = logging.getLogger(__name__)


class PtyLink:
    def __init__(self, symlink: Path | None = None, *, stale_limit: int = 512) -> None:
        self.symlink = symlink
        self.stale_limit = stale_limit
        self._master = -1
        self._slave = -1
        self.path = ""
        self.bytes_written = 0
        self.bytes_dropped = 0

    def open(self) -> str:
        """Create the pty (and point ``symlink`` at it). Returns the device path to give the gateway."""
        self._master, self._slave = os.openpty()
        # Raw mode: no echo, no CR/LF mangling, no XON/XOFF eating 0x11/0x13 out of binary frames.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        if self.symlink is not None:
            tmp = self.symlink.with_name(self.symlink.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.path)
            # Replacing the link atomically means the gateway never sees it missing during a re-plug.
            tmp.replace(self.symlink)
        return str(self.symlink) if self.symlink is not None else self.path

    def _pending(self) -> int:
        raw = fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0")
        return int(struct.unpack("i", raw)[0])

    def write(self, data: bytes) -> int:
        """Send ``data`` if someone is reading; returns how many bytes were delivered."""
        if self._pending() > self.stale_limit:
            termios.tcflush(self._slave, termios.TCIFLUSH)
        try:
            written = os.write(self._master, data)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EIO):
                raise
            written = 0
        self.bytes_written += written
        self.bytes_dropped += len(data) - written
        return written

    def read(self) -> bytes:
        """What the gateway wrote to the device since the last call; b"" when nothing (or unplugged)."""
        if self._master < 0:
            return b""
        try:
            return os.read(self._master, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            return b""

    def close(self) -> None:
        """Unplug: the gateway's next read fails, as with a pulled USB cable."""
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
