"""Scaling with repeated data (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models").

Chinchilla's law ``L = E + A/N^α + B/D^β`` assumes every token is fresh. With ``U``
unique tokens repeated over ``D ≥ U`` tokens of training, each further epoch is worth
less than the last, and so is each parameter beyond what ``U`` tokens can use. The law
replaces N and D by effective values:

* data: ``R_D = max(D/U − 1, 0)`` repetitions, ``D' = U + U·R*_D·(1 − exp(−R_D/R*_D))``;
* parameters: ``U_N = min(N, N_opt(U))`` with ``N_opt(U)`` the compute-optimal size for
  U tokens under the Chinchilla part, ``R_N = max(N/U_N − 1, 0)``,
  ``N' = U_N + U_N·R*_N·(1 − exp(−R_N/R*_N))``;

and ``L(N, D, U) = E + A/N'^α + B/D'^β``. ``R*_D`` and ``R*_N`` are the repetitions at
which repeated data (excess parameters) have lost 1 − 1/e of their value: D' never
exceeds ``U·(1 + R*_D)``, however long a model trains.

:func:`optimal_allocation` splits a compute budget between N and D under a unique-token
limit; :func:`fit_data_constrained` fits the law to runs in the paper's two stages, with
a bootstrap over runs for intervals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import least_squares, minimize_scalar

from scalelab.errors import InputError
from scalelab.laws.core import DEFAULT_DELTA, HUBER_K
from scalelab.laws.isoflop import quantile_range

PARAM_NAMES = ("A", "B", "E", "alpha", "beta", "rd_star", "rn_star")
DEFAULT_BOOT = 200
# A run counts as one epoch up to 1% over its unique tokens (token counts are rounded),
# and as repeating data from 5% over: between the two it only enters stage (b).
SINGLE_EPOCH = 1.01
REPEATED = 1.05
# Stage (a) fits five parameters; six distinct (N, D) leave one degree of freedom.
MIN_SINGLE_CELLS = 6
# Search box of the fit. The exponents' box is Chinchilla's form's; R* below 0.01 means
# repeating is worthless, above 1e4 that no decay was measured at all.
EXPONENT_BOUNDS = (1e-3, 3.0)
SCALE_BOUNDS = (-70.0, 70.0)  # log A, log B: 1e-30 to 1e30, as Chinchilla's form
R_STAR_BOUNDS = (math.log(1e-2), math.log(1e4))
# How far either side of the Chinchilla optimum the allocation searches for N, and how
# finely it brackets the minimum first: the loss along a budget has kinks (where D = U
# and where N = N_opt(U)) and, under a tight limit, long flat stretches, so a bounded
# minimiser over the whole range need not find the lowest valley; within one grid step
# of the grid's best point it does.
ALLOCATION_SPAN = math.log(1e4)
ALLOCATION_BRACKET = 201
BAD_RESIDUAL = 30.0  # log residual charged where the law is not finite (a step far outside the data)
FD_STEP = 1e-6


@dataclass(frozen=True)
class DataConstrainedParams:
    """The seven constants of the data-constrained law (module docstring), in natural units.

    Methods take arrays and broadcast them against each other; ``u`` is the number of
    unique tokens, which may not exceed the tokens trained on ``d``.
    """

    A: float
    B: float
    E: float
    alpha: float
    beta: float
    rd_star: float
    rn_star: float

    def __post_init__(self):
        for name in PARAM_NAMES:
            value = getattr(self, name)
            number = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
            # rn_star may be infinite: excess parameters then keep their full value (N' = N).
            if not (number and (math.isfinite(value) or (name == "rn_star" and value == math.inf)) and value > 0):
                raise InputError(f"data-constrained parameter {name} must be a positive finite number, got {value!r}")

    @property
    def theta(self) -> np.ndarray:
        """The parameters as one row, in :data:`PARAM_NAMES` order."""
        return np.array([getattr(self, name) for name in PARAM_NAMES], dtype=float)

    def compute_optimal_params(self, tokens) -> np.ndarray:
        """The Chinchilla part's compute-optimal model size for ``tokens`` tokens (the
        paper's ``D_to_N``): ``(D·G)^(β/α)·G`` with ``G = (αA/(βB))^(1/(α+β))``."""
        return _on_points(lambda d: _optimal_n(self.theta[None, :], d), _positive("tokens", tokens))

    def effective_data(self, d, u) -> np.ndarray:
        """D', the fresh tokens that ``d`` tokens of training on ``u`` unique ones are worth."""
        return _on_points(lambda d, u: _effective_data(self.theta[None, :], d, u), *_tokens(d, u))

    def effective_params(self, n, u) -> np.ndarray:
        """N', the parameters a model of size ``n`` is worth with ``u`` unique tokens."""
        return _on_points(lambda n, u: _effective_params(self.theta[None, :], n, u), _positive("N", n), _positive("U", u))

    def loss(self, n, d, u) -> np.ndarray:
        """The law's loss for models of ``n`` parameters trained on ``d`` tokens of which ``u`` are unique."""
        n = _positive("N", n)
        return _on_points(lambda n, d, u: _law(self.theta[None, :], n, d, u), n, *_tokens(d, u))

    def to_dict(self) -> dict[str, float]:
        return {name: float(value) for name, value in asdict(self).items()}


