"""Streaming IIR/FIR filters that carry their state across chunks, and the filter designs of the signal path."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import signal as sps

FloatArray = NDArray[np.float64]

# ECG conditioning pass band. 0.5 Hz keeps the ST segment usable for monitoring while removing most
# respiratory baseline wander (AHA recommendations, Kligfield et al., Circulation 115:1306, 2007, give
# 0.05 Hz for diagnostic and 0.5 Hz/0.67 Hz for monitoring bandwidth); 40 Hz is the monitoring upper
# edge used by bedside monitors and by the Li/Clifford SQIs (power up to 40 Hz).
ECG_BAND_HZ = (0.5, 40.0)
# QRS emphasis band of Pan & Tompkins (IEEE TBME 32(3):230, 1985): most QRS energy, little P/T wave,
# baseline or muscle noise.
QRS_BAND_HZ = (5.0, 15.0)
# Notch quality factor: -3 dB width = f0/Q = 1.7 Hz at 50 Hz, wide enough for grid frequency
# tolerance (GB/T 15945: 50 ± 0.2 Hz, ± 0.5 Hz off-grid) without eating QRS energy.
NOTCH_Q = 30.0
# PPG pass band of Elgendi et al. (PLoS ONE 8(10):e76585, 2013): second-order Butterworth 0.5-8 Hz.
PPG_BAND_HZ = (0.5, 8.0)


# The direct form (one lfilter call) costs about a fifth of sosfilt per call, which matters for 0.25 s
# chunks. It is used only where it reproduces the cascade to this relative error on a test signal: at ECG
# and PPG rates up to about 500 Hz these low-order designs do; at 1 kHz and above the cascade is kept.
DIRECT_FORM_TOLERANCE = 1e-9


class SosFilter:
    """An IIR filter (second-order sections) applied chunk by chunk; the output equals one whole-signal pass.

    The state starts at the steady state for the first sample, so a DC offset in the input does not ring
    through the filter. Any chunking, down to one sample, gives the same output.
    """

    __slots__ = ("_a", "_b", "_direct", "_sos", "_zi", "_zi_unit")

    def __init__(self, sos: ArrayLike) -> None:
        self._sos: FloatArray = np.ascontiguousarray(sos, dtype=np.float64)
        b, a = sps.sos2tf(self._sos)
        self._b: FloatArray = np.asarray(b, dtype=np.float64)
        self._a: FloatArray = np.asarray(a, dtype=np.float64)
        self._direct = self._sos.shape[0] > 0 and _direct_form_matches(self._sos, self._b, self._a)
        if self._direct:
            self._zi_unit: FloatArray = np.asarray(sps.lfilter_zi(self._b, self._a), dtype=np.float64)
        else:
            self._zi_unit = np.asarray(sps.sosfilt_zi(self._sos), dtype=np.float64)
        self._zi: FloatArray | None = None

    @property
    def sos(self) -> FloatArray:
        return self._sos

    def process(self, chunk: ArrayLike) -> FloatArray:
        x = np.asarray(chunk, dtype=np.float64)
        if x.size == 0:
            return np.empty(0, dtype=np.float64)
        if self._sos.shape[0] == 0:
            return x.copy()
        if self._zi is None:
            self._zi = self._zi_unit * x[0]
        if self._direct:
            y, self._zi = sps.lfilter(self._b, self._a, x, zi=self._zi)
        else:
            y, self._zi = sps.sosfilt(self._sos, x, zi=self._zi)
        return np.asarray(y, dtype=np.float64)


def _direct_form_matches(sos: FloatArray, b: FloatArray, a: FloatArray) -> bool:
    test = np.random.default_rng(0).standard_normal(4096)
    test[2048:] += 10.0  # a step exercises the low-frequency poles, the ones direct form gets wrong
    reference = np.asarray(sps.sosfilt(sos, test), dtype=np.float64)
    direct = np.asarray(sps.lfilter(b, a, test), dtype=np.float64)
    scale = float(np.max(np.abs(reference))) or 1.0
    return bool(np.max(np.abs(reference - direct)) <= DIRECT_FORM_TOLERANCE * scale)


class FirFilter:
    """An FIR filter applied chunk by chunk, starting from zero history.

    Each output is one dot product over the same inputs whatever the chunking (``np.convolve`` on the
    carried tail plus the chunk), so chunked output is bit-identical to a whole-signal pass.
    """

    __slots__ = ("_b", "_tail")

    def __init__(self, taps: ArrayLike) -> None:
        self._b: FloatArray = np.asarray(taps, dtype=np.float64)
        self._tail: FloatArray = np.zeros(self._b.size - 1, dtype=np.float64)

    def process(self, chunk: ArrayLike) -> FloatArray:
        x = np.asarray(chunk, dtype=np.float64)
        if x.size == 0:
            return np.empty(0, dtype=np.float64)
        extended = np.concatenate((self._tail, x))
        if self._tail.size:
            self._tail = extended[-self._tail.size :]
        return np.convolve(extended, self._b, mode="valid")


def _bandpass_sos(fs: float, low_hz: float, high_hz: float, order: int = 2) -> FloatArray:
    nyquist = fs / 2
    # Keep the upper edge inside the Nyquist band for low-rate devices (e.g. 60 Hz oximeter pleth).
    high = min(high_hz, 0.9 * nyquist)
    if not 0 < low_hz < high:
        raise ValueError(f"cannot build a {low_hz}-{high_hz} Hz band-pass at fs={fs} Hz")
    return np.asarray(sps.butter(order, [low_hz, high], btype="bandpass", output="sos", fs=fs), dtype=np.float64)


def notch_sos(fs: float, mains_hz: float, q: float = NOTCH_Q) -> FloatArray:
    """A second-order IIR notch at ``mains_hz``; empty when that frequency is not below Nyquist."""
    if mains_hz <= 0 or mains_hz >= 0.95 * fs / 2:
        return np.empty((0, 6), dtype=np.float64)
    b, a = sps.iirnotch(mains_hz, q, fs=fs)
    return np.asarray(sps.tf2sos(b, a), dtype=np.float64)


def ecg_conditioning_sos(fs: float, mains_hz: float = 50.0) -> FloatArray:
    """Band-pass 0.5-40 Hz (Butterworth, 2nd order per edge) followed by the mains notch."""
    return np.vstack([_bandpass_sos(fs, *ECG_BAND_HZ), notch_sos(fs, mains_hz)])


def qrs_derivative_sos(fs: float) -> FloatArray:
    """Pan-Tompkins QRS band (5-15 Hz) followed by their five-point derivative, as one SOS cascade."""
    # The derivative y[n] = (2x[n] + x[n-1] - x[n-3] - 2x[n-4]) / 8 (Pan & Tompkins 1985),
    # written as two FIR sections so the whole chain is one sosfilt call per chunk.
    derivative = np.asarray(sps.tf2sos([0.25, 0.125, 0.0, -0.125, -0.25], [1.0]), dtype=np.float64)
    return np.vstack([_bandpass_sos(fs, *QRS_BAND_HZ), derivative])


def ppg_sos(fs: float) -> FloatArray:
    """Elgendi's PPG band-pass, 0.5-8 Hz second-order Butterworth."""
    return _bandpass_sos(fs, *PPG_BAND_HZ)


def moving_average_taps(width: int) -> FloatArray:
    return np.full(width, 1.0 / width, dtype=np.float64)
