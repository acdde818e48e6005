"""Reading a characteristic value field by field; every shortfall becomes a DecodeError that names the field."""

from __future__ import annotations

from healthhut.drivers.base import DecodeError
from healthhut.drivers.gatt.date_time import DATE_TIME_SIZE, DateTime, decode_date_time
from healthhut.drivers.gatt.sfloat import Float, SFloat


class Cursor:
    """Consumes ``data`` from the front. ``what`` names the characteristic in every error message."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = bytes(data)
        self.what = what
        self.offset = 0

    def error(self, message: str) -> DecodeError:
        return DecodeError(f"{self.what}: {message}")

    def take(self, size: int, field: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            left = len(self.data) - self.offset
            raise self.error(
                f"{field} needs {size} bytes at offset {self.offset}, but the value ends after {left} more "
                f"({len(self.data)} bytes in all)"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "little")

    def sint16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "little", signed=True)

    def sfloat(self, field: str) -> SFloat:
        return SFloat.from_raw(self.uint(2, field))

    def float32(self, field: str) -> Float:
        return Float.from_raw(self.uint(4, field))

    def date_time(self, field: str) -> DateTime:
        chunk = self.take(DATE_TIME_SIZE, field)
        try:
            return decode_date_time(chunk)
        except DecodeError as error:
            raise self.error(f"{field}: {error}") from None

    def rest(self) -> bytes:
        chunk = self.data[self.offset :]
        self.offset = len(self.data)
        return chunk

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset

    def flags(self, defined: int, strict: bool, size: int = 1) -> tuple[int, int]:
        """The Flags field split into (defined bits, reserved bits).

        Reserved (RFU) bits are ignored by default, as the Bluetooth convention for receivers has it and as
        real devices need (README, Quirks); ``strict`` rejects them.
        """
        flags = self.uint(size, "Flags")
        reserved = flags & ~defined
        if reserved and strict:
            raise self.error(f"Flags {flags:#0{2 + 2 * size}x} set reserved bits {reserved:#x}")
        return flags & defined, reserved

    def trailing(self, strict: bool) -> bytes:
        """What is left after the last field: kept (a newer spec version may append fields), or an error."""
        extra = self.rest()
        if extra and strict:
            raise self.error(f"{len(extra)} bytes left over after the last field: {extra.hex(' ')}")
        return extra
