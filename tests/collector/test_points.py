"""The collector's own line-protocol writer agrees with influxdb-client's Point, byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from healthhut.collector.points import FieldValue, line, ns, series, strip_lines
from healthhut.protocol import Device, Kind, WaveStrip
from healthhut.protocol.waveform import pack_samples

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
field_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    texts,
)


def point_text(measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], stamp: int) -> str:
    point = Point(measurement)
    for key, value in tags.items():
        point.tag(key, value)
    for key, value in fields.items():
        point.field(key, value)
    return str(point.time(stamp, WritePrecision.NS).to_line_protocol())


@given(
    measurement=texts.filter(lambda m: not m.startswith("#")),
    tags=st.dictionaries(texts, texts, max_size=4),
    fields=st.dictionaries(texts, field_values, min_size=1, max_size=4),
    stamp=st.integers(0, 2**62),
)
def test_lines_are_what_influxdb_client_would_write(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], stamp: int
) -> None:
    assert line(series(measurement, tags), fields, stamp) == point_text(measurement, tags, fields, stamp)


def test_escaping_of_the_characters_line_protocol_reserves() -> None:
    text = line(series("my meas,x", {"a key": "v=1,2 3"}), {"f=1": 'say "hi" \\ bye', "n": 3, "x": 2.0}, 7)
    assert text == 'my\\ meas\\,x,a\\ key=v\\=1\\,2\\ 3 f\\=1="say \\"hi\\" \\\\ bye",n=3i,x=2 7'


def test_a_tag_value_ending_in_a_backslash_does_not_swallow_what_follows() -> None:
    # Found by the hypothesis test above: without the closing space, "\\," would read as an escaped comma.
    text = line(series("m", {"a": "x\\", "b": "y"}), {"f": 1.0}, 5)
    assert text == point_text("m", {"a": "x\\", "b": "y"}, {"f": 1.0}, 5) == "m,a=x\\ ,b=y f=1 5"


def test_a_strip_is_one_point_per_sample_at_its_real_time() -> None:
    start = datetime(2026, 11, 22, 8, 0, 0, 123456, tzinfo=UTC)
    raw = [0, 100, -100, 32767]
    strip = WaveStrip(
        id="5" * 32,
        hut_id="hut-1",
        device=Device(driver="healthypi", device_id="hp-1"),
        kind=Kind.ECG,
        channel="ecg",
        unit="mV",
        fs=250.0,
        gain=0.005,
        offset=0.0,
        start=start,
        n=len(raw),
        data=pack_samples(raw),
        clock="gateway",
    )
    lines = strip_lines(strip)
    expected = [
        point_text(
            "ecg",
            {"hut": "hut-1", "subject": "anonymous", "driver": "healthypi", "device": "hp-1"},
            {"ecg": value * 0.005},
            ns(start + timedelta(milliseconds=4 * i)),
        )
        for i, value in enumerate(raw)
    ]
    assert lines == expected
