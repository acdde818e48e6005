"""The gateway's checks between a device and the spool: plausibility of every spot reading, and the
analysis of every waveform strip (rate, quality, rhythm findings), via ``healthhut.gateway.dsp``.

Spot checks are pure Python and run inline. Waveform analysis loads numpy/scipy on first use and runs
in a worker thread, so a 10-second strip never stalls the event loop that reads the devices.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from healthhut.gateway.dsp.spot import check_reading
from healthhut.protocol import KINDS, Finding, Flag, Kind, Quantity, Reading

log = logging.getLogger(__name__)

# Display pleth of a CMS50 is 0..127; knowing the rails lets the analysis spot clipping.
PLETH_RAILS = (0.0, 127.0)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the checks add to a reading before it is spooled."""

    flags: frozenset[Flag]
    fit_for_alerting: bool
    reasons: tuple[str, ...] = ()
    findings: frozenset[Finding] = frozenset()


def check_spot(reading: Reading) -> Verdict:
    spot = check_reading(reading)
    return Verdict(spot.flags, spot.fit_for_alerting, spot.reasons)


@dataclass(frozen=True, slots=True)
class StripAnalysis:
    """A waveform strip's derived reading (rate, quality, flags) and its verdict."""

    summary: Reading
    verdict: Verdict


def _analyse(reading: Reading, mains_hz: float) -> StripAnalysis | None:
    strip = reading.strip
    assert strip is not None
    import numpy as np

    samples = np.asarray(strip.raw, dtype=np.float64) * strip.gain + strip.offset
    if reading.kind is Kind.ECG:
        from healthhut.gateway.dsp.ecg import analyze_ecg

        ecg = analyze_ecg(samples, strip.fs, mains_hz=mains_hz)
        values: dict[str, Quantity] = {"signal_quality": Quantity(round(ecg.signal_quality, 3), "1")}
        if ecg.heart_rate is not None:
            values["heart_rate"] = Quantity(round(ecg.heart_rate, 1), "/min")
        if ecg.rr_intervals_ms:
            values["rr_intervals"] = Quantity(tuple(round(rr, 1) for rr in ecg.rr_intervals_ms), "ms")
        findings = frozenset(Finding(finding.value) for finding in ecg.rhythm)
        flags, fit = ecg.flags | reading.flags, ecg.fit_for_alerting and Flag.LEAD_OFF not in reading.flags
    elif reading.kind is Kind.PPG:
        from healthhut.gateway.dsp.ppg import analyze_ppg

        raw_intensity = strip.channel in ("red", "ir")
        ppg = analyze_ppg(samples, strip.fs, raw_intensity=raw_intensity, rails=None if raw_intensity else PLETH_RAILS)
        values = {"signal_quality": Quantity(round(ppg.signal_quality, 3), "1")}
        if ppg.pulse_rate is not None:
            values["pulse_rate"] = Quantity(round(ppg.pulse_rate, 1), "/min")
        findings = frozenset()
        flags, fit = ppg.flags | reading.flags, ppg.fit_for_alerting
    else:
        return None
    reasons = tuple(f"{reading.kind.value} strip: {flag.value}" for flag in sorted(flags))
    summary = Reading(kind=reading.kind, values=values, flags=flags, measured_at=reading.measured_at)
    return StripAnalysis(summary, Verdict(flags, fit and bool(values.keys() - {"signal_quality"}), reasons, findings))


class RhythmHistory:
    """The RR intervals of one device's recent consecutive ECG strips of one resident, so that atrial
    fibrillation is judged on enough intervals when a single strip has too few: Dash et al.'s statistics
    need at least 20 (``AF_MIN_INTERVALS``), and a 10 s strip at 110 /min holds about 17.

    The history restarts when the strips stop following each other (a gap, a new connection), when the
    resident changes, and after a strip unfit for alerting, so intervals are only ever joined across one
    continuous recording of one person. At most the latest 64 intervals are judged (one segment).
    """

    def __init__(self) -> None:
        from healthhut.gateway.dsp.rhythm import AF_SEGMENT_INTERVALS

        self._rr: deque[float] = deque(maxlen=AF_SEGMENT_INTERVALS)
        self._key: object = None

    def judge(self, analysis: StripAnalysis, key: object) -> StripAnalysis:
        """``analysis`` with possible AF added when the joined intervals are irregularly irregular and the
        strip alone had too few to say; ``key`` names the recording (changes restart the history)."""
        from healthhut.gateway.dsp.rhythm import AF_MIN_INTERVALS, irregularity

        summary, verdict = analysis.summary, analysis.verdict
        if key != self._key or not verdict.fit_for_alerting:
            self._rr.clear()
            self._key = key
        if not verdict.fit_for_alerting:
            return analysis
        quantity = summary.values.get("rr_intervals")
        rr = list(quantity.value) if quantity is not None and isinstance(quantity.value, tuple) else []
        self._rr.extend(rr)
        if Finding.POSSIBLE_AF in verdict.findings or len(rr) >= AF_MIN_INTERVALS or len(self._rr) < AF_MIN_INTERVALS:
            return analysis
        import numpy as np

        if not irregularity(np.asarray(self._rr)).irregularly_irregular:
            return analysis
        flags = verdict.flags | {Flag.IRREGULAR_PULSE}
        return StripAnalysis(
            replace(summary, flags=flags),
            replace(verdict, flags=flags, findings=verdict.findings | {Finding.POSSIBLE_AF}),
        )


# One analysis thread, and at most this many strips waiting for it: a Pi that falls behind skips the
# analysis of a strip (the strip itself is still stored) rather than queue work without bound, which
# would also hold up a shutdown until the queue had drained.
_ANALYSER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsp")
MAX_WAITING = 4
_waiting = 0
skipped = 0


async def analyse_strip(reading: Reading, mains_hz: float = 50.0) -> StripAnalysis | None:
    """Analyse an ECG or PPG strip off the event loop; None for a kind with no analysis, or when the
    analyser is too far behind."""
    global _waiting, skipped  # noqa: PLW0603 - one analyser per process
    if reading.strip is None or not KINDS[reading.kind].waveform:
        return None
    if _waiting >= MAX_WAITING:
        skipped += 1
        if skipped == 1 or skipped % 100 == 0:
            log.warning("signal analysis is behind; %d strip(s) stored without analysis so far", skipped)
        return None
    _waiting += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_ANALYSER, _analyse, reading, mains_hz)
    finally:
        _waiting -= 1
