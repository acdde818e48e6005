"""The wire contract: encode/decode round trips, deterministic ids, and precise rejections."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from healthhut.protocol import (
    MAX_MESSAGE_BYTES,
    Device,
    Flag,
    Kind,
    ObservationBatch,
    ProtocolError,
    Quantity,
    Reading,
    Status,
    Strip,
    WaveBatch,
    decode,
    encode,
    hut_topic,
    observation_from_reading,
    observation_id,
    parse_hut_topic,
    strip_from_reading,
)
from healthhut.protocol.waveform import pack_samples, unpack_samples

OXIMETER = Device(driver="contec-cms50", device_id="oximeter-1")
T0 = datetime(2026, 11, 22, 8, 30, 15, 123456, tzinfo=UTC)


def spo2_reading(spo2: float = 97, pulse: float = 72, measured_at: datetime | None = None) -> Reading:
    return Reading(
        kind=Kind.SPO2,
        values={"spo2": Quantity(spo2, "%"), "pulse_rate": Quantity(pulse, "/min")},
        flags=frozenset({Flag.SEARCHING}),
        measured_at=measured_at,
    )


def batch(hut_id: str = "hut-1", seq: int = 7) -> ObservationBatch:
    obs = observation_from_reading(spo2_reading(), hut_id=hut_id, device=OXIMETER, received_at=T0, device_seq=41)
    return ObservationBatch(hut_id=hut_id, boot_id="b00t", seq=seq, sent_at=T0, observations=[obs])


def test_observation_round_trip_keeps_every_field() -> None:
    original = batch()
    decoded = decode("obs", encode(original))
    assert decoded == original
    obs = decoded.observations[0]  # type: ignore[union-attr]
    assert obs.values["spo2"].value == 97 and obs.values["spo2"].unit == "%"
    assert obs.measured_at == T0 and obs.clock == "gateway" and obs.device_time is None
    assert obs.flags == [Flag.SEARCHING]


def test_encoded_message_names_schema_hut_boot_and_seq() -> None:
    raw = json.loads(encode(batch(seq=12)))
    assert (raw["schema"], raw["hut_id"], raw["boot_id"], raw["seq"], raw["type"]) == (1, "hut-1", "b00t", 12, "obs")


def test_observation_id_is_deterministic_and_keyed_on_device_clock() -> None:
    with_clock = spo2_reading(measured_at=T0)
    a = observation_from_reading(with_clock, hut_id="hut-1", device=OXIMETER, received_at=T0, device_seq=1)
    b = observation_from_reading(
        with_clock, hut_id="hut-1", device=OXIMETER, received_at=T0 + timedelta(hours=1), device_seq=99
    )
    assert a.id == b.id, "re-reading the same device record must give the same id"
    assert a.clock == "device" and a.device_time == T0
    other_hut = observation_from_reading(with_clock, hut_id="hut-2", device=OXIMETER, received_at=T0, device_seq=1)
    assert other_hut.id != a.id
    no_clock = [observation_id("hut-1", OXIMETER, Kind.SPO2, seq) for seq in (1, 2, 1)]
    assert no_clock[0] == no_clock[2] != no_clock[1]
    assert observation_id("hut-1", OXIMETER, Kind.SPO2, T0) != observation_id("hut-1", OXIMETER, Kind.PPG, T0)


@pytest.mark.parametrize(
    ("payload", "reason", "location"),
    [
        (b"{not json", "malformed_json", None),
        (b"\xff\xfe", "malformed_json", None),
        (b"[1, 2]", "invalid_field", None),
        (json.dumps({"hut_id": "hut-1"}).encode(), "unsupported_schema", "schema"),
        (json.dumps({"schema": 2, "hut_id": "hut-1"}).encode(), "unsupported_schema", "schema"),
        (json.dumps({"schema": "1", "hut_id": "hut-1"}).encode(), "unsupported_schema", "schema"),
    ],
)
def test_decode_rejects_with_reason_and_location(payload: bytes, reason: str, location: str | None) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode("obs", payload)
    assert caught.value.reason == reason
    assert caught.value.location == location


def test_missing_field_is_named_with_its_path() -> None:
    raw = json.loads(encode(batch()))
    del raw["observations"][0]["device"]["device_id"]
    with pytest.raises(ProtocolError) as caught:
        decode("obs", json.dumps(raw).encode())
    assert caught.value.reason == "invalid_field"
    assert caught.value.location == "observations[0].device.device_id"
    assert "Field required" in caught.value.detail


def test_wrong_type_and_wrong_unit_are_named() -> None:
    raw = json.loads(encode(batch()))
    raw["observations"][0]["values"]["spo2"]["value"] = "ninety-seven"
    with pytest.raises(ProtocolError) as caught:
        decode("obs", json.dumps(raw).encode())
    assert caught.value.location is not None and caught.value.location.startswith("observations[0].values.spo2.value")

    raw = json.loads(encode(batch()))
    raw["observations"][0]["values"]["spo2"]["unit"] = "1"
    with pytest.raises(ProtocolError) as caught:
        decode("obs", json.dumps(raw).encode())
    assert caught.value.location == "observations[0]"
    assert "values.spo2: spo2.spo2 must be in '%', not '1'" in caught.value.detail


def test_unknown_flag_and_extra_field_are_rejected() -> None:
    raw = json.loads(encode(batch()))
    raw["observations"][0]["flags"] = ["made_up_flag"]
    with pytest.raises(ProtocolError) as caught:
        decode("obs", json.dumps(raw).encode())
    assert caught.value.location == "observations[0].flags[0]"
    raw = json.loads(encode(batch()))
    raw["surprise"] = 1
    with pytest.raises(ProtocolError) as caught:
        decode("obs", json.dumps(raw).encode())
    assert caught.value.location == "surprise"


def test_oversized_message_is_rejected_before_parsing() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode("obs", b" " * (MAX_MESSAGE_BYTES + 1))
    assert caught.value.reason == "too_large"


def test_naive_timestamps_are_rejected() -> None:
    raw = json.loads(encode(batch()))
    raw["sent_at"] = "2026-11-22T08:30:15"
    with pytest.raises(ProtocolError) as caught:
        decode("obs", json.dumps(raw).encode())
    assert caught.value.location == "sent_at"


def test_topics_round_trip_and_reject_strangers() -> None:
    assert hut_topic("hut-1", "obs") == "hh/v1/huts/hut-1/obs"
    assert parse_hut_topic("hh/v1/huts/hut-1/wave") == ("hut-1", "wave")
    for bad in ("hh/v1/huts/hut-1", "hh/v2/huts/hut-1/obs", "hh/v1/huts/HUT/obs", "hh/v1/huts/hut-1/xyz"):
        with pytest.raises(ProtocolError):
            parse_hut_topic(bad)
    with pytest.raises(ValueError, match="hut id"):
        hut_topic("../etc", "obs")


def test_waveform_strip_is_compact_and_exact() -> None:
    raw = tuple((i * 37) % 128 for i in range(600))
    reading = Reading(kind=Kind.PPG, strip=Strip(fs=60.0, unit="1", raw=raw))
    strip = strip_from_reading(reading, hut_id="hut-1", device=OXIMETER, received_at=T0, device_seq=3)
    assert strip.samples() == raw
    assert strip.start == T0 - timedelta(seconds=10)
    message = WaveBatch(hut_id="hut-1", boot_id="b", seq=1, sent_at=T0, strips=[strip])
    wire = encode(message)
    # int16 with compression, never a JSON list of floats: far smaller than the list would be.
    assert len(wire) < len(json.dumps([float(v) for v in raw]))
    assert b"[" not in json.loads(wire)["strips"][0]["data"].encode()
    assert decode("wave", wire) == message


def test_waveform_rejects_lies_and_bombs() -> None:
    data = pack_samples([1, 2, 3])
    assert unpack_samples(data, 3) == (1, 2, 3)
    with pytest.raises(ProtocolError):
        unpack_samples(data, 4)
    with pytest.raises(ProtocolError):
        unpack_samples("not base64!", 3)
    import base64

    bomb = base64.b64encode(zlib.compress(b"\0" * 10_000_000)).decode()
    with pytest.raises(ProtocolError):
        unpack_samples(bomb, 100)
    with pytest.raises(ValueError, match="int16"):
        pack_samples([40000])


def test_reading_checks_vocabulary() -> None:
    with pytest.raises(ValueError, match="no value named"):
        Reading(kind=Kind.SPO2, values={"glucose": Quantity(5.0, "mmol/L")})
    with pytest.raises(ValueError, match="must be in"):
        Reading(kind=Kind.SPO2, values={"spo2": Quantity(0.97, "1")})
    with pytest.raises(ValueError, match="timezone-aware"):
        Reading(kind=Kind.SPO2, measured_at=datetime(2026, 1, 1))


def test_non_finite_numbers_are_rejected_not_crashed_on() -> None:
    raw = encode(batch()).replace(b'"value":97.0', b'"value":NaN')
    assert b"NaN" in raw
    with pytest.raises(ProtocolError) as caught:
        decode("obs", raw)
    assert caught.value.location == "observations[0].values.spo2.value"
    listed = encode(batch()).replace(b'"value":97.0', b'"value":[1.0, Infinity]')
    with pytest.raises(ProtocolError):
        decode("obs", listed)


def test_strip_whose_data_lies_about_its_length_is_rejected_at_decode() -> None:
    reading = Reading(kind=Kind.PPG, strip=Strip(fs=60.0, unit="1", raw=(1, 2, 3)))
    strip = strip_from_reading(reading, hut_id="hut-1", device=OXIMETER, received_at=T0, device_seq=3)
    raw = json.loads(encode(WaveBatch(hut_id="hut-1", boot_id="b", seq=1, sent_at=T0, strips=[strip])))
    raw["strips"][0]["n"] = 4
    with pytest.raises(ProtocolError) as caught:
        decode("wave", json.dumps(raw).encode())
    assert caught.value.location == "strips[0]"
    assert "4 samples" in caught.value.detail


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[" * 100_000, "malformed_json"),
        (b'{"schema": 1, "seq": ' + b"9" * 5000 + b"}", "malformed_json"),
        (b'{"schema": true, "hut_id": "hut-1"}', "unsupported_schema"),
    ],
)
def test_hostile_json_is_a_protocol_error(payload: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode("obs", payload)
    assert caught.value.reason == reason


def test_times_outside_what_influxdb_stores_are_rejected() -> None:
    raw = json.loads(encode(batch()))
    raw["observations"][0]["measured_at"] = "2300-01-01T00:00:00Z"
    with pytest.raises(ProtocolError) as caught:
        decode("obs", json.dumps(raw).encode())
    assert caught.value.location == "observations[0].measured_at"


@pytest.mark.parametrize(
    ("path", "location"),
    [
        (("health", "devices", 0, "last_contact"), "health.devices[0].last_contact"),
        (("health", "uplink", "last_confirmed"), "health.uplink.last_confirmed"),
    ],
)
def test_status_health_times_outside_what_influxdb_stores_are_rejected(
    path: tuple[str | int, ...], location: str
) -> None:
    raw = {
        "schema": 1,
        "type": "status",
        "hut_id": "hut-1",
        "boot_id": "b1",
        "seq": 3,
        "sent_at": "2026-11-22T09:00:00Z",
        "state": "online",
        "health": {
            "devices": [
                {
                    "name": "ox-1",
                    "driver": "contec-cms50",
                    "connected": True,
                    "readings": 1,
                    "last_contact": "2026-11-22T08:59:58Z",
                }
            ],
            "spool": {"depth": 0, "bytes": 0, "evicted": 0},
            "uplink": {
                "connected": True,
                "published": 1,
                "confirmed": 1,
                "resent": 0,
                "refused": 0,
                "last_confirmed": "2026-11-22T08:59:59Z",
            },
        },
    }
    assert isinstance(decode("status", json.dumps(raw).encode()), Status)
    parent: Any = raw
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = "9999-01-01T00:00:00Z"
    with pytest.raises(ProtocolError) as caught:
        decode("status", json.dumps(raw).encode())
    assert caught.value.location == location, caught.value


@pytest.mark.parametrize(
    ("path", "value", "location"),
    [
        (("observations", 0, "values", "spo2", "value"), "97", "observations[0].values.spo2.value"),
        (("observations", 0, "fit_for_alerting"), 1, "observations[0].fit_for_alerting"),
        (("observations", 0, "fit_for_alerting"), "true", "observations[0].fit_for_alerting"),
        (("observations", 0, "device_seq"), 41.0, "observations[0].device_seq"),
        (("observations", 0, "device_seq"), "41", "observations[0].device_seq"),
        (("seq",), "7", "seq"),
        (("seq",), True, "seq"),
    ],
)
def test_numbers_and_booleans_must_be_sent_as_what_they_are(
    path: tuple[str | int, ...], value: object, location: str
) -> None:
    # pydantic's lax mode would read "97" as 97.0 and 1 as true: a malformed message repaired, not refused.
    raw = json.loads(encode(batch()))
    parent = raw
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    with pytest.raises(ProtocolError) as caught:
        decode("obs", json.dumps(raw).encode())
    assert caught.value.reason == "invalid_field"
    assert caught.value.location is not None and caught.value.location.startswith(location), caught.value


def test_a_whole_number_is_still_a_number() -> None:
    raw = json.loads(encode(batch()))
    raw["observations"][0]["values"]["spo2"]["value"] = 97
    decoded = decode("obs", json.dumps(raw).encode())
    assert isinstance(decoded, ObservationBatch)
    assert decoded.observations[0].values["spo2"].value == 97.0


def test_sequence_keyed_ids_change_with_the_epoch() -> None:
    assert observation_id("hut-1", OXIMETER, Kind.SPO2, 5, "aaaa") != observation_id(
        "hut-1", OXIMETER, Kind.SPO2, 5, "bbbb"
    )
    assert observation_id("hut-1", OXIMETER, Kind.SPO2, T0, "aaaa") == observation_id(
        "hut-1", OXIMETER, Kind.SPO2, T0, "bbbb"
    )
