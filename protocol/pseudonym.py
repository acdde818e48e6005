"""Subject pseudonyms: HMAC-SHA256 of the resident identifier under a per-deployment key.

The hut holds the key (a file readable by its owner only) and turns the identifier it reads from a
health card, a scanner or the kiosk into a pseudonym at once; the raw identifier never leaves the
gateway process. Anyone holding the same key (an authorised clinic system) can compute the pseudonym
of an identifier it already knows, and so find that resident's readings: an HMAC cannot be reversed,
so "mapping back" is matching against a roster of known identifiers.

Identifiers are normalised first (surrounding whitespace removed, letters upper-cased), so that the
check letter of a Chinese resident ID read as "x" or "X" gives the same pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

KEY_BYTES = 32
MAX_IDENTIFIER = 64


class PseudonymKeyError(Exception):
    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


def normalise_identifier(raw: str) -> str:
    """The identifier as it is hashed. ValueError (which never quotes the identifier) if unusable."""
    text = raw.strip().upper()
    if not text:
        raise ValueError("the resident identifier is empty")
    if len(text) > MAX_IDENTIFIER:
        raise ValueError(f"the resident identifier is longer than {MAX_IDENTIFIER} characters")
    if not all(ch.isprintable() and not ch.isspace() for ch in text):
        raise ValueError("the resident identifier holds spaces or control characters")
    return text


class PseudonymKey:
    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"a pseudonym key has at least {KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:  # never print the key
        return "PseudonymKey(<secret>)"

    @classmethod
    def load(cls, path: Path) -> PseudonymKey:
        """Read a key file: 64 or more hex digits. Refused if anyone but its owner may read it."""
        try:
            mode = path.stat().st_mode
            text = path.read_text().strip()
        except OSError as exc:
            raise PseudonymKeyError(path, f"cannot read the pseudonym key: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PseudonymKeyError(path, "the pseudonym key must be readable by its owner only (chmod 600)")
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise PseudonymKeyError(path, "the pseudonym key must be hex digits") from None
        if len(key) < KEY_BYTES:
            raise PseudonymKeyError(path, f"the pseudonym key is shorter than {KEY_BYTES} bytes")
        return cls(key)

    def pseudonym(self, identifier: str) -> str:
        """64 hex digits. ValueError if the identifier is unusable (see :func:`normalise_identifier`)."""
        text = normalise_identifier(identifier)
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def match(self, pseudonym: str, roster: Iterable[str]) -> str | None:
        """The identifier in ``roster`` whose pseudonym this is, if any (constant-time comparisons)."""
        found = None
        for identifier in roster:
            try:
                candidate = self.pseudonym(identifier)
            except ValueError:
                continue
            if hmac.compare_digest(candidate, pseudonym):
                found = identifier.strip()
        return found


def generate_key_file(path: Path) -> None:
    """Write a new random key, readable by its owner only. Refuses to overwrite an existing key: a new key
    gives every resident new pseudonyms (see the key rotation procedure in the README)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(KEY_BYTES) + "\n")
