"""The hut's roster: the profiles of the residents registered at a hut, keyed by pseudonym.

The collector publishes one roster per hut, retained, on ``hh/v1/huts/{hut_id}/roster``; the gateway
keeps the latest one on disk. When a resident scans a card, the gateway computes the card's pseudonym
and looks the profile up here: age (birth date or age band), sex, and the clinical flags that change
the alert rules. A card whose pseudonym is not on the roster is an unknown card.

A roster carries no name and no identifier: only pseudonyms, which only a holder of the deployment key
can link to a person. An empty payload (a retained message being cleared) means "no roster".
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, Field, StringConstraints, model_validator

from healthhut.protocol.wire import ClinicalFlag, HutId, StorableTime, _Model, _validate

# Collector to hut only, so larger than a hut's messages: 20,000 residents at ~150 bytes each.
MAX_ROSTER_BYTES = 4 * 1024 * 1024
MAX_ENTRIES = 20_000
AGE_BAND_PATTERN = r"^(\d{1,2}m|\d{1,2}y|\d{2}-\d{2}y|80\+y)$"

Pseudonym = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
AgeBand = Annotated[str, StringConstraints(pattern=AGE_BAND_PATTERN)]
Sex = Literal["female", "male", "unknown"]


def _not_a_number(value: object) -> object:
    # pydantic's lax mode reads a number as seconds since 1970: a spreadsheet's serial day number (45000)
    # would become a birth date in January 1970, an adult's rules applied to a child or the other way round.
    if isinstance(value, int | float):
        raise ValueError("a birth date is written as text, YYYY-MM-DD")
    return value


# A date (or, from JSON, its ISO text), from 1900 on.
BirthDate = Annotated[date, BeforeValidator(_not_a_number), Field(ge=date(1900, 1, 1))]


class RosterEntry(_Model):
    """One resident's profile: what the alert rules need, nothing that names them."""

    pseudonym: Pseudonym
    birth_date: BirthDate | None = None
    age_band: AgeBand | None = None
    sex: Sex = "unknown"
    clinical: list[ClinicalFlag] = Field(default_factory=list, max_length=4)

    @model_validator(mode="after")
    def _one_age(self) -> Self:
        if self.birth_date is not None and self.age_band is not None:
            raise ValueError("give either birth_date or age_band, not both")
        return self


class Roster(_Model):
    schema_version: Literal[1] = Field(default=1, alias="schema")
    type: Literal["roster"] = "roster"
    hut_id: HutId
    issued_at: StorableTime
    entries: list[RosterEntry] = Field(max_length=MAX_ENTRIES)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        seen: set[str] = set()
        for index, entry in enumerate(self.entries):
            if entry.pseudonym in seen:
                raise ValueError(f"entries[{index}] repeats a pseudonym")
            seen.add(entry.pseudonym)
        return self

    def by_pseudonym(self) -> dict[str, RosterEntry]:
        return {entry.pseudonym: entry for entry in self.entries}


def encode_roster(roster: Roster) -> bytes:
    return roster.model_dump_json(by_alias=True, exclude_none=True).encode()


def decode_roster(payload: bytes) -> Roster:
    """Parse a roster; ProtocolError saying what is wrong and where (never quoting an entry)."""
    return _validate(Roster, payload, MAX_ROSTER_BYTES)


__all__ = [
    "MAX_ENTRIES",
    "MAX_ROSTER_BYTES",
    "Roster",
    "RosterEntry",
    "decode_roster",
    "encode_roster",
]
