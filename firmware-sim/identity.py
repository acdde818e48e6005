"""hut-sim's identity tools: a card scanner that types a code like a real one, and the kiosk's session
calls (``hut-sim session start|end|show``), for technicians testing a hut's resident sessions."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

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
