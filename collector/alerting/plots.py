"""Pictures for clinician alerts: an ECG strip on true-scale ECG paper and a reading's trend, as PNG bytes.

Pure functions: no files, no display, no pyplot. Each call builds its own ``Figure`` on an Agg canvas, so
calls may run in threads (``asyncio.to_thread``). Only numpy and matplotlib are needed, as the collector's
dependencies promise; the QRS band-pass is a zero-phase filter in the frequency domain, not scipy.

The gateway sends an ECG strip with its RR intervals, not its beat positions. The intended use is::

    beats = locate_beats(samples_uv, fs, rr_intervals_ms)
    png = ecg_strip_png(samples_uv, fs, beats, title=...)

Text given by the caller (titles, labels, units) is drawn literally, never as mathtext. Characters that no
installed font can draw (Chinese on a server without a CJK font) become a box, logged once per process,
instead of a warning per glyph and per picture.
"""

from __future__ import annotations

import functools
import io
import logging
import math
from bisect import bisect_left, insort
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from matplotlib import dates as mdates
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ft2font import FT2Font
from numpy.typing import ArrayLike, NDArray

__all__ = ["ecg_strip_png", "locate_beats", "trend_png"]

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

MM_PER_INCH = 25.4
PAPER_SPEED_MM_PER_S = 25.0
GAIN_MM_PER_MV = 10.0
MAX_STRIP_SECONDS = 10.0

# ECG paper colours. The trace is black and the beat marks blue, so neither can be mistaken for the grid.
PAPER_COLOUR = "#fff4f4"
MINOR_GRID_COLOUR = "#f2b0b0"
MAJOR_GRID_COLOUR = "#d24b4b"
TRACE_COLOUR = "#000000"
BEAT_COLOUR = "#1f5fd6"
# Trend colours: the current reading in red, the threshold it crossed in orange, the baseline in green.
READING_COLOUR = "#5b7fa8"
CURRENT_COLOUR = "#d62728"
BASELINE_COLOUR = "#2e8b57"
THRESHOLD_COLOUR = "#e07b00"

# Strip layout in mm. The calibration pulse has its own small axes left of the strip, so the strip's axes
# hold exactly the signal: duration * 25 mm wide.
_LEFT_MM = 4.0
_CALIBRATION_MM = 10.0
_GAP_MM = 2.0
_RIGHT_MM = 4.0
_TOP_MM = 10.0
_BOTTOM_MM = 8.0
_MIN_HEIGHT_MM = 30.0
_BLOCK_UV = 500.0  # one 5 mm block at 10 mm/mV
_MINOR_UV = 100.0  # one 1 mm square
_MARKER_ROW_UV = 500.0  # a 5 mm row above the signal for the beat marks
# A lead-off or saturated strip can span hundreds of mV; the picture shows at most 10 mV around the median
# (10 cm of paper) and says so, instead of growing without bound.
_MAX_SPAN_UV = 10_000.0
_MAJOR_LINE_PT = 0.75
_MINOR_LINE_PT = 0.4
_TRACE_LINE_PT = 0.8

# Beat location (see locate_beats).
_QRS_BAND_HZ = (5.0, 20.0)
_ENERGY_WINDOW_S = 0.060
_REFRACTORY_S = 0.200
_REFINE_S = 0.060
_MATCH_S = 0.080
# Thresholds are fractions of a typical QRS energy (see _typical_qrs_energy). Candidate peaks for the
# alignment may include T waves and noise: the RR sequence chooses among them. Without RR intervals the
# detected peaks are the answer, so that threshold is stricter.
_REFERENCE_STRETCH_S = 2.0
_CANDIDATE_FRACTION = 0.05
_DETECTION_FRACTION = 0.25
# A QRS band amplitude below 50 µV is noise, not a beat, whatever the rest of the strip holds.
_NOISE_FLOOR_UV = 50.0

# CJK fonts tried, in order, after DejaVu Sans (matplotlib falls back glyph by glyph along the list).
_CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "Hiragino Sans GB",
    "Noto Sans CJK JP",
    "Droid Sans Fallback",
    "AR PL UMing CN",
)
_BASE_FAMILY = "DejaVu Sans"


# --- ECG strip ---------------------------------------------------------------------------------------------


