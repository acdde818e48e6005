"""Resident identity at the hut: pseudonyms (checked against openssl's HMAC), sessions and attribution by
time, and the kiosk's local API over real HTTP on loopback."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from healthhut.gateway.identity import Profile, SessionBook, age_band
from healthhut.gateway.identity.kiosk import KioskApi
from healthhut.protocol.pseudonym import PseudonymKey, PseudonymKeyError, generate_key_file
from tests.conftest import born_months_ago

RESIDENT = "11010519491231002X"  # the format of a resident ID number (a made-up one)
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "pseudonym.key"
    generate_key_file(path)
    return path


def openssl_hmac(key_hex: str, message: str) -> str:
    result = subprocess.run(
        ["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{key_hex}"],
        input=message.encode(),
        capture_output=True,
        check=True,
    )
    return result.stdout.decode().split("= ")[-1].strip()


def test_a_pseudonym_is_hmac_sha256_of_the_normalised_identifier(key_file: Path) -> None:
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    key = PseudonymKey.load(key_file)
    expected = openssl_hmac(key_file.read_text().strip(), RESIDENT)
    assert key.pseudonym(RESIDENT) == expected
    # The check letter read in lower case, or with a scanner's stray whitespace: the same resident.
    assert key.pseudonym(" 11010519491231002x\n") == expected
    assert key.pseudonym("110105194912310039") != expected
    assert key.match(expected, ["110105194912310039", RESIDENT.lower(), "not an id"]) == RESIDENT.lower()
    assert RESIDENT not in repr(key) and key_file.read_text().strip() not in repr(key)


@pytest.mark.parametrize(
    ("content", "mode", "problem"),
    [
        ("ab" * 32, 0o644, "owner only"),
        ("zz" * 32, 0o600, "hex digits"),
        ("ab" * 8, 0o600, "shorter than 32 bytes"),
    ],
)
def test_a_bad_key_file_is_refused_with_its_path(tmp_path: Path, content: str, mode: int, problem: str) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(PseudonymKeyError) as caught:
        PseudonymKey.load(path)
    assert str(path) in str(caught.value) and problem in str(caught.value)
    with pytest.raises(PseudonymKeyError, match="cannot read"):
        PseudonymKey.load(tmp_path / "missing.key")


def test_an_existing_key_is_never_overwritten(key_file: Path) -> None:
    with pytest.raises(FileExistsError):
        generate_key_file(key_file)


@pytest.mark.parametrize(
    ("birth", "at", "band"),
    [
        (date(2026, 9, 23), date(2026, 11, 22), "1m"),  # one day short of two months
        (date(2026, 9, 22), date(2026, 11, 22), "2m"),
        (date(2025, 11, 23), date(2026, 11, 22), "11m"),
        (date(2025, 11, 22), date(2026, 11, 22), "1y"),
        (date(2009, 1, 1), date(2026, 11, 22), "17y"),
        (date(2008, 11, 22), date(2026, 11, 22), "18-39y"),
        (date(1980, 6, 1), date(2026, 11, 22), "40-49y"),
        (date(1949, 12, 31), date(2026, 11, 22), "70-79y"),
        (date(1946, 11, 22), date(2026, 11, 22), "80+y"),
    ],
)
def test_age_bands(birth: date, at: date, band: str) -> None:
    assert age_band(birth, datetime(at.year, at.month, at.day, 12, tzinfo=UTC)) == band


def book() -> SessionBook:
    return SessionBook(idle_timeout=timedelta(minutes=5), ambiguity=timedelta(seconds=10), clock=lambda: T0)


def test_readings_belong_to_the_session_active_at_their_time() -> None:
    sessions = book()
    assert sessions.attribute(T0).subject is None  # nobody yet: anonymous
    grandma = sessions.start("a" * 64, Profile(birth_date=date(1950, 3, 1), sex="female"), "kiosk", at=T0)
    inside = sessions.attribute(T0 + timedelta(minutes=1))
    assert inside.subject is not None and inside.session_id == grandma.id
    assert (inside.subject.pseudonym, inside.subject.age_band, inside.subject.sex) == ("a" * 64, "70-79y", "female")
    sessions.end(at=T0 + timedelta(minutes=2))
    assert sessions.attribute(T0 + timedelta(minutes=3)).subject is None
    # A glucose record fetched later through RACP: attributed by its device time, to the session then.
    late = sessions.attribute(T0 + timedelta(hours=1), device_time=T0 + timedelta(seconds=90))
    assert late.subject is not None and late.subject.pseudonym == "a" * 64


def test_a_session_ends_after_its_idle_time_and_when_the_next_resident_starts() -> None:
    sessions = book()
    sessions.start("a" * 64, Profile(), "kiosk", at=T0)
    sessions.attribute(T0 + timedelta(minutes=4))  # a reading keeps it alive
    assert sessions.attribute(T0 + timedelta(minutes=8)).subject is not None
    assert sessions.attribute(T0 + timedelta(minutes=14)).subject is None  # idle for more than 5 minutes
    first = sessions.start("b" * 64, Profile(), "kiosk", at=T0 + timedelta(minutes=20))
    second = sessions.start("c" * 64, Profile(clinical=frozenset({"diabetes"})), "kiosk", at=T0 + timedelta(minutes=25))
    assert first.ended_at == T0 + timedelta(minutes=25) and first.end_reason == "next resident"
    owner = sessions.attribute(T0 + timedelta(minutes=26))
    assert owner.session_id == second.id and owner.subject is not None and owner.subject.clinical == ["diabetes"]


def test_a_reading_between_two_residents_without_device_time_is_a_conflict_not_a_guess() -> None:
    sessions = book()
    sessions.start("a" * 64, Profile(), "kiosk", at=T0)
    sessions.start("b" * 64, Profile(), "kiosk", at=T0 + timedelta(minutes=2))
    unsure = sessions.attribute(T0 + timedelta(minutes=2, seconds=4))
    assert unsure.conflict and unsure.subject is None
    # With the cuff's own time, there is no doubt; and a little later the new resident owns it.
    sure = sessions.attribute(T0 + timedelta(minutes=2, seconds=4), device_time=T0 + timedelta(minutes=1, seconds=30))
    assert sure.subject is not None and sure.subject.pseudonym == "a" * 64
    later = sessions.attribute(T0 + timedelta(minutes=2, seconds=30))
    assert not later.conflict and later.subject is not None and later.subject.pseudonym == "b" * 64


def test_a_birth_date_after_the_session_is_refused() -> None:
    with pytest.raises(ValueError, match="birth date"):
        book().start("a" * 64, Profile(birth_date=date(2027, 1, 1)), "kiosk", at=T0)


async def test_kiosk_api_starts_shows_and_ends_sessions(key_file: Path) -> None:
    sessions = SessionBook()
    api = KioskApi(sessions, PseudonymKey.load(key_file))
    await api.serve("127.0.0.1", 0)
    url = f"http://127.0.0.1:{api.port}/v1/session"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as response:
                assert (response.status, await response.json()) == (200, {"active": False})
            birth = born_months_ago(10).isoformat()
            body = {"resident_id": RESIDENT, "birth_date": birth, "sex": "male", "clinical": []}
            async with http.post(url, json=body) as response:
                started = await response.json()
                assert response.status == 201 and started["age_band"] == "10m"
            active = sessions.active
            assert active is not None and active.pseudonym == PseudonymKey.load(key_file).pseudonym(RESIDENT)
            async with http.get(url) as response:
                shown = await response.json()
                assert shown["active"] and shown["session"] == started["session"]
                assert RESIDENT not in str(shown) and active.pseudonym not in str(shown)
            async with http.delete(url) as response:
                assert (response.status, (await response.json())["ended"]) == (200, started["session"])
            async with http.delete(url) as response:
                assert response.status == 404
    finally:
        await api.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b'{"birth_date": "2020-01-01"}', "resident_id"),
        (b'{"resident_id": "11010519491231002X", "birth_date": "1 May"}', "birth_date"),
        (b'{"resident_id": "11010519491231002X", "birth_date": "2099-01-01"}', "birth_date"),
        # A spreadsheet's serial day number, which pydantic's lax mode would read as seconds since 1970.
        (b'{"resident_id": "11010519491231002X", "birth_date": 45000}', "birth_date"),
        (b'{"resident_id": "11010519491231002X", "birth_date": "1899-12-31"}', "birth_date"),
        (b'{"resident_id": "11010519491231002X", "sex": "x"}', "sex"),
        (b'{"resident_id": "11010519491231002X", "clinical": ["asthma"]}', "clinical.0"),
        (b'{"resident_id": "11010519491231002X", "name": "Wang"}', "name"),
        (b'{"resident_id": "1101 0519"}', "resident_id"),
        (b'{"resident_id": "11010519491231002X", "age_band": "old"}', "age_band"),
    ],
)
async def test_kiosk_api_refuses_bad_fields_without_quoting_them(
    key_file: Path, body: bytes, field: str | None
) -> None:
    sessions = SessionBook()
    api = KioskApi(sessions, PseudonymKey.load(key_file))
    await api.serve("127.0.0.1", 0)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{api.port}/v1/session", data=body) as response,
        ):
            reply = await response.json()
    finally:
        await api.close()
    assert response.status == 400 and reply["field"] == field and reply["error"]
    assert "11010519491231002X" not in reply["error"] and "Wang" not in reply["error"]
    assert sessions.active is None


async def test_a_bad_kiosk_call_leaves_the_active_session_and_its_readings_alone(key_file: Path) -> None:
    sessions = SessionBook()
    key = PseudonymKey.load(key_file)
    api = KioskApi(sessions, key)
    await api.serve("127.0.0.1", 0)
    url = f"http://127.0.0.1:{api.port}/v1/session"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"resident_id": RESIDENT, "age_band": "70-79y"}) as response:
                assert response.status == 201
            first = sessions.active
            assert first is not None
            for body in (b"{not json", b'{"resident_id": "other", "birth_date": 45000}', b'{"name": "Wang"}'):
                async with http.post(url, data=body) as response:
                    assert response.status == 400
            async with http.delete(f"http://127.0.0.1:{api.port}/v1/sessions") as response:
                assert response.status in (404, 405)
    finally:
        await api.close()
    # The resident at the kiosk is still the one signed in, and a reading now is theirs.
    assert sessions.active is first
    subject = sessions.attribute(datetime.now(UTC)).subject
    assert subject is not None and subject.pseudonym == key.pseudonym(RESIDENT)


async def test_the_kiosk_api_listens_on_loopback_only(key_file: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        await KioskApi(SessionBook(), PseudonymKey.load(key_file)).serve("0.0.0.0", 0)


def test_a_stored_record_without_a_trusted_time_is_not_given_to_whoever_is_signed_in(tmp_path: Path) -> None:
    from healthhut.drivers import get_driver
    from healthhut.gateway.clock import ClockCheck
    from healthhut.gateway.devices import DeviceSession
    from healthhut.gateway.outbox import Outbox, gap_item
    from healthhut.gateway.spool import MemorySpool
    from healthhut.gateway.state import GatewayState
    from healthhut.protocol import Flag, Kind, Quantity, Reading

    book = SessionBook(idle_timeout=timedelta(minutes=5), ambiguity=timedelta(seconds=10), clock=lambda: T0)
    book.start("ab" * 32, Profile(None, "70-79y", "female", frozenset()), "kiosk", at=T0)

    def session(driver: str) -> DeviceSession:
        spec = get_driver(driver)
        config = spec.config_model.model_validate({"driver": driver, "name": "d-1", "address": "C0:FF:EE:00:00:02"})
        return DeviceSession(
            config,
            spec,
            hut_id="hut-1",
            state=GatewayState(tmp_path / driver),
            outbox=Outbox(MemorySpool(10**6, gap_item)),
            clock_check=ClockCheck(timedelta(seconds=300), probe=lambda: True),
            residents=book,
        )

    now = T0 + timedelta(minutes=1)
    old = Reading(
        kind=Kind.BLOOD_GLUCOSE, values={"glucose": Quantity(3.2, "mmol/L")}, measured_at=T0 - timedelta(days=3)
    )
    unverified = frozenset({Flag.CLOCK_UNVERIFIED})
    meter, cuff = session("ble-glucose"), session("ble-blood-pressure")
    assert meter.keeps_records and not cuff.keeps_records
    assert meter._attribute(old, now, unverified) == (None, frozenset())
    # A cuff keeps no records: what it sends it has just measured, so arrival time decides.
    subject, _ = cuff._attribute(old, now, unverified)
    assert subject is not None and subject.pseudonym == "ab" * 32
    # With a trusted time the meter's record is placed by it: three days ago nobody was signed in.
    trusted_old = Reading(
        kind=Kind.BLOOD_GLUCOSE, values={"glucose": Quantity(3.2, "mmol/L")}, measured_at=now - timedelta(seconds=30)
    )
    subject, _ = meter._attribute(trusted_old, now, frozenset())
    assert subject is not None
