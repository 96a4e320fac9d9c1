"""Bands drawn from a law's intervals: what the report's figures and the Displays share."""

from __future__ import annotations

import numpy as np

SMOOTHING = 0.03  # the band's smoothing kernel, as a fraction of the grid (see smooth_band)


def smooth_band(prediction: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, width: float = SMOOTHING) -> tuple[np.ndarray, np.ndarray]:
    """``lo`` and ``hi`` with their log distance from ``prediction`` smoothed along the grid.

    Each point's interval is a quantile of its own finite set of draws, so on a dense grid
    the edges carry that Monte Carlo noise as a jagged fringe that the law does not have.
    A Gaussian kernel over ``width`` of the grid (at least one point) removes the fringe
    and keeps the band's shape; the distances keep their sign, so the band still holds
    the line.
    """
    n = len(prediction)
    sigma = max(1.0, width * n)
    steps = np.arange(n)
    kernel = np.exp(-0.5 * ((steps[:, None] - steps[None, :]) / sigma) ** 2)
    kernel /= kernel.sum(axis=1, keepdims=True)  # near the ends, the kernel averages what lies inside
    below = kernel @ np.log(prediction / lo)
    above = kernel @ np.log(hi / prediction)
    return prediction * np.exp(-below), prediction * np.exp(above)
