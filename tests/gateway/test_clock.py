"""Clock checks: an unsynchronised Pi, and a device clock far from the Pi's, flag clock_unverified."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from healthhut.gateway.clock import ClockCheck, kernel_clock_synchronised
from healthhut.protocol import Flag

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
UNVERIFIED = frozenset({Flag.CLOCK_UNVERIFIED})


@pytest.mark.parametrize(
    ("synchronised", "device_time", "expected"),
    [
        (True, None, frozenset()),
        (True, NOW - timedelta(seconds=30), frozenset()),
        (True, datetime(2000, 1, 1, tzinfo=UTC), UNVERIFIED),  # a cuff after a battery change
        (True, NOW + timedelta(hours=2), UNVERIFIED),
        (False, None, UNVERIFIED),
        (None, NOW, UNVERIFIED),  # nobody vouches for the Pi's clock: unverified, not trusted
    ],
)
def test_flags(synchronised: bool | None, device_time: datetime | None, expected: frozenset[Flag]) -> None:
    check = ClockCheck(timedelta(minutes=5), probe=lambda: synchronised)
    assert check.flags(device_time, NOW) == expected


def test_the_kernel_is_asked_and_answers() -> None:
    # This machine's answer is not fixed (CI may or may not run NTP), but it must be a clear answer.
    assert kernel_clock_synchronised() in (True, False)
