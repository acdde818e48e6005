"""Alert pictures: the ECG strip's true scale, grid and beat marks measured in the PNG's pixels; beat location
against the MIT-BIH cardiologists' annotations; the trend plot's lines in their order."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
import wfdb
from numpy.typing import NDArray
from PIL import Image

from healthhut.collector.alerting.plots import (
    BASELINE_COLOUR,
    BEAT_COLOUR,
    CURRENT_COLOUR,
    MAJOR_GRID_COLOUR,
    THRESHOLD_COLOUR,
    ecg_strip_png,
    locate_beats,
    trend_png,
)
from healthhut.gateway.dsp.scoring import BEAT_SYMBOLS
from tests.conftest import data_dir

Pixels = NDArray[np.int_]
STRIP_S = 10.0
TRACE_LINE_PT = 0.8  # the trace's line width, which adds to any extent measured in black pixels


class Record100:
    """MIT-BIH record 100, lead MLII in µV, and its reference beats (beat symbols only)."""

    def __init__(self) -> None:
        path = str(data_dir() / "mitdb" / "100")
        record = wfdb.rdrecord(path)
        annotation = wfdb.rdann(path, "atr")
        self.fs = float(record.fs)
        self.uv = record.p_signal[:, record.sig_name.index("MLII")] * 1000.0
        self.beats = np.array(
            [s for s, sym in zip(annotation.sample, annotation.symbol, strict=True) if sym in BEAT_SYMBOLS]
        )

    def strip(self, start_s: float, seconds: float = STRIP_S) -> tuple[NDArray[np.float64], NDArray[np.int_]]:
        """Samples from ``start_s`` and the reference beats inside them, as indices into the strip."""
        a = round(start_s * self.fs)
        b = a + round(seconds * self.fs)
        return self.uv[a:b], self.beats[(self.beats >= a) & (self.beats < b)] - a

    def beats_near(self, start_s: float, seconds: float, margin: int) -> NDArray[np.int_]:
        a = round(start_s * self.fs)
        b = a + round(seconds * self.fs)
        return self.beats[(self.beats >= a - margin) & (self.beats < b + margin)] - a


@pytest.fixture(scope="module")
def record() -> Record100:
    return Record100()


def rr_ms(beats: NDArray[np.int_], fs: float) -> list[float]:
    """The RR intervals a gateway would send: whole milliseconds."""
    return [float(v) for v in np.round(np.diff(beats) / fs * 1000.0)]


# --- pixel measurement --------------------------------------------------------------------------------------


def decode(png: bytes) -> Pixels:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB")).astype(np.int_)


def rgb(hex_colour: str) -> NDArray[np.int_]:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


def near(pixels: Pixels, hex_colour: str, within: int = 40) -> NDArray[np.bool_]:
    return np.abs(pixels - rgb(hex_colour)).max(axis=-1) <= within


def runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int_), [0]))))
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def centres(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Pixel coordinate of each run's middle (a run over columns s..e-1 covers [s, e))."""
    return np.array([(s + e) / 2 for s, e in runs(mask)])


