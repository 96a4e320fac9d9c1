"""A downstream metric from the loss, in two steps (as the OLMo ladder predicts task
accuracy): scale → loss by a scaling law, then loss → metric by a fitted link.

The link is a sigmoid in the loss, bounded between a floor and a ceiling:

    metric = lo + (hi − lo) · σ(s · k · (L − L0)),   k > 0,

with ``s = +1`` for an error rate (it falls toward its floor ``lo`` as the loss falls, and
never exceeds chance, ``hi ≤ ceiling``) and ``s = −1`` for a score that rises as the loss
falls (an accuracy). It is fitted on the runs' own measured loss and metric, robustly.

Intervals carry both steps: draws of the loss law's mean curve (its bootstrap replicates
with the drift beyond the data, :meth:`~scalelab.laws.law.FittedLaw.curve_draws`), each
passed through a bootstrap replicate of the link, plus one run's scatter of the metric
around the link.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from scalelab.errors import InputError

DEFAULT_LINK_BOOT = 200
MIN_POINTS = 5
LINK_PARAMS = ("lo", "hi", "k", "L0")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))  # exact sigmoid, no overflow for large |z|


@dataclass
class LinkFit:
    """The fitted link loss → metric: ``params`` (lo, hi, k, L0), ``sign`` (+1 for an error
    rate, −1 for a score), bootstrap ``replicates`` (n_boot, 4) and the runs' ``residuals``
    around it (metric units)."""

    params: dict[str, float]
    sign: int
    ceiling: float | None
    replicates: np.ndarray = field(repr=False)
    residuals: np.ndarray = field(repr=False)
    loss_range: tuple[float, float] = (math.nan, math.nan)

    @property
    def kind(self) -> str:
        return "bounded error" if self.sign > 0 else "sigmoid score"

    def __call__(self, loss, theta: np.ndarray | None = None) -> np.ndarray:
        """The link at ``loss``; with ``theta`` (r, 4), one row per replicate: shape (r, m)."""
        loss = np.asarray(loss, dtype=float)
        if theta is None:
            theta = np.array([[self.params[k] for k in LINK_PARAMS]])
            return _link(theta, loss[None, :] if loss.ndim == 1 else loss, self.sign)[0]
        return _link(theta, loss, self.sign)

    def band(self, loss, level: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
        """The ``level`` range of the link's mean at each loss, over its replicates."""
        loss = np.atleast_1d(np.asarray(loss, dtype=float))
        values = _link(self.replicates, np.broadcast_to(loss, (len(self.replicates), len(loss))), self.sign)
        tail = (1 - level) / 2
        return np.quantile(values, tail, axis=0), np.quantile(values, 1 - tail, axis=0)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "params": dict(self.params), "sign": self.sign, "ceiling": self.ceiling,
                "scatter": float(np.std(self.residuals)), "loss_range": list(self.loss_range)}  # fmt: skip


def _link(theta: np.ndarray, loss: np.ndarray, sign: int) -> np.ndarray:
    lo, hi, k, l0 = (theta[:, i : i + 1] for i in range(4))
    return lo + (hi - lo) * _sigmoid(sign * k * (loss - l0))


def fit_link(loss, metric, *, error_rate: bool, ceiling: float | None = None, n_boot: int = DEFAULT_LINK_BOOT,
             seed: int = 0, metric_name: str = "metric") -> LinkFit:  # fmt: skip
    """Fit the link (module docstring) to runs' ``loss`` and ``metric``; for an error rate
    the ceiling (chance, default 1) bounds ``hi``. Raises :class:`InputError` in one line."""
    loss = np.asarray(loss, dtype=float).ravel()
    metric = np.asarray(metric, dtype=float).ravel()
    if len(loss) != len(metric):
        raise InputError(f"the loss has {len(loss)} values but {metric_name} has {len(metric)}")
    if len(loss) < MIN_POINTS:
        raise InputError(f"the link from the loss to {metric_name} needs {MIN_POINTS} runs at least, got {len(loss)}")
    if not (np.all(np.isfinite(loss)) and np.all(np.isfinite(metric))):
        raise InputError(f"the loss and {metric_name} must be finite numbers (found NaN or inf)")
    if error_rate:
        ceiling = 1.0 if ceiling is None else float(ceiling)
        if np.any(metric < 0) or np.any(metric > 1):
            raise InputError(f"{metric_name} is an error rate but holds {float(metric[(metric < 0) | (metric > 1)][0]):g}, outside [0, 1]")
    spread = float(np.ptp(metric))
    if spread <= 1e-12 or np.ptp(loss) <= 1e-12:
        raise InputError(f"{metric_name} does not change with the loss across these runs; there is no link to fit")
    sign = 1 if error_rate or np.corrcoef(loss, metric)[0, 1] >= 0 else -1
    span = float(np.ptp(loss))
    top = ceiling if error_rate else float(metric.max()) + 2 * spread
    bottom = 0.0 if error_rate else float(metric.min()) - 2 * spread
    lower = np.array([bottom, bottom, 1e-3 / span, float(loss.min()) - 3 * span])
    upper = np.array([top, top, 1e3 / span, float(loss.max()) + 3 * span])
    scale = max(spread / 20, 1e-6)  # soft_l1's knee: a twentieth of the metric's range

    def residuals(theta, x, y):
        return (_link(theta[None, :], x[None, :], sign)[0] - y) / scale

    starts = [np.clip([metric.min() - 0.1 * spread, metric.max() + 0.1 * spread, k / span, l0], lower, upper)
              for k in (2.0, 8.0) for l0 in np.quantile(loss, [0.25, 0.5, 0.75])]  # fmt: skip
    if error_rate:
        starts = [np.clip(s, lower, upper) for s in starts]
    best = None
    for start in starts:
        found = least_squares(residuals, start, bounds=(lower, upper), loss="soft_l1", args=(loss, metric))
        if best is None or found.cost < best.cost:
            best = found
    theta = _ordered(best.x)
    rng = np.random.default_rng(seed)
    replicates = np.empty((n_boot, 4))
    for b in range(n_boot):
        rows = rng.integers(0, len(loss), size=len(loss))
        if np.ptp(loss[rows]) <= 1e-12:
            replicates[b] = theta
            continue
        found = least_squares(residuals, theta, bounds=(lower, upper), loss="soft_l1", args=(loss[rows], metric[rows]))
        replicates[b] = _ordered(found.x)
    fitted = _link(theta[None, :], loss[None, :], sign)[0]
    return LinkFit(params=dict(zip(LINK_PARAMS, map(float, theta))), sign=sign, ceiling=ceiling if error_rate else None,
                   replicates=replicates, residuals=metric - fitted, loss_range=(float(loss.min()), float(loss.max())))  # fmt: skip


