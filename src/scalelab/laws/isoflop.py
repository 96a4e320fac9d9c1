"""Compute-optimal scaling from isoFLOP profiles (Chinchilla's approach 2).

At each compute budget C, models of several sizes N train on C's worth of tokens; their
final losses against log N form a valley, the isoFLOP profile. A parabola in log N,
``L = c0 + c1·u + c2·u²`` with ``u = log10 N``, locates its floor ``N*(C)`` (the vertex
``u* = −c1 / (2·c2)``). Across budgets the optima follow power laws, ``N* ∝ C^a`` and
``D* ∝ C^b`` (D* the tokens a model of size N* trains on at C), fitted by least squares in
log–log.

Intervals come from a wild bootstrap of each profile: every replicate flips the sign of
each run's residual from its budget's parabola at random (Rademacher weights, which keep
a run's own error scale), refits every parabola and the power laws. A profile whose
parabola opens downwards has no floor; one whose floor lies outside the sizes measured is
kept but flagged, since its optimum is an extrapolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MIN_SIZES = 3  # a parabola needs three distinct sizes


@dataclass
class Profile:
    """One budget's runs and the floor of its parabola (``n_opt`` None when it has none)."""

    flops: float
    n_params: np.ndarray
    loss: np.ndarray
    tokens: np.ndarray
    coefficients: np.ndarray | None = None  # c0, c1, c2 of the parabola in log10 N
    n_opt: float | None = None
    loss_opt: float | None = None
    tokens_opt: float | None = None
    interior: bool = False  # the floor lies within the sizes measured
    n_opt_range: tuple[float, float] | None = None
    why: str | None = None  # why the profile has no usable floor

    def to_dict(self) -> dict:
        return {
            "flops": self.flops, "n_params_opt": self.n_opt, "n_params_opt_range": self.n_opt_range, "loss_opt": self.loss_opt,
            "tokens_opt": self.tokens_opt, "interior": self.interior, "why": self.why,
            "coefficients": None if self.coefficients is None else [float(c) for c in self.coefficients],
            "runs": [{"n_params": float(n), "loss": float(v), "tokens": float(t)} for n, v, t in zip(self.n_params, self.loss, self.tokens)],
        }  # fmt: skip


@dataclass
class OptimumLaws:
    """The power laws of compute-optimal size and data, ``N* = n0·C^a`` and ``D* = d0·C^b``,
    with bootstrap intervals on the exponents; ``replicates`` holds each replicate's
    (a, log10 n0, b, log10 d0)."""

    a: float
    b: float
    n0: float
    d0: float
    a_range: tuple[float, float]
    b_range: tuple[float, float]
    level: float
    replicates: np.ndarray = field(repr=False)

    def n_opt(self, flops):
        return self.n0 * np.asarray(flops, dtype=float) ** self.a

    def tokens_opt(self, flops):
        return self.d0 * np.asarray(flops, dtype=float) ** self.b

    def allocation(self, flops: float) -> dict:
        """N* and D* at ``flops``, each with the interval of the replicates' power laws, and D*/N*."""
        log_c = math.log10(flops)
        n_b = 10 ** (self.replicates[:, 1] + self.replicates[:, 0] * log_c)
        d_b = 10 ** (self.replicates[:, 3] + self.replicates[:, 2] * log_c)
        tail = (1 - self.level) / 2
        n, d = float(self.n_opt(flops)), float(self.tokens_opt(flops))
        return {"flops": flops, "n_params": n, "n_params_range": quantile_range(n_b, tail), "tokens": d,
                "tokens_range": quantile_range(d_b, tail), "tokens_per_param": d / n,
                "tokens_per_param_range": quantile_range(d_b / n_b, tail)}  # fmt: skip

    def to_dict(self) -> dict:
        return {"a": self.a, "a_range": self.a_range, "b": self.b, "b_range": self.b_range, "n0": self.n0, "d0": self.d0, "level": self.level}


def optimum_laws(log_c: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, replicates: np.ndarray, *, level: float) -> OptimumLaws:
    """The least-squares lines of log10 N* and log10 D* against log10 C, with the
    intervals of the replicates' exponents (rows with a NaN are dropped)."""
    a, log_n0 = line_fit(log_c, log_n)
    b, log_d0 = line_fit(log_c, log_d)
    replicates = replicates[np.isfinite(replicates).all(axis=1)]
    tail = (1 - level) / 2
    return OptimumLaws(a=a, b=b, n0=10**log_n0, d0=10**log_d0, a_range=quantile_range(replicates[:, 0], tail),
                       b_range=quantile_range(replicates[:, 2], tail), level=level, replicates=replicates)  # fmt: skip


@dataclass
class IsoFlopFit:
    """Each budget's profile and the power laws of their floors."""

    profiles: list[Profile]
    laws: OptimumLaws

    def to_dict(self) -> dict:
        return {**self.laws.to_dict(), "profiles": [p.to_dict() for p in self.profiles]}