class Strip:
    """The two paper boxes of a rendered strip (calibration, then signal), found by their non-white pixels."""

    def __init__(self, pixels: Pixels) -> None:
        self.pixels = pixels
        white = (pixels >= 250).all(axis=-1)
        middle = pixels.shape[0] // 2
        boxes = runs(~white[middle])
        assert len(boxes) == 2, boxes
        (self.cal_left, self.cal_right), (self.left, self.right) = boxes
        rows = runs(~white[:, (self.left + self.right) // 2])
        (self.top, self.bottom) = max(rows, key=lambda r: r[1] - r[0])

    @property
    def signal_area(self) -> Pixels:
        return self.pixels[self.top : self.bottom, self.left : self.right]

    @property
    def calibration_area(self) -> Pixels:
        return self.pixels[self.top : self.bottom, self.cal_left : self.cal_right]


def px_per_mm(dpi: int) -> float:
    return dpi / 25.4


def black(area: Pixels) -> NDArray[np.bool_]:
    return (area < 90).all(axis=-1)


# --- ECG strip ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dpi", [100, 150, 300])
def test_strip_is_true_scale_at_25_mm_per_s_and_10_mm_per_mv(record: Record100, dpi: int) -> None:
    samples, beats = record.strip(60.0)
    strip = Strip(decode(ecg_strip_png(samples, record.fs, beats.tolist(), title="ECG lead II", dpi=dpi)))
    mm = px_per_mm(dpi)
    assert strip.right - strip.left == pytest.approx(STRIP_S * 25 * mm, abs=2)
    assert strip.cal_right - strip.cal_left == pytest.approx(10 * mm, abs=2)
    # Whole 5 mm blocks high, at least 30 mm.
    blocks = (strip.bottom - strip.top) / (5 * mm)
    assert blocks >= 6 - 0.1
    assert blocks == pytest.approx(round(blocks), abs=2 / (5 * mm))
    # The trace spans (max - min) µV at 10 mm/mV, plus its own line width.
    trace_rows = np.flatnonzero(black(strip.signal_area).any(axis=1))
    height_mm = (samples.max() - samples.min()) / 1000 * 10
    assert trace_rows[-1] + 1 - trace_rows[0] == pytest.approx(height_mm * mm + TRACE_LINE_PT * dpi / 72, abs=2)
    # The calibration pulse is 1 mV (10 mm) high and 200 ms (5 mm) wide.
    pulse = black(strip.calibration_area)
    pulse_rows = np.flatnonzero(pulse.any(axis=1))
    assert pulse_rows[-1] + 1 - pulse_rows[0] == pytest.approx(10 * mm + TRACE_LINE_PT * dpi / 72, abs=2)
    top_of_pulse = np.flatnonzero(pulse[pulse_rows[0] + 1])
    assert top_of_pulse[-1] + 1 - top_of_pulse[0] == pytest.approx(5 * mm + TRACE_LINE_PT * dpi / 72, abs=2)


@pytest.mark.parametrize("dpi", [100, 200])
def test_major_grid_pitch_is_5_mm_both_ways(record: Record100, dpi: int) -> None:
    samples, beats = record.strip(300.0)
    strip = Strip(decode(ecg_strip_png(samples, record.fs, beats.tolist(), title="ECG", dpi=dpi)))
    major = near(strip.signal_area, MAJOR_GRID_COLOUR, within=60)
    pitch = 5 * px_per_mm(dpi)
    columns = centres(major.mean(axis=0) > 0.5)
    rows = centres(major.mean(axis=1) > 0.5)
    print(f"dpi {dpi}: columns {np.diff(columns)}, rows {np.diff(rows)}, expected {pitch:.3f}")
    # 250 mm: 51 lines with both edges. A line on the paper's edge is cut in half, or away, by the axes clip,
    # which also moves its middle; the inner lines are whole.
    assert len(columns) in {50, 51}
    assert len(rows) in {round((strip.bottom - strip.top) / pitch) + d for d in (0, 1)}
    for lines in (columns[1:-1], rows[1:-1]):
        assert np.abs(np.diff(lines) - pitch).max() <= 1.0
        # No drift either: the inner lines span a whole number of 5 mm blocks.
        assert lines[-1] - lines[0] == pytest.approx((len(lines) - 1) * pitch, abs=1.0)


@pytest.mark.parametrize("dpi", [100, 200])
@pytest.mark.parametrize("start_s", [0.0, 850.0, 1515.0])
def test_beat_marks_sit_at_the_beats(record: Record100, start_s: float, dpi: int) -> None:
    samples, beats = record.strip(start_s)
    strip = Strip(decode(ecg_strip_png(samples, record.fs, beats.tolist(), title="ECG", dpi=dpi)))
    marks = near(strip.signal_area, BEAT_COLOUR).any(axis=0)
    expected = beats / record.fs * 25 * px_per_mm(dpi)
    found = centres(marks)
    print("marks", found - expected)
    assert len(found) == len(beats)
    # One pixel is 10 ms at 100 dpi and 5 ms at 200 dpi.
    assert np.abs(found - expected).max() <= 1.0


def test_long_strip_shows_its_last_seconds(record: Record100) -> None:
    samples, beats = record.strip(400.0, seconds=30.0)
    long = Strip(decode(ecg_strip_png(samples, record.fs, beats.tolist(), title="ECG", max_seconds=STRIP_S)))
    tail = round(20.0 * record.fs)
    last = Strip(decode(ecg_strip_png(samples[tail:], record.fs, (beats[beats >= tail] - tail).tolist(), title="ECG")))
    assert long.right - long.left == pytest.approx(STRIP_S * 25 * px_per_mm(100), abs=2)
    assert np.array_equal(long.signal_area, last.signal_area)


def test_chinese_title_and_dollar_signs_render_without_warnings(record: Record100) -> None:
    # pytest turns warnings into errors: a missing-glyph warning or a mathtext parse error fails this test.
    samples, beats = record.strip(120.0)
    png = ecg_strip_png(samples, record.fs, beats.tolist(), title="心电图：疑似心房颤动 $5^$ 50% $\\frac$")
    Strip(decode(png))


def test_strip_of_a_false_asystole_alarm_at_250_hz() -> None:
    """CinC 2015 a103l, lead II at 250 Hz, the 10 s before the monitor's asystole alarm (at 5:00), which the
    experts judged false. Electrode artefacts of several mV fill seconds 2-5; the beats are about 0.5 mV."""
    alarm = wfdb.rdrecord(str(data_dir() / "cinc2015" / "a103l"), sampfrom=290 * 250, sampto=300 * 250)
    samples = alarm.p_signal[:, alarm.sig_name.index("II")] * 1000.0
    fs = float(alarm.fs)
    beats = np.array(locate_beats(samples, fs, []))
    # The artefacts do not set the detector's threshold: the small, regular beats of the clean last 4 s are
    # all found (about 128 /min), so the picture contradicts the asystole alarm as the experts did.
    last = beats[beats >= 6 * fs]
    assert len(last) >= 8
    assert np.abs(np.diff(last) / fs - 0.47).max() <= 0.05
    dpi = 120
    strip = Strip(decode(ecg_strip_png(samples, fs, beats.tolist(), title="ECG", dpi=dpi)))
    assert strip.right - strip.left == pytest.approx(STRIP_S * 25 * px_per_mm(dpi), abs=2)
    found = centres(near(strip.signal_area, BEAT_COLOUR).any(axis=0))
    assert len(found) == len(beats)
    assert np.abs(found - beats / fs * 25 * px_per_mm(dpi)).max() <= 1.0


def test_a_saturated_strip_is_cut_to_10_mv_of_paper(record: Record100) -> None:
    samples, beats = record.strip(700.0)
    railed = samples.copy()
    railed[railed.size // 2 :] += 300_000.0  # an electrode coming off: the amplifier rails at +300 mV
    dpi = 100
    strip = Strip(decode(ecg_strip_png(railed, record.fs, beats.tolist(), title="ECG", dpi=dpi)))
    height_mm = (strip.bottom - strip.top) / px_per_mm(dpi)
    assert 100 <= height_mm <= 115  # 10 mV around the median, the margins and the marker row


def test_threads_draw_the_same_bytes(record: Record100) -> None:
    strips = [record.strip(start_s) for start_s in (100.0, 200.0, 300.0, 400.0)]
    alone = [ecg_strip_png(s, record.fs, b.tolist(), title="ECG") for s, b in strips]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda sb: ecg_strip_png(sb[0], record.fs, sb[1].tolist(), title="ECG"), strips))
    assert together == alone


@pytest.mark.parametrize(
    ("samples", "beats", "message"),
    [
        ([], [], "empty"),
        ([10.0, float("nan"), 12.0], [], "non-finite"),
        ([10.0, 20.0, 30.0], [3], "outside the strip"),
        ([[1.0, 2.0]], [], "1-D"),
    ],
)
def test_strip_refuses_bad_input(samples: list[float], beats: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ecg_strip_png(np.array(samples), 360.0, beats, title="ECG")


# --- locate_beats ------------------------------------------------------------------------------------------


def test_rr_intervals_place_every_annotated_beat_within_60_ms(record: Record100) -> None:
    """Windows every 29.3 s over the whole 30 min record, the APCs and the one PVC included."""
    worst = 0.0
    windows = np.arange(0.0, 1780.0, 29.3)
    for start_s in windows:
        samples, reference = record.strip(float(start_s))
        found = np.array(locate_beats(samples, record.fs, rr_ms(reference, record.fs)))
        assert found.shape == reference.shape, start_s
        error = np.abs(found - reference).max() / record.fs
        assert error <= 0.060, start_s
        worst = max(worst, error)
    print(f"{len(windows)} windows, worst error {worst * 1000:.1f} ms")


def test_a_five_minute_strip(record: Record100) -> None:
    samples, reference = record.strip(600.0, seconds=300.0)
    found = np.array(locate_beats(samples, record.fs, rr_ms(reference, record.fs)))
    assert found.shape == reference.shape
    assert np.abs(found - reference).max() <= 0.060 * record.fs


def test_rr_intervals_reject_an_artefact_the_detector_takes_for_a_beat(record: Record100) -> None:
    samples, reference = record.strip(850.0)
    noisy = samples.copy()
    # A 3 mV, 40 ms electrode-pop between the 4th and 5th beats.
    at = (reference[3] + reference[4]) // 2
    width = round(0.040 * record.fs)
    noisy[at : at + width] += 3000.0 * np.sin(np.linspace(0, 2 * np.pi, width))
    detected = locate_beats(noisy, record.fs, [])
    assert any(abs(d - at) < 0.1 * record.fs for d in detected)  # the detector alone is fooled
    found = np.array(locate_beats(noisy, record.fs, rr_ms(reference, record.fs)))
    assert found.shape == reference.shape
    assert np.abs(found - reference).max() <= 0.060 * record.fs


@pytest.mark.parametrize(("start_s", "faint_beat"), [(1200.0, 5), (300.0, 0), (300.0, -1), (610.0, 0)])
def test_rr_intervals_place_a_beat_too_small_to_detect(record: Record100, start_s: float, faint_beat: int) -> None:
    """In a regular rhythm, a beat the detector misses at either end leaves two alignments that match as many
    candidates; only the one that keeps every beat inside the strip is right."""
    samples, reference = record.strip(start_s)
    centre = int(reference[faint_beat])
    faint = fade(samples, centre, record.fs)
    detected = locate_beats(faint, record.fs, [])
    assert all(abs(d - centre) > 0.060 * record.fs for d in detected)
    found = np.array(locate_beats(faint, record.fs, rr_ms(reference, record.fs)))
    assert found.shape == reference.shape
    assert np.abs(found - reference).max() <= 0.060 * record.fs


def fade(samples: NDArray[np.float64], centre: int, fs: float) -> NDArray[np.float64]:
    """The QRS at ``centre`` shrunk to 5 % under a smooth 200 ms window, far below the detector's threshold."""
    faint = samples - np.median(samples)
    half = round(0.100 * fs)
    lo, hi = max(0, centre - half), min(faint.size, centre + half + 1)
    faint[lo:hi] *= (1 - 0.95 * np.hanning(2 * half + 1))[lo - (centre - half) : hi - (centre - half)]
    return faint


@pytest.mark.parametrize("faint_beat", [0, -1])
def test_a_perfectly_regular_rhythm_missing_an_end_beat(record: Record100, faint_beat: int) -> None:
    """One real cardiac cycle repeated, as under a fixed-rate pacemaker: shifting the intervals by a beat
    matches as many candidates, just as closely, and only leaving no beat outside the strip tells them apart."""
    start, end = (int(b) for b in record.beats[1000:1002])
    cycle = record.uv[start - 100 : end - 100]
    samples = np.tile(cycle, 12)
    reference = 100 + cycle.size * np.arange(12)
    faint = fade(samples, int(reference[faint_beat]), record.fs)
    assert all(abs(d - reference[faint_beat]) > 0.060 * record.fs for d in locate_beats(faint, record.fs, []))
    found = np.array(locate_beats(faint, record.fs, rr_ms(reference, record.fs)))
    assert found.shape == reference.shape
    assert np.abs(found - reference).max() <= 0.060 * record.fs


@pytest.mark.parametrize("start_s", [30.0, 500.0, 849.0, 1515.0, 1700.0])
def test_without_rr_intervals_the_detected_peaks_are_the_beats(record: Record100, start_s: float) -> None:
    samples, reference = record.strip(start_s)
    found = np.array(locate_beats(samples, record.fs, []))
    tolerance = round(0.060 * record.fs)
    # Every reference beat found; every detection a reference beat (one just outside the strip counts).
    nearby = record.beats_near(start_s, STRIP_S, tolerance)
    assert all(np.abs(found - beat).min() <= tolerance for beat in reference)
    assert all(np.abs(nearby - beat).min() <= tolerance for beat in found)


def test_a_flat_strip_has_no_beats() -> None:
    flat = np.full(3600, -120.0) + np.random.default_rng(7).normal(0.0, 5.0, 3600)
    assert locate_beats(flat, 360.0, [800.0, 800.0]) == []
    assert locate_beats(flat, 360.0, []) == []


@pytest.mark.parametrize("rr", [[800.0, -5.0], [800.0, float("nan")], [0.0]])
def test_rr_intervals_must_be_positive(rr: list[float]) -> None:
    with pytest.raises(ValueError, match="RR intervals"):
        locate_beats(np.zeros(1000), 360.0, rr)


def test_locate_beats_refuses_an_empty_strip() -> None:
    with pytest.raises(ValueError, match="empty"):
        locate_beats(np.array([]), 360.0, [800.0])


# --- trend -------------------------------------------------------------------------------------------------

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=CST)
HISTORY = [
    (NOW - timedelta(days=d), v)
    for d, v in [(1, 128.0), (4, 135.0), (7, 130.0), (10, 126.0), (13, 131.0), (16, 129.0), (20, 140.0)]
]


def line_row(pixels: Pixels, colour: str) -> float:
    """The row of the widest horizontal line of ``colour`` (the legend's sample is short), weighted over the
    rows its antialiased edge covers."""
    counts = near(pixels, colour, within=70).sum(axis=1)
    rows = np.flatnonzero(counts >= 0.5 * counts.max())
    return float(np.average(rows, weights=counts[rows]))


@pytest.mark.parametrize(("dpi", "figsize"), [(100, (8.0, 4.5)), (150, (6.0, 4.0))])
def test_trend_has_the_requested_size(dpi: int, figsize: tuple[float, float]) -> None:
    png = trend_png(
        HISTORY, (NOW, 165.0), 130.0, 156.0, label="systolic", unit="mmHg", title="BP", dpi=dpi, figsize=figsize
    )
    assert decode(png).shape == (round(figsize[1] * dpi), round(figsize[0] * dpi), 3)


def test_trend_draws_current_above_threshold_above_baseline() -> None:
    pixels = decode(trend_png(HISTORY, (NOW, 165.0), 130.0, 156.0, label="systolic", unit="mmHg", title="BP"))
    current_rows = np.flatnonzero(near(pixels, CURRENT_COLOUR, within=30).any(axis=1))
    threshold, baseline = line_row(pixels, THRESHOLD_COLOUR), line_row(pixels, BASELINE_COLOUR)
    # Image rows grow downwards: 165 above 156 above 130, spaced in proportion to the values.
    current = float(np.median(current_rows[current_rows < threshold]))
    assert current < threshold < baseline
    assert (threshold - current) / (baseline - threshold) == pytest.approx((165 - 156) / (156 - 130), rel=0.15)


def test_trend_with_empty_history_and_chinese_text() -> None:
    png = trend_png([], (NOW, 7.8), 5.6, 7.0, label="血糖", unit="mmol/L", title="血糖趋势 $x_$ 10%")
    pixels = decode(png)
    assert near(pixels, CURRENT_COLOUR, within=30).any()


def test_trend_in_utc_and_naive_times_renders() -> None:
    utc_history = [(at.astimezone(UTC), v) for at, v in HISTORY]
    decode(trend_png(utc_history, (NOW.astimezone(UTC), 150.0), 130.0, 156.0, label="x", unit="u", title="t"))
    naive = [(at.replace(tzinfo=None), v) for at, v in HISTORY]
    decode(trend_png(naive, (NOW.replace(tzinfo=None), 150.0), 130.0, 156.0, label="x", unit="u", title="t"))


def test_trend_refuses_a_non_finite_value() -> None:
    with pytest.raises(ValueError, match="finite"):
        trend_png([(NOW, float("nan"))], (NOW, 150.0), 130.0, 156.0, label="x", unit="u", title="t")