def _ordered(theta: np.ndarray) -> np.ndarray:
    """lo below hi: the form is symmetric under swapping them with the slope's sign, which
    the fit never needs (the sign is fixed), so a swapped optimum is only relabelled."""
    theta = np.array(theta, dtype=float)
    if theta[0] > theta[1]:
        theta[0], theta[1] = theta[1], theta[0]
    return theta


@dataclass
class ChainLaw:
    """Scale → loss (``loss_law``, a :class:`~scalelab.laws.law.FittedLaw`) → metric
    (``link``). ``predict`` and ``interval`` take the loss law's x (one column or (N, D))."""

    loss_law: object
    link: LinkFit
    loss_name: str = "loss"
    metric_name: str = "metric"

    def predict_loss(self, x) -> np.ndarray:
        return self.loss_law.predict(x)

    def predict(self, x) -> np.ndarray:
        """The metric the chain predicts at each x: the link at the law's loss."""
        return self.link(self.loss_law.predict(x))

    def interval(self, x, level: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
        """A ``level`` prediction interval for a new run's metric at each x, through both steps."""
        if not 0 < level < 1:
            raise InputError(f"level {level} must be between 0 and 1")
        curves, weights = self.loss_law.curve_draws(x)  # (K, m) mean-loss draws with their weights
        rng = np.random.default_rng(3)
        links = self.link.replicates[rng.integers(0, len(self.link.replicates), size=len(curves))]
        values = _link(links, curves, self.link.sign)
        # One run's scatter around the link, its residuals widened by the four parameters
        # the fit spent on them (degrees of freedom).
        n = len(self.link.residuals)
        inflation = math.sqrt(n / max(n - 4, 1))
        values = values + rng.choice(self.link.residuals, size=values.shape) * inflation
        if self.link.ceiling is not None:
            values = np.clip(values, 0.0, self.link.ceiling)
        from scalelab.laws.law import _weighted_quantiles

        tail = (1 - level) / 2
        lo, hi = _weighted_quantiles(values, weights, [tail, 1 - tail])
        return lo, hi

    def to_dict(self, *, predict=None, level: float = 0.8) -> dict:
        """The loss law's dict, the link, and at ``predict`` the metric with its interval and the loss."""
        out = {"via": self.loss_name, "loss_law": self.loss_law.to_dict(level=level), "link": self.link.to_dict(), "predictions": []}
        if predict is not None:
            x = np.asarray(predict, dtype=float)
            y = self.predict(x)
            lo, hi = self.interval(x, level)
            loss = self.predict_loss(x)
            rows = x.tolist() if x.ndim > 1 else np.atleast_1d(x).tolist()
            out["predictions"] = [{"x": xi, "y": float(a), "lo": float(b), "hi": float(c), "loss": float(d)}
                                  for xi, a, b, c, d in zip(rows, y, lo, hi, loss)]  # fmt: skip
        return out


def fit_chain(x, loss, metric, *, form: str = "auto", error_rate: bool = False, ceiling: float | None = None, x_names=None,
              loss_name: str = "loss", metric_name: str = "metric", n_boot: int = 1000) -> ChainLaw:  # fmt: skip
    """Fit both steps: the scaling law of ``loss`` against ``x`` (:func:`scalelab.laws.fit`,
    ``form`` as there) and the link from the runs' loss to their ``metric``. The link's
    bootstrap takes ``n_boot`` replicates, 200 at most: each is paired at random with one
    of the loss law's curve draws, so more would only repeat.

    Examples
    --------
    >>> import numpy as np
    >>> from scalelab.laws.link import fit_chain
    >>> n = np.geomspace(1e3, 1e5, 12)
    >>> loss = 1.0 + 30 * n ** -0.4
    >>> error = 0.05 + 0.85 / (1 + np.exp(-4 * (loss - 1.8)))
    >>> chain = fit_chain(n, loss, error, form="saturating", error_rate=True, n_boot=50)
    >>> float(abs(chain.predict([1e5])[0] - error[-1])) < 0.01
    True
    """
    from scalelab.laws.law import fit

    loss_law = fit(x, loss, form=form, x_names=x_names, y_name=loss_name, n_boot=n_boot)
    link = fit_link(loss, metric, error_rate=error_rate, ceiling=ceiling, n_boot=min(n_boot, DEFAULT_LINK_BOOT), metric_name=metric_name)
    return ChainLaw(loss_law=loss_law, link=link, loss_name=loss_name, metric_name=metric_name)
