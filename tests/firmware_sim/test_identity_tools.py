"""hut-sim's identity tools as a technician runs them (separate processes): `session` against the
gateway's real kiosk API, and `scan` typing a code into a pty that the gateway's id-scanner reads."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from healthhut.drivers import get_driver
from healthhut.drivers.id_scanner import ScannerConfig
from healthhut.gateway.devices import DeviceSession
from healthhut.gateway.identity import SessionBook
from healthhut.gateway.identity.kiosk import KioskApi
from healthhut.gateway.outbox import Outbox, gap_item
from healthhut.gateway.spool import MemorySpool
from healthhut.gateway.state import GatewayState
from healthhut.protocol.pseudonym import PseudonymKey, generate_key_file
from tests.conftest import eventually

RESIDENT = "11010520240301004X"


async def hut_sim(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "healthhut.firmware_sim.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def key(tmp_path: Path) -> PseudonymKey:
    path = tmp_path / "pseudonym.key"
    generate_key_file(path)
    return PseudonymKey.load(path)


async def test_session_start_show_and_end_through_the_kiosk_api(tmp_path: Path) -> None:
    pseudonyms = key(tmp_path)
    residents = SessionBook()
    api = KioskApi(residents, pseudonyms)
    await api.serve("127.0.0.1", 0)
    kiosk = f"http://127.0.0.1:{api.port}"
    born = datetime.now(UTC).date() - timedelta(days=45)
    try:
        code, out, err = await hut_sim(
            "session",
            "start",
            "--kiosk",
            kiosk,
            "--resident",
            RESIDENT,
            "--birth-date",
            born.isoformat(),
            "--sex",
            "male",
        )
        assert code == 0, err
        assert "started (age band 1m)" in out  # 45 days old: one completed month, whatever the month
        active = residents.active
        assert active is not None and active.pseudonym == pseudonyms.pseudonym(RESIDENT)
        code, out, _ = await hut_sim("session", "show", "--kiosk", kiosk)
        assert code == 0 and '"active": true' in out and RESIDENT not in out
        # A refusal carries the gateway's own words, and starts nothing new.
        code, _, err = await hut_sim("session", "start", "--kiosk", kiosk, "--resident", "X1", "--birth-date", "May")
        assert code == 1 and "the gateway refused: birth_date" in err
        code, out, _ = await hut_sim("session", "end", "--kiosk", kiosk)
        assert code == 0 and out.startswith(f"session {active.id} ended")
        assert residents.active is None
    finally:
        await api.close()


async def test_scan_types_a_code_that_the_gateway_reads_from_the_pty(tmp_path: Path) -> None:
    pseudonyms = key(tmp_path)
    residents = SessionBook()
    scanner = tmp_path / "card-scanner"
    session = DeviceSession(
        ScannerConfig(driver="id-scanner", name="cards", path=str(scanner)),
        get_driver("id-scanner"),
        hut_id="hut-1",
        state=GatewayState(tmp_path / "state"),
        outbox=Outbox(MemorySpool(10**6, gap_item)),
        residents=residents,
        pseudonyms=pseudonyms,
    )
    reader = asyncio.create_task(session.run())
    try:
        code, _, err = await hut_sim(
            "scan", "--link", str(scanner), "--code", RESIDENT, "--interval", "1.5", "--hold", "0.5"
        )
        assert code == 0, err
        assert "scanned code 1 of 1" in err
        await eventually(lambda: residents.active is not None)
        active = residents.active
        assert active is not None and active.pseudonym == pseudonyms.pseudonym(RESIDENT)
        assert active.source == "scanner:cards"
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def test_list_and_play_point_a_technician_at_scan_for_each_identity_source() -> None:
    code, out, _ = await hut_sim("list")
    assert code == 0
    played = {"id-scanner": "scan --link", "card-reader": "scan --card-reader", "hid-scanner": "scan --hid"}
    for driver, option in played.items():
        assert get_driver(driver).role == "identity"
        links = out.split(f"\n{driver} ", 1)[1].splitlines()[1].strip()
        assert links.startswith("links: none: it gives no readings") and f"hut-sim {option}" in links, links
        code, _, err = await hut_sim("play", driver)
        assert code != 0 and f"hut-sim {option}" in err, err
