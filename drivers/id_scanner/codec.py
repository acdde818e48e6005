"""Sans-I/O decoder of a barcode/QR scanner's serial output: each scan is the code, then a terminator.

Scanners in USB virtual-COM ("USB COM", CDC-ACM) or RS-232 mode send the decoded data followed by a
configurable suffix (CR, LF, CR+LF or ETX; some also put STX in front). See README.md for the manuals.
The decoder yields the code as text. It never raises on garbage: a line with control or non-text bytes,
an empty line or one longer than the limit is counted as a frame error and dropped whole, never cut down
to something that might be another resident's code.
"""

from __future__ import annotations

from typing import Literal

Terminator = Literal["CR", "LF", "CRLF", "ETX"]
TERMINATORS: dict[str, bytes] = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "ETX": b"\x03"}
STX = b"\x02"
MAX_CODE = 64


class ScanDecoder:
    """Feeds bytes, returns the complete codes. ``errors`` says what each frame error was (never the code)."""

    def __init__(self, terminator: Terminator = "CR", max_code: int = MAX_CODE) -> None:
        self.end = TERMINATORS[terminator]
        # CR+LF scanners are read as LF-terminated with a CR stripped; a lone CR or LF is then harmless.
        self._split = b"\n" if terminator == "CRLF" else self.end
        self.max_code = max_code
        self.frame_errors = 0
        self.errors: list[str] = []
        self._buffer = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[str]:
        codes: list[str] = []
        self._buffer += data
        while True:
            index = self._buffer.find(self._split)
            if index < 0:
                break
            line = bytes(self._buffer[:index])
            del self._buffer[: index + len(self._split)]
            if self._overflow:
                self._overflow = False
                self._error(f"a scan longer than {self.max_code} characters")
                continue
            code = self._code(line)
            if code is not None:
                codes.append(code)
        if len(self._buffer) > self.max_code + 2:
            # No terminator in sight: drop what we hold and the rest of this line when it ends.
            self._buffer.clear()
            self._overflow = True
        return codes

    def _code(self, line: bytes) -> str | None:
        if self.end == b"\r\n" and line.endswith(b"\r"):
            line = line[:-1]
        if line.startswith(STX):
            line = line[1:]
        if not line.strip():
            self._error("an empty scan")
            return None
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            self._error("a scan with non-ASCII bytes")
            return None
        if not all(ch.isprintable() for ch in text):
            self._error("a scan with control characters")
            return None
        if len(text) > self.max_code:
            self._error(f"a scan longer than {self.max_code} characters")
            return None
        return text

    def _error(self, what: str) -> None:
        self.frame_errors += 1
        self.errors.append(what)
        del self.errors[:-16]


def encode_scan(code: str, terminator: Terminator = "CR") -> bytes:
    """What a scanner sends for ``code``: the inverse of :class:`ScanDecoder` (hut-sim uses it)."""
    return code.encode("ascii") + TERMINATORS[terminator]
