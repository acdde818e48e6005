"""hypothesis strategies of wire messages: valid ones built with the protocol's own models, hostile values,
and a line-protocol check for what the collector would write."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from hypothesis import strategies as st

from healthhut.protocol import (
    KINDS,
    Device,
    DeviceEvent,
    Finding,
    Flag,
    Kind,
    Message,
    ObservationBatch,
    Quantity,
    Reading,
    Status,
    Strip,
    Subject,
    WaveBatch,
    observation_from_reading,
    strip_from_reading,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

HUT_IDS = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,12}", fullmatch=True)
TOKENS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-9, minutes=-30))])
# Inside the 1970..2200 the wire accepts, with a day to spare for the zone offsets.
TIMES = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2199, 12, 30), timezones=ZONES)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
SEQS = st.integers(0, INT64_MAX)

DEVICES = st.builds(Device, driver=TOKENS, device_id=TOKENS, model=st.none() | st.text(max_size=128))
SUBJECTS = st.builds(
    Subject,
    pseudonym=st.binary(min_size=32, max_size=32).map(bytes.hex),
    age_band=st.none() | st.text(max_size=16),
    sex=st.sampled_from(["female", "male", "unknown"]),
    clinical=st.lists(
        st.sampled_from(["hypercapnic_respiratory_failure", "pregnancy", "diabetes", "hypertension_treated"]),
        max_size=4,
    ),
)
FLAGS = st.frozensets(st.sampled_from(list(Flag)))


@st.composite
def readings(draw: st.DrawFn, kinds: list[Kind] | None = None) -> Reading:
    kind = draw(st.sampled_from(kinds or list(Kind)))
    values: dict[str, Quantity] = {}
    for spec in draw(st.lists(st.sampled_from(list(KINDS[kind].values.values())), unique=True)):
        value = tuple(draw(st.lists(FINITE, max_size=20))) if spec.is_list else draw(FINITE)
        values[spec.name] = Quantity(value, spec.unit)
    strip = None
    if KINDS[kind].waveform:
        strip = Strip(
            fs=draw(st.floats(0.5, 10_000)),
            unit=draw(st.text(max_size=16)),
            raw=tuple(draw(st.lists(st.integers(-32768, 32767), min_size=1, max_size=60))),
            gain=draw(st.floats(-1e6, 1e6)),
            offset=draw(st.floats(-1e6, 1e6)),
            channel=draw(TOKENS),
        )
    return Reading(kind, values, draw(FLAGS), draw(st.none() | TIMES), strip)


@st.composite
def observation_batches(draw: st.DrawFn, hut_id: str) -> ObservationBatch:
    observations = [
        observation_from_reading(
            reading,
            hut_id=hut_id,
            device=draw(DEVICES),
            received_at=draw(TIMES),
            device_seq=draw(st.integers(0, 2**40)),
            seq_epoch=draw(st.text(max_size=8)),
            extra_flags=draw(FLAGS),
            subject=draw(st.none() | SUBJECTS),
            fit_for_alerting=draw(st.booleans()),
            quality_reasons=tuple(draw(st.lists(st.text(max_size=60), max_size=3))),
            findings=draw(st.frozensets(st.sampled_from(list(Finding)))),
        )
        for reading in draw(st.lists(readings(), min_size=1, max_size=4))
    ]
    return ObservationBatch(
        hut_id=hut_id, boot_id=draw(TOKENS), seq=draw(SEQS), sent_at=draw(TIMES), observations=observations
    )


@st.composite
def wave_batches(draw: st.DrawFn, hut_id: str) -> WaveBatch:
    strips = [
        strip_from_reading(
            reading,
            hut_id=hut_id,
            device=draw(DEVICES),
            received_at=draw(TIMES),
            device_seq=draw(st.integers(0, 2**40)),
            extra_flags=draw(FLAGS),
            subject=draw(st.none() | SUBJECTS),
        )
        for reading in draw(st.lists(readings([Kind.ECG, Kind.PPG]), min_size=1, max_size=3))
    ]
    return WaveBatch(hut_id=hut_id, boot_id=draw(TOKENS), seq=draw(SEQS), sent_at=draw(TIMES), strips=strips)


DETAIL_VALUES = st.text(max_size=40) | st.integers(INT64_MIN, INT64_MAX) | FINITE | st.booleans()


@st.composite
def device_events(draw: st.DrawFn, hut_id: str) -> DeviceEvent:
    return DeviceEvent(
        hut_id=hut_id,
        boot_id=draw(TOKENS),
        seq=draw(SEQS),
        sent_at=draw(TIMES),
        event=draw(
            st.sampled_from(["connected", "disconnected", "device_error", "gap", "started", "stopping", "spool_reset"])
        ),
        device=draw(st.none() | DEVICES),
        detail=draw(st.dictionaries(st.text(max_size=20), DETAIL_VALUES, max_size=6)),
    )


@st.composite
def statuses(draw: st.DrawFn, hut_id: str) -> Status:
    state: Literal["online", "offline"] = draw(st.sampled_from(["online", "offline"]))
    return Status(hut_id=hut_id, boot_id=draw(TOKENS), seq=draw(SEQS), sent_at=draw(TIMES), state=state)


BUILDERS: dict[str, Callable[[str], st.SearchStrategy[Message]]] = {
    "obs": observation_batches,
    "wave": wave_batches,
    "event": device_events,
    "status": statuses,
}


@st.composite
def messages(draw: st.DrawFn, hut_id: str | None = None) -> tuple[str, Message]:
    """(channel, a valid message for it)."""
    channel = draw(st.sampled_from(sorted(BUILDERS)))
    return channel, draw(BUILDERS[channel](hut_id or draw(HUT_IDS)))


# -- hostile values ------------------------------------------------------------------------------------

# json.dumps cannot write nesting deeper than its own recursion limit; this string is swapped for it.
DEEP = "\x00deep\x00"


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


SPECIAL_NUMBERS = st.sampled_from(
    [
        2**63,
        INT64_MAX,
        INT64_MIN,
        10**30,
        10**400,
        -1,
        0,
        1e308,
        -1e308,
        5e-324,
        math.nan,
        math.inf,
        -math.inf,
        -0.0,
    ]
)
SPECIAL_STRINGS = st.sampled_from(
    [
        "",
        "健康小屋",
        "\u0000",
        "\ud800",  # a lone surrogate: json.dumps writes it as \\ud800, which json.loads accepts
        "e\u0301",
        "\u202eevil",
        "NaN",
        "Infinity",
        "1e400",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+00:00",
        "2026-01-01T00:00:00",
        "2026-13-45T25:61:61Z",
        "hut-0001",
        "int16le+zlib+base64",
        "eJwDAAAAAAE=",  # zlib of nothing, base64
        "\x00deep",
    ]
)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
NASTY = st.one_of(
    SPECIAL_NUMBERS,
    SPECIAL_STRINGS,
    JSON_VALUES,
    st.integers(1, 300_000).map(lambda n: "x" * n),
    st.integers(1, 3000).map(lambda depth: DEEP + str(depth)),
)


def dumps(node: Any) -> bytes:
    """JSON as Python writes it (NaN and Infinity included), with deep-nesting markers expanded."""
    text = json.dumps(node)
    while (start := text.find('"\\u0000deep\\u0000')) >= 0:
        end = text.index('"', start + 1)
        depth = int(text[start + len('"\\u0000deep\\u0000') : end])
        text = text[:start] + deep_json(depth) + text[end + 1 :]
    return text.encode("utf-8", "surrogatepass")


JsonPath = tuple[str | int, ...]


def paths(node: Any, prefix: JsonPath = ()) -> list[JsonPath]:
    """Every place in a JSON tree, root excluded."""
    found: list[JsonPath] = []
    children: list[tuple[str | int, Any]] = []
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    for key, child in children:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


# -- line protocol ---------------------------------------------------------------------------------------


def _split(text: str, separator: str, *, quotes: bool) -> list[str]:
    """Split at ``separator`` where it is neither escaped nor (with ``quotes``) inside a string."""
    parts: list[str] = []
    current: list[str] = []
    escaped = quoted = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quotes and char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def line_problem(line: str) -> str | None:
    """Why InfluxDB would refuse ``line`` (a non-finite float, a time outside int64), or None."""
    head = _split(line, " ", quotes=False)
    if len(head) < 2:
        return "no field set"
    series = head[0]
    rest = line[len(series) + 1 :]
    body = _split(rest, " ", quotes=True)
    if len(body) != 2:
        return f"expected fields and a time, got {len(body)} parts"
    fields, stamp = body
    try:
        if not INT64_MIN < int(stamp) < INT64_MAX:
            return f"time {stamp} outside int64"
    except ValueError:
        return f"time {stamp!r} is not an integer"
    for item in _split(fields, ",", quotes=True):
        key, _, value = item.partition("=")
        if not key or not value:
            return f"field {item!r} has no key or value"
        if value.startswith('"') or value in ("true", "false"):
            continue
        if value.endswith("i"):
            if not INT64_MIN <= int(value[:-1]) <= INT64_MAX:
                return f"integer field {item!r} outside int64"
        elif not math.isfinite(float(value)):
            return f"float field {item!r} is not finite"
    return None
