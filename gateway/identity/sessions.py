"""Resident sessions at the hut: who stands at the kiosk, and so whose a reading is.

- One active session per hut. Starting one ends the one before; the kiosk can end it; it ends by itself
  ``idle_timeout`` after its last activity (its start, or a reading attributed to it).
- A reading belongs to the session that was active at its measurement time: the device's own time
  when the device has a trusted clock (a glucose record fetched later through RACP lands in the
  session in which it was measured, even one that has ended), otherwise the time it arrived.
- A reading outside every session is anonymous.
- Never guess. A reading's measurement time is known only within a window, and when that window
  touches the session of a resident other than its owner, the reading is kept anonymous and flagged
  ``subject_conflict``. The window is, for a trusted device time, that time give or take how far the
  device's clock may be off (``clock_margin``: the clock check's limit), and never after the reading
  arrived; without one, the ``ambiguity`` before its arrival. The device session widens it back to
  the start of the device's measurement run (``since``): a cuff inflating for resident A, or an
  oximeter streaming on A's finger, is still measuring A after B scans a card, until it goes quiet.

Sessions hold the pseudonym and the profile, never the raw identifier. Ended sessions are kept for
``history`` so that late readings can still be attributed by time.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from healthhut.protocol import Subject
from healthhut.protocol.wire import ClinicalFlag

if TYPE_CHECKING:
    from healthhut.gateway.identity.roster import HutRoster

log = logging.getLogger(__name__)

Sex = Literal["female", "male", "unknown"]
# What went wrong with an identity source, for the kiosk app to show in its own words.
ProblemCode = Literal["bad_scan", "unknown_card"]


def age_band(birth: date, at: datetime) -> str:
    """Completed months under one year, completed years under eighteen, decades after."""
    day = at.astimezone(UTC).date()
    months = (day.year - birth.year) * 12 + day.month - birth.month - (1 if day.day < birth.day else 0)
    if months < 0:
        raise ValueError("the birth date is after the measurement")
    if months < 12:
        return f"{months}m"
    years = months // 12
    if years < 18:
        return f"{years}y"
    if years < 40:
        return "18-39y"
    if years >= 80:
        return "80+y"
    decade = years // 10 * 10
    return f"{decade}-{decade + 9}y"


@dataclass(frozen=True, slots=True)
class Profile:
    """What the rules need to know about a resident: no name, no identifier."""

    birth_date: date | None = None
    age_band: str | None = None  # when the kiosk gives a band instead of a birth date
    sex: Sex = "unknown"
    clinical: frozenset[ClinicalFlag] = frozenset()

    def band_at(self, at: datetime) -> str | None:
        return age_band(self.birth_date, at) if self.birth_date is not None else self.age_band


@dataclass(slots=True)
class Session:
    id: str
    pseudonym: str
    profile: Profile
    started_at: datetime
    source: str
    last_activity: datetime
    ended_at: datetime | None = None
    end_reason: str | None = None

    def covers(self, at: datetime) -> bool:
        return self.started_at <= at and (self.ended_at is None or at < self.ended_at)

    def meets(self, earliest: datetime, latest: datetime) -> bool:
        """Was this session active at some moment from ``earliest`` to ``latest``?"""
        return self.started_at <= latest and (self.ended_at is None or earliest < self.ended_at)

    def subject(self, at: datetime) -> Subject:
        return Subject(
            pseudonym=self.pseudonym,
            age_band=self.profile.band_at(at),
            sex=self.profile.sex,
            clinical=sorted(self.profile.clinical),
        )


@dataclass(frozen=True, slots=True)
class Attribution:
    subject: Subject | None = None
    session_id: str | None = None
    conflict: bool = False


@dataclass
class SessionBook:
    idle_timeout: timedelta = timedelta(minutes=5)
    # How long before its arrival a reading without a device time may have been taken; a device silent
    # this long has ended its measurement run (see DeviceSession).
    ambiguity: timedelta = timedelta(seconds=10)
    history: timedelta = timedelta(hours=24)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Profiles by pseudonym, from the collector's roster (see roster.py); None: this hut has none.
    roster: HutRoster | None = None
    # The last problem with an identity source, for the kiosk to show: (when, code, what).
    last_error: tuple[datetime, ProblemCode, str] | None = None
    _sessions: list[Session] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def active(self) -> Session | None:
        self.expire()
        last = self._sessions[-1] if self._sessions else None
        return last if last is not None and last.ended_at is None else None

    def start(self, pseudonym: str, profile: Profile, source: str, at: datetime | None = None) -> Session:
        at = at or self.clock()
        if profile.birth_date is not None:
            age_band(profile.birth_date, at)  # a birth date in the future is refused here, not later
        current = self.active
        if current is not None:
            self._end(current, at, "next resident")
        started = self.clock().strftime("%Y%m%dT%H%M%S")
        session = Session(f"s-{started}-{next(self._ids)}", pseudonym, profile, at, source, at)
        self._sessions.append(session)
        self._forget(at)
        log.info("session %s started (%s)", session.id, source)
        return session

    def end(self, at: datetime | None = None, reason: str = "kiosk") -> Session | None:
        current = self.active
        if current is not None:
            self._end(current, at or self.clock(), reason)
        return current

    def _end(self, session: Session, at: datetime, reason: str) -> None:
        session.ended_at, session.end_reason = max(at, session.started_at), reason
        log.info("session %s ended (%s)", session.id, reason)

    def expire(self, now: datetime | None = None) -> None:
        now = now or self.clock()
        last = self._sessions[-1] if self._sessions else None
        if last is not None and last.ended_at is None and now - last.last_activity >= self.idle_timeout:
            self._end(last, last.last_activity + self.idle_timeout, "idle")

    def _forget(self, now: datetime) -> None:
        self._sessions = [s for s in self._sessions if s.ended_at is None or now - s.ended_at < self.history]

    def attribute(
        self,
        received_at: datetime,
        device_time: datetime | None = None,
        *,
        clock_margin: timedelta = timedelta(0),
        since: datetime | None = None,
    ) -> Attribution:
        """Whose reading this is. ``device_time``: the device's own measurement time, when trusted, and
        ``clock_margin`` how far that clock may be off; ``since``: when the device's measurement run began.

        The owner is the session at the measurement time (the device time, but never after the reading
        arrived). The reading is a conflict when its window (see the module docstring) meets the session of
        a resident other than the owner; outside every session it is anonymous, and a conflict when the
        window meets two residents' sessions."""
        self.expire(received_at)
        if device_time is not None:
            at = min(device_time, received_at)
            earliest, latest = device_time - clock_margin, min(device_time + clock_margin, received_at)
        else:
            at, earliest, latest = received_at, received_at - self.ambiguity, received_at
        if since is not None:
            earliest = min(earliest, since)
        earliest = min(earliest, at)
        owner = next((s for s in reversed(self._sessions) if s.covers(at)), None)
        present = {s.pseudonym for s in self._sessions if s.meets(earliest, latest)}
        if owner is None:
            return Attribution(conflict=len(present) > 1)
        if present - {owner.pseudonym}:
            return Attribution(conflict=True)
        if owner.ended_at is None:
            owner.last_activity = max(owner.last_activity, received_at)
        return Attribution(owner.subject(at), owner.id)

    def admit_card(self, pseudonym: str, source: str) -> Session | None:
        """A card was read: start its resident's session with the roster's profile. A card that is not
        on the hut's roster starts nothing and ends the active session, since whoever stands at the
        kiosk now is not its resident; their readings stay anonymous until a known card or the kiosk
        starts a session. Without a roster every card is admitted, with an empty profile."""
        profile = self.roster.profile(pseudonym) if self.roster is not None else None
        if profile is None and self.roster is not None and self.roster.present:
            self.end(reason="unknown card")
            self.problem("unknown_card", f"{source}: this card is not registered at this hut; please ask the staff")
            return None
        return self.start(pseudonym, profile or Profile(), source)

    def refuse_scan(self, source: str, what: str) -> None:
        """A scan could not be read. Someone else may be at the kiosk, so the active session ends (its
        readings are kept; later ones are anonymous) rather than risk a reading of the wrong resident."""
        self.end(reason="bad scan")
        self.problem("bad_scan", f"{source}: {what}; please scan again")

    def problem(self, code: ProblemCode, what: str, at: datetime | None = None) -> None:
        """Note a problem for the kiosk to show. ``what`` must not quote the code that was read."""
        self.last_error = (at or self.clock(), code, what)
        log.warning("identity: %s", what)

    def snapshot(self) -> list[Session]:
        return [replace(s) for s in self._sessions]
