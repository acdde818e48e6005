"""Sans-I/O decoder of an RDM630/RDM6300 125 kHz card reader's serial stream: one frame per card read.

A frame is STX, 10 ASCII hex digits of card data (a version byte and the 32-bit card number), 2 ASCII
hex digits of checksum (the XOR of the 5 data bytes), ETX; the reader repeats it every 50-65 ms for as
long as the card stays in its field (README.md, Protocol). The decoder resynchronises on STX, drops a
damaged frame whole as a frame error whose text never quotes it, and turns a card held on the reader
into one read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

STX = 0x02
ETX = 0x03
DATA_DIGITS = 10
FRAME_BODY = DATA_DIGITS + 2  # the data and checksum digits between STX and ETX
HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")
# The same card again within this many seconds of its previous frame is the card still on the reader.
HOLDOFF_S = 1.5

CodeFormat = Literal["hex", "decimal"]


class CardDecoder:
    """Feeds bytes, returns the card codes read. ``errors`` says what each frame error was (never the data).

    ``code`` chooses what a card's code is: ``"hex"``, its 10 data digits upper-case (version byte and
    card number, e.g. ``"62E3086CED"``), or ``"decimal"``, the 32-bit card number as the 10 decimal
    digits printed on most EM4100 cards and fobs (``"3808980205"``). ``clock`` is a monotonic clock in
    seconds: the hold-off needs to know when each frame arrived.
    """

    def __init__(
        self,
        code: CodeFormat = "hex",
        holdoff_s: float = HOLDOFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.code = code
        self.holdoff_s = holdoff_s
        self.clock = clock
        self.frame_errors = 0
        self.errors: list[str] = []
        # Frames of a card already read (repeats while it stays on the reader), and damaged frames while
        # it is there: the card has been read, so they are not a failed read to tell the resident about.
        self.repeats = 0
        self.noisy_repeats = 0
        # Bytes outside any frame (line noise on an idle reader): not a read, so not a frame error.
        self.skipped_bytes = 0
        self._buffer = bytearray()
        self._last_card: str | None = None
        self._last_seen = 0.0

    def feed(self, data: bytes) -> list[str]:
        now = self.clock()
        codes: list[str] = []
        self._buffer += data
        while self._buffer:
            start = self._buffer.find(STX)
            if start < 0:
                self.skipped_bytes += len(self._buffer)
                self._buffer.clear()
                break
            self.skipped_bytes += start
            del self._buffer[:start]
            end = _delimiter(self._buffer)
            if end is None:
                if len(self._buffer) <= FRAME_BODY + 1:
                    break  # the rest of the frame is still on its way
                # No ETX where it belongs: not a frame. Look for the next STX after this one.
                del self._buffer[:1]
                self._error("a frame without its end marker", now)
                continue
            if self._buffer[end] == STX:
                del self._buffer[:end]
                self._error("a frame cut short", now)
                continue
            body = bytes(self._buffer[1:end])
            del self._buffer[: end + 1]
            card = self._card(body, now)
            if card is not None and self._is_new(card, now):
                codes.append(self._format(card))
        return codes

    def _card(self, body: bytes, now: float) -> str | None:
        """The 10 data digits of a sound frame body, upper-case; None (and an error) otherwise."""
        if len(body) != FRAME_BODY:
            self._error("a frame of the wrong length", now)
            return None
        if not HEX_DIGITS.issuperset(body):
            self._error("a frame with characters that are not hex digits", now)
            return None
        values = bytes.fromhex(body.decode("ascii"))
        checksum = 0
        for value in values[:5]:
            checksum ^= value
        if checksum != values[5]:
            self._error("a frame with a bad checksum", now)
            return None
        return body[:DATA_DIGITS].decode("ascii").upper()

    def _is_new(self, card: str, now: float) -> bool:
        held = card == self._last_card and now - self._last_seen <= self.holdoff_s
        self._last_card = card
        self._last_seen = now
        if held:
            self.repeats += 1
        return not held

    def _format(self, card: str) -> str:
        if self.code == "decimal":
            return f"{int(card[2:], 16):010d}"
        return card

    def _error(self, what: str, now: float) -> None:
        if self._last_card is not None and now - self._last_seen <= self.holdoff_s:
            self.noisy_repeats += 1
            return
        self.frame_errors += 1
        self.errors.append(what)
        del self.errors[:-16]


def _delimiter(buffer: bytearray) -> int | None:
    """Where the frame starting at ``buffer[0]`` (an STX) ends: the index of its ETX, or of an STX that
    cuts it short; None if neither is within a frame's length yet."""
    for index in range(1, min(len(buffer), FRAME_BODY + 2)):
        if buffer[index] in (STX, ETX):
            return index
    return None


def checksum_digits(data_digits: str) -> str:
    """The 2 checksum digits of 10 data digits: the XOR of the 5 bytes they encode."""
    checksum = 0
    for value in bytes.fromhex(data_digits):
        checksum ^= value
    return f"{checksum:02X}"


def encode_frame(card: str) -> bytes:
    """What the reader sends for a card whose data is ``card`` (10 hex digits): the inverse of
    :class:`CardDecoder` (hut-sim uses it). ValueError for anything but 10 hex digits."""
    if len(card) != DATA_DIGITS or not HEX_DIGITS.issuperset(card.encode("ascii", "replace")):
        raise ValueError("a card's data is 10 hex digits (a version byte and a 32-bit card number)")
    digits = card.upper()
    return bytes([STX]) + (digits + checksum_digits(digits)).encode("ascii") + bytes([ETX])
