"""hut-sim as the two other identity sources, run as a technician runs it (a separate process) against the
gateway's real device sessions: `scan --card-reader` holding a card on an RDM6300 over a pty, and `scan
--hid` typing codes as a keyboard-style scanner's input events into a FIFO; and its refusals."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from healthhut.drivers.card_reader import CardReaderConfig
from healthhut.drivers.hid_scanner import HidScannerConfig
from healthhut.firmware_sim.cli import main
from healthhut.gateway.identity import SessionBook
from healthhut.protocol.pseudonym import PseudonymKey
from tests.conftest import eventually
from tests.firmware_sim.test_identity_tools import hut_sim
from tests.gateway.test_identity_sources import key, running

__all__ = ["key"]  # the fixture, shared with the gateway-level tests


async def test_a_card_held_on_the_simulated_reader_is_one_session(tmp_path: Path, key: PseudonymKey) -> None:
    residents = SessionBook()
    link = tmp_path / "card-reader"
    config = CardReaderConfig(driver="card-reader", name="reader", path=str(link))
    async with running(config, residents, key, tmp_path) as session:
        code, _, err = await hut_sim(
            "scan", "--card-reader", "--link", str(link), "--code", "62E3086CED", "--present", "1.5",
            "--interval", "1.5", "--hold", "0.3",
        )  # fmt: skip
        assert code == 0, err
        assert "presented card 1 of 1" in err and "62E3086CED" not in err
        await eventually(lambda: residents.active is not None)
        active = residents.active
        assert active is not None and active.pseudonym == key.pseudonym("62E3086CED")
        assert session.readings == 1  # about 30 frames while the card was on the reader: one read


async def test_the_simulated_keyboard_scanner_is_read_from_its_fifo(tmp_path: Path, key: PseudonymKey) -> None:
    residents = SessionBook()
    path = tmp_path / "hid-scanner"
    os.mkfifo(path)
    config = HidScannerConfig(driver="hid-scanner", name="hid", path=str(path))
    async with running(config, residents, key, tmp_path) as session:
        code, _, err = await hut_sim(
            "scan", "--hid", str(path), "--code", "11010519491231002X", "--code", "QR:Ab-9/x",
            "--interval", "0.3", "--hold", "0.3", "--key-delay", "0.001",
        )  # fmt: skip
        assert code == 0, err
        assert "scanned code 2 of 2" in err and "11010519491231002X" not in err
        await eventually(lambda: session.readings == 2)
        active = residents.active
        assert active is not None and active.pseudonym == key.pseudonym("QR:Ab-9/x")
    assert path.exists()  # hut-sim removes only a FIFO it made


async def test_hut_sim_makes_the_fifo_and_gives_up_when_nothing_reads_it(tmp_path: Path) -> None:
    # Nobody reads: hut-sim waits for a reader, says so, and removes the FIFO it made. Shortened for the test.
    path = tmp_path / "hid-scanner"
    code, err = await asyncio.wait_for(
        hut_sim_waiting_briefly(str(path)),
        timeout=60,
    )
    assert code == 1 and f"nothing read {path} within" in err
    assert not path.exists()


async def hut_sim_waiting_briefly(path: str) -> tuple[int, str]:
    program = (
        "import sys; from healthhut.firmware_sim import identity; identity.READER_WAIT_S = 0.3; "
        "from healthhut.firmware_sim.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", program, "scan", "--hid", path, "--code", "H1", "--interval", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, err.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hid", "/tmp/x", "--link", "/tmp/y"], "--hid writes to its own PATH"),
        (["--hid", "/tmp/x", "--terminator", "CR"], "ends a code with a key: --terminator ENTER or TAB"),
        (["--terminator", "ENTER"], "--terminator ENTER is a key: it needs --hid"),
        (["--card-reader", "--terminator", "ETX"], "leave out --terminator"),
        (["--card-reader", "--hid", "/tmp/x"], "not allowed with argument"),
    ],
)
def test_scan_refusals_say_why(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["scan", "--code", "62E3086CED", *args])
    assert caught.value.code == 2 and message in capsys.readouterr().err


def test_a_card_that_is_not_10_hex_digits_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--card-reader", "--code", "0008844356X", "--interval", "0"]) == 2
    assert "a card's data is 10 hex digits" in capsys.readouterr().err


def test_scan_help_has_examples_of_each_scanner(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    examples = capsys.readouterr().out.split("examples:\n", 1)[1].splitlines()
    assert sum("hut-sim scan --card-reader" in line for line in examples) >= 2
    assert sum("hut-sim scan --hid" in line for line in examples) >= 2
