"""Loading TOML config into frozen pydantic models, with errors that name the file, line and key.

Both daemons use it, so it lives with the shared language rather than in either program.
"""

from __future__ import annotations

import re
import ssl
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

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
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def locate(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort line of the key at ``loc`` in TOML ``text``.

    tomllib keeps no positions, so this follows table headers (``[a.b]``, ``[[devices]]``) and
    ``key =`` lines. It handles the layouts our example configs use; anything else falls back to the
    nearest enclosing table, and never to a wrong key.
    """
    lines = text.splitlines()
    table: list[str | int] = []
    array_counts: dict[str, int] = {}
    best: int | None = None
    header = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    assign = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")
    want = list(loc)
    for number, line in enumerate(lines, start=1):
        if match := header.match(line):
            names: list[str | int] = [n.strip().strip("\"'") for n in match.group(2).split(".")]
            if match.group(1) == "[[":
                name = ".".join(str(n) for n in names)
                index = array_counts.get(name, -1) + 1
                array_counts[name] = index
                names = [*names, index]
            table = names
            if want[: len(table)] == table:
                best = number
            continue
        if match := assign.match(line):
            key = match.group(1).strip("\"'")
            if [*table, key] == want[: len(table) + 1] and len(table) + 1 <= len(want):
                return number
    return best


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
        loc = (*prefix, *first["loc"])
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key (check its spelling)"
        elif first["type"] == "missing":
            message = "required key is missing"
        raise ConfigError(path, key_path(loc), message + more, locate(text, loc)) from None
