"""hypothesis: every GATT codec raises nothing but DecodeError, never hangs, and the decoder never raises.

A failure prints the falsifying bytes, which replay it. The long run (100,000 inputs per codec) is marked slow.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthhut.drivers import DecodeError
from healthhut.drivers.gatt import CHARACTERISTICS, GattProfileDecoder, decode_value, parse
from healthhut.firmware_sim.encoders.gatt import encode
from healthhut.protocol import Reading
from tests.drivers.gatt_support import FIELD_STRATEGIES

UUIDS = sorted(CHARACTERISTICS)
SLOW = pytest.mark.skipif(os.environ.get("HEALTHHUT_SLOW") != "1", reason="long fuzzing: HEALTHHUT_SLOW=1")


def wire_values(uuid: int) -> st.SearchStrategy[bytes]:
    """Random bytes, and random bytes behind each flags byte (so that every layout is reached)."""
    return st.binary(max_size=40) | st.tuples(st.integers(0, 255), st.binary(max_size=40)).map(
        lambda pair: bytes([pair[0]]) + pair[1]
    )


def parse_raises_only_decode_error(uuid: int, data: bytes, strict: bool) -> None:
    try:
        reading = parse(uuid, data, strict=strict)
    except DecodeError:
        return
    assert isinstance(reading, Reading)


def decode_raises_only_decode_error(uuid: int, data: bytes, strict: bool) -> None:
    try:
        decode_value(uuid, data, strict=strict)
    except DecodeError:
        return


@pytest.mark.parametrize("uuid", UUIDS, ids=lambda uuid: f"{uuid:#06x}")
def test_fuzz_parse(uuid: int) -> None:
    @settings(max_examples=300, database=None, deadline=None)
    @given(data=wire_values(uuid), strict=st.booleans())
    def run(data: bytes, strict: bool) -> None:
        parse_raises_only_decode_error(uuid, data, strict)
        decode_raises_only_decode_error(uuid, data, strict)

    run()


@settings(max_examples=300, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(UUIDS), st.binary(max_size=30)), max_size=20))
def test_fuzz_decoder_never_raises(values: list[tuple[int, bytes]]) -> None:
    decoder = GattProfileDecoder()
    readings = [reading for uuid, data in values for reading in decoder.on_value(uuid, data)] + decoder.flush()
    assert all(isinstance(reading, Reading) for reading in readings)
    assert decoder.frame_errors <= len(values)


@pytest.mark.parametrize("uuid", UUIDS, ids=lambda uuid: f"{uuid:#06x}")
def test_fuzz_valid_fields_always_give_a_reading_or_a_clear_refusal(uuid: int) -> None:
    """Whatever valid fields a device sends, the reading is built (no ValueError from the vocabulary)."""

    @settings(max_examples=50, database=None, deadline=None)
    @given(FIELD_STRATEGIES[uuid])
    def run(fields: object) -> None:
        data = encode(uuid, fields)  # type: ignore[arg-type]
        try:
            reading = parse(uuid, data)
        except DecodeError as error:
            assert "carries no reading" in str(error)
        else:
            assert isinstance(reading, Reading)

    run()


@pytest.mark.slow
@SLOW
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("uuid", UUIDS, ids=lambda uuid: f"{uuid:#06x}")
def test_fuzz_parse_long(uuid: int) -> None:
    @settings(max_examples=100_000, database=None, deadline=None)
    @given(data=wire_values(uuid), strict=st.booleans())
    def run(data: bytes, strict: bool) -> None:
        parse_raises_only_decode_error(uuid, data, strict)

    run()


@pytest.mark.slow
@SLOW
@pytest.mark.timeout(3600)
@settings(max_examples=100_000, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(UUIDS), st.binary(max_size=30)), max_size=20))
def test_fuzz_decoder_long(values: list[tuple[int, bytes]]) -> None:
    decoder = GattProfileDecoder()
    for uuid, data in values:
        decoder.on_value(uuid, data)
    decoder.flush()
