"""Functional forms of scaling laws, as small objects.

Each form knows its parameter names, how each is optimised (in log space when it is a
scale), its bounds for given data, its formula, and a grid of starting points. Formulas
are vectorised over parameter sets: ``predict(theta, x)`` takes ``theta`` of shape
``(k, n_params)`` and returns ``(k, n_points)``, so many starts or bootstrap replicates
are evaluated in one call.

Conventions: ``x`` is ``(n,)`` for one-variable laws, ``(n, 2)`` holding ``(N, D)`` for
the joint law. Targets decrease with scale (loss, error). ``ceiling`` is the chance level
of an error rate (or ``None``): predictions never exceed it, and M4 saturates at it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Form:
    """A law y = f(x; θ) with named parameters, bounds and starting points."""

    name: str
    params: tuple[str, ...]
    log_params: tuple[str, ...]  # optimised as log(value): positive scales
    n_x: int  # 1, or 2 for (N, D)
    formula: str  # human-readable
    reference: str
    _predict: Callable[[np.ndarray, np.ndarray, float | None], np.ndarray]
    _bounds: Callable[[np.ndarray, np.ndarray, float | None], dict]
    _starts: Callable[[np.ndarray, np.ndarray, float | None], dict[str, np.ndarray]]
    # Bounds that are part of the law, not limits of the search: a floor of zero, a flat
    # exponent, a break beyond the data. A fit resting on one is a simpler law of the same
    # family; a fit resting on any other bound wanted a value the box forbids.
    natural_bounds: tuple[tuple[str, str], ...] = ()

    @property
    def n_params(self) -> int:
        return len(self.params)

    def predict(self, theta: np.ndarray, x: np.ndarray, ceiling: float | None = None) -> np.ndarray:
        """Predictions for each row of ``theta`` (natural units) at each ``x``: shape (k, n).

        ``x`` is shared by all rows ((n,), or (n, 2) for joint laws), or one dataset per
        row of ``theta`` ((k, n) or (k, n, 2)), which lets many datasets be fitted at once.
        """
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        x = np.asarray(x, dtype=float)
        if x.ndim == self.n_x:  # shared: one leading axis, broadcast over the rows
            x = x[None]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            y = self._predict(theta, x, ceiling)
        if ceiling is not None:
            y = np.minimum(y, ceiling)
        return y

    def bounds(self, x: np.ndarray, y: np.ndarray, ceiling: float | None) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of each parameter, in natural units, for this data."""
        b = self._bounds(np.asarray(x, float), np.asarray(y, float), ceiling)
        return np.array([b[p][0] for p in self.params], float), np.array([b[p][1] for p in self.params], float)

    def starts(self, x: np.ndarray, y: np.ndarray, ceiling: float | None) -> np.ndarray:
        """Starting points (natural units), shape (m, n_params)."""
        columns = self._starts(np.asarray(x, float), np.asarray(y, float), ceiling)  # one array per parameter
        return np.column_stack([np.asarray(columns[p], float) for p in self.params])

    # -- the optimiser's coordinates: log for scales, identity otherwise ---------------
    @property
    def _log_mask(self) -> np.ndarray:
        return np.array([p in self.log_params for p in self.params])

    def to_internal(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, float)
        return np.where(self._log_mask, np.log(np.maximum(theta, 1e-300)), theta)

    def to_natural(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, float)
        return np.where(self._log_mask, np.exp(np.clip(u, -700.0, 700.0)), u)  # exp(709) is the float64 limit


# -- helpers for bounds and starts ---------------------------------------------------------
def _floor_bounds(y: np.ndarray) -> tuple[float, float]:
    """The asymptote E lies between 0 and (just under) the smallest observation."""
    return 0.0, float(np.min(y)) * 0.999


def _mesh(**axes) -> dict[str, np.ndarray]:
    """Every combination of the axes' values (the first axis varies slowest), as columns."""
    columns = np.meshgrid(*(np.asarray(v, dtype=float) for v in axes.values()), indexing="ij")
    return {name: column.ravel() for name, column in zip(axes, columns)}


