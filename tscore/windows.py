"""Sliding windows over one series and overlap averaging of per-window outputs (numpy, no torch)."""

from __future__ import annotations

import numpy as np


def window_starts(length: int, size: int, stride: int) -> np.ndarray:
    """Start rows of windows of ``size`` rows every ``stride`` rows covering ``[0, length)``.

    The last window is aligned to the end so every row is covered; a series shorter than
    ``size`` gets one window starting at 0 (callers run it at its own length).
    """
    if length <= size:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - size + 1, max(1, stride), dtype=np.int64)
    if starts[-1] != length - size:
        starts = np.append(starts, length - size)
    return starts


def window_index(starts: np.ndarray, size: int) -> np.ndarray:
    """``[N, size]`` row indices of each window (for fancy-indexing a ``[T, C]`` matrix)."""
    return starts[:, None] + np.arange(size, dtype=np.int64)[None, :]


def overlap_weights(size: int) -> np.ndarray:
    """Per-position weights for overlap averaging: a window trusts its centre more than its edges."""
    if size <= 2:
        return np.ones(size, dtype=np.float32)
    return (np.hanning(size + 2)[1:-1]).astype(np.float32)
