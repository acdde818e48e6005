"""Loading TOML config into frozen pydantic models, with errors that name the file, line and key.

Both daemons use it, so it lives with the shared language rather than in either program.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from healthhut.protocol.errors import field_path, path_text

M = TypeVar("M", bound=BaseModel)


class FrozenConfig(BaseModel):
    """Base of every config section: immutable, and a key it does not know is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(FrozenConfig):
    """Mutual TLS to the broker: the CA to trust, and this program's own certificate and key."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return context


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine itself (``localhost``, 127.0.0.0/8, ::1); a name is never resolved."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BrokerConfig(FrozenConfig):
    """Where a program's MQTT broker is, and how it is reached: mutual TLS, or plaintext only on loopback.

    Plaintext to another machine would carry residents' readings unencrypted and lets anyone on the way
    pose as a hut; it is refused unless ``insecure_plaintext = true`` says it is wanted (a lab bench).
    ``tls`` and ``insecure_plaintext`` come before ``host`` so that host's check sees them.
    """

    tls: TlsConfig | None = None
    insecure_plaintext: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)

    @field_validator("host")
    @classmethod
    def _encrypted_unless_local(cls, host: str, info: ValidationInfo) -> str:
        # When [mqtt.tls] itself is wrong, that is the error to show; it is missing from data then.
        if "tls" not in info.data or "insecure_plaintext" not in info.data:
            return host
        if info.data["tls"] is not None or info.data["insecure_plaintext"] or is_loopback(host):
            return host
        raise PydanticCustomError(
            "plaintext_broker",
            "the broker {host} is not on this machine and there is no [mqtt.tls]: plaintext MQTT would carry "
            "readings unencrypted; configure [mqtt.tls] (ca_file, cert_file, key_file), or set "
            "insecure_plaintext = true in [mqtt] to allow it",
            {"host": repr(host[:100])},
        )


class ConfigError(Exception):
    """A config that cannot be used. ``line`` is 1-based, or None when no line can be pointed at."""

    def __init__(self, path: Path | str, key: str | None, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.key = key
        self.line = line
        self.message = message
        where = self.path + (f":{line}" if line else "")
        what = f" [{key}]" if key else ""
        super().__init__(f"{where}:{what} {message}")


def key_path(loc: tuple[int | str, ...]) -> str:
    """``("devices", 0, "path")`` → ``devices[0].path``."""
    return path_text(loc)


# A key as TOML writes it: bare, "basic" or 'literal', and dotted (a."b.c").
_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=")


def _names(dotted: str) -> list[str | int] | None:
    """The key names of a dotted key as written (``a."b.c"`` → ``["a", "b.c"]``), read by tomllib itself."""
    try:
        node: Any = tomllib.loads(f"{dotted} = 0")
    except tomllib.TOMLDecodeError:
        return None
    names: list[str | int] = []
    while isinstance(node, dict) and len(node) == 1:
        ((name, node),) = node.items()
        names.append(name)
    return names


def locate(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort line of the key at ``loc`` in TOML ``text``.

    tomllib keeps no positions, so this follows table headers (``[a.b]``, ``[[devices]]``) and
    ``key =`` lines (dotted and quoted keys too), skipping multi-line strings. Anything else falls back
    to the nearest enclosing table, and never to a wrong key.
    """
    table: list[str | int] = []
    array_counts: dict[tuple[str | int, ...], int] = {}
    best: int | None = None  # the nearest table holding the key
    inside: int | None = None  # the first line inside the key (a table given by [a.b] or a.b = ...)
    want = list(loc)
    in_string: str | None = None
    # TOML ends lines at \n only; str.splitlines would also split at \x85, \u2028 and others.
    for number, line in enumerate(text.split("\n"), start=1):
        if in_string is not None:
            if in_string in line:
                in_string = None
            continue
        if (match := _HEADER.match(line)) and (names := _names(match.group(2))) is not None:
            if match.group(1) == "[[":
                index = array_counts.get(tuple(names), -1) + 1
                array_counts[tuple(names)] = index
                names = [*names, index]
            table = names
            if table == want:
                return number
            if want[: len(table)] == table:
                best = number
            elif table[: len(want)] == want and inside is None:
                inside = number
            continue
        if (match := _ASSIGN.match(line)) and (names := _names(match.group(1))) is not None:
            full = [*table, *names]
            if full == want[: len(full)]:
                return number
            if full[: len(want)] == want and inside is None:
                inside = number
        in_string = next((quote for quote in ('"""', "'''") if line.count(quote) % 2 == 1), None)
    return inside if inside is not None else best


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """The file's text and its parsed TOML; ConfigError (with the line, for syntax) otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError(path, None, f"cannot read config: {reason}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        raise ConfigError(path, None, f"not valid TOML: {exc}", int(found.group(1)) if found else None) from None


def load_toml(path: Path | str, model: type[M]) -> M:
    """Read ``path`` and validate it with ``model``; ConfigError points at the first problem."""
    path = Path(path)
    text, data = read_toml(path)
    return validate(path, text, data, model)


def validate(path: Path | str, text: str, data: Any, model: type[M], prefix: tuple[int | str, ...] = ()) -> M:
    """Validate already-parsed ``data`` (at ``prefix`` inside the file) and point errors at lines."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A misspelt key also makes the real key "missing"; the misspelling is the one to show.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = (*prefix, *field_path(first, data))
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key (check its spelling)"
        elif first["type"] in ("missing", "union_tag_not_found"):
            message = "required key is missing"
        raise ConfigError(path, key_path(loc), message + more, locate(text, loc)) from None
