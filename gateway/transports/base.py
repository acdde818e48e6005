"""The byte-stream interface that device sessions read from, and the transport error base."""

from __future__ import annotations

from typing import Protocol


class TransportError(Exception):
    """The device cannot be reached or went away. ``path`` names it; ``unplugged`` tells which."""

    def __init__(self, path: str, message: str, *, unplugged: bool = False) -> None:
        self.path = path
        self.unplugged = unplugged
        super().__init__(f"{path}: {message}")


class ByteStream(Protocol):
    """An open device link. ``read`` returns at least one byte, or raises TransportError."""

    async def read(self) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...
