"""The hut's copy of its roster (see healthhut.protocol.roster): residents' profiles by pseudonym.

The collector publishes the roster retained on ``hh/v1/huts/{hut_id}/roster``; the uplink hands every
copy it receives to :meth:`HutRoster.update`. The latest good one is kept in ``roster.json`` in the state
folder, so that a hut restarted without a network still knows its residents. A roster that does not
validate, or names another hut, is refused and the one before is kept. An empty retained message
clears the roster.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from healthhut.gateway.identity.sessions import Profile
from healthhut.gateway.state import durable_replace
from healthhut.protocol import ProtocolError
from healthhut.protocol.roster import Roster, RosterEntry, decode_roster, encode_roster

log = logging.getLogger(__name__)

FILE_NAME = "roster.json"


class HutRoster:
    def __init__(self, hut_id: str, folder: Path) -> None:
        self.hut_id = hut_id
        self.path = folder / FILE_NAME
        self.roster: Roster | None = None
        self._index: dict[str, RosterEntry] = {}
        self.refused = 0
        self._load()

    @property
    def present(self) -> bool:
        """Has this hut a roster? Without one, no card can be called unknown."""
        return self.roster is not None

    def profile(self, pseudonym: str) -> Profile | None:
        """The resident's profile, or None if the pseudonym is not on the roster."""
        entry = self._index.get(pseudonym)
        if entry is None:
            return None
        return Profile(entry.birth_date, entry.age_band, entry.sex, frozenset(entry.clinical))

    def update(self, payload: bytes) -> bool:
        """Take a roster from the collector. True if it was taken (or cleared), False if refused."""
        if not payload:
            if self.roster is not None:
                log.warning("the collector cleared this hut's roster; cards are no longer checked")
            self._set(None)
            self.path.unlink(missing_ok=True)
            return True
        try:
            roster = decode_roster(payload)
        except ProtocolError as exc:
            # The reason names the field, never an entry's content.
            self.refused += 1
            log.warning("refused a roster from the collector (%s); keeping the one before", exc)
            return False
        if roster.hut_id != self.hut_id:
            self.refused += 1
            log.warning("refused a roster for hut %s sent to hut %s", roster.hut_id, self.hut_id)
            return False
        if self.roster is not None and roster.issued_at < self.roster.issued_at:
            log.info("ignored a roster older than the one held")
            return False
        durable_replace(self.path, encode_roster(roster))
        self._set(roster)
        log.info("roster of %d resident(s) issued %s taken", len(roster.entries), roster.issued_at.isoformat())
        return True

    def _set(self, roster: Roster | None) -> None:
        self.roster = roster
        self._index = roster.by_pseudonym() if roster is not None else {}

    def _load(self) -> None:
        try:
            payload = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            roster = decode_roster(payload)
            if roster.hut_id != self.hut_id:
                raise ProtocolError("invalid_field", f"it is hut {roster.hut_id}'s roster", "hut_id")
        except ProtocolError as exc:
            aside = self.path.with_suffix(".corrupt")
            os.replace(self.path, aside)
            log.error(
                "roster file %s is unusable (%s); moved to %s until the collector sends it again", self.path, exc, aside
            )
            return
        self._set(roster)
