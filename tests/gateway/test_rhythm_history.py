"""Atrial fibrillation judged over consecutive 10 s ECG strips of one recording, when one strip holds too
few RR intervals for Dash et al.'s statistics; and never across recordings, nor in real sinus rhythm."""

from __future__ import annotations

import random

import numpy as np
import wfdb

from healthhut.firmware_sim.signals import EcgGenerator, Rhythm
from healthhut.gateway.checks import RhythmHistory, StripAnalysis, analyse_strip
from healthhut.protocol import Finding, Flag, Kind, Reading, Strip
from tests.conftest import data_dir

FS = 125.0  # the HealthyPi's rate


def reading(microvolts: np.ndarray, fs: float) -> Reading:
    raw = tuple(int(v) for v in np.clip(np.round(microvolts), -32768, 32767))
    return Reading(kind=Kind.ECG, strip=Strip(fs=fs, unit="uV", raw=raw, channel="ecg"))


async def analyses(signal: np.ndarray, fs: float, seconds: float = 10.0) -> list[StripAnalysis]:
    n = round(seconds * fs)
    found = []
    for start in range(0, signal.size - n + 1, n):
        analysis = await analyse_strip(reading(signal[start : start + n], fs))
        assert analysis is not None
        found.append(analysis)
    return found


def af_signal(seconds: float, rate: float, seed: int) -> np.ndarray:
    generator = EcgGenerator(FS, rate, random.Random(seed), rhythm=Rhythm.AF)
    return np.array([s.value_uv for s in generator.take(round(seconds * FS))])


def af(analysis: StripAnalysis) -> bool:
    return Finding.POSSIBLE_AF in analysis.verdict.findings


async def test_af_at_110_is_found_over_consecutive_strips_but_not_within_one() -> None:
    found_alone = found_joined = 0
    for seed in range(5):
        strips = await analyses(af_signal(40, 110, seed), FS)
        found_alone += sum(af(a) for a in strips)
        history = RhythmHistory()
        judged = [history.judge(a, ("resident", 1)) for a in strips]
        found_joined += sum(af(a) for a in judged[1:])  # from the second strip on, 20+ intervals
        for a in judged:
            if af(a):
                assert Flag.IRREGULAR_PULSE in a.verdict.flags and Flag.IRREGULAR_PULSE in a.summary.flags
    assert found_alone <= 2  # the single-strip analysis cannot tell (17-18 intervals)
    assert found_joined >= 12  # of 15 strips that follow another


async def test_strips_of_different_recordings_or_residents_are_never_joined() -> None:
    strips = await analyses(af_signal(40, 110, 7), FS)
    history = RhythmHistory()
    judged = [history.judge(a, ("resident", n)) for n, a in enumerate(strips)]  # a new recording each time
    assert not any(af(a) and not af(original) for a, original in zip(judged, strips, strict=True))
    history = RhythmHistory()
    judged = [history.judge(a, (f"resident-{n}", 1)) for n, a in enumerate(strips)]
    assert not any(af(a) and not af(original) for a, original in zip(judged, strips, strict=True))


async def test_real_sinus_rhythm_stays_sinus_when_joined() -> None:
    record = wfdb.rdrecord(str(data_dir() / "mitdb" / "100"), sampto=360 * 120, channels=[0])
    strips = await analyses(record.p_signal[:, 0] * 1000.0, 360.0)
    history = RhythmHistory()
    assert not any(af(history.judge(a, ("resident", 1))) for a in strips)