def ecg_strip_png(
    samples_uv: ArrayLike,
    fs: float,
    beats: Sequence[int],
    *,
    title: str,
    dpi: int = 100,
    max_seconds: float = MAX_STRIP_SECONDS,
) -> bytes:
    """The strip drawn on ECG paper at true scale, as PNG bytes.

    25 mm/s and 10 mm/mV: 1 mm minor and 5 mm major grid, the trace in black, a 1 mV calibration pulse
    (200 ms wide) in its own box left of the strip, and a blue triangle above the trace at each beat. The
    figure's physical size makes the scale true at ``dpi``: the strip's axes are ``duration * 25`` mm wide
    and a whole number of 5 mm blocks high (at least 30 mm). Samples are drawn as given (no filtering).

    ``beats`` are sample indices into ``samples_uv`` (for example from :func:`locate_beats`). A strip longer
    than ``max_seconds`` is cut to its **last** ``max_seconds``, the part just before the alert; beats in the
    part cut away are dropped, and the scale note says what was kept. ``title`` is drawn as given: the
    caller decides what it says, and this function adds no identifier.

    Raises ValueError for an empty strip, a non-finite sample, a bad ``fs``, ``dpi`` or ``max_seconds``, and
    a beat index outside the samples.
    """
    signal = _strip_samples(samples_uv, fs)
    if not (math.isfinite(max_seconds) and max_seconds > 0):
        raise ValueError(f"max_seconds must be positive, got {max_seconds!r}")
    _check_dpi(dpi)
    marks = np.asarray(beats, dtype=np.intp).reshape(-1)
    if marks.size and (marks.min() < 0 or marks.max() >= signal.size):
        raise ValueError(f"beat index outside the strip of {signal.size} samples")

    total_s = signal.size / fs
    keep = min(signal.size, max(1, math.floor(max_seconds * fs)))
    start = signal.size - keep
    signal = signal[start:]
    marks = marks[marks >= start] - start
    duration_s = signal.size / fs

    low, high, clipped = _shown_range(signal)
    calibration_base = round(float(np.median(signal)) / _MINOR_UV) * _MINOR_UV
    y_low, y_high = _paper_limits(min(low, calibration_base), max(high, calibration_base + 1000.0))

    strip_w = duration_s * PAPER_SPEED_MM_PER_S
    strip_h = (y_high - y_low) / 1000.0 * GAIN_MM_PER_MV
    fig_w = _LEFT_MM + _CALIBRATION_MM + _GAP_MM + strip_w + _RIGHT_MM
    fig_h = _TOP_MM + strip_h + _BOTTOM_MM
    fig = Figure(figsize=(fig_w / MM_PER_INCH, fig_h / MM_PER_INCH), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)

    def box(left_mm: float, width_mm: float) -> Axes:
        return fig.add_axes((left_mm / fig_w, _BOTTOM_MM / fig_h, width_mm / fig_w, strip_h / fig_h))

    calibration_s = _CALIBRATION_MM / PAPER_SPEED_MM_PER_S
    calibration = box(_LEFT_MM, _CALIBRATION_MM)
    _draw_paper(calibration, calibration_s, y_low, y_high)
    pulse_t = np.array([0.0, 0.1, 0.1, 0.3, 0.3, calibration_s])
    pulse_v = calibration_base + np.array([0.0, 0.0, 1000.0, 1000.0, 0.0, 0.0])
    calibration.plot(pulse_t, pulse_v, color=TRACE_COLOUR, linewidth=_TRACE_LINE_PT, solid_joinstyle="miter")

    strip = box(_LEFT_MM + _CALIBRATION_MM + _GAP_MM, strip_w)
    _draw_paper(strip, duration_s, y_low, y_high)
    strip.plot(np.arange(signal.size) / fs, signal, color=TRACE_COLOUR, linewidth=_TRACE_LINE_PT)
    if marks.size:
        strip.plot(
            marks / fs,
            np.full(marks.size, y_high - _MARKER_ROW_UV / 2),
            linestyle="none",
            marker="v",
            markersize=3.0 / MM_PER_INCH * 72,
            markeredgewidth=0,
            color=BEAT_COLOUR,
        )

    fig.text(_LEFT_MM / fig_w, 1 - 2.5 / fig_h, _drawable(title), va="top", fontproperties=_font(9.0), parse_math=False)
    note = f"{PAPER_SPEED_MM_PER_S:g} mm/s, {GAIN_MM_PER_MV:g} mm/mV, {duration_s:.1f} s"
    if start:
        note += f" (the last {duration_s:.1f} s of {total_s:.1f} s)"
    if clipped:
        note += f", clipped to {_MAX_SPAN_UV / 1000:g} mV around the median"
    fig.text(_LEFT_MM / fig_w, 2.0 / fig_h, note, va="bottom", fontproperties=_font(7.0), parse_math=False)
    return _png(fig, dpi)


