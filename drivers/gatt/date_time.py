"""GATT Date Time (7 bytes, the device's wall clock, no zone) and Current Time (0x2A2B) values; a Date Time
becomes a datetime only with the device's ``tz``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import IntFlag

from healthhut.drivers.base import DecodeError

DATE_TIME_SIZE = 7
CURRENT_TIME_SIZE = 10
# GSS, Date Time: year 1582..9999 or 0 ("not known"), month and day 0 = not known.
YEAR_RANGE = range(1582, 10000)


@dataclass(frozen=True, slots=True)
class DateTime:
    """A Date Time field as sent. A zero year, month or day means the device does not know the date."""

    year: int
    month: int
    day: int
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    def problem(self) -> str | None:
        """Why these fields are not a Date Time the GSS allows, or None."""
        if self.year != 0 and self.year not in YEAR_RANGE:
            return f"year {self.year} is outside 1582..9999 (0 = unknown)"
        for name, value, largest in (
            ("month", self.month, 12),
            ("day", self.day, 31),
            ("hours", self.hours, 23),
            ("minutes", self.minutes, 59),
            ("seconds", self.seconds, 59),
        ):
            if not 0 <= value <= largest:
                return f"{name} {value} is outside 0..{largest}"
        if self.known:
            try:
                datetime(self.year, self.month, self.day)
            except ValueError:
                return f"{self.year:04}-{self.month:02}-{self.day:02} is not a date"
        return None

    @property
    def known(self) -> bool:
        return self.year != 0 and self.month != 0 and self.day != 0

    def to_datetime(self, tz: tzinfo) -> datetime | None:
        """The moment in the device's zone ``tz``, or None when the device does not know the date."""
        if not self.known:
            return None
        return datetime(self.year, self.month, self.day, self.hours, self.minutes, self.seconds, tzinfo=tz)

    @classmethod
    def from_datetime(cls, moment: datetime) -> DateTime:
        """The fields of ``moment`` as its own wall clock shows them (seconds truncated)."""
        return cls(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def decode_date_time(data: bytes) -> DateTime:
    """Seven bytes: year (uint16), month, day, hours, minutes, seconds. DecodeError names a bad field."""
    if len(data) != DATE_TIME_SIZE:
        raise DecodeError(f"a Date Time is {DATE_TIME_SIZE} bytes, not {len(data)}")
    value = DateTime(int.from_bytes(data[:2], "little"), *data[2:])
    problem = value.problem()
    if problem:
        raise DecodeError(f"Date Time: {problem}")
    return value


def encode_date_time(value: DateTime) -> bytes:
    """The inverse of :func:`decode_date_time`. ValueError when the fields are not a valid Date Time."""
    problem = value.problem()
    if problem:
        raise ValueError(problem)
    fields = (value.month, value.day, value.hours, value.minutes, value.seconds)
    return value.year.to_bytes(2, "little") + bytes(fields)


class AdjustReason(IntFlag):
    """Current Time, Adjust Reason field."""

    MANUAL_TIME_UPDATE = 0x01
    EXTERNAL_REFERENCE_TIME_UPDATE = 0x02
    CHANGE_OF_TIME_ZONE = 0x04
    CHANGE_OF_DST = 0x08


@dataclass(frozen=True, slots=True)
class CurrentTime:
    """Current Time (0x2A2B): Exact Time 256 (Date Time, Day of Week, Fractions256) and Adjust Reason."""

    date_time: DateTime
    day_of_week: int  # 1 = Monday .. 7 = Sunday, 0 = unknown
    fractions256: int
    adjust_reason: int

    def to_datetime(self, tz: tzinfo) -> datetime | None:
        moment = self.date_time.to_datetime(tz)
        return None if moment is None else moment.replace(microsecond=self.fractions256 * 1_000_000 // 256)


def current_time_for(
    now: datetime, tz: tzinfo, adjust_reason: AdjustReason = AdjustReason.EXTERNAL_REFERENCE_TIME_UPDATE
) -> CurrentTime:
    """What to write to a device whose clock runs in ``tz``: ``now`` (timezone-aware) as the device's wall clock.

    The default reason says the time comes from an external reference (the gateway's NTP-disciplined clock).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(tz)
    return CurrentTime(
        DateTime.from_datetime(local), local.isoweekday(), local.microsecond * 256 // 1_000_000, adjust_reason
    )


def encode_current_time(value: CurrentTime) -> bytes:
    """The 10 bytes of a Current Time value."""
    for name, number in (("day_of_week", value.day_of_week), ("fractions256", value.fractions256)):
        if not 0 <= number <= (7 if name == "day_of_week" else 255):
            raise ValueError(f"{name} {number} is out of range")
    if not 0 <= value.adjust_reason <= 0xFF:
        raise ValueError(f"adjust_reason {value.adjust_reason} is not one byte")
    return encode_date_time(value.date_time) + bytes((value.day_of_week, value.fractions256, value.adjust_reason))


def decode_current_time(data: bytes) -> CurrentTime:
    """The inverse of :func:`encode_current_time`; DecodeError says what is wrong."""
    if len(data) != CURRENT_TIME_SIZE:
        raise DecodeError(f"a Current Time value is {CURRENT_TIME_SIZE} bytes, not {len(data)}")
    day_of_week, fractions, reason = data[7:10]
    if day_of_week > 7:
        raise DecodeError(f"Current Time: day of week {day_of_week} is outside 0..7")
    return CurrentTime(decode_date_time(data[:7]), day_of_week, fractions, reason)


def current_time_bytes(
    now: datetime, tz: tzinfo, adjust_reason: AdjustReason = AdjustReason.EXTERNAL_REFERENCE_TIME_UPDATE
) -> bytes:
    """The value for the transport to write to Current Time (0x2A2B) so the device's clock shows ``now`` in ``tz``."""
    return encode_current_time(current_time_for(now, tz, adjust_reason))
