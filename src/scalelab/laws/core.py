"""Fitting a law to data: validation, form choice, the fitted law and its intervals."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scalelab.errors import InputError
from scalelab.laws.forms import FORMS, Form, specialise
from scalelab.laws.optimize import fit_datasets

DEFAULT_DELTA = 1e-3
DEFAULT_BOOTSTRAP = 1000
ONE_X_AUTO = ("power", "saturating", "m3", "m4", "bnsl")
TWO_X_AUTO = ("chinchilla",)


@dataclass
class LawData:
    """Validated inputs of a fit: positive x (n,) or (n, 2), positive y, and the target's kind."""

    x: np.ndarray
    y: np.ndarray
    x_names: tuple[str, ...]
    y_name: str
    ceiling: float | None  # chance level of an error rate, or None for unbounded targets
    notes: list[str] = field(default_factory=list)

    @property
    def scale(self) -> np.ndarray:
        """One number per point that orders points by size: x, or N·D for joint laws."""
        return self.x if self.x.ndim == 1 else self.x.prod(axis=1)

    def subset(self, mask: np.ndarray) -> LawData:
        return LawData(self.x[mask], self.y[mask], self.x_names, self.y_name, self.ceiling, list(self.notes))


def prepare(x, y, *, x_names=None, y_name: str = "y", ceiling: float | None = None, error_rate: bool = False) -> LawData:
    """Check and convert raw inputs; raise :class:`InputError` with one clear line.

    ``error_rate`` marks a bounded target: values must lie in [0, 1], and ``ceiling``
    (the chance level) defaults to 1. Zero values, common for error rates on small test
    sets, are raised to half the smallest positive value, since the fit works on logs.
    """
    if hasattr(x, "columns"):
        x_names = tuple(str(c) for c in x.columns)
        x = x.to_numpy()
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float).ravel()
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[1] != 2):
        raise InputError(f"x must be one column or two (N, D), got shape {x.shape}")
    x_names = tuple(x_names) if x_names else (("x",) if x.ndim == 1 else ("N", "D"))
    if len(x) != len(y):
        raise InputError(f"x has {len(x)} values but {y_name} has {len(y)}")
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise InputError(f"x and {y_name} must be finite numbers (found NaN or inf)")
    if np.any(x <= 0):
        bad = float(x[x <= 0].ravel()[0])
        raise InputError(f"{' and '.join(x_names)} must be positive for a power law, found {bad:g}")
    notes: list[str] = []
    if error_rate or ceiling is not None:
        if np.any(y < 0) or np.any(y > 1):
            bad = float(y[(y < 0) | (y > 1)][0])
            raise InputError(f"{y_name} is an error rate but holds {bad:g}, outside [0, 1]")
        ceiling = 1.0 if ceiling is None else float(ceiling)
        if np.any(y >= ceiling):
            # Runs near chance scatter above it; the law cannot, so such values are capped.
            notes.append(f"{int(np.sum(y >= ceiling))} values of {y_name} at or above the chance level {ceiling:g} were capped just below it")
            y = np.minimum(y, ceiling * (1 - 1e-6))
    elif np.any(y < 0):
        raise InputError(f"{y_name} must be positive to fit a scaling law, found {float(y.min()):g}")
    if np.any(y == 0):
        if not np.any(y > 0):
            raise InputError(f"{y_name} is zero everywhere; there is nothing to fit")
        floor = float(y[y > 0].min()) / 2
        notes.append(f"{int(np.sum(y == 0))} zero values of {y_name} were raised to {floor:g} (logs need y > 0)")
        y = np.where(y == 0, floor, y)
    return LawData(x=x, y=y, x_names=x_names, y_name=y_name, ceiling=ceiling, notes=notes)