def _strip_samples(samples_uv: ArrayLike, fs: float) -> FloatArray:
    signal = np.asarray(samples_uv, dtype=np.float64)
    if signal.ndim != 1:
        raise ValueError(f"an ECG strip is one lead: expected a 1-D array, got shape {signal.shape}")
    if signal.size == 0:
        raise ValueError("the ECG strip is empty")
    if not np.all(np.isfinite(signal)):
        raise ValueError(f"the ECG strip holds {int(np.count_nonzero(~np.isfinite(signal)))} non-finite samples")
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"fs must be a positive sampling rate in Hz, got {fs!r}")
    return signal


def _check_dpi(dpi: int) -> None:
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi!r}")


def _shown_range(signal: FloatArray) -> tuple[float, float, bool]:
    """The signal's range in µV, cut to 10 mV around the median when wider (the bool says whether it was)."""
    low, high = float(signal.min()), float(signal.max())
    if high - low <= _MAX_SPAN_UV:
        return low, high, False
    centre = float(np.median(signal))
    return max(low, centre - _MAX_SPAN_UV / 2), min(high, centre + _MAX_SPAN_UV / 2), True


def _paper_limits(low: float, high: float) -> tuple[float, float]:
    """Y limits in µV on whole 5 mm blocks, 1 mm clear of the signal, a marker row on top, at least 30 mm."""
    y_low = math.floor((low - _MINOR_UV) / _BLOCK_UV) * _BLOCK_UV
    y_high = math.ceil((high + _MINOR_UV) / _BLOCK_UV) * _BLOCK_UV + _MARKER_ROW_UV
    min_span = _MIN_HEIGHT_MM / GAIN_MM_PER_MV * 1000.0
    grow_below = True
    while y_high - y_low < min_span:
        if grow_below:
            y_low -= _BLOCK_UV
        else:
            y_high += _BLOCK_UV
        grow_below = not grow_below
    return y_low, y_high


