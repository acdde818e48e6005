"""Sans-I/O decoder of a keyboard-style (USB HID) barcode scanner read through Linux evdev.

The scanner types each code as key presses and then Enter. The event device delivers them as
``struct input_event`` records (README.md, Protocol); the decoder turns the key presses back into text
through a US layout with Shift, and yields the code when the terminator key is pressed. A scan with a
key that no code contains, with lost keystrokes or longer than the limit is a frame error for that scan,
dropped whole and never quoted.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

# linux/input-event-codes.h
EV_SYN = 0x00
EV_KEY = 0x01
EV_MSC = 0x04
SYN_REPORT = 0
SYN_DROPPED = 3
MSC_SCAN = 0x04
KEY_RELEASE, KEY_PRESS, KEY_REPEAT = 0, 1, 2
KEY_TAB = 15
KEY_ENTER = 28
KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_LEFTALT = 56
KEY_NUMLOCK = 69
KEY_KPENTER = 96

MAX_CODE = 64
# A scanner types a code in a burst, milliseconds a key: a pause this long inside a scan means it was
# cut off (its terminator lost), and what follows must not be joined to it.
MAX_GAP_S = 1.0
# What follows the two timeval longs of an input_event: __u16 type, __u16 code, __s32 value.
_TAIL = struct.Struct("=HHi")
# The whole record, by its size: timeval as two longs of 8 (64-bit) or 4 bytes (32-bit userland).
_RECORDS = {24: struct.Struct("=qqHHi"), 16: struct.Struct("=llHHi")}

Terminator = Literal["ENTER", "TAB"]
TERMINATOR_KEYS: dict[str, frozenset[int]] = {
    "ENTER": frozenset({KEY_ENTER, KEY_KPENTER}),
    "TAB": frozenset({KEY_TAB}),
}
SHIFT_KEYS = frozenset({KEY_LEFTSHIFT, KEY_RIGHTSHIFT})


def _row(first_key: int, unshifted: str, shifted: str) -> dict[int, tuple[str, str]]:
    return {first_key + i: pair for i, pair in enumerate(zip(unshifted, shifted, strict=True))}


# The US layout: key code -> (character, character with Shift). Key codes from linux/input-event-codes.h
# (KEY_1 = 2 ... KEY_EQUAL = 13, KEY_Q = 16 ..., KEY_A = 30 ..., KEY_Z = 44 ...).
US_KEYS: dict[int, tuple[str, str]] = {
    **_row(2, "1234567890-=", "!@#$%^&*()_+"),
    **_row(16, "qwertyuiop[]", "QWERTYUIOP{}"),
    **_row(30, "asdfghjkl;'`", 'ASDFGHJKL:"~'),
    **_row(43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
    57: (" ", " "),  # KEY_SPACE
}
# The numeric keypad with Num Lock on, as scanners set to "numeric keypad" type digits (Shift ignored).
KEYPAD: dict[int, str] = {
    **{key: digit for key, digit in zip((71, 72, 73, 75, 76, 77, 79, 80, 81, 82), "7894561230", strict=True)},
    55: "*",  # KEY_KPASTERISK
    74: "-",  # KEY_KPMINUS
    78: "+",  # KEY_KPPLUS
    83: ".",  # KEY_KPDOT
    98: "/",  # KEY_KPSLASH
}
KEYPAD_DIGITS = {key: char for key, char in KEYPAD.items() if char.isdigit()}


def native_event_size() -> int:
    """The size of ``struct input_event`` for this process: two C longs of timeval (on 32-bit userland
    the kernel's compat layer delivers the 16-byte form), then 8 bytes of type, code and value."""
    return struct.calcsize("@l") * 2 + _TAIL.size


class KeyEvent(NamedTuple):
    type: int
    code: int
    value: int


class KeyDecoder:
    """Feeds bytes of ``input_event`` records, returns the codes typed. ``errors`` says what each frame
    error was (never the code)."""

    def __init__(
        self,
        event_size: int | None = None,
        terminator: Terminator = "ENTER",
        max_code: int = MAX_CODE,
        max_gap_s: float = MAX_GAP_S,
    ) -> None:
        self.event_size = event_size or native_event_size()
        if self.event_size not in _RECORDS:
            raise ValueError("an input_event is 16 bytes (32-bit userland) or 24 bytes (64-bit)")
        self._record = _RECORDS[self.event_size]
        self.max_gap_s = max_gap_s
        self.terminators = TERMINATOR_KEYS[terminator]
        # The other suffix key (Tab after Enter, the "Enter+Tab" suffix) is ignored between scans.
        self.spare_suffix = TERMINATOR_KEYS["TAB" if terminator == "ENTER" else "ENTER"]
        self.max_code = max_code
        self.frame_errors = 0
        self.errors: list[str] = []
        self._buffer = bytearray()
        self._chars: list[str] = []
        self._damage: str | None = None
        self._shift: set[int] = set()
        self._alt = False
        self._alt_digits = ""
        self._dropping = False
        self._last_key_at = 0.0

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        whole = len(self._buffer) - len(self._buffer) % self.event_size
        codes: list[str] = []
        for offset in range(0, whole, self.event_size):
            seconds, micros, *fields = self._record.unpack_from(self._buffer, offset)
            code = self._event(KeyEvent(*fields), seconds + micros / 1e6)
            if code is not None:
                codes.append(code)
        del self._buffer[:whole]
        return codes

    def _event(self, event: KeyEvent, at: float) -> str | None:
        if event.type == EV_SYN:
            if event.code == SYN_DROPPED:
                # The kernel's queue overflowed: events are missing until the next SYN_REPORT, so this
                # scan has lost keystrokes and the modifier state is unknown (event-codes.rst).
                self._damaged("a scan with keystrokes lost")
                self._dropping = True
                self._shift.clear()
                self._alt, self._alt_digits = False, ""
            elif event.code == SYN_REPORT:
                self._dropping = False
            return None
        if self._dropping or event.type != EV_KEY:
            return None  # EV_MSC (the HID usage of each key), LEDs and the rest carry no characters
        key, value = event.code, event.value
        if at - self._last_key_at > self.max_gap_s and self._in_scan():
            self._end_of_scan(f"a scan interrupted for more than {self.max_gap_s:g} s")
        self._last_key_at = at
        if key in SHIFT_KEYS:
            if value == KEY_RELEASE:
                self._shift.discard(key)
            else:
                self._shift.add(key)
            return None
        if key == KEY_LEFTALT:
            self._alt_key(value)
            return None
        if value == KEY_RELEASE:
            return None
        if value == KEY_REPEAT:
            if key not in self.terminators and key not in self.spare_suffix:
                self._damaged("a scan with a key held down")
            return None
        if key in self.terminators:
            return self._end_of_scan()
        if key == KEY_NUMLOCK:
            return None  # sent by scanners in Alt mode to be sure of the keypad; it types nothing
        if self._alt:
            if key in KEYPAD_DIGITS:
                self._alt_digits += KEYPAD_DIGITS[key]
            else:
                self._damaged("a scan with a key that is not part of a code")
            return None
        if key in self.spare_suffix and not self._chars and self._damage is None:
            return None
        char = US_KEYS[key][1 if self._shift else 0] if key in US_KEYS else KEYPAD.get(key)
        if char is None:
            self._damaged("a scan with a key that is not part of a code")
        else:
            self._append(char)
        return None

    def _alt_key(self, value: int) -> None:
        """Alt held while keypad digits are typed, then released: the character with that decimal code
        (scanners' "Alt mode", for hosts whose keyboard layout is not known)."""
        if value == KEY_PRESS:
            self._alt, self._alt_digits = True, ""
        elif value == KEY_RELEASE and self._alt:
            self._alt = False
            if self._alt_digits:
                number = int(self._alt_digits)
                if 0x20 <= number <= 0x7E:
                    self._append(chr(number))
                else:
                    self._damaged("a scan with a character that is not printable ASCII")
            self._alt_digits = ""

    def _append(self, char: str) -> None:
        if len(self._chars) >= self.max_code:
            self._damaged(f"a scan longer than {self.max_code} characters")
        elif self._damage is None:
            self._chars.append(char)

    def _in_scan(self) -> bool:
        return bool(self._chars or self._alt_digits) or self._damage is not None

    def _end_of_scan(self, cut_off: str | None = None) -> str | None:
        """The scan typed so far, ended by its terminator or (``cut_off`` says how) abandoned."""
        code, damage = "".join(self._chars), self._damage or cut_off
        self._chars.clear()
        self._damage = None
        self._alt_digits = ""
        if damage is not None:
            self.frame_errors += 1
            self.errors.append(damage)
            del self.errors[:-16]
            return None
        return code or None  # a terminator alone (an empty scan) is nothing to report

    def _damaged(self, what: str) -> None:
        if self._damage is None:
            self._damage = what
            self._chars.clear()


# --- the scanner's side, for hut-sim: what the kernel delivers when a scanner types a code ---

# drivers/hid/hid-input.c, hid_keyboard[]: HID Keyboard/Keypad page usage -> Linux key code, usages
# 0x00-0x67 and 0xE0-0xE7 (the modifiers). Inverted below to give each key's MSC_SCAN value.
# fmt: off
_HID_KEYBOARD = (
      0,   0,   0,   0,  30,  48,  46,  32,  18,  33,  34,  35,  23,  36,  37,  38,
     50,  49,  24,  25,  16,  19,  31,  20,  22,  47,  17,  45,  21,  44,   2,   3,
      4,   5,   6,   7,   8,   9,  10,  11,  28,   1,  14,  15,  57,  12,  13,  26,
     27,  43,  43,  39,  40,  41,  51,  52,  53,  58,  59,  60,  61,  62,  63,  64,
     65,  66,  67,  68,  87,  88,  99,  70, 119, 110, 102, 104, 111, 107, 109, 106,
    105, 108, 103,  69,  98,  55,  74,  78,  96,  79,  80,  81,  75,  76,  77,  71,
     72,  73,  82,  83,  86, 127, 116, 117,
)
# fmt: on
_HID_MODIFIERS = (29, 42, 56, 125, 97, 54, 100, 126)
HID_USAGE: dict[int, int] = {}
for _usage, _key in [*enumerate(_HID_KEYBOARD), *enumerate(_HID_MODIFIERS, start=0xE0)]:
    if _key:
        HID_USAGE.setdefault(_key, _usage)  # the first usage of a key, as hid-input reports it
_CHAR_KEYS: dict[str, tuple[int, bool]] = {}
for _key, (_plain, _shifted) in US_KEYS.items():
    _CHAR_KEYS.setdefault(_plain, (_key, False))
    _CHAR_KEYS.setdefault(_shifted, (_key, True))

Packet = tuple[KeyEvent, ...]


def _stroke(key: int, value: int) -> Packet:
    """One key's press or release as a USB keyboard delivers it: its HID usage, the key, SYN_REPORT."""
    return (
        KeyEvent(EV_MSC, MSC_SCAN, 0x70000 | HID_USAGE[key]),
        KeyEvent(EV_KEY, key, value),
        KeyEvent(EV_SYN, SYN_REPORT, 0),
    )


def key_strokes(key: int, *, shift: bool = False) -> list[Packet]:
    """The packets of one key typed: press and release, inside Shift press and release if ``shift``."""
    inner = [_stroke(key, KEY_PRESS), _stroke(key, KEY_RELEASE)]
    if not shift:
        return inner
    return [_stroke(KEY_LEFTSHIFT, KEY_PRESS), *inner, _stroke(KEY_LEFTSHIFT, KEY_RELEASE)]


def encode_scan(code: str, terminator: Terminator = "ENTER") -> list[Packet]:
    """The event packets a scanner's keystrokes for ``code`` and its terminator make, in order: the
    inverse of :class:`KeyDecoder` (hut-sim uses it). ValueError for a character the US layout lacks."""
    packets: list[Packet] = []
    for char in code:
        if char not in _CHAR_KEYS:
            raise ValueError("a keyboard scanner types printable ASCII only")
        key, shift = _CHAR_KEYS[char]
        packets += key_strokes(key, shift=shift)
    packets += key_strokes(KEY_ENTER if terminator == "ENTER" else KEY_TAB)
    return packets


def pack_events(events: Iterable[KeyEvent], at: float, event_size: int | None = None) -> bytes:
    """``events`` as the kernel's ``input_event`` records, all stamped ``at`` (seconds since the epoch)."""
    size = event_size or native_event_size()
    seconds = int(at)
    micros = round((at - seconds) * 1e6) % 1_000_000
    timeval = struct.Struct("=QQ" if size == 24 else "=LL").pack(seconds, micros)
    return b"".join(timeval + _TAIL.pack(*event) for event in events)


def unpack_events(data: bytes, event_size: int | None = None) -> Sequence[KeyEvent]:
    """The (type, code, value) of each whole record in ``data`` (for tests and tools)."""
    size = event_size or native_event_size()
    return [
        KeyEvent(*_TAIL.unpack_from(data, offset + size - _TAIL.size))
        for offset in range(0, len(data) - len(data) % size, size)
    ]
