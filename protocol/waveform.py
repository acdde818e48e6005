"""Compact waveform samples for the wire: little-endian int16, zlib-compressed, base64 text."""

from __future__ import annotations

import base64
import binascii
import sys
import zlib
from array import array
from collections.abc import Sequence

from healthhut.protocol.errors import ProtocolError

ENCODING = "int16le+zlib+base64"
INT16_MIN, INT16_MAX = -32768, 32767
# A strip is at most this many samples (a minute at 500 Hz), so a bad message cannot inflate unbounded.
MAX_SAMPLES = 30_000


def pack_samples(raw: Sequence[int]) -> str:
    """Pack integer samples. Raises ValueError for a sample outside int16."""
    if len(raw) > MAX_SAMPLES:
        raise ValueError(f"a strip holds at most {MAX_SAMPLES} samples, not {len(raw)}")
    try:
        samples = array("h", raw)
    except OverflowError:
        raise ValueError("waveform samples must fit int16; rescale with gain and offset") from None
    if sys.byteorder == "big":
        samples.byteswap()
    return base64.b64encode(zlib.compress(samples.tobytes(), 6)).decode("ascii")


def unpack_samples(data: str, count: int) -> tuple[int, ...]:
    """Inverse of :func:`pack_samples`; ``count`` must match what the packed bytes hold."""
    if not 0 <= count <= MAX_SAMPLES:
        raise ProtocolError("invalid_field", f"sample count {count} outside 0..{MAX_SAMPLES}", "n")
    try:
        compressed = base64.b64decode(data.encode("ascii"), validate=True)
        inflater = zlib.decompressobj()
        # Bounded inflate: a zip bomb stops at the size the count allows.
        body = inflater.decompress(compressed, 2 * count + 1)
    except (binascii.Error, zlib.error, UnicodeEncodeError) as exc:
        raise ProtocolError("invalid_field", f"waveform data does not decode: {exc}", "data") from None
    if len(body) != 2 * count or inflater.unconsumed_tail:
        raise ProtocolError("invalid_field", f"waveform data holds other than the {count} samples declared", "data")
    samples = array("h")
    samples.frombytes(body)
    if sys.byteorder == "big":
        samples.byteswap()
    return tuple(samples)
