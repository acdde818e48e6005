"""The hut's roster of residents' profiles: built by the collector from a clinic's CSV register, published
retained to the hut, kept on the hut's disk, and used when a card is scanned. Unknown and unreadable cards
end the active session and tell the kiosk, and nothing measured afterwards is lost or given to anyone.

The end-to-end test runs the real ``hut-collector roster`` command against a real mosquitto, a real
``hut-gateway`` process reading a scanner on a pty, and hut-sim playing a pulse oximeter.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from healthhut.collector.cli import main as collector_main
from healthhut.collector.roster import RosterFileError, read_roster
from healthhut.devstack import LocalStack, free_port
from healthhut.devstack.programs import Programs
from healthhut.drivers.id_scanner import encode_scan
from healthhut.firmware_sim.links import PtyLink
from healthhut.gateway.identity import Profile, SessionBook, age_band
from healthhut.gateway.identity.roster import HutRoster
from healthhut.protocol import ObservationBatch, ProtocolError, decode
from healthhut.protocol.pseudonym import PseudonymKey
from healthhut.protocol.roster import Roster, RosterEntry, decode_roster, encode_roster
from tests.conftest import eventually
from tests.gateway.test_identity import key_file

__all__ = ["key_file"]  # the fixture, shared with the identity tests

KNOWN = "11010520250601002X"  # made-up resident ID numbers: an infant born 2025-06-01, registered
STRANGER = "110105194801010017"  # and a card the hut's roster does not have
P_KNOWN, P_OTHER = "a" * 64, "b" * 64
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def roster(hut: str = "hut-1", issued_at: datetime = T0, *entries: RosterEntry) -> Roster:
    return Roster(hut_id=hut, issued_at=issued_at, entries=list(entries))


INFANT = RosterEntry(pseudonym=P_KNOWN, birth_date=date(2025, 6, 1), sex="female", clinical=["diabetes"])


# -- the hut's copy ------------------------------------------------------------------------------------


def test_the_hut_keeps_the_latest_good_roster_across_restarts(tmp_path: Path) -> None:
    held = HutRoster("hut-1", tmp_path)
    assert not held.present and held.profile(P_KNOWN) is None
    assert held.update(encode_roster(roster("hut-1", T0, INFANT)))
    assert held.profile(P_KNOWN) == Profile(date(2025, 6, 1), None, "female", frozenset({"diabetes"}))
    assert held.profile(P_OTHER) is None

    # Refused, and the one before kept: another hut's, an older one, one that does not validate.
    assert not held.update(encode_roster(roster("hut-2", T0 + timedelta(1))))
    assert not held.update(encode_roster(roster("hut-1", T0 - timedelta(1))))
    assert not held.update(b'{"schema": 1, "type": "roster", "hut_id": "hut-1", "entries": "x"}')
    assert held.refused == 2 and held.profile(P_KNOWN) is not None

    again = HutRoster("hut-1", tmp_path)  # a restart without a network
    assert again.roster == held.roster

    assert held.update(b"")  # the collector cleared it
    assert not held.present and not (tmp_path / "roster.json").exists()
    assert not HutRoster("hut-1", tmp_path).present


def test_a_damaged_roster_file_is_moved_aside_and_the_hut_runs_on(tmp_path: Path) -> None:
    (tmp_path / "roster.json").write_bytes(b'{"schema": 1, "type": "roster", "hut_id": "hut-1", "iss')
    held = HutRoster("hut-1", tmp_path)
    assert not held.present
    assert (tmp_path / "roster.corrupt").exists() and not (tmp_path / "roster.json").exists()


def test_a_roster_refuses_two_ages_and_repeated_residents() -> None:
    with pytest.raises(ValueError, match="either birth_date or age_band"):
        RosterEntry(pseudonym=P_KNOWN, birth_date=date(2025, 6, 1), age_band="1y")
    twice = json.loads(encode_roster(roster("hut-1", T0, INFANT)))
    twice["entries"].append({**twice["entries"][0], "sex": "male"})
    with pytest.raises(ProtocolError, match="entries\\[1\\] repeats a pseudonym"):
        decode_roster(json.dumps(twice).encode())


# -- cards at the hut ---------------------------------------------------------------------------------


def book_with(tmp_path: Path, *entries: RosterEntry) -> SessionBook:
    held = HutRoster("hut-1", tmp_path)
    if entries:
        held.update(encode_roster(roster("hut-1", T0, *entries)))
    return SessionBook(clock=lambda: T0, roster=held)


@pytest.mark.parametrize("birth_date", [45000, 1.6e9, True, "1899-12-31", "1 May 2020"])
def test_a_roster_refuses_a_birth_date_that_is_not_a_date(birth_date: object) -> None:
    # Lax parsing would read 45000 as 1970-01-01 plus 45000 seconds: a child's profile made an adult's.
    payload = json.dumps(
        {
            "schema": 1,
            "type": "roster",
            "hut_id": "hut-1",
            "issued_at": "2026-11-22T09:00:00Z",
            "entries": [{"pseudonym": P_KNOWN, "birth_date": birth_date}],
        }
    ).encode()
    with pytest.raises(ProtocolError) as caught:
        decode_roster(payload)
    assert caught.value.location == "entries[0].birth_date", caught.value


def test_a_roster_takes_a_birth_date_written_as_a_date() -> None:
    payload = json.dumps(
        {
            "schema": 1,
            "type": "roster",
            "hut_id": "hut-1",
            "issued_at": "2026-11-22T09:00:00Z",
            "entries": [{"pseudonym": P_KNOWN, "birth_date": "2025-06-01"}],
        }
    ).encode()
    assert decode_roster(payload).entries[0].birth_date == date(2025, 6, 1)


def test_a_known_card_starts_a_session_with_the_rosters_profile(tmp_path: Path) -> None:
    book = book_with(tmp_path, INFANT)
    session = book.admit_card(P_KNOWN, "scanner:card-1")
    assert session is not None and book.active is session
    subject = book.attribute(T0).subject
    assert subject is not None
    assert (subject.pseudonym, subject.age_band, subject.sex, subject.clinical) == (
        P_KNOWN,
        "1y",
        "female",
        ["diabetes"],
    )


def test_an_unknown_card_starts_nothing_and_ends_the_previous_residents_session(tmp_path: Path) -> None:
    book = book_with(tmp_path, INFANT)
    first = book.admit_card(P_KNOWN, "scanner:card-1")
    assert book.admit_card(P_OTHER, "scanner:card-1") is None
    assert book.active is None and first is not None and first.end_reason == "unknown card"
    assert book.last_error is not None and book.last_error[1] == "unknown_card"
    assert book.attribute(T0 + timedelta(seconds=30)).subject is None  # later readings: anonymous


def test_without_a_roster_every_card_is_admitted_with_an_empty_profile(tmp_path: Path) -> None:
    book = book_with(tmp_path)
    session = book.admit_card(P_OTHER, "scanner:card-1")
    assert session is not None and session.profile == Profile()


def test_an_unreadable_scan_ends_the_active_session(tmp_path: Path) -> None:
    book = book_with(tmp_path, INFANT)
    first = book.admit_card(P_KNOWN, "scanner:card-1")
    book.refuse_scan("card-1", "a scan with control characters")
    assert book.active is None and first is not None and first.end_reason == "bad scan"
    assert book.last_error == (T0, "bad_scan", "card-1: a scan with control characters; please scan again")


# -- the clinic's register ----------------------------------------------------------------------------


def test_a_register_with_identifiers_becomes_a_roster_of_pseudonyms(tmp_path: Path, key_file: Path) -> None:
    register = tmp_path / "hut-1.csv"
    register.write_text(
        "\ufeffresident_id,birth_date,age_band,sex,clinical\n"
        f"{KNOWN},2025-06-01,,女,diabetes\n"
        "\n"
        f"{STRANGER},,70-79y,male,hypertension_treated;hypercapnic_respiratory_failure\n",
        encoding="utf-8",
    )
    key = PseudonymKey.load(key_file)
    built = read_roster(register, "hut-1", key, T0)
    assert built == Roster(
        hut_id="hut-1",
        issued_at=T0,
        entries=[
            RosterEntry(
                pseudonym=key.pseudonym(KNOWN), birth_date=date(2025, 6, 1), sex="female", clinical=["diabetes"]
            ),
            RosterEntry(
                pseudonym=key.pseudonym(STRANGER),
                age_band="70-79y",
                sex="male",
                clinical=["hypertension_treated", "hypercapnic_respiratory_failure"],
            ),
        ],
    )
    assert KNOWN.encode() not in encode_roster(built)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("name,pseudonym\nZhang San," + "a" * 64 + "\n", ":1: column name: unknown column"),
        ("pseudonym,sex\n" + "a" * 64 + ",female\n" + "a" * 64 + ",male\n", ":3: the same resident as line 2"),
        ("pseudonym,birth_date\n" + "a" * 64 + ",01/06/2025\n", ":2: column birth_date: not a date"),
        ("pseudonym,birth_date\n" + "a" * 64 + ",2099-01-01\n", ":2: column birth_date: the birth date is in the"),
        ("pseudonym,sex\n" + "a" * 64 + ",robot\n", ":2: column sex: Input should be"),
        ("pseudonym,clinical\n" + "a" * 64 + ",smoker\n", ":2: column clinical: Input should be"),
        ("pseudonym\n" + "a" * 63 + "\n", ":2: column pseudonym: String should match"),
        ("resident_id\n" + KNOWN + "\n", ":2: column resident_id: resident_id needs the deployment key"),
        ("resident_id,pseudonym\n", ":1: give exactly one of the columns"),
        ("", ":1: it is empty"),
        ("pseudonym,sex\n" + "a" * 64 + ",female,extra\n", ":2: more fields than columns"),
    ],
)
def test_a_bad_register_is_refused_naming_line_and_column_never_the_value(
    tmp_path: Path, text: str, where: str
) -> None:
    register = tmp_path / "hut-1.csv"
    register.write_text(text, encoding="utf-8")
    with pytest.raises(RosterFileError) as caught:
        read_roster(register, "hut-1", None, T0)
    message = str(caught.value)
    assert message.startswith(f"{register}{where}"), message
    for value in ("Zhang San", "01/06/2025", "2099", "robot", "smoker", KNOWN, "a" * 63):
        assert value not in message


def test_a_register_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    register = tmp_path / "hut-1.csv"
    register.write_bytes(b"pseudonym,sex\n" + b"a" * 64 + ",\xc5\xae\xff\n".encode("latin-1"))
    with pytest.raises(RosterFileError, match="not UTF-8"):
        read_roster(register, "hut-1", None, T0)


# -- end to end ---------------------------------------------------------------------------------------


async def test_the_collectors_roster_reaches_the_hut_and_decides_whose_readings_are_whose(
    stack: LocalStack, tmp_path: Path, unique: str, key_file: Path
) -> None:
    hut = f"hut-{unique}"
    key = PseudonymKey.load(key_file)
    known = key.pseudonym(KNOWN)
    band = age_band(date(2025, 6, 1), datetime.now(UTC))
    register = tmp_path / "register.csv"
    register.write_text(f"resident_id,birth_date,sex,clinical\n{KNOWN},2025-06-01,female,diabetes\n")
    (tmp_path / "collector.toml").write_text(
        f'[mqtt]\nport = {stack.mosquitto.port}\nclient_id = "c-{hut}"\nsession_expiry_s = 10\n'
        f'[storage]\ntype = "influxdb1"\nurl = "{stack.influxd.url}"\n'
        f'[dead_letters]\npath = "{tmp_path / "dead.sqlite"}"\n'
    )
    kiosk_port = free_port()
    (tmp_path / "gateway.toml").write_text(
        f'hut_id = "{hut}"\nstate_dir = "{tmp_path / "state"}"\n[mqtt]\nport = {stack.mosquitto.port}\n'
        f"[uplink]\nbatch_interval_s = 0.2\n"
        f'[identity]\nkey_file = "{key_file}"\nkiosk_port = {kiosk_port}\n'
        f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-1"\npath = "{tmp_path / "ox"}"\n'
        f"report_interval_s = 1\nstrip_seconds = 2\n"
        f'[[devices]]\ndriver = "id-scanner"\nname = "card-1"\npath = "{tmp_path / "scanner"}"\n'
    )
    publish = ["roster", "--config", str(tmp_path / "collector.toml"), "--hut", hut, "--file", str(register)]
    # Published before the hut is up: it is retained, so the hut gets it when it subscribes.
    assert await asyncio.to_thread(collector_main, [*publish, "--key", str(key_file)]) == 0

    batches: list[ObservationBatch] = []
    scanner = PtyLink(tmp_path / "scanner")
    scanner.open()
    async with aiomqtt.Client("127.0.0.1", stack.mosquitto.port) as observer, aiohttp.ClientSession() as http:
        await observer.subscribe(f"hh/v1/huts/{hut}/obs", qos=1)

        async def watch() -> None:
            async for message in observer.messages:
                decoded = decode("obs", bytes(message.payload))  # type: ignore[arg-type]
                assert isinstance(decoded, ObservationBatch)
                batches.append(decoded)

        def subjects() -> list[tuple[str | None, str | None, tuple[str, ...]]]:
            return [
                (o.subject.pseudonym, o.subject.age_band, tuple(o.subject.clinical)) if o.subject else (None, None, ())
                for b in batches
                for o in b.observations
            ]

        async def problem(code: str) -> dict[str, Any]:
            """What the kiosk shows, once it shows a problem with ``code``."""
            while True:
                async with http.get(f"http://127.0.0.1:{kiosk_port}/v1/session") as response:
                    reply: dict[str, Any] = await response.json()
                if (reply.get("last_error") or {}).get("code") == code:
                    return reply
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        try:
            with Programs(tmp_path / "logs") as programs:
                programs.start("sim", "hut-sim", "play", "contec-cms50", "--link", str(tmp_path / "ox"), "-q")
                programs.start("gateway", "hut-gateway", "run", "--config", str(tmp_path / "gateway.toml"))
                await asyncio.to_thread(programs.wait_for_log, "gateway", "roster of 1 resident")
                await eventually(lambda: len(subjects()) >= 2, within=30)

                scanner.write(encode_scan(KNOWN))  # a registered card: the roster's profile comes with it
                await eventually(lambda: subjects().count((known, band, ("diabetes",))) >= 2, within=30)

                scanner.write(encode_scan(STRANGER))  # a card not on the roster: nobody's readings
                reply = await asyncio.wait_for(problem("unknown_card"), 15)
                assert reply["active"] is False
                before = len(subjects())
                await eventually(lambda: len(subjects()) >= before + 3, within=30)

                scanner.write(encode_scan(KNOWN))
                await eventually(lambda: subjects()[-1][0] == known, within=30)
                scanner.write(b"1101\x0752\r")  # an unreadable scan ends the known resident's session
                reply = await asyncio.wait_for(problem("bad_scan"), 15)
                assert reply["active"] is False
                mark = len(subjects())
                await eventually(lambda: len(subjects()) >= mark + 2, within=30)
                assert programs.stop("gateway") == 0
        finally:
            watcher.cancel()
            scanner.close()

    taken = subjects()
    # Anonymous before any card; the registered infant's readings carry the roster's profile; after the
    # stranger's card and after the unreadable scan, anonymous again. Nobody else's pseudonym appears.
    assert taken[0] == (None, None, ())
    assert {s for s in taken if s[0] is not None} == {(known, band, ("diabetes",))}
    assert taken[-1] == (None, None, ())
    stored = json.loads((tmp_path / "state" / "roster.json").read_text())
    assert [entry["pseudonym"] for entry in stored["entries"]] == [known]
    assert KNOWN not in (tmp_path / "state" / "roster.json").read_text()
