"""Hut rosters: the residents registered at a hut, published to it retained (see protocol/roster.py).

A clinic exports its register of a hut's residents as CSV, with a header row and these columns:

- ``pseudonym`` (64 hex digits), or ``resident_id`` together with ``--key``: the identifier is turned
  into its pseudonym here, in memory, and never written anywhere;
- ``birth_date`` (YYYY-MM-DD) or ``age_band`` (``7m``, ``4y``, ``70-79y``, ``80+y``), either or none;
- ``sex``: ``female``/``male``/``unknown`` (or 女/男), empty for unknown;
- ``clinical``: flags separated by ``;``: ``hypercapnic_respiratory_failure``, ``pregnancy``,
  ``diabetes``, ``hypertension_treated``.

There is no name column, and an unknown column is refused, so a name cannot slip through. Errors name
the file, the line and the column, never the value (it may be an identifier or a birth date).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from healthhut.collector.config import MqttConfig
from healthhut.collector.mqtt import make_client
from healthhut.protocol import hut_topic
from healthhut.protocol.pseudonym import PseudonymKey
from healthhut.protocol.roster import MAX_ROSTER_BYTES, Roster, RosterEntry, encode_roster

log = logging.getLogger(__name__)

COLUMNS = ("pseudonym", "resident_id", "birth_date", "age_band", "sex", "clinical")
_SEX = {"": "unknown", "女": "female", "男": "male", "f": "female", "m": "male"}


class RosterFileError(Exception):
    def __init__(self, path: Path, message: str, line: int | None = None, column: str | None = None) -> None:
        self.path, self.line, self.column = path, line, column
        where = str(path) + (f":{line}" if line is not None else "") + (f": column {column}" if column else "")
        super().__init__(f"{where}: {message}")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")  # Excel writes a byte-order mark
    except OSError as exc:
        raise RosterFileError(path, f"cannot read it: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        try:
            header = [name.strip() for name in reader.fieldnames or []]
            if not header:
                raise RosterFileError(path, "it is empty; the first line names the columns", 1)
            for name in header:
                if name not in COLUMNS:
                    raise RosterFileError(path, f"unknown column; the columns are {', '.join(COLUMNS)}", 1, name)
            if ("pseudonym" in header) == ("resident_id" in header):
                raise RosterFileError(path, "give exactly one of the columns pseudonym and resident_id", 1)
            reader.fieldnames = header
            for row in reader:
                if None in row:
                    raise RosterFileError(path, "more fields than columns", reader.line_num)
                yield reader.line_num, {k: (v or "").strip() for k, v in row.items()}
        except UnicodeDecodeError:
            raise RosterFileError(path, "it is not UTF-8 text", reader.line_num + 1) from None
        except csv.Error as exc:
            raise RosterFileError(path, f"not CSV: {exc}", reader.line_num) from None


def _entry(row: dict[str, str], key: PseudonymKey | None, path: Path, line: int) -> dict[str, Any]:
    if "resident_id" in row:
        if key is None:
            raise RosterFileError(path, "resident_id needs the deployment key (--key)", line, "resident_id")
        try:
            pseudonym = key.pseudonym(row["resident_id"])
        except ValueError as exc:  # never quotes the identifier
            raise RosterFileError(path, str(exc), line, "resident_id") from None
    else:
        pseudonym = row["pseudonym"].lower()
    sex = row.get("sex", "")
    fields: dict[str, Any] = {
        "pseudonym": pseudonym,
        "sex": _SEX.get(sex.lower(), sex.lower()),
        "clinical": [flag.strip() for flag in row.get("clinical", "").split(";") if flag.strip()],
    }
    if row.get("birth_date"):
        try:
            fields["birth_date"] = date.fromisoformat(row["birth_date"])
        except ValueError:
            raise RosterFileError(path, "not a date (YYYY-MM-DD)", line, "birth_date") from None
    if row.get("age_band"):
        fields["age_band"] = row["age_band"]
    return fields


def read_roster(path: Path, hut_id: str, key: PseudonymKey | None = None, issued_at: datetime | None = None) -> Roster:
    """The roster in a clinic's CSV file, checked line by line. RosterFileError saying where, if not."""
    entries: list[RosterEntry] = []
    lines: dict[str, int] = {}
    today = (issued_at or datetime.now(UTC)).date()
    for line, row in _rows(path):
        if not any(row.values()):
            continue
        fields = _entry(row, key, path, line)
        try:
            entry = RosterEntry.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
            column = str(first["loc"][0]) if first["loc"] else None
            raise RosterFileError(path, first["msg"], line, column) from None
        if entry.birth_date is not None and entry.birth_date > today:
            raise RosterFileError(path, "the birth date is in the future", line, "birth_date")
        if entry.pseudonym in lines:
            raise RosterFileError(path, f"the same resident as line {lines[entry.pseudonym]}", line)
        lines[entry.pseudonym] = line
        entries.append(entry)
    try:
        roster = Roster(hut_id=hut_id, issued_at=issued_at or datetime.now(UTC), entries=entries)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        raise RosterFileError(path, f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if len(encode_roster(roster)) > MAX_ROSTER_BYTES:
        raise RosterFileError(path, f"the roster is larger than {MAX_ROSTER_BYTES // 1024 // 1024} MiB; split the hut")
    return roster


async def publish_roster(mqtt: MqttConfig, client_id: str, hut_id: str, roster: Roster | None) -> None:
    """Publish ``roster`` retained to the hut (None clears it), and return once the broker has it."""
    payload = encode_roster(roster) if roster is not None else b""
    async with make_client(mqtt, f"{client_id}-roster") as client:
        await client.publish(hut_topic(hut_id, "roster"), payload, qos=1, retain=True)
    log.info("roster of %d resident(s) published to hut %s", len(roster.entries) if roster else 0, hut_id)
