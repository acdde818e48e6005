"""hypothesis against the gateway's and the collector's config loaders: whatever the file holds, the only
error is ConfigError, and it names the file, and the line and key where the problem has them.

Inputs: random bytes, random TOML documents, and the shipped example configs with one change (a key
deleted, a value of another type, an unknown key, a line or table twice, a device entry of each driver
with random keys). A failure prints the falsifying example (and a blob for ``@reproduce_failure``).
"""

from __future__ import annotations

import json
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from healthhut.collector.config import load_config as load_collector_config
from healthhut.drivers import available_drivers, get_driver
from healthhut.gateway.config import load_config as load_gateway_config
from healthhut.protocol.configfile import ConfigError
from tests.conftest import ROOT
from tests.fuzz import fuzz
from tests.fuzz.toml_strategies import (
    BARE_KEY,
    HEADER,
    OTHER_VALUES,
    SCALARS,
    KeyLine,
    documents,
    key_lines,
    key_text,
    value_text,
)

Loader = Callable[[Path], object]
LOADERS: dict[str, tuple[Loader, Path]] = {
    "gateway": (load_gateway_config, ROOT / "gateway" / "gateway.example.toml"),
    "collector": (load_collector_config, ROOT / "collector" / "collector.example.toml"),
}
Path_ = tuple[str | int, ...]


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as name:
        yield Path(name)


def load(kind: str, folder: Path, content: str | bytes) -> ConfigError | None:
    """Load ``content`` with ``kind``'s loader; the ConfigError it raised (checked), or None."""
    path = folder / f"{kind}.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    loader = LOADERS[kind][0]
    try:
        loader(path)
    except ConfigError as error:
        assert error.path == str(path)
        assert str(error).startswith(f"{path}:"), error
        assert error.message.strip(), error
        if error.line is not None:
            # Lines as the loader reads the file: with universal newlines (a lone \r ends a line too).
            lines = path.read_text(encoding="utf-8", errors="replace").count("\n") + 1
            assert 1 <= error.line <= lines, error
        return error
    return None


def components(key: str) -> Path_:
    """``devices[1]."a.b"`` → ``("devices", 1, "a.b")``."""
    found = re.findall(r'("(?:[^"\\]|\\.)*")|\[(\d+)\]|([^.\["]+)', key)
    return tuple(json.loads(quoted) if quoted else int(index) if index else name for quoted, index, name in found)


def headers(text: str) -> dict[Path_, int]:
    found: dict[Path_, int] = {}
    counts: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if match := HEADER.match(line):
            names: Path_ = tuple(match.group(2).split("."))
            if match.group(1) == "[[":
                counts[match.group(2)] = counts.get(match.group(2), -1) + 1
                names = (*names, counts[match.group(2)])
            found[names] = number
    return found


def line_of(text: str, path: Path_) -> int | None:
    """The line that defines ``path`` (a key line, or a table's header), else that of what encloses it."""
    lines = {kl.path: kl.number for kl in key_lines(text)} | headers(text)
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def assert_points_at(error: ConfigError, text: str, changed: Path_) -> None:
    """The error names the changed key, one inside it or a table holding it, and that key's line."""
    assert error.key is not None, error
    named = components(error.key)
    shorter = min(len(named), len(changed))
    assert named[:shorter] == changed[:shorter], (error, changed)
    assert error.line == line_of(text, named), (error, changed)


def shipped(kind: str) -> str:
    return LOADERS[kind][1].read_text()


def key_line(kind: str, *path: str | int) -> KeyLine:
    return next(kl for kl in key_lines(shipped(kind)) if kl.path == path)


def regressions(test: Callable[..., None], *examples: dict[str, Any]) -> Callable[..., None]:
    """``test`` (a hypothesis test) with these explicit examples too."""
    for arguments in examples:
        test = example(**arguments)(test)
    return test


KINDS = pytest.mark.parametrize("kind", sorted(LOADERS))


# -- anything at all ---------------------------------------------------------------------------------------


