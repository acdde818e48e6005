"""Real-time signal path of the gateway: ECG/PPG filtering, detection, quality and plausibility checks."""

# Names load on first use (PEP 562): spot checks run on every reading and need neither numpy nor scipy,
# while the waveform path loads numpy and SciPy's section loop (about 0.15 s and 14 MiB) only when used.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from healthhut.gateway.dsp.ecg import EcgAnalyzer, EcgDetector, EcgSummary, analyze_ecg, detect_r_peaks
    from healthhut.gateway.dsp.ppg import (
        LINEAR_110_25,
        MAXIM_RD117,
        PpgAnalyzer,
        PpgSummary,
        PulseDetector,
        Spo2Calibration,
        Spo2Estimate,
        analyze_ppg,
        detect_pulses,
        estimate_spo2,
        perfusion_index,
    )
    from healthhut.gateway.dsp.quality import EcgWindowQuality, Grade, PpgWindowQuality
    from healthhut.gateway.dsp.rhythm import Irregularity, RhythmFinding, RhythmLimits
    from healthhut.gateway.dsp.spot import SpotCheck, check_reading

_HOME = {
    "EcgAnalyzer": "ecg",
    "EcgDetector": "ecg",
    "EcgSummary": "ecg",
    "analyze_ecg": "ecg",
    "detect_r_peaks": "ecg",
    "LINEAR_110_25": "ppg",
    "MAXIM_RD117": "ppg",
    "PpgAnalyzer": "ppg",
    "PpgSummary": "ppg",
    "PulseDetector": "ppg",
    "Spo2Calibration": "ppg",
    "Spo2Estimate": "ppg",
    "analyze_ppg": "ppg",
    "detect_pulses": "ppg",
    "estimate_spo2": "ppg",
    "perfusion_index": "ppg",
    "EcgWindowQuality": "quality",
    "Grade": "quality",
    "PpgWindowQuality": "quality",
    "Irregularity": "rhythm",
    "RhythmFinding": "rhythm",
    "RhythmLimits": "rhythm",
    "SpotCheck": "spot",
    "check_reading": "spot",
}

__all__ = [
    "LINEAR_110_25",
    "MAXIM_RD117",
    "EcgAnalyzer",
    "EcgDetector",
    "EcgSummary",
    "EcgWindowQuality",
    "Grade",
    "Irregularity",
    "PpgAnalyzer",
    "PpgSummary",
    "PpgWindowQuality",
    "PulseDetector",
    "RhythmFinding",
    "RhythmLimits",
    "Spo2Calibration",
    "Spo2Estimate",
    "SpotCheck",
    "analyze_ecg",
    "analyze_ppg",
    "check_reading",
    "detect_pulses",
    "detect_r_peaks",
    "estimate_spo2",
    "perfusion_index",
]


def __getattr__(name: str) -> object:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
