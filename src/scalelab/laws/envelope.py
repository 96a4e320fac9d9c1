"""Compute-optimal scaling from the envelope of training curves (Chinchilla's approach 1).

Every run's curve gives its loss at each amount of compute spent so far. At a compute C,
the envelope is the lowest loss any run reached there; the run on the envelope sets
N*(C), and the tokens it had seen by then D*(C). Across a log-spaced range of C the
optima follow power laws ``N* ∝ C^a`` and ``D* ∝ C^b``, fitted by least squares in log–log.

A curve's point part-way through a run stands for a shorter run only when the learning
rate did not depend on the run's length there: a constant schedule, or WSD before its
cooldown. A cosine run part-way has not decayed yet, so its curve lies above the
shorter runs it would be compared with; the caller refuses such runs.

Intervals come from a bootstrap over the runs of each size: a replicate keeps a size
when it draws at least one of its runs, and recomputes the envelope and the power laws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalelab.laws.isoflop import OptimumLaws, line_fit, optimum_laws

GRID_POINTS = 24  # compute values along the envelope


@dataclass
class RunCurve:
    """One run's curve: parameters, and at each evaluation the compute, tokens and loss."""

    n_params: float
    flops: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray


@dataclass
class EnvelopeFit:
    """The envelope's optima at ``flops`` and the power laws through them."""

    flops: np.ndarray
    n_opt: np.ndarray
    tokens_opt: np.ndarray
    loss_opt: np.ndarray
    n_sizes: int
    laws: OptimumLaws

    def to_dict(self) -> dict:
        return {**self.laws.to_dict(), "n_sizes": self.n_sizes,
                "envelope": [{"flops": float(c), "n_params_opt": float(n), "tokens_opt": float(d), "loss": float(v)}
                             for c, n, d, v in zip(self.flops, self.n_opt, self.tokens_opt, self.loss_opt)]}  # fmt: skip


def envelope(curves: list[RunCurve], flops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At each of ``flops``: the lowest loss of any curve that reaches it (interpolated
    in log compute), the parameters of that curve's run and the tokens it had seen.

    NaN where the winner is not bracketed, that is where no curve of a smaller and one
    of a larger model also reach that compute: at the ends of the range the winner is
    only the one size that got there, not the best one.
    """
    best = np.full(len(flops), np.inf)
    n_opt = np.full(len(flops), np.nan)
    d_opt = np.full(len(flops), np.nan)
    smallest = np.full(len(flops), np.inf)
    largest = np.full(len(flops), -np.inf)
    log_c = np.log10(flops)
    for curve in curves:
        x = np.log10(curve.flops)
        inside = (log_c >= x.min()) & (log_c <= x.max())
        loss = np.interp(log_c[inside], x, curve.loss)
        tokens = 10 ** np.interp(log_c[inside], x, np.log10(curve.tokens))
        index = np.flatnonzero(inside)
        smallest[index] = np.minimum(smallest[index], curve.n_params)
        largest[index] = np.maximum(largest[index], curve.n_params)
        lower = loss < best[index]
        best[index[lower]] = loss[lower]
        n_opt[index[lower]] = curve.n_params
        d_opt[index[lower]] = tokens[lower]
    bracketed = (smallest < n_opt) & (n_opt < largest)
    n_opt[~bracketed], d_opt[~bracketed], best[~bracketed] = np.nan, np.nan, np.nan
    return n_opt, d_opt, best


def fit_envelope(curves: list[RunCurve], *, level: float = 0.8, n_boot: int = 1000, seed: int = 0) -> EnvelopeFit:
    """The envelope of ``curves`` over the compute they share and its power laws (module
    docstring). Raises ``ValueError`` when fewer than two sizes or no shared compute range
    leave an envelope to fit."""
    curves = [c for c in curves if len(c.flops) >= 2 and np.all(c.flops > 0) and np.all(c.tokens > 0) and np.all(np.isfinite(c.loss))]
    sizes = sorted({c.n_params for c in curves})
    if len(sizes) < 2:
        raise ValueError(f"the envelope approach needs training curves of at least two model sizes (found {len(sizes)})")
    grid = np.geomspace(min(c.flops.min() for c in curves), max(c.flops.max() for c in curves), GRID_POINTS)
    n_opt, d_opt, loss = envelope(curves, grid)
    keep = np.isfinite(n_opt)
    if keep.sum() < 2 or len(np.unique(n_opt[keep])) < 2:
        raise ValueError("the envelope never has a best size between a smaller and a larger one at the same compute "
                         "(the curves never cross, or it is one size all along), so it gives no exponent; run sizes on "
                         "both sides of the optimum, long enough to pass each other")  # fmt: skip
    rng = np.random.default_rng(seed)
    by_size = {n: [c for c in curves if c.n_params == n] for n in sizes}
    replicates = np.full((n_boot, 4), np.nan)
    for r in range(n_boot):
        # Sizes are resampled, then each kept size's runs: an envelope that hinges on one
        # size, or on one lucky run, shows it in the spread.
        kept_sizes = sorted(set(rng.choice(sizes, size=len(sizes), replace=True).tolist()))
        drawn = [by_size[n][i] for n in kept_sizes for i in rng.integers(0, len(by_size[n]), size=len(by_size[n]))]
        n_b, d_b, _ = envelope(drawn, grid)
        ok = np.isfinite(n_b)
        if ok.sum() >= 2 and len(np.unique(n_b[ok])) >= 2:
            replicates[r, :2] = line_fit(np.log10(grid[ok]), np.log10(n_b[ok]))
            replicates[r, 2:] = line_fit(np.log10(grid[ok]), np.log10(d_b[ok]))
    laws = optimum_laws(np.log10(grid[keep]), np.log10(n_opt[keep]), np.log10(d_opt[keep]), replicates, level=level)
    return EnvelopeFit(flops=grid[keep], n_opt=n_opt[keep], tokens_opt=d_opt[keep], loss_opt=loss[keep], n_sizes=len(sizes), laws=laws)