@KINDS
def test_arbitrary_bytes(kind: str, folder: Path) -> None:
    @fuzz(500)
    @given(st.binary(max_size=200) | st.binary(max_size=200).map(lambda tail: shipped(kind).encode() + tail))
    def run(content: bytes) -> None:
        load(kind, folder, content)

    run()


@KINDS
def test_random_documents(kind: str, folder: Path) -> None:
    def run(text: str) -> None:
        error = load(kind, folder, text)
        if error is None or error.key is None:
            return
        if error.line is None:
            # Only a key that is not in the file may go without a line.
            node: Any = tomllib.loads(text)
            for name in components(error.key):
                present = name in node if isinstance(node, dict) else isinstance(name, int) and name < len(node)
                if not present:
                    return
                node = node[name]
            raise AssertionError(f"{error}: the key is in the file, but the error names no line")
        line = text.split("\n")[error.line - 1]
        names = [name for name in components(error.key) if isinstance(name, str)]
        assert any(name in line or key_text(name) in line for name in names), (error, line)

    regressions(
        fuzz(150)(given(documents())(run)),
        # A dotted key was not recognised: the error had no line.
        {"text": 'mqtt.port = "x"\nhut_id = "h"\nstate_dir = "/s"\n'},
        # A quoted key neither.
        {"text": '"hut_id" = 5\nstate_dir = "/s"\n[storage]\ntype = "influxdb1"\n[dead_letters]\npath = "/d"\n'},
    )()


# -- the example with one change ---------------------------------------------------------------------------


@KINDS
def test_deleted_key(kind: str, folder: Path) -> None:
    text = shipped(kind)

    def run(target: KeyLine) -> None:
        lines = text.split("\n")
        del lines[target.number - 1]
        changed = "\n".join(lines)
        error = load(kind, folder, changed)
        if error is not None:
            assert_points_at(error, changed, target.path)
            assert "missing" in error.message

    regressions(
        fuzz(100)(given(st.sampled_from(key_lines(text)))(run)),
        # The message was "Unable to extract tag using discriminator 'type'", for the key "storage".
        *([{"target": key_line(kind, "storage", "type")}] if kind == "collector" else []),
    )()


@KINDS
def test_value_of_another_type(kind: str, folder: Path) -> None:
    text = shipped(kind)

    def run(target: KeyLine, value: str) -> None:
        lines = text.split("\n")
        lines[target.number - 1] = f"{target.key} = {value}"
        changed = "\n".join(lines)
        error = load(kind, folder, changed)
        if error is not None:
            # A device's driver, or the storage's type, decides which other keys its table may have.
            picks_the_model = target.key == "driver" or target.path == ("storage", "type")
            assert_points_at(error, changed, target.table if picks_the_model else target.path)

    regressions(
        fuzz(300)(given(target=st.sampled_from(key_lines(text)), value=OTHER_VALUES)(run)),
        # The key was named "storage.influxdb1.url", after pydantic's tag of the union.
        *([{"target": key_line(kind, "storage", "url"), "value": "0"}] if kind == "collector" else []),
        # A driver that is not a string was "required key is missing", at the [[devices]] line.
        *([{"target": key_line(kind, "devices", 0, "driver"), "value": "0"}] if kind == "gateway" else []),
    )()