@dataclass(frozen=True)
class Cells:
    """A dataset's points pooled by x: the fit's view of seed replicates.

    Each distinct x (or (N, D) pair) is one cell; its target is the mean of log y over
    the cell's runs and its weight their count. Summing the loss over cells so weighted
    keeps the objective of distinct points unchanged, but makes it well posed with
    replicates: a robust loss with a small δ is nearly L1, and over two seeds at one x
    an L1 loss is flat anywhere between them, so the optimiser stopped at a start value.
    """

    x: np.ndarray  # (C,) or (C, 2), sorted
    log_y: np.ndarray  # (C,)
    counts: np.ndarray  # (C,) runs per cell, as floats (they weight the loss)
    index: np.ndarray  # (n,) the cell of each point

    @property
    def y(self) -> np.ndarray:
        return np.exp(self.log_y)

    def pool(self, log_y: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell weights and weighted mean log targets for point weights ``weights`` (B, n):
        two arrays (B, C). A cell no replicate drew keeps its own mean (its weight is 0)."""
        onehot = np.zeros((len(self.index), len(self.counts)))
        onehot[np.arange(len(self.index)), self.index] = 1.0
        total = weights @ onehot
        summed = (weights * log_y[None, :]) @ onehot
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(total > 0, summed / total, self.log_y[None, :])
        return total, mean


def cells(x: np.ndarray, y: np.ndarray) -> Cells:
    """Pool the points of ``(x, y)`` by distinct x (see :class:`Cells`)."""
    distinct, index, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    index = index.ravel()
    log_y = np.bincount(index, weights=np.log(y), minlength=len(counts)) / counts
    return Cells(distinct, log_y, counts.astype(float), index)


HUBER_K = 1.345  # Huber's threshold in units of the noise: 95% efficiency under normal noise


def effective_delta(pooled: Cells, delta: float) -> float:
    """The Huber threshold for a curve: ``delta``, raised to 1.345 times the scatter of
    its cell means around a smooth curve.

    A threshold far under the noise (1e-3 against a few percent) makes the loss L1: flat
    valleys that the optimiser leaves at different points from different starts, and
    fits that follow a few points. The scatter is estimated without any form, from the
    pseudo-residuals of Gasser et al. 1986 (each mean against the line through its
    neighbours in log-log), robustly (their median absolute value), so every form and
    every bootstrap replicate of a curve shares one threshold. Joint (N, D) data keep
    ``delta``: Epoch's replication of Hoffmann et al. used 1e-3 on it.
    """
    if pooled.x.ndim != 1 or len(pooled.x) < 4:
        return delta
    t, v = np.log(pooled.x), pooled.log_y
    left, right = t[1:-1] - t[:-2], t[2:] - t[1:-1]
    a, b = right / (left + right), left / (left + right)  # linear interpolation weights
    pseudo = (a * v[:-2] + b * v[2:] - v[1:-1]) / np.sqrt(a * a + b * b + 1.0)
    sigma = 1.4826 * float(np.median(np.abs(pseudo)))
    return max(delta, HUBER_K * sigma)


def resolve_form(name: str, data: LawData) -> Form:
    if name not in FORMS:
        raise InputError(f"unknown form {name!r}; known: auto, {', '.join(FORMS)}")
    form = FORMS[name]
    n_x = 1 if data.x.ndim == 1 else 2
    if form.n_x != n_x:
        raise InputError(f"form {name!r} takes {form.n_x} x column(s), got {n_x} ({', '.join(data.x_names)})")
    return specialise(form, data.ceiling)


def fit_form(data: LawData, form: Form, *, delta: float = DEFAULT_DELTA, polished: bool = True) -> tuple[np.ndarray, float]:
    """Internal parameters and loss of one form fitted to ``data``."""
    return fit_forms([data], form, delta=delta, polished=polished)[0]


def fit_forms(datas: list[LawData], form: Form, *, delta: float = DEFAULT_DELTA, polished: bool = True) -> list[tuple[np.ndarray, float]]:
    """One form fitted to each of several datasets (same target kind) in one batched solve."""
    for data in datas:
        problem = too_few_points(data, form)
        if problem is not None:
            raise problem
    if not datas:
        return []
    pooled = [cells(d.x, d.y) for d in datas]
    deltas = [effective_delta(c, delta) for c in pooled]
    return fit_datasets(form, [(c.x, c.y, c.counts) for c in pooled], datas[0].ceiling, deltas, polished=polished)


def bounds_hit(form: Form, data: LawData, u: np.ndarray) -> dict[str, str]:
    """The parameters of internal ``u`` that rest on a bound of ``form`` for ``data``:
    name -> "lower" or "upper" (empty when none)."""
    pooled = cells(data.x, data.y)
    lower, upper = (form.to_internal(b) for b in form.bounds(pooled.x, pooled.y, data.ceiling))
    lower = np.where(np.isfinite(lower), lower, -700.0)  # as the optimiser keeps the box
    tolerance = 1e-6 * np.maximum(upper - lower, 1e-12)
    hit = {}
    for name, value, lo, hi, tol in zip(form.params, u, lower, upper, tolerance):
        if value <= lo + tol:
            hit[name] = "lower"
        elif value >= hi - tol:
            hit[name] = "upper"
    return hit


def bounds_that_matter(form: Form, hit: dict[str, str]) -> dict[str, str]:
    """Of the bounds ``hit``, those that are limits of the search rather than part of the
    law (:attr:`Form.natural_bounds`): the fit wanted a value the box forbids."""
    return {name: side for name, side in hit.items() if (name, side) not in form.natural_bounds}


def too_few_points(data: LawData, form: Form) -> InputError | None:
    """The error for a dataset with fewer points, or fewer distinct x, than the form has
    parameters (seeds at one x pin down nothing more than their mean), else None."""
    if len(data.y) < form.n_params:
        return InputError(f"form {form.name!r} has {form.n_params} parameters but only {len(data.y)} points were given")
    n_cells = len(np.unique(data.x, axis=0))
    if n_cells < form.n_params:
        return InputError(f"form {form.name!r} has {form.n_params} parameters but the {len(data.y)} points have only {n_cells} distinct x values")
    return None

