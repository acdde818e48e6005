"""Streaming IIR/FIR filters that carry their state across chunks, and the filter designs of the signal path.

The designs are closed forms in numpy (the tests check them against ``scipy.signal``), and the sections run
in SciPy's compiled cascade loop, loaded on its own: ``import scipy.signal`` costs about a second and 77 MiB
on SciPy 1.17 (it loads stats, optimize and interpolate), the loop alone under a millisecond.
"""

from __future__ import annotations

import cmath
import importlib.machinery
import importlib.util
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
# Filters ``x`` (n_signals, n_samples) in place through ``sos`` (n_sections, 6), carrying ``zi``
# (n_signals, n_sections, 2); every array float64 and C-contiguous.
SosKernel = Callable[[FloatArray, FloatArray, FloatArray], None]

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
# Pan & Tompkins' five-point derivative y[n] = (2x[n] + x[n-1] - x[n-3] - 2x[n-4]) / 8, factored into two
# FIR sections: (0.25 + 0.125 z^-1 + 0.25 z^-2)(1 - z^-2).
DERIVATIVE_SOS = ((0.25, 0.125, 0.25, 1.0, 0.0, 0.0), (1.0, 0.0, -1.0, 1.0, 0.0, 0.0))


def _load_sosfilt_kernel() -> SosKernel:
    """SciPy's ``scipy.signal._sosfilt._sosfilt``, without running ``scipy/signal/__init__.py``.

    The extension module needs only numpy. It is registered under its own name, so a later
    ``import scipy.signal`` uses this very module. Should SciPy move it, the ordinary import is the fallback.
    """
    name = "scipy.signal._sosfilt"
    module = sys.modules.get(name)
    if module is None:
        import scipy

        spec = importlib.machinery.PathFinder.find_spec(name, [str(Path(scipy.__path__[0]) / "signal")])
        if spec is None or spec.loader is None:
            module = importlib.import_module(name)
        else:
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    kernel: SosKernel = module._sosfilt
    return kernel


sosfilt_kernel = _load_sosfilt_kernel()


def sosfilt_zi(sos: ArrayLike) -> FloatArray:
    """The cascade's state (n_sections, 2) in steady state for a unit step, as ``scipy.signal.sosfilt_zi``.

    Closed form for transposed direct form II: with section DC gain g, z2 = b2 - a2 g and
    z1 = b1 - a1 g + z2; each section's state is scaled by the DC gain of the sections before it.
    """
    sections = np.asarray(sos, dtype=np.float64)
    zi = np.empty((sections.shape[0], 2), dtype=np.float64)
    scale = 1.0
    for s, (b0, b1, b2, _, a1, a2) in enumerate(sections.tolist()):
        gain = (b0 + b1 + b2) / (1.0 + a1 + a2)
        z2 = b2 - a2 * gain
        zi[s] = (scale * (b1 - a1 * gain + z2), scale * z2)
        scale *= gain
    return zi


class SosFilter:
    """An IIR filter (second-order sections) applied chunk by chunk; the output equals one whole-signal pass.

    The state starts at the steady state for the first sample, so a DC offset in the input does not ring
    through the filter. Any chunking, down to one sample, gives the same output (the sections run sample by
    sample in the same order whatever the chunk boundaries).
    """

    __slots__ = ("_sos", "_zi", "_zi_unit")

    def __init__(self, sos: ArrayLike) -> None:
        self._sos: FloatArray = np.ascontiguousarray(sos, dtype=np.float64).reshape(-1, 6)
        if not np.all(self._sos[:, 3] == 1.0):
            raise ValueError("every section must be normalised to a0 = 1")
        self._zi_unit: FloatArray = sosfilt_zi(self._sos)[None]
        self._zi: FloatArray | None = None

    @property
    def sos(self) -> FloatArray:
        return self._sos

    def process(self, chunk: ArrayLike) -> FloatArray:
        y: FloatArray = np.array(chunk, dtype=np.float64, ndmin=1).reshape(1, -1)
        if y.size and self._sos.shape[0]:
            if self._zi is None:
                self._zi = self._zi_unit * y[0, 0]
            sosfilt_kernel(self._sos, y, self._zi)
        return y.reshape(-1)


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