def _median_ratios(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """exp(median(log(num/den))) over the last axis, skipping points where either is not
    positive: a robust fit of the scale factor for each row of starts, in one pass."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(numerator) - np.log(denominator)
    logs = np.where(np.isfinite(logs), logs, np.nan)
    logs = np.sort(logs, axis=-1)  # NaNs sort last
    count = np.sum(~np.isnan(logs), axis=-1)
    low = np.take_along_axis(logs, np.maximum((count - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    high = np.take_along_axis(logs, np.minimum(count // 2, logs.shape[-1] - 1)[..., None], axis=-1)[..., 0]
    return np.where(count > 0, np.exp(0.5 * (low + high)), 1.0)


EXPONENTS = (0.05, 0.15, 0.3, 0.5, 0.8, 1.2)


# -- power: y = B x^-beta ----------------------------------------------------------------
def _power_predict(t, x, ceiling):
    return t[:, [0]] * x ** -t[:, [1]]


def _power_bounds(x, y, ceiling):
    return {"B": (1e-30, 1e30), "beta": (0.0, 5.0)}


def _power_starts(x, y, ceiling):
    beta = np.array(EXPONENTS)
    return {"B": _median_ratios(y, x ** -beta[:, None]), "beta": beta}


# -- saturating (and compute): y = E + B x^-beta ---------------------------------------------
def _sat_predict(t, x, ceiling):
    return t[:, [0]] + t[:, [1]] * x ** -t[:, [2]]


def _sat_bounds(x, y, ceiling):
    return {"E": _floor_bounds(y), "B": (1e-30, 1e30), "beta": (0.0, 5.0)}


def _sat_starts(x, y, ceiling):
    grid = _mesh(E=np.array([0.0, 0.3, 0.6, 0.9]) * float(np.min(y)), beta=EXPONENTS)
    grid["B"] = _median_ratios(y - grid["E"][:, None], x ** -grid["beta"][:, None])
    return grid


# -- m3: y = B (1/x + gamma)^beta ----------------------------------------------------------
def _m3_predict(t, x, ceiling):
    return t[:, [0]] * (1.0 / x + t[:, [1]]) ** t[:, [2]]


def _m3_bounds(x, y, ceiling):
    return {"B": (1e-30, 1e30), "gamma": (1e-12 / float(np.max(x)), 1e3 / float(np.min(x))), "beta": (0.0, 5.0)}


def _m3_starts(x, y, ceiling):
    grid = _mesh(gamma=np.array([0.01, 0.1, 1.0, 10.0]) / float(np.max(x)), beta=EXPONENTS)
    grid["B"] = _median_ratios(y, (1.0 / x + grid["gamma"][:, None]) ** grid["beta"][:, None])
    return grid


# -- m4: (y - E) / (y0 - y)^alpha = B x^-beta, solved for y ---------------------------------
# Every point is solved by the Newton pass below, which is fast; SciPy's find_root, where
# there is one (SciPy >= 1.15), re-solves the rare points it leaves off the root. The
# project allows scipy>=1.10, so without find_root the Newton pass stands alone, as it
# did before the repair: right but for those rare points.
try:
    from scipy.optimize.elementwise import find_root as _find_root
except ImportError:
    _find_root = None

# A Newton value is taken when the root lies within this fraction of y0 - E of it.
M4_TOLERANCE = 1e-12


def _m4_ceiling(t, ceiling):
    return np.full((t.shape[0], 1), ceiling) if ceiling is not None else t[:, [4]]


def _m4_misfit(y, E, rhs, y0, alpha):
    """g(y) = (y - E) - rhs (y0 - y)^alpha: increasing in y on (E, y0), zero at the law's value."""
    return (y - E) - rhs * np.maximum(y0 - y, 0.0) ** alpha


def _m4_predict(t, x, ceiling):
    E, B, alpha, beta = (t[:, [i]] for i in range(4))
    y0 = _m4_ceiling(t, ceiling)
    rhs = B * x**-beta
    shape = rhs.shape
    E, alpha, y0 = (np.broadcast_to(v, shape).ravel() for v in (E, alpha, y0))
    rhs = rhs.ravel()
    y = _m4_solve_newton(E, alpha, y0, rhs)
    if _find_root is not None:
        _m4_repair(y, E, alpha, y0, rhs)
    return y.reshape(shape)


def _m4_repair(y, E, alpha, y0, rhs):
    """Re-solve, in place, the points the Newton pass left away from the root.

    Near y0 with a small alpha the slope of g is unbounded, so a Newton step there can be
    tiny while g is not, and the point stops at y0 far from the root (alpha = 0.055,
    rhs = 0.85, y0 - E = 0.83: stopped at y0, the root is 0.81). The test is a sign
    change of g across y ± a hair, not |g| small: beside y0 the steep slope makes |g| of a
    correct root large in floating point. Chandrupatla's bracketing method, which a steep
    slope cannot fool, re-solves what fails it. It is not used for every point because it
    is 3 to 30 times slower than the Newton pass (from 20 points to 10^5, one law or a
    batch of 5000 replicates), and a fit evaluates the law thousands of times; the check
    adds a tenth to a half, and the few points it repairs cost little. Each point is
    solved on its own either way, so a law fitted in a batch equals it fitted alone.
    """
    span = y0 - E
    hair = np.maximum(M4_TOLERANCE * span, 4 * np.finfo(float).eps * np.abs(y))
    below = _m4_misfit(np.maximum(y - hair, E), E, rhs, y0, alpha)
    above = _m4_misfit(np.minimum(y + hair, y0), E, rhs, y0, alpha)
    bad = np.flatnonzero((below > 0) | (above < 0))  # NaNs (no law here) compare false and stay
    Eb, ab, y0b, rb = E[bad], alpha[bad], y0[bad], rhs[bad]
    # Only where (E, y0) holds a root: with alpha = 0 and rhs above y0 - E it holds none,
    # and the Newton value, y0, stands.
    has_root = (_m4_misfit(y0b, Eb, rb, y0b, ab) > 0) & (_m4_misfit(Eb, Eb, rb, y0b, ab) < 0)
    if not has_root.any():
        return
    bad, Eb, ab, y0b, rb = (v[has_root] for v in (bad, Eb, ab, y0b, rb))
    found = _find_root(_m4_misfit, (Eb, y0b), args=(Eb, rb, y0b, ab))
    y[bad] = np.where(found.success, found.x, y[bad])


def _m4_solve_newton(E, alpha, y0, rhs):
    """The root of g in (E, y0) for each point (flat arrays), by safeguarded Newton."""
    # g(y) = (y - E) - rhs (y0 - y)^alpha increases in y on (E, y0). Newton steps from the
    # bracket's middle, kept inside the shrinking bracket (a step that leaves it bisects
    # instead: near y0 the slope is unbounded), on the points not yet converged only.
    lo, hi = E.copy(), y0.copy()
    # Start from the better of the two asymptotic solutions: y near E, where the gap
    # y0 - y is about y0 - E, and y near y0, where y - E is about y0 - E.
    span = y0 - E
    near_floor = E + rhs * span**alpha
    near_ceiling = y0 - (span / np.maximum(rhs, 1e-300)) ** (1.0 / np.maximum(alpha, 1e-12))
    candidates = np.clip(np.stack([near_floor, near_ceiling]), lo + 1e-15 * span, hi - 1e-15 * span)
    misfit = np.abs((candidates - E) - rhs * np.maximum(y0 - candidates, 0.0) ** alpha)
    y = np.where(misfit[0] <= misfit[1], candidates[0], candidates[1])
    y = np.where(np.isfinite(y), y, 0.5 * (lo + hi))
    # Newton on every point while most still move; then on the unconverged ones only. A
    # point stops at its first step that barely moves it, whichever way it is computed,
    # so its value never depends on the other points solved beside it (a law fitted in a
    # batch of groups equals the same law fitted alone).
    arrays = (y, E, alpha, rhs, y0, lo, hi)
    todo = None
    frozen = np.zeros(y.shape, dtype=bool)
    for _ in range(60):
        yt, Et, at, rt, y0t, lt, ht = arrays if todo is None else (a[todo] for a in arrays)
        gap = np.maximum(y0t - yt, 1e-300)
        powered = gap**at
        g = (yt - Et) - rt * powered
        above = g > 0
        lt = np.where(above, lt, yt)
        ht = np.where(above, yt, ht)
        newton = yt - g / (1.0 + rt * at * powered / gap)
        step = np.where((newton >= lt) & (newton <= ht), newton, 0.5 * (lt + ht))
        moving = np.abs(step - yt) > 1e-10 * np.maximum(np.abs(step), 1e-300)
        if todo is None:
            y, lo, hi = np.where(frozen, yt, step), np.where(frozen, lo, lt), np.where(frozen, hi, ht)
            arrays = (y, E, alpha, rhs, y0, lo, hi)
            frozen |= ~moving
            if frozen.mean() > 0.2:
                todo = np.flatnonzero(~frozen)
        else:
            lo[todo], hi[todo], y[todo] = lt, ht, step
            todo = todo[moving]
        if (todo is None and frozen.all()) or (todo is not None and not len(todo)):
            break
    return y


def _m4_bounds(x, y, ceiling):
    bounds = {"E": _floor_bounds(y), "B": (1e-30, 1e30), "alpha": (0.0, 5.0), "beta": (0.0, 5.0)}
    if ceiling is None:
        bounds["y0"] = (float(np.max(y)) * 1.001, float(np.max(y)) * 10.0)
    return bounds


def _m4_starts(x, y, ceiling):
    y0_options = [ceiling] if ceiling is not None else [float(np.max(y)) * f for f in (1.1, 2.0)]
    grid = _mesh(y0=y0_options, E=np.array([0.0, 0.5, 0.9]) * float(np.min(y)), alpha=(0.0, 0.5, 1.0), beta=EXPONENTS)
    column = (slice(None), None)
    lhs = (y - grid["E"][column]) / np.maximum(grid["y0"][column] - y, 1e-12) ** grid["alpha"][column]
    grid["B"] = _median_ratios(lhs, x ** -grid["beta"][column])
    if ceiling is not None:
        del grid["y0"]
    return grid


# -- bnsl: y = E + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1) ---------------------------------------
def _bnsl_predict(t, x, ceiling):
    E, b, c0, c1, d1, f1 = (t[:, [i]] for i in range(6))
    # f1·log(1 + (x/d1)^(1/f1)) as a logaddexp: a sharp break (small f1) would overflow.
    smooth = f1 * np.logaddexp(0.0, np.log(x / d1) / f1)
    return E + b * np.exp(-c0 * np.log(x) - c1 * smooth)


def _bnsl_bounds(x, y, ceiling):
    return {
        "E": _floor_bounds(y),
        "b": (1e-30, 1e30),
        # Wide: a sharp break on a real curve wants slopes and sharpness far past the
        # values of smooth ones (c1 = 5 once stopped a fit that extrapolated 4x better free).
        "c0": (0.0, 10.0),
        "c1": (-50.0, 50.0),
        "d1": (float(np.min(x)) / 100.0, float(np.max(x)) * 100.0),
        "f1": (1e-3, 100.0),
    }


def _bnsl_starts(x, y, ceiling):
    breaks = np.exp(np.quantile(np.log(x), [0.25, 0.5, 0.75]))
    grid = _mesh(E=np.array([0.0, 0.6]) * float(np.min(y)), c0=(0.05, 0.3, 0.8), c1=(-0.3, 0.3, 1.0), d1=breaks)
    column = (slice(None), None)
    shape = x ** -grid["c0"][column] * (1.0 + x / grid["d1"][column]) ** (-grid["c1"][column])
    grid["b"] = _median_ratios(y - grid["E"][column], shape)
    grid["f1"] = np.ones_like(grid["E"])
    return grid


# -- compute: the saturating law in training FLOPs, with gamma for beta --------------------------
def _compute_bounds(x, y, ceiling):
    return {"E": _floor_bounds(y), "B": (1e-30, 1e30), "gamma": (0.0, 5.0)}


def _compute_starts(x, y, ceiling):
    return {"gamma" if k == "beta" else k: v for k, v in _sat_starts(x, y, ceiling).items()}


# -- chinchilla: L(N, D) = E + A / N^alpha + B / D^beta -------------------------------------
def _chin_predict(t, x, ceiling):
    N, D = x[..., 0], x[..., 1]
    return t[:, [0]] + t[:, [1]] * N ** -t[:, [3]] + t[:, [2]] * D ** -t[:, [4]]


def _chin_bounds(x, y, ceiling):
    return {"E": _floor_bounds(y), "A": (1e-30, 1e30), "B": (1e-30, 1e30), "alpha": (0.0, 3.0), "beta": (0.0, 3.0)}


def _chin_starts(x, y, ceiling):
    # For fixed (E, alpha, beta) the law is linear in (A, B): solve those by least squares.
    N, D = x[:, 0], x[:, 1]
    grid = _mesh(E=np.array([0.0, 0.5, 0.8, 0.95]) * float(np.min(y)), alpha=(0.1, 0.3, 0.5, 0.8), beta=(0.1, 0.3, 0.5, 0.8))
    scales = []
    for e, alpha, beta in zip(grid["E"], grid["alpha"], grid["beta"]):
        design = np.stack([N**-alpha, D**-beta], axis=1) / y[:, None]
        target = (y - e) / y  # relative residuals, closer to the log loss
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        scales.append(np.maximum(coef, 1e-6))
    grid["A"], grid["B"] = np.array(scales).T
    return grid


FORMS: dict[str, Form] = {
    f.name: f
    for f in (
        Form("power", ("B", "beta"), ("B",), 1, "y = B·x^-β", "power law (M1)", _power_predict, _power_bounds, _power_starts,
             (("beta", "lower"),)),
        Form(
            "saturating", ("E", "B", "beta"), ("B",), 1, "y = E + B·x^-β", "saturating power law (M2)",
            _sat_predict, _sat_bounds, _sat_starts, (("E", "lower"), ("beta", "lower")),
        ),
        Form(
            "m3", ("B", "gamma", "beta"), ("B", "gamma"), 1, "y = B·(1/x + γ)^β", "Alabdulmohsin et al. 2022, M3",
            _m3_predict, _m3_bounds, _m3_starts, (("gamma", "lower"), ("beta", "lower")),
        ),
        Form(
            "m4", ("E", "B", "alpha", "beta", "y0"), ("B",), 1, "(y − E)/(y0 − y)^α = B·x^-β",
            "Alabdulmohsin et al. 2022, M4; y0 is the chance level when known",
            _m4_predict, _m4_bounds, _m4_starts, (("E", "lower"), ("alpha", "lower"), ("beta", "lower")),
        ),
        Form(
            "bnsl", ("E", "b", "c0", "c1", "d1", "f1"), ("b", "d1", "f1"), 1,
            "y = E + b·x^-c0·(1 + (x/d1)^(1/f1))^(-c1·f1)", "Caballero et al. 2022, one break",
            _bnsl_predict, _bnsl_bounds, _bnsl_starts, (("E", "lower"), ("c0", "lower"), ("d1", "lower"), ("d1", "upper")),
        ),
        Form(
            "chinchilla", ("E", "A", "B", "alpha", "beta"), ("A", "B"), 2, "L(N, D) = E + A/N^α + B/D^β",
            "Hoffmann et al. 2022", _chin_predict, _chin_bounds, _chin_starts,
            (("E", "lower"), ("alpha", "lower"), ("beta", "lower")),
        ),
        Form(
            "compute", ("E", "B", "gamma"), ("B",), 1, "y = E + B·C^-γ (C: training FLOPs)", "compute law",
            _sat_predict, _compute_bounds, _compute_starts, (("E", "lower"), ("gamma", "lower")),
        ),
    )
}  # fmt: skip


def specialise(form: Form, ceiling: float | None) -> Form:
    """The form as fitted for this target: M4's y0 is fixed when the chance level is known."""
    if form.name == "m4" and ceiling is not None:
        return dataclasses.replace(form, params=form.params[:4])
    return form
