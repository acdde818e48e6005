"""The collector's own line-protocol writer agrees with influxdb-client's Point, byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from healthhut.collector.points import FieldValue, event_lines, line, ns, series, status_lines, strip_lines
from healthhut.protocol import Device, DeviceEvent, Kind, Status, WaveStrip
from healthhut.protocol.waveform import pack_samples
from healthhut.protocol.wire import DeviceHealth, HutHealth, SpoolHealth, UplinkHealth

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


def test_a_status_with_health_becomes_a_hut_point_and_one_point_per_device() -> None:
    received = datetime(2026, 11, 22, 9, 0, 30, tzinfo=UTC)
    status = Status(
        hut_id="hut-1",
        boot_id="b1",
        seq=7,
        sent_at=received,
        state="online",
        health=HutHealth(
            devices=[
                DeviceHealth(
                    name="ox-1",
                    driver="contec-cms50",
                    connected=True,
                    readings=12,
                    last_contact=received - timedelta(seconds=2),
                ),
                DeviceHealth(name="bp-1", driver="ble-blood-pressure", connected=False, readings=0, errors=3),
            ],
            spool=SpoolHealth(depth=4, bytes=8192, evicted=0, oldest_unsent_s=1.5),
            uplink=UplinkHealth(connected=True, published=40, confirmed=38, resent=1, refused=0),
        ),
    )
    stamp = ns(received)
    assert status_lines(status, received) == [
        point_text(
            "hut_status",
            {"hut": "hut-1", "boot": "b1"},
            {
                "online": 1.0,
                "seq": 7.0,
                "spool_depth": 4.0,
                "spool_bytes": 8192.0,
                "spool_evicted": 0.0,
                "oldest_unsent_s": 1.5,
                "broker_connected": True,
                "confirmed": 38.0,
                "resent": 1.0,
                "refused": 0.0,
                "devices_connected": 1.0,
            },
            stamp,
        ),
        point_text(
            "hut_device",
            {"hut": "hut-1", "driver": "contec-cms50", "device": "ox-1"},
            {"connected": True, "readings": 12.0, "errors": 0.0, "last_contact_age_s": 2.0},
            stamp,
        ),
        point_text(
            "hut_device",
            {"hut": "hut-1", "driver": "ble-blood-pressure", "device": "bp-1"},
            {"connected": False, "readings": 0.0, "errors": 3.0},
            stamp,
        ),
    ]
    # A Last Will has no health: the hut's point only.
    offline = status.model_copy(update={"state": "offline", "health": None})
    assert status_lines(offline, received) == [
        point_text("hut_status", {"hut": "hut-1", "boot": "b1"}, {"online": 0.0, "seq": 7.0}, stamp)
    ]


def test_an_event_is_stored_at_when_it_happened_not_when_it_was_sent() -> None:
    happened = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    sent = happened + timedelta(hours=5)  # it waited in the spool through an outage
    event = DeviceEvent(
        hut_id="hut-1",
        boot_id="b1",
        seq=9,
        sent_at=sent,
        event="disconnected",
        at=happened,
        device=Device(driver="contec-cms50", device_id="ox-1"),
    )
    assert event_lines(event)[0].endswith(f" {ns(happened)}")
    older = event.model_copy(update={"at": None})  # from a gateway that did not send "at"
    assert event_lines(older)[0].endswith(f" {ns(sent)}")