def butter_bandpass_sos(fs: float, low_hz: float, high_hz: float) -> FloatArray:
    """Second-order (per edge) Butterworth band-pass as two sections, as ``butter(2, ..., output="sos")``.

    Analog prototype poles -exp(+-j pi/4), band-pass transform about the pre-warped edges, bilinear
    transform, and SciPy's pairing: the pole pair nearest the unit circle goes last with its two nearest
    zeros (of +1, +1, -1, -1), and the gain goes into the first section.
    """
    nyquist = fs / 2
    # Keep the upper edge inside the Nyquist band for low-rate devices (e.g. 60 Hz oximeter pleth).
    high = min(high_hz, 0.9 * nyquist)
    if not 0 < low_hz < high:
        raise ValueError(f"cannot build a {low_hz}-{high_hz} Hz band-pass at fs={fs} Hz")
    # SciPy designs at a normalised rate of 2, so the bilinear constant is 4 and the edges warp to 4 tan(pi f/fs).
    w1, w2 = 4.0 * math.tan(math.pi * low_hz / fs), 4.0 * math.tan(math.pi * high / fs)
    bandwidth, centre2 = w2 - w1, w1 * w2
    poles: list[complex] = []
    for prototype in (-cmath.exp(-1j * math.pi / 4), -cmath.exp(1j * math.pi / 4)):
        p = prototype * bandwidth / 2
        root = cmath.sqrt(p * p - centre2)
        poles += [p + root, p - root]
    gain_denominator = 1.0 + 0j
    for p in poles:
        gain_denominator *= 4.0 - p
    gain = (bandwidth**2 * 16.0 / gain_denominator).real
    digital = [(4.0 + p) / (4.0 - p) for p in poles]
    upper = sorted((z for z in digital if z.imag > 0), key=lambda z: abs(1.0 - abs(z)))
    worst, other = upper[0], upper[1]
    # Zeros at +1 (from the analog zeros at 0) and -1 (from the excess poles); the worst pair takes the nearer two.
    worst_dc = abs(worst - 1.0) < abs(worst + 1.0)
    sos = np.array(
        [
            [1.0, -2.0 if not worst_dc else 2.0, 1.0, 1.0, -2.0 * other.real, other.real**2 + other.imag**2],
            [1.0, -2.0 if worst_dc else 2.0, 1.0, 1.0, -2.0 * worst.real, worst.real**2 + worst.imag**2],
        ]
    )
    sos[0, :3] *= gain
    return sos


def notch_sos(fs: float, mains_hz: float, q: float = NOTCH_Q) -> FloatArray:
    """A second-order IIR notch at ``mains_hz`` (as ``scipy.signal.iirnotch``); empty when not below Nyquist."""
    if mains_hz <= 0 or mains_hz >= 0.95 * fs / 2:
        return np.empty((0, 6), dtype=np.float64)
    w0 = 2 * math.pi * mains_hz / fs
    # -3 dB bandwidth w0/q; iirnotch's tan(bw/2) * sqrt(1 - gb^2)/gb with gb = 1/sqrt(2) is tan(bw/2).
    gain = 1.0 / (1.0 + math.tan(w0 / q / 2))
    cos_w0 = math.cos(w0)
    return np.array([[gain, -2.0 * gain * cos_w0, gain, 1.0, -2.0 * gain * cos_w0, 2.0 * gain - 1.0]])


def ecg_conditioning_sos(fs: float, mains_hz: float = 50.0) -> FloatArray:
    """Band-pass 0.5-40 Hz (Butterworth, 2nd order per edge) followed by the mains notch."""
    return np.vstack([butter_bandpass_sos(fs, *ECG_BAND_HZ), notch_sos(fs, mains_hz)])


def qrs_derivative_sos(fs: float) -> FloatArray:
    """Pan-Tompkins QRS band (5-15 Hz) followed by their five-point derivative, as one SOS cascade."""
    return np.vstack([butter_bandpass_sos(fs, *QRS_BAND_HZ), np.array(DERIVATIVE_SOS)])


def ppg_sos(fs: float) -> FloatArray:
    """Elgendi's PPG band-pass, 0.5-8 Hz second-order Butterworth."""
    return butter_bandpass_sos(fs, *PPG_BAND_HZ)


def moving_average_taps(width: int) -> FloatArray:
    return np.full(width, 1.0 / width, dtype=np.float64)
