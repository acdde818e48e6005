"""Is the time right? The Pi's own clock (NTP-synchronised or not) and each device's clock against it.

A reading gets ``clock_unverified`` when the gateway's clock is not synchronised, or when the device's
timestamp differs from the gateway's by more than the configured limit (a cuff whose battery was changed
often wakes up in 2000-01-01). Both times are always kept on the observation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from datetime import datetime, timedelta

from healthhut.protocol import Flag

log = logging.getLogger(__name__)

# From <sys/timex.h>: ntp_adjtime() returns TIME_ERROR when the kernel clock is not synchronised.
TIME_ERROR = 5
STA_UNSYNC = 0x0040


class _Timex(ctypes.Structure):
    # struct timex on Linux: modes, then 19 longs/ints we only pass through; status is the 9th field.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


def kernel_clock_synchronised() -> bool | None:
    """What the kernel says (as chrony, ntpd and systemd-timesyncd keep it informed); None if unknown."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        adjtime = ctypes.CDLL(name, use_errno=True).ntp_adjtime
    except (OSError, AttributeError):
        return None
    timex = _Timex()  # modes = 0: read only
    state = adjtime(ctypes.byref(timex))
    if state < 0:
        return None
    return state != TIME_ERROR and not timex.status & STA_UNSYNC


class ClockCheck:
    """Flags for one reading's times. The kernel is asked at most once a minute."""

    def __init__(self, max_device_skew: timedelta, probe: object = kernel_clock_synchronised) -> None:
        self.max_device_skew = max_device_skew
        self._probe = probe
        self._synchronised: bool | None = None
        self._asked = -1e9

    @property
    def gateway_synchronised(self) -> bool:
        now = time.monotonic()
        if now - self._asked > 60:
            self._asked = now
            answer = self._probe()  # type: ignore[operator]
            if answer is not self._synchronised and answer is False:
                log.warning("the system clock is not NTP-synchronised; readings are flagged clock_unverified")
            self._synchronised = answer
        # Unknown is treated as unverified: a clinician must not trust a time nobody vouched for.
        return bool(self._synchronised)

    def flags(self, device_time: datetime | None, received_at: datetime) -> frozenset[Flag]:
        if not self.gateway_synchronised:
            return frozenset({Flag.CLOCK_UNVERIFIED})
        if device_time is not None and abs(device_time - received_at) > self.max_device_skew:
            return frozenset({Flag.CLOCK_UNVERIFIED})
        return frozenset()