def _draw_paper(ax: Axes, duration_s: float, y_low: float, y_high: float) -> None:
    """Pink paper over [0, duration] x [y_low, y_high], with lines every 1 mm and darker ones every 5 mm."""
    ax.set_xlim(0.0, duration_s)
    ax.set_ylim(y_low, y_high)
    ax.set_facecolor(PAPER_COLOUR)
    # The axes patch is the paper: keep the axes, hide the ticks and the frame.
    ax.tick_params(which="both", left=False, bottom=False, labelleft=False, labelbottom=False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    mm_s = 1.0 / PAPER_SPEED_MM_PER_S
    columns = np.arange(math.floor(duration_s / mm_s + 1e-9) + 1)
    rows = np.arange(round((y_high - y_low) / _MINOR_UV) + 1)
    for every_fifth, colour, width in (
        (False, MINOR_GRID_COLOUR, _MINOR_LINE_PT),
        (True, MAJOR_GRID_COLOUR, _MAJOR_LINE_PT),
    ):
        xs = columns[(columns % 5 == 0) == every_fifth] * mm_s
        ys = y_low + rows[(rows % 5 == 0) == every_fifth] * _MINOR_UV
        ax.vlines(xs, y_low, y_high, colors=colour, linewidths=width, zorder=0.5)
        ax.hlines(ys, 0.0, duration_s, colors=colour, linewidths=width, zorder=0.5)


# --- Beat positions from RR intervals ----------------------------------------------------------------------


def locate_beats(samples_uv: ArrayLike, fs: float, rr_intervals_ms: Sequence[float]) -> list[int]:
    """Sample indices of the beats in the strip, consistent with the RR intervals the gateway measured.

    1. The strip is band-passed to the QRS band (5-20 Hz, zero phase: a 2nd-order Butterworth magnitude,
       squared, applied in the frequency domain to the strip mirrored 1 s at each end). Its square, averaged
       over 60 ms, is the QRS energy.
    2. Candidate R peaks are the energy's local maxima above a fraction of a typical QRS energy (the median
       over 2 s stretches of their largest energy, so that artefacts in a few stretches do not raise it)
       and above a 50 µV noise floor, strongest first, each claiming ±200 ms (refractory period).
    3. The RR intervals give the beats' positions relative to the first beat. Every offset that puts some
       beat on some candidate is tried; the offset kept has the most beats on a candidate (within 80 ms),
       less one for each beat it pushes outside the strip, and then the smallest total distance.
    4. Each beat inside the strip is moved to the largest ``|band-passed signal|`` within ±60 ms of its
       candidate, or of its position predicted by the intervals where no candidate is near.

    Beats that the alignment puts outside the strip are left out. With no RR intervals, the answer is
    the detected peaks (2, with a stricter threshold), refined as in 4. A strip with no QRS energy at all
    gives no beats. Raises ValueError for an empty or non-finite strip, a bad ``fs``, or an RR interval
    that is not a positive number.
    """
    signal = _strip_samples(samples_uv, fs)
    intervals = np.asarray(rr_intervals_ms, dtype=np.float64).reshape(-1)
    if intervals.size and not np.all(np.isfinite(intervals) & (intervals > 0)):
        raise ValueError("RR intervals must be positive numbers of milliseconds")

    qrs = _bandpass(signal, fs, *_QRS_BAND_HZ)
    energy = _moving_mean(qrs * qrs, max(1, round(_ENERGY_WINDOW_S * fs)))
    magnitude = np.abs(qrs)
    half_window = max(1, round(_REFINE_S * fs))
    reference = _typical_qrs_energy(energy, fs)
    floor = _NOISE_FLOOR_UV**2

    if intervals.size == 0:
        peaks = _peaks(energy, max(floor, _DETECTION_FRACTION * reference), round(_REFRACTORY_S * fs))
        return sorted({_refine(magnitude, int(p), half_window) for p in peaks})

    candidates = _peaks(energy, max(floor, _CANDIDATE_FRACTION * reference), round(_REFRACTORY_S * fs))
    if candidates.size == 0:
        return []
    template = np.concatenate(([0.0], np.cumsum(intervals))) * fs / 1000.0
    tolerance = _MATCH_S * fs
    offset = _best_offset(candidates.astype(np.float64), template, signal.size, tolerance)
    predicted = offset + template
    inside = (predicted >= -tolerance) & (predicted < signal.size - 1 + tolerance)
    predicted = predicted[inside]
    nearest = _nearest(candidates.astype(np.float64), predicted)
    on_candidate = np.abs(nearest - predicted) <= tolerance
    # Beats without a candidate follow the matched ones: the intervals' origin as the matches place it.
    if np.any(on_candidate):
        predicted = predicted + float(np.median(nearest[on_candidate] - predicted[on_candidate]))
    centres = np.where(on_candidate, nearest, predicted)
    centres = np.clip(np.rint(centres), 0, signal.size - 1).astype(np.intp)
    return sorted({_refine(magnitude, int(c), half_window) for c in centres})


def _bandpass(signal: FloatArray, fs: float, low_hz: float, high_hz: float) -> FloatArray:
    """Zero-phase band-pass: |H|² of 2nd-order Butterworth high- and low-pass sections, as filtfilt gives."""
    n = signal.size
    pad = min(n - 1, round(fs))  # mirrored ends keep the FFT's wrap-around away from the strip
    padded = np.pad(signal - np.median(signal), pad, mode="reflect")
    f = np.fft.rfftfreq(padded.size, d=1.0 / fs)
    f4 = f**4
    response = f4 / (f4 + low_hz**4) / (1.0 + f4 / high_hz**4)
    filtered = np.fft.irfft(np.fft.rfft(padded) * response, n=padded.size)
    return np.asarray(filtered[pad : pad + n], dtype=np.float64)


def _typical_qrs_energy(energy: FloatArray, fs: float) -> float:
    """The median over 2 s stretches of each stretch's largest energy. Every stretch holds a beat down to
    30 /min, and artefacts (electrode pops, saturation) that fill fewer than half of them cannot raise it."""
    stretches = np.array_split(energy, max(1, round(energy.size / (_REFERENCE_STRETCH_S * fs))))
    return float(np.median([stretch.max() for stretch in stretches]))


def _moving_mean(x: FloatArray, width: int) -> FloatArray:
    width = min(width, x.size)  # "same" returns the longer of the two
    return np.convolve(x, np.full(width, 1.0 / width), mode="same")


def _peaks(energy: FloatArray, threshold: float, refractory: int) -> IntArray:
    """Local maxima at or above ``threshold``, strongest first, none within ``refractory`` of a stronger one."""
    padded = np.concatenate(([-np.inf], energy, [-np.inf]))
    middle = padded[1:-1]
    maxima = np.flatnonzero((middle >= padded[:-2]) & (middle > padded[2:]) & (middle >= threshold))
    kept: list[int] = []
    for index in maxima[np.argsort(-energy[maxima], kind="stable")]:
        at = bisect_left(kept, index)
        if at > 0 and index - kept[at - 1] < refractory:
            continue
        if at < len(kept) and kept[at] - index < refractory:
            continue
        insort(kept, int(index))
    return np.asarray(kept, dtype=np.intp)


def _nearest(sorted_points: FloatArray, positions: FloatArray) -> FloatArray:
    """For each position, the nearest of ``sorted_points`` (not empty)."""
    right = np.clip(np.searchsorted(sorted_points, positions), 0, sorted_points.size - 1)
    left = np.clip(right - 1, 0, sorted_points.size - 1)
    pick_left = np.abs(positions - sorted_points[left]) <= np.abs(sorted_points[right] - positions)
    return np.where(pick_left, sorted_points[left], sorted_points[right])


def _best_offset(candidates: FloatArray, template: FloatArray, n: int, tolerance: float) -> float:
    """The first beat's position that best lays the RR template on the candidates (see locate_beats, 3).

    Candidates are a refractory period (200 ms) apart, more than the 2 x 80 ms match window, so at most one
    candidate can match a beat: the beats an offset lays on candidates are exactly the pairwise offsets
    (candidate minus beat) within the window around it. Counting those by binary search scores every offset
    in O(P log P) for P pairs; the distances that break ties are computed only for the best-scoring offsets.
    """
    pairs = np.sort(np.subtract.outer(candidates, template).ravel())
    offsets = np.unique(pairs)
    matched = np.searchsorted(pairs, offsets + tolerance, side="right") - np.searchsorted(
        pairs, offsets - tolerance, side="left"
    )
    before = np.searchsorted(template, -tolerance - offsets, side="left")
    after = template.size - np.searchsorted(template, n - 1 + tolerance - offsets, side="left")
    score = matched - before - after
    tied = offsets[score == score.max()]
    spread = np.empty(tied.size)
    # Chunks bound the (offsets x beats) arrays to about a million entries, should many offsets tie.
    step = max(1, 1_000_000 // template.size)
    for i in range(0, tied.size, step):
        positions = np.add.outer(tied[i : i + step], template)
        distance = np.abs(_nearest(candidates, positions) - positions)
        spread[i : i + step] = np.where(distance <= tolerance, distance, 0.0).sum(axis=1)
    return float(tied[int(np.argmin(spread))])


def _refine(magnitude: FloatArray, centre: int, half_window: int) -> int:
    lo = max(0, centre - half_window)
    hi = min(magnitude.size, centre + half_window + 1)
    return lo + int(np.argmax(magnitude[lo:hi]))


# --- Trend -------------------------------------------------------------------------------------------------


def trend_png(
    history: Sequence[tuple[datetime, float]],
    current: tuple[datetime, float],
    baseline_median: float,
    threshold: float,
    *,
    label: str,
    unit: str,
    title: str,
    dpi: int = 100,
    figsize: tuple[float, float] = (8.0, 4.5),
) -> bytes:
    """The subject's readings over the window, with the current one highlighted, as PNG bytes.

    Blue-grey points for ``history``, a red diamond for ``current``, a green line at ``baseline_median`` and
    an orange dashed line at the alert ``threshold``; dates on the x axis in the time zone of ``current``'s
    timestamp (UTC for a naive one), a legend under the plot. The y axis reads ``label (unit)``.
    The PNG is ``figsize`` inches times ``dpi`` pixels.

    An empty ``history`` is drawn (the current reading and the two lines), not refused: a picture is still
    useful to the clinician. Raises ValueError for a non-finite value, a non-positive ``dpi`` or ``figsize``.
    """
    values = [value for _, value in history] + [current[1], baseline_median, threshold]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("trend values, baseline and threshold must be finite numbers")
    _check_dpi(dpi)
    if not all(math.isfinite(side) and side > 0 for side in figsize):
        raise ValueError(f"figsize must be two positive numbers of inches, got {figsize!r}")

    tz = current[0].tzinfo
    # matplotlib.dates has no annotations; its day numbers are what the date locator expects.
    when = np.asarray(mdates.date2num([at for at, _ in history]), dtype=np.float64)  # type: ignore[no-untyped-call]
    now = float(mdates.date2num(current[0]))  # type: ignore[no-untyped-call]
    readings = np.asarray([value for _, value in history], dtype=np.float64)
    order = np.argsort(when, kind="stable")
    times = np.append(when, now)
    first, last = float(times.min()), float(times.max())
    margin = 0.05 * max(last - first, 1.0)

    fig = Figure(figsize=figsize, dpi=dpi, facecolor="white", layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(when[order], readings[order], color=READING_COLOUR, linewidth=0.8, marker="o", markersize=4)
    ax.plot([now], [current[1]], linestyle="none", marker="D", markersize=8, color=CURRENT_COLOUR)
    ax.axhline(baseline_median, color=BASELINE_COLOUR, linewidth=1.2)
    ax.axhline(threshold, color=THRESHOLD_COLOUR, linewidth=1.2, linestyle="--")
    ax.set_xlim(first - margin, last + margin)
    locator = mdates.AutoDateLocator(tz=tz)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=tz))  # type: ignore[no-untyped-call]
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_ylabel(_drawable(f"{label} ({unit})"), fontproperties=_font(10.0), parse_math=False)
    ax.set_title(_drawable(title), fontproperties=_font(11.0), parse_math=False, loc="left")

    shown_unit = _drawable(unit)
    legend = fig.legend(
        ax.get_lines(),
        [
            "readings",
            "current",
            f"baseline median {baseline_median:g} {shown_unit}",
            f"alert threshold {threshold:g} {shown_unit}",
        ],
        loc="outside lower center",
        ncols=4,
        prop=_font(8.0),
        frameon=False,
    )
    for text in legend.get_texts():
        text.set_parse_math(False)
    return _png(fig, dpi)


# --- Shared ------------------------------------------------------------------------------------------------


def _png(fig: Figure, dpi: int) -> bytes:
    out = io.BytesIO()
    # No "Software" chunk: the same picture gives the same bytes across matplotlib versions.
    fig.savefig(out, format="png", dpi=dpi, facecolor=fig.get_facecolor(), metadata={"Software": None})
    return out.getvalue()


def _font(size: float) -> FontProperties:
    families, _ = _fonts()
    return FontProperties(family=list(families), size=size)


@functools.cache
def _fonts() -> tuple[tuple[str, ...], frozenset[int]]:
    """The font families text is drawn with (DejaVu Sans, then the first CJK font installed) and the code
    points they can draw between them."""
    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    families = [_BASE_FAMILY, *[name for name in _CJK_FAMILIES if name in installed][:1]]
    covered: set[int] = set()
    for family in families:
        path = font_manager.findfont(FontProperties(family=[family]), fallback_to_default=False)
        covered.update(FT2Font(path).get_charmap())
    return tuple(families), frozenset(covered)


def _drawable(text: str) -> str:
    """``text`` with characters no font of ours can draw replaced by a box (logged once per process)."""
    _, covered = _fonts()
    missing = {ch for ch in text if ord(ch) not in covered and ch != "\n"}
    if not missing:
        return text
    _log_missing_glyphs()
    substitute = "\u25a1" if 0x25A1 in covered else "?"
    return "".join(substitute if ch in missing else ch for ch in text)


@functools.cache
def _log_missing_glyphs() -> None:
    logger.warning(
        "alert pictures: no installed font draws some characters of their text (such as Chinese); "
        "they are shown as boxes. Install a CJK font, for example fonts-noto-cjk"
    )
