"""Linux input devices (/dev/input/event*): a keyboard-style scanner's event records, read exclusively.

The device is opened read-only and non-blocking and grabbed (EVIOCGRAB), so that its keystrokes reach
only the gateway and never type into the kiosk's screen. A read returns whole ``input_event`` records;
ENODEV or end of file is the device unplugged.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import stat
from types import TracebackType
from typing import Self

from healthhut.gateway.transports.base import TransportError

log = logging.getLogger(__name__)

# linux/input.h: #define EVIOCGRAB _IOW('E', 0x90, int), as the generic _IOW encodes it (ARM, x86).
EVIOCGRAB = 0x40044590
# Bytes per read: whole records of either size (16 and 24 both divide it); the kernel returns only
# whole records, as many as fit.
READ_CHUNK = 48 * 64
# How the device is opened, and the group (Debian's udev rules) whose members may: doctor checks the same.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
ACCESS_GROUP = "input"


class EvdevStream:
    """An open input device. Use :func:`open_evdev`; close it with ``async with`` or ``close()``."""

    def __init__(self, path: str, fd: int, *, grabbed: bool, pollable: bool) -> None:
        self.path = path
        self.grabbed = grabbed
        self._fd = fd
        self._pollable = pollable

    async def read(self) -> bytes:
        while True:
            # Wait first: a FIFO without a writer reads as end of file at once, but polls as readable
            # only once a writer has written, or come and gone. A plain file cannot be polled.
            if self._pollable:
                await self._readable()
            try:
                data = os.read(self._fd, READ_CHUNK)
            except BlockingIOError:
                continue
            except OSError as exc:
                # The kernel answers ENODEV once the device has been unplugged.
                raise TransportError(self.path, f"read failed: {exc.strerror}", unplugged=True) from exc
            if not data:
                raise TransportError(self.path, "device went away", unplugged=True)
            return data

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():  # the loop may poll again before the reader is removed
                ready.set_result(None)

        loop.add_reader(self._fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(self._fd)

    async def write(self, data: bytes) -> None:
        raise TransportError(self.path, "an input device is read-only here")

    async def close(self) -> None:
        if self._fd < 0:
            return
        if self.grabbed:
            try:
                fcntl.ioctl(self._fd, EVIOCGRAB, 0)
            except OSError as exc:  # an unplugged device cannot be released, nor needs to be
                log.debug("releasing %s: %s", self.path, exc.strerror)
        os.close(self._fd)
        self._fd = -1

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def open_evdev(path: str) -> EvdevStream:
    """Open ``path`` (an event device, or a FIFO standing in for one) and try to grab it.

    TransportError if it is absent or not readable. A failed grab (another program holds the device, or
    the path is not an input device) is logged and the device read anyway.
    """
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        hint = f"; the gateway's user needs the {ACCESS_GROUP} group" if exc.errno == errno.EACCES else ""
        raise TransportError(path, f"cannot open: {exc.strerror}{hint}") from exc
    grabbed = False
    try:
        fcntl.ioctl(fd, EVIOCGRAB, 1)
        grabbed = True
    except OSError as exc:
        log.warning(
            "input device %s not grabbed (%s): its keystrokes also reach the kiosk's screen",
            path,
            exc.strerror,
        )
    pollable = not stat.S_ISREG(os.fstat(fd).st_mode)
    log.info("opened input device %s", path)
    return EvdevStream(path, fd, grabbed=grabbed, pollable=pollable)