PUBLISHED = DataConstrainedParams(
    A=math.exp(6.255414), B=math.exp(7.3049974), E=math.exp(0.6254804), alpha=0.3526596, beta=0.3526596,
    rd_star=15.387756, rn_star=5.309743,
)  # fmt: skip
"""The constants published with Muennighoff et al. 2023 ("Scaling Data-Constrained Language
Models", NeurIPS 2023; the README of their repository, which gives log A, log B and log E):
fitted to their GPT-2-style models trained on C4, counted in GPT-2 tokens. Losses from
another tokenizer, dataset or architecture are not on this scale."""


# -- the law, vectorised over parameter rows ------------------------------------------
# ``theta`` is (K, 7) in PARAM_NAMES order; inputs broadcast to (m,); results are (K, m).


def _on_points(function, *arrays) -> np.ndarray:
    """``function`` of one parameter row on the broadcast ``arrays``, flattened to (m,)
    and its (1, m) result given back in their shape (a 0-d array for scalars)."""
    arrays = np.broadcast_arrays(*arrays)
    return function(*(a.ravel() for a in arrays))[0].reshape(arrays[0].shape)


def _col(theta: np.ndarray, name: str) -> np.ndarray:
    return theta[:, [PARAM_NAMES.index(name)]]


def _optimal_n(theta: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    A, B, alpha, beta = (_col(theta, k) for k in ("A", "B", "alpha", "beta"))
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return (tokens * g) ** (beta / alpha) * g


def _decayed(unique: np.ndarray, repeats: np.ndarray, r_star: np.ndarray) -> np.ndarray:
    # -expm1(-x) is 1 - exp(-x) without the cancellation at small repeats. An infinite
    # r_star is the limit without decay: every repeat counts in full.
    with np.errstate(invalid="ignore"):
        decayed = unique + unique * r_star * -np.expm1(-repeats / r_star)
    return np.where(np.isinf(r_star), unique * (1.0 + repeats), decayed)


def _effective_data(theta, d, u):
    return _decayed(u, np.maximum(d / u - 1.0, 0.0), _col(theta, "rd_star"))


def _effective_params(theta, n, u):
    # Excess parameters held at full value (an infinite R*_N) are simply N; taking that
    # branch apart also spares a replicate whose compute-optimal size underflows to 0.
    rn_star = _col(theta, "rn_star")
    unique_n = np.minimum(n, _optimal_n(theta, u))
    with np.errstate(divide="ignore", invalid="ignore"):
        decayed = _decayed(unique_n, np.maximum(n / unique_n - 1.0, 0.0), rn_star)
    return np.where(np.isinf(rn_star), n, decayed)


def _law(theta, n, d, u):
    A, B, E, alpha, beta = (_col(theta, k) for k in ("A", "B", "E", "alpha", "beta"))
    return E + A * _effective_params(theta, n, u) ** -alpha + B * _effective_data(theta, d, u) ** -beta


# -- validation ------------------------------------------------------------------------


def _positive(name: str, values) -> np.ndarray:
    try:
        values = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numbers, got {values!r}") from None
    bad = ~(np.isfinite(values) & (values > 0))
    if np.any(bad):
        where = f" (at position {int(np.flatnonzero(bad.ravel())[0])})" if values.ndim else ""
        raise InputError(f"{name} must be positive and finite, found {float(values[bad].ravel()[0]):g}{where}")
    return values


def _tokens(d, u) -> tuple[np.ndarray, np.ndarray]:
    """Tokens trained on and unique tokens, broadcast, with U ≤ D checked (a relative
    1e-9 is allowed for rounding, and clipped)."""
    d, u = np.broadcast_arrays(_positive("D (tokens)", d), _positive("U (unique tokens)", u))
    over = u > d * (1 + 1e-9)
    if np.any(over):
        i = int(np.flatnonzero(over.ravel())[0])
        where = f" at position {i}" if d.ndim else ""
        raise InputError(f"unique tokens U = {u.ravel()[i]:g} exceed the tokens trained on D = {d.ravel()[i]:g}{where}: "
                         "a run sees at most as many unique tokens as it trains on")  # fmt: skip
    return d, np.minimum(u, d)


def _level(level: float) -> float:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise InputError(f"level {level!r} must be between 0 and 1")
    return float(level)


# -- compute-optimal allocation ---------------------------------------------------------


@dataclass(frozen=True)
class Allocation:
    """How to spend ``flops`` (``flops_per_token_param``·N·D) under a unique-token limit.

    ``epochs`` is tokens / unique_tokens (None without a limit). ``unconstrained`` is the
    allocation of the same compute with unlimited unique data (the Chinchilla optimum),
    None when this one has no limit; ``excess_loss`` is what the limit costs.
    """

    flops: float
    unique_tokens: float | None
    n_params: float
    tokens: float
    epochs: float | None
    loss: float
    unconstrained: Allocation | None = None

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.n_params

    @property
    def excess_loss(self) -> float:
        return 0.0 if self.unconstrained is None else self.loss - self.unconstrained.loss

    def to_dict(self) -> dict:
        out = {"flops": self.flops, "unique_tokens": self.unique_tokens, "n_params": self.n_params, "tokens": self.tokens,
               "epochs": self.epochs, "tokens_per_param": self.tokens_per_param, "loss": self.loss}  # fmt: skip
        if self.unconstrained is not None:
            out["unconstrained"] = self.unconstrained.to_dict()
            out["excess_loss"] = self.excess_loss
        return out


def _budget(flops, flops_per_token_param) -> float:
    """N·D for a budget, checked."""
    flops = float(_positive("flops", flops))
    k = float(_positive("flops_per_token_param", flops_per_token_param))
    return flops / k


def unconstrained_allocation(params: DataConstrainedParams, flops: float, *, flops_per_token_param: float = 6.0) -> Allocation:
    """The Chinchilla optimum of ``params``' fresh-data part for ``flops``: ``N = G·(C/k)^(β/(α+β))``
    (G as in :meth:`DataConstrainedParams.compute_optimal_params`), ``D = C/(k·N)``."""
    budget = _budget(flops, flops_per_token_param)
    theta = params.theta[None, :]
    n, d = _unconstrained_nd(theta, budget)
    loss = float(_law(theta, np.array([n]), np.array([d]), np.array([d]))[0, 0])
    return Allocation(float(flops), None, n, d, None, loss)


def _unconstrained_nd(theta: np.ndarray, budget: float) -> tuple[float, float]:
    A, B, alpha, beta = (float(_col(theta, k)[0, 0]) for k in ("A", "B", "alpha", "beta"))
    # In logs: N = G·budget^(β/(α+β)) with log G = log(αA/(βB))/(α+β). A bootstrap
    # replicate far from the data can put N beyond floating point; it then has no optimum.
    log_n = math.log(alpha * A / (beta * B)) / (alpha + beta) + beta / (alpha + beta) * math.log(budget)
    if not -700 < log_n < 700 or not -700 < math.log(budget) - log_n < 700:
        return math.nan, math.nan
    n = math.exp(log_n)
    return n, budget / n


def optimal_allocation(params: DataConstrainedParams, flops: float, unique_tokens: float | None = None, *,
                       flops_per_token_param: float = 6.0) -> Allocation:  # fmt: skip
    """The N and D that minimise ``params.loss(N, D, min(U, D))`` with ``k·N·D = flops``.

    Without a limit (``unique_tokens`` None) this is :func:`unconstrained_allocation`; with
    one at or above the unconstrained optimum's tokens it is that optimum too, since the
    law is never below its fresh-data part and equals it there. Otherwise the loss is
    minimised over log N, first bracketed on a grid (the loss has kinks, see
    :data:`ALLOCATION_BRACKET`) and then by a bounded scalar minimiser.
    """
    free = unconstrained_allocation(params, flops, flops_per_token_param=flops_per_token_param)
    if unique_tokens is None:
        return free
    u = float(_positive("unique_tokens", unique_tokens))
    n, d, loss = _constrained_nd(params.theta[None, :], free.n_params * free.tokens, u, free.n_params, free.tokens)
    return Allocation(free.flops, u, n, d, d / u, loss, unconstrained=free)


def _constrained_nd(theta: np.ndarray, budget: float, u: float, n_free: float, d_free: float) -> tuple[float, float, float]:
    """(N, D, loss) of the optimum of one parameter row with N·D = budget and U unique tokens."""
    if u >= d_free:
        loss = float(_law(theta, np.array([n_free]), np.array([d_free]), np.array([d_free]))[0, 0])
        return n_free, d_free, loss

    def along(log_n):
        n = np.exp(np.atleast_1d(log_n))
        d = budget / n
        return _law(theta, n, d, np.minimum(u, d))[0]

    centre = math.log(n_free)
    grid = np.linspace(centre - ALLOCATION_SPAN, centre + ALLOCATION_SPAN, ALLOCATION_BRACKET)
    best = int(np.argmin(along(grid)))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    found = minimize_scalar(lambda t: float(along(t)[0]), bounds=(lo, hi), method="bounded", options={"xatol": 1e-9})
    log_n = float(found.x) if found.fun <= along(grid[best])[0] else float(grid[best])
    n = math.exp(log_n)
    return n, budget / n, float(along(log_n)[0])


# -- fitting ------------------------------------------------------------------------------


@dataclass
class DataConstrainedFit:
    """The law fitted to runs (:func:`fit_data_constrained`).

    ``replicates`` holds the parameters of each bootstrap replicate, (n_boot, 7) in
    :data:`PARAM_NAMES` order. ``at_bound`` names the parameters that rest on a bound of
    the search ("lower" or "upper"): their value is the box's, not the data's. ``notes``
    say what the fit had to assume.
    """

    params: DataConstrainedParams
    replicates: np.ndarray = field(repr=False)
    n_params: np.ndarray = field(repr=False)
    tokens: np.ndarray = field(repr=False)
    unique_tokens: np.ndarray = field(repr=False)
    loss: np.ndarray = field(repr=False)
    single_epoch: np.ndarray = field(repr=False)  # the runs stage (a) was fitted on
    level: float = 0.8
    delta: float = DEFAULT_DELTA
    at_bound: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_points(self) -> int:
        return len(self.loss)

    def predict(self, n, d, u) -> np.ndarray:
        """The fitted law's loss at each (N, D, U)."""
        return self.params.loss(n, d, u)

    def residuals(self) -> np.ndarray:
        """Log residuals of the runs around the fitted law."""
        return np.log(self.predict(self.n_params, self.tokens, self.unique_tokens)) - np.log(self.loss)

    def _rows(self) -> np.ndarray:
        return self.replicates if len(self.replicates) else self.params.theta[None, :]

    def interval(self, n, d, u, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A ``level`` prediction interval for a new run at each (N, D, U): each bootstrap
        replicate's law times one run's scatter (a resampled log residual of the fit)."""
        level = self.level if level is None else _level(level)
        n = _positive("N", n)
        d, u = _tokens(d, u)
        n, d, u = (np.atleast_1d(v) for v in np.broadcast_arrays(n, d, u))
        curves = _law(self._rows(), n, d, u)
        # Residuals of a fit are smaller than the runs' scatter by the parameters it spent
        # on them: sqrt(cells / (cells - p)) restores it, as for the other laws.
        n_cells = len(np.unique(np.column_stack([self.n_params, self.tokens, self.unique_tokens]), axis=0))
        inflation = math.sqrt(n_cells / max(n_cells - len(PARAM_NAMES), 1))
        scatter = np.random.default_rng(1).choice(self.residuals(), size=curves.shape) * inflation
        tail = (1 - level) / 2
        lo, hi = np.nanquantile(curves * np.exp(-scatter), [tail, 1 - tail], axis=0)
        return lo, hi

    def param_intervals(self, level: float | None = None) -> dict[str, tuple[float, float]]:
        """Bootstrap percentile interval of each parameter."""
        tail = (1 - (self.level if level is None else _level(level))) / 2
        return {name: quantile_range(self.replicates[:, j], tail) for j, name in enumerate(PARAM_NAMES)}

    def allocation(self, flops: float, unique_tokens: float | None, level: float | None = None, *,
                   flops_per_token_param: float = 6.0) -> dict:  # fmt: skip
        """The optimum N, D, epochs and loss for ``flops`` under ``unique_tokens``
        (:func:`optimal_allocation`), each with the ``level`` range of the replicates'
        optima, beside the unconstrained optimum and the loss the limit costs. The loss
        ranges are the law's mean loss, without a single run's scatter."""
        tail = (1 - (self.level if level is None else _level(level))) / 2
        point = optimal_allocation(self.params, flops, unique_tokens, flops_per_token_param=flops_per_token_param)
        free = point.unconstrained or point
        budget = free.n_params * free.tokens
        rows = []
        for theta in self.replicates:
            theta = theta[None, :]
            n_free, d_free = _unconstrained_nd(theta, budget)
            if not math.isfinite(n_free):
                rows.append((math.nan,) * 6)  # left out of the ranges (quantile_range skips NaN)
                continue
            loss_free = float(_law(theta, np.array([n_free]), np.array([d_free]), np.array([d_free]))[0, 0])
            if unique_tokens is None:
                n, d, loss = n_free, d_free, loss_free
            else:
                n, d, loss = _constrained_nd(theta, budget, point.unique_tokens, n_free, d_free)
            rows.append((n, d, loss, n_free, d_free, loss_free))
        boot = np.array(rows).reshape(-1, 6)
        out = point.to_dict()
        out["level"] = 1 - 2 * tail
        out["n_params_range"] = quantile_range(boot[:, 0], tail)
        out["tokens_range"] = quantile_range(boot[:, 1], tail)
        out["epochs_range"] = None if unique_tokens is None else quantile_range(boot[:, 1] / point.unique_tokens, tail)
        out["tokens_per_param_range"] = quantile_range(boot[:, 1] / boot[:, 0], tail)
        out["loss_range"] = quantile_range(boot[:, 2], tail)
        if point.unconstrained is not None:
            out["unconstrained"]["n_params_range"] = quantile_range(boot[:, 3], tail)
            out["unconstrained"]["tokens_range"] = quantile_range(boot[:, 4], tail)
            out["unconstrained"]["loss_range"] = quantile_range(boot[:, 5], tail)
            # Each replicate's own difference: the two optima share its errors.
            out["excess_loss_range"] = quantile_range(boot[:, 2] - boot[:, 5], tail)
        return out

    def to_dict(self) -> dict:
        """JSON-ready: the parameters, their intervals, the runs used and what the fit assumed."""
        return {
            "law": "data_constrained", "params": self.params.to_dict(), "level": self.level,
            "param_intervals": {k: list(v) for k, v in self.param_intervals().items()}, "n_points": self.n_points,
            "n_single_epoch": int(self.single_epoch.sum()),
            "n_repeated": int(np.sum(self.tokens > REPEATED * self.unique_tokens)), "n_boot": len(self.replicates),
            "delta": self.delta, "at_bound": dict(self.at_bound), "notes": list(self.notes),
        }  # fmt: skip


def fit_data_constrained(n_params, tokens, unique_tokens, loss, *, level: float = 0.8, n_boot: int = DEFAULT_BOOT,
                         seed: int = 0) -> DataConstrainedFit:  # fmt: skip
    """Fit the data-constrained law to runs, in the paper's two stages.

    (a) E, A, B, α and β on the runs that repeat nothing, where the law is Chinchilla's:
    tokens ≤ 1.01·unique_tokens (rounding), and, once a first fit tells the
    compute-optimal size of their unique tokens, no excess parameters either (N within
    5% of it) when at least six distinct (N, D) remain so. (b) R*_D and R*_N on all
    runs, (a) held fixed. Both are robust least squares on log loss (Huber); (a) starts
    from a grid of exponents. When no run has excess parameters under (a), R*_N is not
    measured and is held at the published value (a note says so).

    The bootstrap resamples the runs (the stage (a) runs and the others separately, so
    every replicate can fit both stages) and refits both stages, warm-started at the
    point estimate. Raises :class:`InputError` naming what is missing: fewer than six
    distinct (N, D) for stage (a), or no run that repeats data (tokens > 1.05·unique).
    """
    level = _level(level)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise InputError(f"n_boot must be a whole number ≥ 0, got {n_boot!r}")
    n = _positive("n_params", n_params).ravel()
    d = _positive("tokens", tokens).ravel()
    u = _positive("unique_tokens", unique_tokens).ravel()
    y = _positive("loss", loss).ravel()
    if not len(n) == len(d) == len(u) == len(y):
        raise InputError(f"n_params, tokens, unique_tokens and loss must have one value per run, got {len(n)}, {len(d)}, {len(u)} and {len(y)}")
    d, u = _tokens(d, u)
    one_epoch = d <= SINGLE_EPOCH * u
    cells = _distinct_nd(n, d, one_epoch)
    if cells < MIN_SINGLE_CELLS:
        raise InputError(f"the data-constrained law needs single-epoch runs (tokens ≤ unique_tokens) at {MIN_SINGLE_CELLS} or more "
                         f"distinct (N, D) to fit E, A, B, alpha and beta; the {len(y)} runs have {cells}")  # fmt: skip
    if not np.any(d > REPEATED * u):
        raise InputError(f"the data-constrained law needs runs that repeat data (tokens > unique_tokens); none of the {len(y)} runs does")

    notes: list[str] = []
    logs = np.log(n), np.log(d), np.log(u), np.log(y)
    # A first plain least-squares fit sets the Huber threshold: 1.345 times the runs'
    # robust scatter (never under the usual 1e-3). A threshold far under the noise makes
    # the loss nearly L1, whose flat valleys leave the optimiser wherever it started.
    chin = _fit_chinchilla(logs, one_epoch, None, delta=None)
    sigma = 1.4826 * float(np.median(np.abs(_chin_residuals(chin, logs[0][one_epoch], logs[1][one_epoch], logs[3][one_epoch]))))
    delta = max(DEFAULT_DELTA, HUBER_K * sigma)
    chin = _fit_chinchilla(logs, one_epoch, chin, delta=delta)
    # The law is Chinchilla's only without excess parameters too: a single-epoch run
    # larger than the compute-optimal size for its unique tokens has R_N > 0, and would
    # bias A and alpha. Which runs those are depends on the fit; a few passes settle it.
    single = one_epoch
    for _ in range(3):
        lean = one_epoch & (n <= REPEATED * _optimal_n(_theta(chin, (0.0, 0.0)), u)[0])
        if np.array_equal(lean, single):
            break
        if _distinct_nd(n, d, lean) < MIN_SINGLE_CELLS:
            notes.append(f"{int(np.sum(single & ~lean))} single-epoch runs have more parameters than their unique tokens can use "
                         f"but stay in stage (a): without them fewer than {MIN_SINGLE_CELLS} distinct (N, D) remain")  # fmt: skip
            break
        single = lean
        chin = _fit_chinchilla(logs, single, chin, delta=delta)

    excess = n > _optimal_n(_theta(chin, (0.0, 0.0)), u)[0] * (1 + 1e-9)
    fit_rn = bool(excess.any())
    if not fit_rn:
        notes.append(f"no run has more parameters than the compute-optimal size for its unique tokens, so rn_star is not "
                     f"measured and is held at the published {PUBLISHED.rn_star:g}")  # fmt: skip
    rep = _fit_repetition(chin, logs, np.ones(len(y), dtype=bool), None, delta=delta, fit_rn=fit_rn)
    held_rn = math.log(PUBLISHED.rn_star)
    if fit_rn:
        # Where stage (a) is loosely pinned, its compute-optimal size for the unique tokens
        # can fall far below every model run, and the excess-parameter term then rests on
        # that extrapolation alone. The runs decide: without decay (N' = N) when it fits
        # them better.
        plain = _fit_repetition(chin, logs, np.ones(len(y), dtype=bool), None, delta=delta, fit_rn=False, held_rn=math.inf)
        if _huber_cost(chin, plain, logs, delta) < _huber_cost(chin, rep, logs, delta):
            rep, fit_rn, held_rn = plain, False, math.inf
            notes.append("excess parameters are held at full value (R*_N = inf): the runs fit better without their decay, "
                         "which rests on stage (a)'s compute-optimal size for the unique tokens, far from the sizes run")  # fmt: skip
    point = _theta(chin, rep)[0]

    replicates = _bootstrap(logs, single, chin, rep, delta=delta, fit_rn=fit_rn, n_boot=n_boot, seed=seed, held_rn=held_rn)
    params = DataConstrainedParams(**dict(zip(PARAM_NAMES, (float(v) for v in point))))
    at_bound = _bounds_hit(chin, rep, float(np.min(y[single])), fit_rn)
    return DataConstrainedFit(params=params, replicates=replicates, n_params=n, tokens=d, unique_tokens=u, loss=y,
                              single_epoch=single, level=level, delta=delta, at_bound=at_bound, notes=notes)  # fmt: skip


def _distinct_nd(n: np.ndarray, d: np.ndarray, mask: np.ndarray) -> int:
    return len(np.unique(np.column_stack([n[mask], d[mask]]), axis=0))


# Stage (a) works on p = (log E, log A, log B, alpha, beta); stage (b) on (log rd_star, log rn_star).


def _theta(chin: np.ndarray, rep) -> np.ndarray:
    """Natural parameter rows (K, 7) from stage (a) rows ``chin`` (K, 5) or (5,) and stage (b)'s ``rep``."""
    chin, rep = np.atleast_2d(chin), np.atleast_2d(rep)
    return np.column_stack([np.exp(chin[:, 1]), np.exp(chin[:, 2]), np.exp(chin[:, 0]), chin[:, 3], chin[:, 4],
                            np.exp(rep[:, 0]), np.exp(rep[:, 1])])  # fmt: skip


def _chin_terms(P: np.ndarray, log_n, log_d) -> np.ndarray:
    """log E, log(A/N^α), log(B/D^β) for each row of P (R, 5) at each run: (3, R, n)."""
    P = np.atleast_2d(P)
    log_e, log_a, log_b, alpha, beta = (P[:, [j]] for j in range(5))
    return np.stack(np.broadcast_arrays(log_e, log_a - alpha * log_n, log_b - beta * log_d))


def _chin_residuals(P: np.ndarray, log_n, log_d, log_y) -> np.ndarray:
    """Log residuals of Chinchilla's law, (R, n); for one row (5,), (n,) (least_squares' shape)."""
    r = np.logaddexp.reduce(_chin_terms(P, log_n, log_d), axis=0) - log_y
    return r[0] if np.ndim(P) == 1 else r


def _chin_jacobian(P: np.ndarray, log_n, log_d, log_y) -> np.ndarray:
    """d residuals / d P, (R, n, 5); for one row, (n, 5)."""
    terms = _chin_terms(P, log_n, log_d)
    share = np.exp(terms - np.logaddexp.reduce(terms, axis=0))  # each term's share of the loss
    J = np.stack([share[0], share[1], share[2], -share[1] * log_n, -share[2] * log_d], axis=-1)
    return J[0] if np.ndim(P) == 1 else J


def _chin_box(min_loss: float) -> tuple[np.ndarray, np.ndarray]:
    # E lies below every loss; 1e-6 of the smallest stands for zero on a log scale.
    lower = np.array([math.log(1e-6 * min_loss), SCALE_BOUNDS[0], SCALE_BOUNDS[0], EXPONENT_BOUNDS[0], EXPONENT_BOUNDS[0]])
    upper = np.array([math.log(0.999 * min_loss), SCALE_BOUNDS[1], SCALE_BOUNDS[1], EXPONENT_BOUNDS[1], EXPONENT_BOUNDS[1]])
    return lower, upper


def _chin_starts(log_n, log_d, log_y) -> list[np.ndarray]:
    """A grid of exponents and floors; for each, A and B by linear least squares on
    relative residuals (the law is linear in them once E, alpha and beta are fixed)."""
    y = np.exp(log_y)
    starts = []
    for e_share in (0.0, 0.5, 0.9):
        for alpha in (0.15, 0.35, 0.6):
            for beta in (0.15, 0.35, 0.6):
                e = max(e_share * y.min(), 1e-3 * y.min())
                design = np.column_stack([np.exp(-alpha * log_n), np.exp(-beta * log_d)]) / y[:, None]
                coef, *_ = np.linalg.lstsq(design, (y - e) / y, rcond=None)
                a, b = np.maximum(coef, 1e-6 * y.min() * np.exp([alpha * log_n.min(), beta * log_d.min()]))
                starts.append(np.array([math.log(e), math.log(a), math.log(b), alpha, beta]))
    return starts


def _fit_chinchilla(logs, mask, start, *, delta: float | None) -> np.ndarray:
    """Stage (a): p of the Huber (``delta``; plain least squares when None) fit of log loss
    on the runs in ``mask`` (all when None), from ``start`` or else from a grid of starts,
    all refined at once by :func:`_huber_lm`; the best is polished by least_squares."""
    log_n, log_d, _, log_y = (v if mask is None else v[mask] for v in logs)
    lower, upper = _chin_box(float(np.exp(log_y.min())))
    args = (log_n, log_d, log_y)
    starts = np.clip(np.atleast_2d(start if start is not None else _chin_starts(*args)), lower + 1e-9, upper - 1e-9)
    if len(starts) > 1:
        refined = _huber_lm(lambda P, idx: _chin_residuals(P, *args), lambda P, idx: _chin_jacobian(P, *args), starts,
                            np.ones((len(starts), len(log_y))), lower, upper, math.inf if delta is None else delta)  # fmt: skip
        costs = [_huber(_chin_residuals(p, *args), math.inf if delta is None else delta) for p in refined]
        starts = np.clip(refined[int(np.argmin(costs))], lower + 1e-9, upper - 1e-9)
    fitted = least_squares(_chin_residuals, starts.ravel(), jac=_chin_jacobian, bounds=(lower, upper), args=args,
                           loss="linear" if delta is None else "huber", f_scale=1.0 if delta is None else delta, x_scale="jac")  # fmt: skip
    return fitted.x


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    """The Huber loss of each residual, summed over the last axis."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta)).sum(axis=-1)


def _huber_cost(chin, rep, logs, delta: float) -> float:
    """The Huber loss of the full law's log residuals over every run."""
    log_n, log_d, log_u, log_y = logs
    r = _rep_residuals(chin, rep, np.exp(log_n), np.exp(log_d), np.exp(log_u), log_y)[0]
    return float(np.sum(_huber(r, delta)))


def _fit_repetition(chin, logs, mask, start, *, delta: float, fit_rn: bool, held_rn: float | None = None) -> np.ndarray:
    """Stage (b): (log rd_star, log rn_star) of the Huber fit of log loss on the runs in
    ``mask`` (all when None) with stage (a)'s ``chin`` fixed; rn_star stays at the
    published value when ``fit_rn`` is false."""
    log_n, log_d, log_u, log_y = (v if mask is None else v[mask] for v in logs)
    n, d, u = np.exp(log_n), np.exp(log_d), np.exp(log_u)
    held_rn = math.log(PUBLISHED.rn_star) if held_rn is None else held_rn

    def residuals(q):
        return _rep_residuals(chin, q if fit_rn else np.array([q[0], held_rn]), n, d, u, log_y)[0]

    if start is not None:
        starts = [start if fit_rn else start[:1]]
    else:
        grid = [(math.log(rd), math.log(rn)) for rd in (2.0, 15.0, 100.0) for rn in (1.0, 5.0, 30.0)]
        starts = [np.array(g) for g in grid] if fit_rn else [np.array(g[:1]) for g in grid[::3]]
    lower = np.full(2 if fit_rn else 1, R_STAR_BOUNDS[0])
    upper = np.full(2 if fit_rn else 1, R_STAR_BOUNDS[1])
    best = None
    for q0 in starts:
        fitted = least_squares(residuals, np.clip(q0, lower + 1e-9, upper - 1e-9), bounds=(lower, upper), loss="huber", f_scale=delta)
        if best is None or fitted.cost < best.cost:
            best = fitted
    return best.x if fit_rn else np.array([best.x[0], held_rn])


def _rep_residuals(chin: np.ndarray, Q: np.ndarray, n, d, u, log_y) -> np.ndarray:
    """Log residuals of the full law, (R, n), for stage (a) rows ``chin`` and stage (b) rows ``Q`` (log R*)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        r = np.log(_law(_theta(chin, Q), n, d, u)) - log_y
    return np.where(np.isfinite(r), r, BAD_RESIDUAL)


def _bootstrap(logs, single, chin, rep, *, delta: float, fit_rn: bool, n_boot: int, seed: int, held_rn: float | None = None) -> np.ndarray:
    """Parameter rows (n_boot, 7) of fits to runs resampled with replacement: the stage (a)
    runs among themselves and the others among themselves, so each replicate has runs for
    both stages. Replicates are integer weights on the runs, and all are refitted at once
    by :func:`_huber_lm` from the point estimate, stage (a) and then stage (b)."""
    if n_boot == 0:
        return np.empty((0, len(PARAM_NAMES)))
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_boot, len(single)))
    for group in (np.flatnonzero(single), np.flatnonzero(~single)):
        if len(group):
            weights[:, group] = rng.multinomial(len(group), np.full(len(group), 1.0 / len(group)), size=n_boot)
    log_n, log_d, log_u, log_y = logs
    lower, upper = _chin_box(float(np.exp(log_y[single].min())))
    chins = _huber_lm(lambda P, idx: _chin_residuals(P, log_n, log_d, log_y),
                      lambda P, idx: _chin_jacobian(P, log_n, log_d, log_y),
                      np.tile(chin, (n_boot, 1)), weights * single, lower, upper, delta)  # fmt: skip
    n, d, u = np.exp(log_n), np.exp(log_d), np.exp(log_u)
    held = math.log(PUBLISHED.rn_star) if held_rn is None else held_rn

    def rep_residuals(Q, idx):
        return _rep_residuals(chins[idx], Q if fit_rn else np.column_stack([Q, np.full(len(Q), held)]), n, d, u, log_y)

    def rep_jacobian(Q, idx):
        # Forward differences, every row and both parameters in one evaluation of the law.
        base = rep_residuals(Q, idx)
        columns = []
        for j in range(Q.shape[1]):
            step = np.zeros_like(Q)
            step[:, j] = FD_STEP
            columns.append((rep_residuals(Q + step, idx) - base) / FD_STEP)
        return np.stack(columns, axis=-1)

    start = rep if fit_rn else rep[:1]
    box = np.full(len(start), R_STAR_BOUNDS[0]), np.full(len(start), R_STAR_BOUNDS[1])
    reps = _huber_lm(rep_residuals, rep_jacobian, np.tile(start, (n_boot, 1)), weights, *box, delta)
    if not fit_rn:
        reps = np.column_stack([reps, np.full(n_boot, held)])
    return _theta(chins, reps)


def _huber_lm(residuals, jacobian, P: np.ndarray, weights: np.ndarray, lower, upper, delta: float, *,
              iterations: int = 100, tolerance: float = 1e-10) -> np.ndarray:  # fmt: skip
    """Minimise each row's weighted Huber objective Σ w·huber_δ(r) by a batched
    Levenberg–Marquardt on iteratively reweighted least squares, inside the box (steps
    are clipped to it). ``residuals(P_rows, idx)`` and ``jacobian(P_rows, idx)`` give the
    rows ``idx``' residuals (R_a, n) and Jacobians (R_a, n, p). A row stops when a step
    gains less than ``tolerance`` (relative) or no damping makes progress."""

    def objective(r, w):
        a = np.abs(r)
        return (w * np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))).sum(axis=1)

    P = np.clip(np.array(P, dtype=float), lower, upper)
    all_rows = np.arange(len(P))
    r = residuals(P, all_rows)
    F = objective(r, weights)
    damping = np.full(len(P), 1e-3)
    active = np.ones(len(P), dtype=bool)
    eye = np.eye(P.shape[1])
    for _ in range(iterations):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        J = jacobian(P[idx], idx)
        omega = weights[idx] * np.minimum(1.0, delta / np.maximum(np.abs(r[idx]), 1e-300))
        JtW = np.transpose(J, (0, 2, 1)) * omega[:, None, :]
        A = JtW @ J
        g = (JtW @ r[idx][:, :, None])[:, :, 0]
        diag = np.einsum("kii->ki", A)
        # The ridge keeps a row solvable when a parameter has no effect on its runs.
        ridge = damping[idx, None] * (diag + 1e-9) + 1e-12 * np.max(np.abs(diag), axis=1, keepdims=True) + 1e-300
        step = -np.linalg.solve(A + ridge[:, :, None] * eye, g[:, :, None])[:, :, 0]
        P_new = np.clip(P[idx] + step, lower, upper)
        r_new = residuals(P_new, idx)
        F_new = objective(r_new, weights[idx])
        better = F_new < F[idx]
        gain = np.where(better, (F[idx] - F_new) / np.maximum(F[idx], 1e-300), 0.0)
        P[idx[better]], r[idx[better]], F[idx[better]] = P_new[better], r_new[better], F_new[better]
        damping[idx] = np.where(better, damping[idx] * 0.3, damping[idx] * 10.0)
        active[idx[(better & (gain < tolerance)) | (damping[idx] > 1e7)]] = False
    return P


def _bounds_hit(chin: np.ndarray, rep: np.ndarray, min_loss: float, fit_rn: bool) -> dict[str, str]:
    lower, upper = _chin_box(min_loss)
    values = {"E": (chin[0], lower[0], upper[0]), "A": (chin[1], lower[1], upper[1]), "B": (chin[2], lower[2], upper[2]),
              "alpha": (chin[3], lower[3], upper[3]), "beta": (chin[4], lower[4], upper[4]),
              "rd_star": (rep[0], *R_STAR_BOUNDS)}  # fmt: skip
    if fit_rn:
        values["rn_star"] = (rep[1], *R_STAR_BOUNDS)
    hit = {}
    for name, (value, lo, hi) in values.items():
        tolerance = 1e-6 * (hi - lo)
        if value <= lo + tolerance:
            hit[name] = "lower"
        elif value >= hi - tolerance:
            hit[name] = "upper"
    return hit
