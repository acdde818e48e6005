"""The card scanner identity source: its line decoder (whole, byte by byte, in garbage, fuzzed) and the
gateway over a real pty: a scan starts that resident's session under a pseudonym; a bad scan is told
to the kiosk without quoting it, and starts nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthhut.drivers import get_driver
from healthhut.drivers.id_scanner import ScanDecoder, ScannerConfig, encode_scan
from healthhut.firmware_sim.links import PtyLink
from healthhut.gateway.devices import DeviceSession
from healthhut.gateway.identity import SessionBook
from healthhut.gateway.outbox import Outbox, gap_item
from healthhut.gateway.spool import MemorySpool
from healthhut.gateway.state import GatewayState
from healthhut.protocol.pseudonym import PseudonymKey, generate_key_file
from tests.conftest import eventually

CODES = ["11010519491231002X", "H1234567890", "QR:310105200001011234"]
SLOW = os.environ.get("HEALTHHUT_SLOW") == "1"


@pytest.mark.parametrize("terminator", ["CR", "LF", "CRLF", "ETX"])
def test_codes_whole_and_one_byte_at_a_time(terminator: str) -> None:
    stream = b"".join(encode_scan(code, terminator) for code in CODES)  # type: ignore[arg-type]
    assert ScanDecoder(terminator).feed(stream) == CODES  # type: ignore[arg-type]
    decoder = ScanDecoder(terminator)  # type: ignore[arg-type]
    assert [code for i in range(len(stream)) for code in decoder.feed(stream[i : i + 1])] == CODES
    assert decoder.frame_errors == 0


def test_garbage_between_scans_is_counted_and_dropped_whole() -> None:
    decoder = ScanDecoder("CR")
    data = (
        encode_scan(CODES[0])
        + b"\x81\xff\x00noise\r"  # non-text bytes: one error, the line is dropped
        + b"\r"  # an empty scan
        + b"A" * 200  # a runaway line with no terminator for a long time...
        + b"B" * 10
        + b"\r"  # ...dropped whole when it ends, not cut into a code
        + b"\x02"
        + encode_scan(CODES[1])  # STX prefix allowed
        + b"x\x07y\r"  # a control character
    )
    assert decoder.feed(data) == CODES[:2]
    assert decoder.frame_errors == 4
    assert decoder.errors == [
        "a scan with non-ASCII bytes",
        "an empty scan",
        "a scan longer than 64 characters",
        "a scan with control characters",
    ]
    assert not any(CODES[0] in error for error in decoder.errors)


def test_codes_survive_random_garbage_around_them() -> None:
    rng = random.Random(4)
    decoder = ScanDecoder("CR")
    found: list[str] = []
    for code in CODES * 20:
        noise = bytes(rng.choice(b"\x00\x81\xfe\x07") for _ in range(rng.randint(0, 12))) + b"\r"
        data = noise + encode_scan(code)
        cut = rng.randint(0, len(data))
        found += decoder.feed(data[:cut]) + decoder.feed(data[cut:])
    assert found == CODES * 20


@settings(max_examples=100_000 if SLOW else 300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=8), st.sampled_from(["CR", "LF", "CRLF", "ETX"]))
def test_fuzz_never_raises_and_yields_only_clean_codes(chunks: list[bytes], terminator: str) -> None:
    decoder = ScanDecoder(terminator)  # type: ignore[arg-type]
    for chunk in chunks:
        for code in decoder.feed(chunk):
            assert 0 < len(code) <= 64 and code.isprintable() and code.isascii()


async def test_a_scan_on_a_pty_starts_the_residents_session(tmp_path: Path) -> None:
    key_file = tmp_path / "pseudonym.key"
    generate_key_file(key_file)
    key = PseudonymKey.load(key_file)
    residents = SessionBook()
    config = ScannerConfig(driver="id-scanner", name="card-1", path=str(tmp_path / "scanner"))
    session = DeviceSession(
        config,
        get_driver("id-scanner"),
        hut_id="hut-1",
        state=GatewayState(tmp_path / "state"),
        outbox=Outbox(MemorySpool(10**6, gap_item)),
        residents=residents,
        pseudonyms=key,
    )
    link = PtyLink(tmp_path / "scanner")
    link.open()
    task = asyncio.create_task(session.run())
    try:
        await eventually(lambda: session.connected)
        link.write(b"11010519\x07491231002X\r")  # a bad scan: no session, and the kiosk is told
        await eventually(lambda: residents.last_error is not None)
        assert residents.active is None
        assert residents.last_error is not None and "control characters" in residents.last_error[2]
        for byte in encode_scan(CODES[0]):  # typed out one character at a time, as a scanner does
            link.write(bytes([byte]))
            await asyncio.sleep(0.002)
        await eventually(lambda: residents.active is not None)
        active = residents.active
        assert active is not None and active.pseudonym == key.pseudonym(CODES[0])
        assert active.source == "scanner:card-1"
        link.write(encode_scan(CODES[1]))  # the next resident scans: the first session ends
        await eventually(lambda: residents.active is not None and residents.active.pseudonym != active.pseudonym)
        assert active.ended_at is not None and active.end_reason == "next resident"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        link.close()
