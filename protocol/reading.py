"""What a codec decodes from one device message: a frozen Reading of quantities, flags and a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from healthhut.protocol.vocabulary import KINDS, Flag, Kind, value_problem


@dataclass(frozen=True, slots=True)
class Quantity:
    """A value in a UCUM unit. ``value`` is a tuple for list values such as RR intervals."""

    value: float | tuple[float, ...]
    unit: str


@dataclass(frozen=True, slots=True)
class Strip:
    """A stretch of waveform samples as the device gave them: physical = raw * gain + offset.

    ``raw`` holds integers that fit int16, so a strip travels compactly without rescaling.
    """

    fs: float
    unit: str
    raw: tuple[int, ...]
    gain: float = 1.0
    offset: float = 0.0
    channel: str = "pleth"


@dataclass(frozen=True, slots=True)
class Reading:
    """One decoded device message.

    ``measured_at`` is the device's own clock (timezone-aware), or None when the device has none.
    ``flags`` are protocol quality flags. A value the device marked as not a number is absent from
    ``values`` and ``Flag.VALUE_UNAVAILABLE`` is set.
    """

    kind: Kind
    values: Mapping[str, Quantity] = field(default_factory=lambda: MappingProxyType({}))
    flags: frozenset[Flag] = frozenset()
    measured_at: datetime | None = None
    strip: Strip | None = None

    def __post_init__(self) -> None:
        for name, quantity in self.values.items():
            problem = value_problem(self.kind, name, quantity.unit, isinstance(quantity.value, tuple))
            if problem:
                raise ValueError(problem)
        if self.measured_at is not None and self.measured_at.tzinfo is None:
            raise ValueError("measured_at must be timezone-aware")
        if self.strip is not None and not KINDS[self.kind].waveform:
            raise ValueError(f"{self.kind.value} readings carry no waveform strip")
        # A plain dict passed in would stay mutable behind the frozen dataclass.
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
