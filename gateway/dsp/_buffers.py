"""Bounded stream history addressed by absolute sample index, and per-block statistics of a stretch."""

from __future__ import annotations

import functools
from collections import deque

import numpy as np
from numpy.typing import NDArray

from healthhut.gateway.dsp.filters import FloatArray


class History:
    """At least the most recent ``capacity`` samples of a stream, kept as the chunks that arrived.

    Appending costs nothing but a reference; ``get(a, b)`` joins the chunks that cover samples ``a..b-1``.
    """

    __slots__ = ("_capacity", "_chunks", "_n", "_start")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._chunks: deque[FloatArray] = deque()
        self._start = 0  # absolute index of the first sample of the first chunk held
        self._n = 0

    @property
    def end(self) -> int:
        return self._n

    @property
    def start(self) -> int:
        return self._start

    def append(self, x: FloatArray) -> None:
        if not x.size:
            return
        self._chunks.append(x)
        self._n += x.size
        while self._chunks and self._n - (self._start + self._chunks[0].size) >= self._capacity:
            self._start += self._chunks.popleft().size

    def get(self, a: int, b: int) -> FloatArray:
        if a < self._start or b > self._n or a > b:
            raise IndexError(f"samples {a}..{b} are not held (have {self._start}..{self._n})")
        parts: list[FloatArray] = []
        position = self._start
        for chunk in self._chunks:
            stop = position + chunk.size
            if stop > a and position < b:
                parts.append(chunk[max(0, a - position) : min(chunk.size, b - position)])
            if stop >= b:
                break
            position = stop
        return np.concatenate(parts) if parts else np.empty(0)


def block_stats(raw: FloatArray, derivative: FloatArray, size: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Minimum and maximum of ``raw`` and largest magnitude of ``derivative`` per block of ``size`` samples
    (the last block may be short)."""
    starts = block_starts(raw.size, size)
    return (
        np.minimum.reduceat(raw, starts),
        np.maximum.reduceat(raw, starts),
        np.maximum.reduceat(np.abs(derivative), starts),
    )


@functools.lru_cache(maxsize=32)
def block_starts(length: int, size: int) -> NDArray[np.intp]:
    """First index of each block of ``size`` samples in ``length``: the indices ``ufunc.reduceat`` takes,
    which reduces a short last block too and is quicker than a reduction along the rows of a reshape."""
    starts = np.arange(0, length, size, dtype=np.intp)
    starts.flags.writeable = False
    return starts
