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


class RecordClock:
    """Judges the clock of a device that keeps records (a glucose meter's memory, read through RACP), one
    transfer at a time. A stored record's age is not a clock error: the device's clock is what is judged.

    The rule (README, "Resident sessions"):

    - **Anchor.** The record with the latest device time in a transfer is the one the resident has just
      taken: a meter connects because it has a new result. If its device time is within ``max_device_skew``
      of its arrival, the device's clock is verified for this transfer (Tidepool's uploader anchors a
      device's clock on its most recent datum the same way). If it is not (a meter reset to 2000-01-01, or a
      meter whose newest record is itself old, where age and clock error cannot be told apart), no record of
      the transfer is verified.
    - **Bracket.** The gateway asks for the records after the last sequence number it has seen, so a record
      in this transfer did not exist when the last complete transfer ended (RACP, Glucose Service 1.0.1
      Report Stored Records): it was taken between then and the anchor. A device time before that (less the
      skew) is a clock that was wrong when the record was taken, not an old record. Before the first complete
      transfer, the bracket starts when the gateway started, since nothing earlier is known.
    - A record that the device marks itself (the Glucose Measurement's time-fault annunciation, read as
      ``clock_unverified``) is never verified and never an anchor. A record sent again (same device time)
      keeps the verdict it had, so that its observation is the same each time.
    """

    def __init__(self, check: ClockCheck, started_at: datetime, remember: int = 4096) -> None:
        self.check = check
        # When the last complete transfer ended: records of the next one were taken after it.
        self.bracket_start = started_at
        self._remember = remember
        self._verdicts: dict[datetime, bool] = {}

    def judge(
        self, records: list[tuple[datetime | None, datetime, bool]], *, complete: bool, ended_at: datetime
    ) -> list[frozenset[Flag]]:
        """Flags for each record of one transfer, given as (device time, arrival, marked unverified by the
        device). ``complete``: the device answered the request in full (success, or no records found), so
        the next transfer's records are all newer than ``ended_at``."""
        skew = self.check.max_device_skew
        candidates = [(t, arrived) for t, arrived, marked in records if t is not None and not marked]
        anchor = max(candidates, default=None, key=lambda pair: pair[0])
        live = anchor is not None and abs(anchor[0] - anchor[1]) <= skew
        synchronised = self.check.gateway_synchronised
        out: list[frozenset[Flag]] = []
        for device_time, arrived, marked in records:
            if device_time is None:
                verified = False
            elif device_time in self._verdicts:
                verified = self._verdicts[device_time] and not marked
            else:
                verified = live and not marked and self.bracket_start - skew <= device_time <= arrived + skew
                self._keep(device_time, verified)
            out.append(frozenset() if synchronised and verified else frozenset({Flag.CLOCK_UNVERIFIED}))
        if complete:
            self.bracket_start = ended_at
        return out

    def _keep(self, device_time: datetime, verified: bool) -> None:
        self._verdicts[device_time] = verified
        if len(self._verdicts) > self._remember:
            del self._verdicts[next(iter(self._verdicts))]