@KINDS
def test_unknown_key(kind: str, folder: Path) -> None:
    text = shipped(kind)
    anchors = [kl.number for kl in key_lines(text)] + list(headers(text).values())

    def run(after: int, name: str, value: str) -> None:
        lines = text.split("\n")
        table = next(
            (kl.table for kl in key_lines(text) if kl.number == after),
            next((path for path, number in headers(text).items() if number == after), ()),
        )
        known = {kl.key for kl in key_lines(text) if kl.table == table} | {
            str(path[len(table)]) for path in headers(text) if len(path) > len(table) and path[: len(table)] == table
        }
        if name in known:
            return
        lines.insert(after, f"{key_text(name)} = {value}")
        changed = "\n".join(lines)
        error = load(kind, folder, changed)
        assert error is not None, "an unknown key must be refused"
        assert error.key is not None and (components(error.key), error.line) == ((*table, name), after + 1), error
        assert "unknown key" in error.message

    names = st.from_regex(r"zz[A-Za-z0-9_-]{0,10}", fullmatch=True) | st.text(min_size=1, max_size=12)
    in_mqtt = key_line(kind, "mqtt", "host").number
    regressions(
        fuzz(300)(given(after=st.sampled_from(anchors), name=names, value=OTHER_VALUES)(run)),
        # A quoted key was not recognised: the line was its table's header, or none at the top level.
        {"after": in_mqtt, "name": ":", "value": "1"},
        *([{"after": key_line(kind, "hut_id").number, "name": "a b", "value": "1"}] if kind == "gateway" else []),
        # str.splitlines counted \x85 (NEL) in a key as a line break: the line was off by one.
        {"after": in_mqtt, "name": "\x85", "value": '"x"'},
    )()


@KINDS
def test_line_twice(kind: str, folder: Path) -> None:
    text = shipped(kind)
    twice = [kl.number for kl in key_lines(text)] + [
        number for path, number in headers(text).items() if not isinstance(path[-1], int)
    ]

    @fuzz(100)
    @given(st.sampled_from(twice))
    def run(number: int) -> None:
        lines = text.split("\n")
        lines.insert(number, lines[number - 1])
        error = load(kind, folder, "\n".join(lines))
        assert error is not None and error.line == number + 1, error
        assert "not valid TOML" in error.message

    run()


# -- a device entry of each driver ------------------------------------------------------------------------


@pytest.mark.parametrize("driver", available_drivers())
def test_device_entry(driver: str, folder: Path) -> None:
    model = get_driver(driver).config_model
    fields = sorted(set(model.model_fields) - {"driver"})
    text = shipped("gateway")

    def run(keys: dict[str, str], driver_value: str) -> None:
        entry = ["[[devices]]", f"driver = {driver_value}", *(f"{key} = {value}" for key, value in keys.items())]
        changed = text + "\n" + "\n".join(entry) + "\n"
        header = text.count("\n") + 2
        error = load("gateway", folder, changed)
        if error is None:
            return
        assert error.key is not None and error.key.startswith("devices[1]"), error
        assert error.line is not None and error.line >= header, error
        line = changed.split("\n")[error.line - 1]
        name = components(error.key)[2] if len(components(error.key)) > 2 else None
        if line == "[[devices]]":
            # The entry as a whole, or a key it lacks (and truly lacks).
            assert name is None or (name not in {"driver", *keys} and "missing" in error.message), (error, line)
        else:
            assert line.startswith(f"{name} ="), (error, line)

    values = st.one_of(OTHER_VALUES, SCALARS.map(value_text))
    keys = st.dictionaries(st.sampled_from(fields) | st.from_regex(r"zz[a-z_]{0,8}", fullmatch=True), values)
    zones = [
        # ZoneInfo raised IsADirectoryError for a folder of the zone database, and OSError for a name too
        # long for a file: both went out of the loader as they were.
        {"keys": {"timezone": '"Asia"'}, "driver_value": value_text(driver)},
        {"keys": {"timezone": '"' + "x" * 256 + '"'}, "driver_value": value_text(driver)},
    ]
    regressions(
        fuzz(150)(
            given(
                keys=keys.filter(lambda k: len(k) <= len(fields) + 1),
                driver_value=st.just(value_text(driver)) | OTHER_VALUES,
            )(run)
        ),
        # A driver that is not a string was "required key is missing".
        {"keys": {}, "driver_value": "0"},
        *(zones if "timezone" in fields else []),
    )()


def test_key_names_here_are_plain() -> None:
    """The helpers above read keys back from messages: the examples use bare keys only."""
    for kind in LOADERS:
        assert all(BARE_KEY.fullmatch(kl.key) for kl in key_lines(shipped(kind)))
