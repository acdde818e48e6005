"""Benchmark: a 10 s PPG strip on the wire, compact (int16 + zlib + base64) against a JSON float list.

A JSON list of floats is what a gateway built on a generic MQTT/JSON toolkit would send. Measures
bytes on the wire and encode+decode time (median of repeated runs). Summary line:
``wire_waveform: compact_bytes=... json_bytes=... size_ratio=... compact_us=... json_us=... time_ratio=...``
"""

from __future__ import annotations

import json
import math
import statistics
import time
from datetime import UTC, datetime

from healthhut.protocol import Device, Kind, Reading, Strip, WaveBatch, decode, encode, strip_from_reading

REPEATS = 200


def strip_samples(n: int = 600, fs: float = 60.0) -> tuple[int, ...]:
    """A pleth-like wave (72 /min) in the CMS50's 0..127 range, with a little deterministic noise."""
    out = []
    for i in range(n):
        phase = (i / fs * 72 / 60) % 1
        value = 40 + 60 * math.exp(-((phase - 0.2) ** 2) / 0.01) + 20 * math.exp(-((phase - 0.5) ** 2) / 0.02)
        out.append(min(127, round(value + ((i * 7919) % 5 - 2))))
    return tuple(out)


def median_us(fn: object) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    raw = strip_samples()
    now = datetime.now(UTC)
    reading = Reading(kind=Kind.PPG, strip=Strip(fs=60.0, unit="1", raw=raw))
    device = Device(driver="contec-cms50", device_id="ox-1")

    def compact() -> bytes:
        strip = strip_from_reading(reading, hut_id="hut-1", device=device, received_at=now, device_seq=1)
        wire = encode(WaveBatch(hut_id="hut-1", boot_id="b", seq=1, sent_at=now, strips=[strip]))
        decoded = decode("wave", wire)
        assert decoded.strips[0].samples() == raw  # type: ignore[union-attr]
        return wire

    def as_json() -> bytes:
        wire = json.dumps(
            {"hut_id": "hut-1", "seq": 1, "sent_at": now.isoformat(), "fs": 60.0, "samples": [float(v) for v in raw]}
        ).encode()
        assert [round(v) for v in json.loads(wire)["samples"]] == list(raw)
        return wire

    compact_bytes, json_bytes = len(compact()), len(as_json())
    compact_us, json_us = median_us(compact), median_us(as_json)
    print(f"strip of {len(raw)} samples; {REPEATS} runs each; medians")
    print(f"  compact int16+zlib+base64: {compact_bytes} bytes, {compact_us:.0f} us encode+decode+validate")
    print(f"  JSON float list:           {json_bytes} bytes, {json_us:.0f} us encode+decode")
    print(
        f"wire_waveform: compact_bytes={compact_bytes} json_bytes={json_bytes} "
        f"size_ratio={json_bytes / compact_bytes:.2f} compact_us={compact_us:.0f} json_us={json_us:.0f} "
        f"time_ratio={compact_us / json_us:.2f}"
    )


if __name__ == "__main__":
    main()