def fit_parabola(n_params: np.ndarray, loss: np.ndarray) -> np.ndarray | None:
    """Least-squares ``c0, c1, c2`` of ``loss`` against ``u = log10 n_params``; None with fewer than three distinct sizes."""
    u = np.log10(n_params)
    if len(np.unique(u)) < MIN_SIZES:
        return None
    design = np.column_stack([np.ones_like(u), u, u * u])
    coefficients, *_ = np.linalg.lstsq(design, loss, rcond=None)
    return coefficients


def parabola_floor(coefficients: np.ndarray) -> float | None:
    """``log10 N*`` of the vertex, or None when the parabola opens downwards (no floor)."""
    _, c1, c2 = coefficients
    if not c2 > 0:
        return None
    return -c1 / (2 * c2)


def fit_isoflop(flops, n_params, loss, tokens, *, level: float = 0.8, n_boot: int = 1000, seed: int = 0) -> IsoFlopFit:
    """Fit the isoFLOP profiles of runs at budgets ``flops`` (one value per run, repeated
    within a budget) and the power laws of their optima (module docstring).

    ``tokens`` are each run's training tokens; the tokens at a profile's floor are
    interpolated in log–log against size (at a fixed budget, D falls as N grows).
    Raises ``ValueError`` when fewer than two budgets have a floor.
    """
    flops, n_params, loss, tokens = (np.asarray(v, dtype=float) for v in (flops, n_params, loss, tokens))
    profiles = []
    for budget in np.unique(flops):
        at = flops == budget
        profile = Profile(float(budget), n_params[at], loss[at], tokens[at])
        _locate_floor(profile)
        profiles.append(profile)
    usable = [p for p in profiles if p.n_opt is not None]
    if len(usable) < 2:
        reasons = "; ".join(f"C = {p.flops:.3g}: {p.why}" for p in profiles if p.why) or "one budget only"
        raise ValueError(f"the isoFLOP approach needs at least two budgets whose profile has a floor ({reasons})")

    rng = np.random.default_rng(seed)
    log_c = np.log10([p.flops for p in usable])
    replicates = np.full((n_boot, 4), np.nan)
    floors = np.full((n_boot, len(usable)), np.nan)
    for r in range(n_boot):
        log_n, log_d = [], []
        for j, p in enumerate(usable):
            fitted = np.polyval(p.coefficients[::-1], np.log10(p.n_params))
            signs = rng.choice([-1.0, 1.0], size=len(p.loss))
            replica = fitted + signs * (p.loss - fitted) * _small_sample_scale(len(p.loss))
            floor = parabola_floor(fit_parabola(p.n_params, replica))
            log_n.append(np.nan if floor is None else floor)
            log_d.append(np.nan if floor is None else _log_tokens_at(p, floor))
        floors[r] = log_n
        keep = np.isfinite(log_n)
        if keep.sum() >= 2:
            replicates[r, :2] = line_fit(log_c[keep], np.asarray(log_n)[keep])
            replicates[r, 2:] = line_fit(log_c[keep], np.asarray(log_d)[keep])
    tail = (1 - level) / 2
    for j, p in enumerate(usable):
        good = floors[:, j][np.isfinite(floors[:, j])]
        if len(good):
            p.n_opt_range = quantile_range(10**good, tail)
    laws = optimum_laws(log_c, np.log10([p.n_opt for p in usable]), np.log10([p.tokens_opt for p in usable]), replicates, level=level)
    return IsoFlopFit(profiles=profiles, laws=laws)


def _locate_floor(profile: Profile) -> None:
    coefficients = fit_parabola(profile.n_params, profile.loss)
    if coefficients is None:
        profile.why = f"{len(np.unique(profile.n_params))} distinct sizes; a parabola needs {MIN_SIZES}"
        return
    profile.coefficients = coefficients
    floor = parabola_floor(coefficients)
    if floor is None:
        profile.why = "the losses do not rise on both sides of a size (the parabola has no floor)"
        return
    u = np.log10(profile.n_params)
    profile.n_opt = float(10**floor)
    profile.loss_opt = float(np.polyval(coefficients[::-1], floor))
    profile.tokens_opt = float(10 ** _log_tokens_at(profile, floor))
    profile.interior = bool(u.min() <= floor <= u.max())


def _log_tokens_at(profile: Profile, log_n: float) -> float:
    """log10 of the tokens a model of size 10**log_n trains on at this budget: a straight
    line through the runs' (log N, log D), which is exact when D = C / (k·N)."""
    slope, intercept = np.polyfit(np.log10(profile.n_params), np.log10(profile.tokens), 1)
    return float(intercept + slope * log_n)


def line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of the least-squares line (exact through two points)."""
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def _small_sample_scale(n: int) -> float:
    """Residuals of a three-parameter fit understate the noise: scale them by √(n / (n − 3))."""
    return math.sqrt(n / (n - 3)) if n > 3 else 1.0


def quantile_range(values: np.ndarray, tail: float) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return (math.nan, math.nan)
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))
