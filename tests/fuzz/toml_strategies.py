"""hypothesis strategies of TOML text: values and whole documents written out, and the example configs'
lines, so that a test can change one of them and know which line and key it changed."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_text(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else basic_string(key)


def basic_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def value_text(value: Any) -> str:
    """A TOML literal for ``value`` (str, bool, int, float, datetime, date, time, list or dict)."""
    if isinstance(value, str):
        return basic_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key_text(k)} = {value_text(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


KEYS = st.sampled_from(
    [
        # The gateway's and the collector's own names, so that validation gets past "unknown key".
        *("hut_id", "state_dir", "mqtt", "host", "port", "keepalive", "tls", "ca_file", "uplink", "batch_max"),
        *("spool", "quota_mb", "clock", "signal", "mains_hz", "identity", "key_file", "devices", "driver", "name"),
        *("path", "storage", "type", "url", "dead_letters", "ingest", "alerting", "contacts", "webhook", "email"),
    ]
) | st.text(min_size=1, max_size=12)
DATETIMES = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.sampled_from([UTC, None])
)
SCALARS = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["hut-0001", "/tmp/x", "127.0.0.1", "contec-cms50", "healthypi", "ble-glucose", "influxdb1"]),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    DATETIMES,
    st.dates(),
    st.times(),
    st.just(datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=8)))),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A valid TOML document: top-level keys, then [tables] (some nested) and [[arrays of tables]]."""
    lines = [f"{key_text(k)} = {value_text(v)}" for k, v in draw(st.dictionaries(KEYS, VALUES, max_size=4)).items()]
    used: set[str] = set()
    top = {line.split(" = ")[0] for line in lines}
    for name in draw(st.lists(KEYS, max_size=4, unique=True)):
        header = key_text(name)
        if header in top or header in used:
            continue
        used.add(header)
        if draw(st.booleans()):
            for _ in range(draw(st.integers(1, 3))):
                lines.append(f"[[{header}]]")
                lines.extend(f"{key_text(k)} = {value_text(v)}" for k, v in draw(st.dictionaries(KEYS, VALUES)).items())
        else:
            lines.append(f"[{header}]")
            body = draw(st.dictionaries(KEYS, VALUES, max_size=4))
            lines.extend(f"{key_text(k)} = {value_text(v)}" for k, v in body.items())
            for sub in [sub for sub in draw(st.lists(KEYS, max_size=2, unique=True)) if sub not in body]:
                lines.append(f"[{header}.{key_text(sub)}]")
                lines.extend(
                    f"{key_text(k)} = {value_text(v)}"
                    for k, v in draw(st.dictionaries(KEYS, VALUES, max_size=3)).items()
                )
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # the strategy's own promise: what it writes is TOML
    return text


# -- the example configs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyLine:
    """One ``key = value`` line of a config: its 1-based number, its table and the key's whole path."""

    number: int
    table: tuple[str | int, ...]
    key: str
    header: int | None  # the line of its table's header, None at the top level

    @property
    def path(self) -> tuple[str | int, ...]:
        return (*self.table, self.key)


HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*$")
ASSIGN = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def key_lines(text: str) -> list[KeyLine]:
    """The active (uncommented) key lines of a config written in the examples' plain layout."""
    found: list[KeyLine] = []
    table: tuple[str | int, ...] = ()
    header: int | None = None
    counts: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if match := HEADER.match(line):
            names: tuple[str | int, ...] = tuple(match.group(2).split("."))
            if match.group(1) == "[[":
                counts[match.group(2)] = counts.get(match.group(2), -1) + 1
                names = (*names, counts[match.group(2)])
            table, header = names, number
        elif match := ASSIGN.match(line):
            found.append(KeyLine(number, table, match.group(1), header))
    return found


def render(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# Literals of every TOML type, to put where a value of another type belongs.
OTHER_VALUES = st.one_of(
    st.sampled_from(
        [
            '""',
            '"text"',
            '"健康小屋"',
            "0",
            "-1",
            "99999999999999999999999",
            "1.5",
            "-0.0",
            "nan",
            "inf",
            "true",
            "[]",
            "[1, 2]",
            '["a", 1]',
            "{}",
            "{ a = 1 }",
            "1979-05-27T07:32:00Z",
            "1979-05-27",
            "07:32:00",
            '"/dev/null"',
            '"Asia/Shanghai"',
            '"Asia"',
            '"../../etc/passwd"',
            '"A4:C1:38:00:00:01"',
        ]
    ),
    SCALARS.map(value_text),
    st.integers(1, 5000).map(lambda n: '"' + "x" * n + '"'),
)
