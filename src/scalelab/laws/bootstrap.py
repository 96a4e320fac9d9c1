"""Bootstrap over runs: resampling weights and replicate fits, all in one batched solve.

A *cell* is one x value (or one (N, D) pair); several points at one x are seeds of that
cell. When cells have several seeds, seeds are resampled within each cell, so every
cell stays in every replicate. With one point per cell, whole cells are resampled.
Replicates are expressed as integer weights on the original points, which lets one
batched Levenberg–Marquardt call refit all of them from the full-data optimum.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from scalelab.laws.optimize import Problem, refine


def resample_weights(x: np.ndarray, n_boot: int, *, seed: int = 0) -> np.ndarray:
    """Integer weights (n_boot, n): how often each point appears in each replicate."""
    rng = np.random.default_rng(seed)
    _, cell, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    cell = cell.ravel()
    n = len(x)
    weights = np.zeros((n_boot, n))
    if counts.max() >= 2:
        for c, size in enumerate(counts):
            members = np.flatnonzero(cell == c)
            weights[:, members] = rng.multinomial(size, np.full(size, 1.0 / size), size=n_boot)
    else:
        weights[:] = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    return weights


def bootstrap_internal(problem: Problem, u_best: np.ndarray, *, n_boot: int, seed: int = 0) -> np.ndarray:
    """Internal parameters of ``n_boot`` replicate fits, each started at the full-data optimum."""
    weights = resample_weights(problem.x, n_boot, seed=seed)
    start = np.repeat(u_best[None, :], n_boot, axis=0)
    with threadpool_limits(limits=1, user_api="blas"):  # tiny batched solves: threads only contend
        U, _ = refine(problem, start, weights)
    return U
