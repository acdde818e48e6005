"""IEEE 11073-20601 SFLOAT (16-bit) and FLOAT (32-bit), exactly as sent: mantissa and exponent, so a value
keeps its resolution (2.0 is not 2.00) and its special meaning (NaN, NRes, ±INF, reserved)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from typing import ClassVar, Self


class Special(StrEnum):
    """The values that are not numbers (IEEE 11073-20601, and GSS medfloat16/medfloat32)."""

    NAN = "NaN"
    NRES = "NRes"  # not at this resolution: the value does not fit the device's range or resolution
    POSITIVE_INFINITY = "+INF"
    NEGATIVE_INFINITY = "-INF"
    RESERVED = "reserved"


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw >> (bits - 1) else raw


@dataclass(frozen=True, slots=True)
class MedFloat:
    """``mantissa`` × 10^``exponent``; a special value when the exponent is 0 and the mantissa is reserved."""

    mantissa: int
    exponent: int = 0

    MANTISSA_BITS: ClassVar[int]
    EXPONENT_BITS: ClassVar[int]

    def __post_init__(self) -> None:
        top = 1 << (self.MANTISSA_BITS - 1)
        if not -top <= self.mantissa < top:
            raise ValueError(f"{type(self).__name__} mantissa must be in {-top}..{top - 1}, not {self.mantissa}")
        top = 1 << (self.EXPONENT_BITS - 1)
        if not -top <= self.exponent < top:
            raise ValueError(f"{type(self).__name__} exponent must be in {-top}..{top - 1}, not {self.exponent}")

    @classmethod
    def _special_mantissas(cls) -> dict[int, Special]:
        largest = (1 << (cls.MANTISSA_BITS - 1)) - 1
        return {
            largest: Special.NAN,
            -(largest + 1): Special.NRES,
            largest - 1: Special.POSITIVE_INFINITY,
            -(largest - 1): Special.NEGATIVE_INFINITY,
            -largest: Special.RESERVED,
        }

    @property
    def special(self) -> Special | None:
        """The special value this is, or None for a number.

        Only exponent 0 carries the special values (IEEE 11073-20601; HL7 PHD IG "Mder FLOATs and SFLOATs"):
        0x07FF is NaN, but 0x17FF is the number 2047 × 10.
        """
        return self._special_mantissas().get(self.mantissa) if self.exponent == 0 else None

    def decimal(self) -> Decimal | None:
        """The exact value, or None for a special value."""
        if self.special is not None:
            return None
        return Decimal(self.mantissa).scaleb(self.exponent)

    def to_float(self) -> float | None:
        """The value as the nearest float (correctly rounded), or None for a special value."""
        exact = self.decimal()
        return None if exact is None else float(exact)

    @property
    def raw(self) -> int:
        """The unsigned integer sent on the wire (exponent in the top bits)."""
        mantissa_mask = (1 << self.MANTISSA_BITS) - 1
        exponent_mask = (1 << self.EXPONENT_BITS) - 1
        return (self.exponent & exponent_mask) << self.MANTISSA_BITS | (self.mantissa & mantissa_mask)

    @classmethod
    def from_raw(cls, raw: int) -> Self:
        width = cls.MANTISSA_BITS + cls.EXPONENT_BITS
        if not 0 <= raw < 1 << width:
            raise ValueError(f"{cls.__name__} is {width} bits, {raw:#x} does not fit")
        mantissa = _signed(raw & ((1 << cls.MANTISSA_BITS) - 1), cls.MANTISSA_BITS)
        return cls(mantissa, _signed(raw >> cls.MANTISSA_BITS, cls.EXPONENT_BITS))

    @classmethod
    def of_special(cls, special: Special) -> Self:
        """The encoding of ``special`` (exponent 0)."""
        mantissa = next(m for m, s in cls._special_mantissas().items() if s is special)
        return cls(mantissa, 0)

    @classmethod
    def from_decimal(cls, value: Decimal | int | str, exponent: int | None = None) -> Self:
        """Encode ``value``: exactly, or rounded half-even to ``exponent`` (the device's resolution).

        Without ``exponent`` the value keeps its own digits (``"36.50"`` stays 3650e-2) where they fit, and
        trailing zeros are dropped only as far as the mantissa needs. ValueError when it cannot be encoded
        without rounding (or at all), or when the only encoding would be a special value.
        """
        number = Decimal(value)
        if not number.is_finite():
            raise ValueError(f"{value!r} is not a finite number; use {cls.__name__}.of_special()")
        top = 1 << (cls.EXPONENT_BITS - 1)
        candidates = range(-top, top) if exponent is None else (exponent,)
        first = number.as_tuple().exponent
        assert isinstance(first, int)  # a finite Decimal has an integer exponent
        # Prefer the value's own exponent, then coarser ones (dropping zeros), then finer ones.
        ordered = sorted(candidates, key=lambda e: (e < first, abs(e - first)))
        for candidate in ordered:
            try:
                scaled = number.scaleb(-candidate).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
            except InvalidOperation:
                continue
            if exponent is None and scaled.scaleb(candidate) != number:
                continue
            mantissa = int(scaled)
            try:
                encoded = cls(mantissa, candidate)
            except ValueError:
                continue
            if encoded.special is None:
                return encoded
        raise ValueError(f"{value} cannot be encoded as a {cls.__name__}" + (f" at 10^{exponent}" if exponent else ""))

    def __str__(self) -> str:
        exact = self.decimal()
        return str(self.special) if exact is None else str(exact)


@dataclass(frozen=True, slots=True)
class SFloat(MedFloat):
    """SFLOAT / medfloat16: 4-bit exponent, 12-bit mantissa, both two's complement."""

    MANTISSA_BITS: ClassVar[int] = 12
    EXPONENT_BITS: ClassVar[int] = 4


@dataclass(frozen=True, slots=True)
class Float(MedFloat):
    """FLOAT / medfloat32: 8-bit exponent, 24-bit mantissa, both two's complement."""

    MANTISSA_BITS: ClassVar[int] = 24
    EXPONENT_BITS: ClassVar[int] = 8


def decode_sfloat(data: bytes) -> SFloat:
    """Two bytes, little-endian."""
    if len(data) != 2:
        raise ValueError(f"an SFLOAT is 2 bytes, not {len(data)}")
    return SFloat.from_raw(int.from_bytes(data, "little"))


def encode_sfloat(value: SFloat) -> bytes:
    return value.raw.to_bytes(2, "little")


def decode_float(data: bytes) -> Float:
    """Four bytes, little-endian."""
    if len(data) != 4:
        raise ValueError(f"a FLOAT is 4 bytes, not {len(data)}")
    return Float.from_raw(int.from_bytes(data, "little"))


def encode_float(value: Float) -> bytes:
    return value.raw.to_bytes(4, "little")


SFLOAT_NAN = SFloat.of_special(Special.NAN)
FLOAT_NAN = Float.of_special(Special.NAN)
