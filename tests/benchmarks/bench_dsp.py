"""Benchmark: the streaming ECG pipeline (filters, detection, quality) on MIT-BIH record 100, lead MLII.

Feeds the record in 0.25 s chunks and reports throughput as a multiple of real time and per-chunk latency
(p50/p99), times NeuroKit2's offline ``ecg_peaks`` (method "neurokit") on the same signal, scores the
streamed peaks per ANSI/AAMI EC57, and measures import time and resident memory of ``healthhut.gateway.dsp``
in a fresh interpreter. Summary line:
``dsp: realtime_x=... chunk_p50_ms=... chunk_p99_ms=... neurokit_ratio=... se=... ppv=...``

Where the streaming time goes (gateway/dsp/README.md, Measured, has the figures): 7,220 pushes, most of
which only store; about 1,420 batches (one per 1.25 s: the 1.45 s latency leaves a second between when a
beat can be known and when it is due), each running the two section cascades over its samples (9.5 ms of
arithmetic for the record, twice that with the per-batch copies and calls) and the candidate scan; about
9 µs of decision per beat; about 0.11 ms per 10 s window graded; 6 ms of strip summary. On a shared 2-core
machine the wall-clock figures vary by 2x between runs; compare changes with interleaved runs or with an
instruction count (valgrind), which is steady.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import wfdb

from healthhut.gateway.dsp.ecg import EcgAnalyzer, detect_r_peaks
from healthhut.gateway.dsp.scoring import BEAT_SYMBOLS, score_beats

ROOT = Path(__file__).resolve().parents[2]
CHUNK_S = 0.25
STREAM_RUNS = 3
NEUROKIT_RUNS = 5

# Run in a fresh interpreter: cumulative import time and VmRSS after each step. The gateway daemon first
# (when it imports), then the dsp package (lazy: spot checks only), then its waveform path (scipy.signal).
IMPORT_PROBE = """
import importlib, json, sys, time
def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
steps = [("interpreter", [])]
steps += [(name, name.split("+")) for name in sys.argv[1:]]
out = []
for label, modules in steps:
    start = time.perf_counter()
    for module in modules:
        importlib.import_module(module)
    out.append({"step": label, "import_s": time.perf_counter() - start, "rss_kib": rss_kib()})
print(json.dumps(out))
"""
IMPORT_STEPS = (
    "healthhut.gateway.app",
    "healthhut.gateway.dsp+healthhut.gateway.dsp.spot",
    "healthhut.gateway.dsp.ecg+healthhut.gateway.dsp.ppg",
)


def data_dir() -> Path:
    return Path(os.environ.get("HEALTHHUT_DATA", ROOT.parent / "shared" / "data"))


def load_record_100() -> tuple[np.ndarray, np.ndarray, float]:
    """Lead MLII in µV, the reference beat samples, and the sampling rate."""
    path = str(data_dir() / "mitdb" / "100")
    record = wfdb.rdrecord(path)
    lead = record.sig_name.index("MLII")
    annotation = wfdb.rdann(path, "atr")
    beats = np.array([s for s, sym in zip(annotation.sample, annotation.symbol, strict=True) if sym in BEAT_SYMBOLS])
    return record.p_signal[:, lead] * 1000.0, beats, float(record.fs)


def import_cost() -> list[dict[str, float | str]]:
    """Per step, the median over three fresh interpreters of its import time and the VmRSS after it."""
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE, *IMPORT_STEPS], check=True, capture_output=True, text=True
        )
        runs.append(json.loads(out.stdout))
    return [
        {
            "step": str(steps[0]["step"]),
            "import_s": statistics.median(float(step["import_s"]) for step in steps),
            "rss_kib": statistics.median(float(step["rss_kib"]) for step in steps),
        }
        for steps in zip(*runs, strict=True)
    ]


def stream(signal_uv: np.ndarray, fs: float) -> tuple[float, list[float], np.ndarray]:
    """One streaming pass: total seconds, per-chunk seconds, and the R peaks."""
    chunk = round(CHUNK_S * fs)
    analyzer = EcgAnalyzer(fs)
    chunk_times: list[float] = []
    started = time.perf_counter()
    for start in range(0, signal_uv.size, chunk):
        t0 = time.perf_counter()
        analyzer.push(signal_uv[start : start + chunk])
        chunk_times.append(time.perf_counter() - t0)
    summary = analyzer.finish()
    total = time.perf_counter() - started
    return total, chunk_times, np.asarray(summary.r_peaks)


def neurokit_seconds(signal_mv: np.ndarray, fs: float) -> float:
    import neurokit2 as nk  # type: ignore[import-untyped]

    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nk.ecg_peaks(signal_mv[: round(60 * fs)], sampling_rate=round(fs), method="neurokit")  # warm-up
        for _ in range(NEUROKIT_RUNS):
            t0 = time.perf_counter()
            nk.ecg_peaks(signal_mv, sampling_rate=round(fs), method="neurokit")
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    print("imports in a fresh interpreter (median of 3): step, its import time, VmRSS after it")
    for step in import_cost():
        ms, mib = float(step["import_s"]) * 1000, float(step["rss_kib"]) / 1024
        print(f"  {step['step']:<55} {ms:7.0f} ms  {mib:6.1f} MiB")
    signal_uv, reference, fs = load_record_100()
    duration = signal_uv.size / fs
    stream(signal_uv[: round(60 * fs)], fs)  # warm-up
    runs = [stream(signal_uv, fs) for _ in range(STREAM_RUNS)]
    totals = [total for total, _, _ in runs]
    chunk_ms = np.array([t for _, times, _ in runs for t in times]) * 1000.0
    stream_s = statistics.median(totals)
    peaks = runs[0][2]
    score = score_beats(reference, peaks, fs)
    offline = []
    for _ in range(3):
        t0 = time.perf_counter()
        detect_r_peaks(signal_uv, fs)
        offline.append(time.perf_counter() - t0)
    nk_s = neurokit_seconds(signal_uv / 1000.0, fs)
    print(f"record 100 MLII: {duration:.0f} s at {fs:.0f} Hz, {CHUNK_S} s chunks, {STREAM_RUNS} runs")
    print(
        f"  streaming pipeline (filters, detection, quality): {stream_s:.3f} s median run, "
        f"{duration / stream_s:.0f}x real time; chunk p50 {np.percentile(chunk_ms, 50):.3f} ms, "
        f"p90 {np.percentile(chunk_ms, 90):.3f} ms, p99 {np.percentile(chunk_ms, 99):.3f} ms, "
        f"max {chunk_ms.max():.2f} ms"
    )
    print(f"  detector alone, whole signal in one push: {statistics.median(offline):.3f} s")
    print(f"  NeuroKit2 ecg_peaks(method='neurokit') offline: {nk_s:.3f} s (median of {NEUROKIT_RUNS})")
    print(f"  EC57 from 5 min: TP {score.true_positives}, FN {score.false_negatives}, FP {score.false_positives}")
    print(
        f"dsp: realtime_x={duration / stream_s:.0f} chunk_p50_ms={np.percentile(chunk_ms, 50):.3f} "
        f"chunk_p99_ms={np.percentile(chunk_ms, 99):.3f} neurokit_ratio={nk_s / stream_s:.2f} "
        f"se={score.sensitivity * 100:.2f} ppv={score.positive_predictivity * 100:.2f}"
    )


if __name__ == "__main__":
    main()
