"""hut-sim's identity tools: a card scanner that types a code like a real one (on a serial line, as a
125 kHz card reader, or as a keyboard through an input device's events), and the kiosk's session calls
(``hut-sim session start|end|show``), for technicians testing a hut's resident sessions."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from healthhut.drivers.card_reader import encode_frame
from healthhut.drivers.hid_scanner import codec as hid
from healthhut.drivers.id_scanner import encode_scan
from healthhut.drivers.id_scanner.codec import Terminator
from healthhut.firmware_sim.errors import SimError
from healthhut.firmware_sim.links import PtyLink

DEFAULT_KIOSK = "http://127.0.0.1:8765"
# A scanner in USB COM mode sends a code in one burst; typing it out byte by byte at 1 ms also exercises
# a reader that gets it in pieces.
CHARACTER_DELAY_S = 0.001


async def scan(link: Path | None, codes: list[str], terminator: Terminator, interval: float, hold: float) -> None:
    """Open a pty (symlinked at ``link``), give the gateway a moment to open it, type each code, then
    keep the line open for ``hold`` seconds."""
    pty = PtyLink(link)
    name = pty.open()
    print(f"scanner on {link or name}", file=sys.stderr, flush=True)
    try:
        await asyncio.sleep(interval)
        for number, code in enumerate(codes, 1):
            try:
                data = encode_scan(code, terminator)
            except UnicodeEncodeError:
                raise ValueError("a scanner sends ASCII codes only") from None
            for byte in data:
                pty.write(bytes([byte]))
                await asyncio.sleep(CHARACTER_DELAY_S)
            print(f"scanned code {number} of {len(codes)}", file=sys.stderr, flush=True)
            if number < len(codes):
                await asyncio.sleep(interval)
        await asyncio.sleep(hold)
    finally:
        pty.close()


# An RDM6300 sends a card's frame again every 50-65 ms while it stays in the field (drivers/card_reader).
CARD_REPEAT_S = 0.05
# How long a keyboard-style scanner waits for the gateway to open its FIFO.
READER_WAIT_S = 30.0


async def present_cards(link: Path | None, cards: list[str], interval: float, hold: float, present: float) -> None:
    """Be an RDM6300 card reader on a pty (symlinked at ``link``): each card (10 hex digits) stays on the
    reader for ``present`` seconds, its frame sent every 50 ms meanwhile, as the real reader does."""
    frames = [encode_frame(card) for card in cards]  # ValueError before anything opens
    pty = PtyLink(link)
    name = pty.open()
    print(f"card reader on {link or name}", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(interval)
        for number, frame in enumerate(frames, 1):
            leaves = loop.time() + present
            while True:
                pty.write(frame)
                await asyncio.sleep(CARD_REPEAT_S)
                if loop.time() >= leaves:
                    break
            print(f"presented card {number} of {len(frames)}", file=sys.stderr, flush=True)
            if number < len(frames):
                await asyncio.sleep(interval)
        await asyncio.sleep(hold)
    finally:
        pty.close()


async def type_keys(
    path: Path,
    codes: list[str],
    terminator: hid.Terminator,
    interval: float,
    hold: float,
    key_delay: float,
    event_size: int | None,
) -> None:
    """Be a keyboard-style scanner: write to ``path`` the input_event records the kernel delivers when
    the scanner types each code and its terminator, one key event packet every ``key_delay`` seconds.
    ``path`` is a FIFO (made if missing, and removed after) that the gateway reads, or a plain file."""
    scans = [hid.encode_scan(code, terminator) for code in codes]  # ValueError before anything opens
    made = _make_fifo(path)
    try:
        fd = await _open_for_writing(path)
        print(f"keyboard scanner writing to {path}", file=sys.stderr, flush=True)
        try:
            await asyncio.sleep(interval)
            for number, packets in enumerate(scans, 1):
                for packet in packets:
                    _write(fd, path, hid.pack_events(packet, time.time(), event_size))
                    await asyncio.sleep(key_delay)
                print(f"scanned code {number} of {len(scans)}", file=sys.stderr, flush=True)
                if number < len(scans):
                    await asyncio.sleep(interval)
            await asyncio.sleep(hold)
        finally:
            os.close(fd)
    finally:
        if made:
            _remove(path)


def _make_fifo(path: Path) -> bool:
    """Make a FIFO at ``path`` unless something is there; whether it was made."""
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        return False
    return True


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def _open_for_writing(path: Path) -> int:
    """A FIFO opens for writing only once its reader (the gateway) has it open: wait for that."""
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return os.open(path, os.O_WRONLY | os.O_APPEND)
    if not stat.S_ISFIFO(mode):
        raise SimError(f"{path} is neither a FIFO nor a file (hut-sim cannot create input devices)")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READER_WAIT_S
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise SimError(f"cannot open {path}: {exc.strerror}") from None
            if loop.time() > deadline:
                raise SimError(f"nothing read {path} within {READER_WAIT_S:g} s: is it the gateway's path?") from None
            await asyncio.sleep(0.05)
            continue
        os.set_blocking(fd, True)
        return fd


def _write(fd: int, path: Path, data: bytes) -> None:
    try:
        os.write(fd, data)
    except BrokenPipeError:
        raise SimError(f"the reader of {path} went away") from None


async def kiosk(url: str, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One call to the gateway's kiosk API; SimError with the gateway's own message on a refusal."""
    endpoint = url.rstrip("/") + "/v1/session"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.request(method, endpoint, json=body) as response,
        ):
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SimError(f"cannot reach the kiosk API at {endpoint}: {exc or type(exc).__name__}") from None
    try:
        reply: dict[str, Any] = json.loads(text)
    except ValueError:
        raise SimError(f"{endpoint} answered {response.status} with something that is not JSON") from None
    if response.status >= 400:
        raise SimError(f"the gateway refused: {reply.get('error', text)} (HTTP {response.status})")
    return reply
