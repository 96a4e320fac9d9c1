"""The fitted law users hold: parameters, predictions and honest intervals."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scalelab.errors import InputError
from scalelab.laws.bootstrap import bootstrap_internal
from scalelab.laws.core import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_DELTA,
    ONE_X_AUTO,
    TWO_X_AUTO,
    LawData,
    fit_forms,
    prepare,
    resolve_form,
)
from scalelab.laws.forms import FORMS, Form, specialise
from scalelab.laws.optimize import Problem
from scalelab.laws.select import choose_forms, extrapolation_spread

# Log-scale error per e-fold of extrapolation assumed when the data is too small to
# measure it by inner backtests.
DEFAULT_SPREAD = 0.1


@dataclass
class FittedLaw:
    """A form fitted to data.

    ``params`` are in natural units. ``predict(x)`` gives the law's value;
    ``interval(x, level)`` a prediction interval for a new run at ``x`` (parameter
    uncertainty from the bootstrap over runs, plus the scatter of runs around the law).
    ``selection`` holds the inner-backtest score of each candidate when the form was
    chosen automatically.
    """

    form: str
    params: dict[str, float]
    data: LawData = field(repr=False)
    loss: float
    selection: dict[str, float | None] | None = None
    n_boot: int = DEFAULT_BOOTSTRAP
    delta: float = DEFAULT_DELTA
    _form: Form = field(default=None, repr=False)
    _u: np.ndarray = field(default=None, repr=False)
    _boot: np.ndarray | None = field(default=None, repr=False)
    _spread: float | None = field(default=None, repr=False)

    @property
    def n_points(self) -> int:
        return len(self.data.y)

    @property
    def x_names(self) -> tuple[str, ...]:
        return self.data.x_names

    def _as_x(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.data.x.ndim == 2:
            x = np.atleast_2d(x)
            if x.shape[-1] != 2:
                raise InputError(f"this law takes (N, D) pairs, got shape {x.shape}")
        else:
            x = np.atleast_1d(x).ravel()
        if np.any(x <= 0) or not np.all(np.isfinite(x)):
            raise InputError("prediction points must be positive and finite")
        return x

    def predict(self, x) -> np.ndarray:
        """The law's value at each x (or each (N, D) row)."""
        theta = self._form.to_natural(self._u)[None, :]
        return self._form.predict(theta, self._as_x(x), self.data.ceiling)[0]

    def bootstrap_params(self) -> np.ndarray:
        """Natural parameters of each bootstrap replicate, shape (n_boot, n_params); computed once."""
        if self._boot is None:
            problem = Problem(self._form, self.data.x, self.data.y, self.data.ceiling, self.delta)
            self._boot = self._form.to_natural(bootstrap_internal(problem, self._u, n_boot=self.n_boot))
        return self._boot

    def extrapolation_spread(self) -> float:
        """How wrong this form has been per e-fold of extrapolation in inner backtests
        (log scale, RMS), or a default when the data is too small to tell; computed once."""
        if self._spread is None:
            measured = extrapolation_spread(self.data, self._form, delta=self.delta)
            self._spread = DEFAULT_SPREAD if measured is None else measured
        return self._spread

    def residuals(self) -> np.ndarray:
        """Log residuals of the data around the fitted law."""
        return np.log(self.predict(self.data.x)) - np.log(self.data.y)

    def interval(self, x, level: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
        """A ``level`` prediction interval for a new run at each x: (lower, upper) arrays."""
        if not 0 < level < 1:
            raise InputError(f"level {level} must be between 0 and 1")
        x = self._as_x(x)
        curves = self._form.predict(self.bootstrap_params(), x, self.data.ceiling)  # (B, m)
        # Each replicate also draws one run's scatter around the law (log residuals) and,
        # beyond the data, a misspecification error that grows with the distance in
        # e-folds, at the rate the form's inner backtests showed: bootstrapping the
        # parameters alone trusts the form's shape far outside the data.
        rng = np.random.default_rng(1)
        scatter = rng.choice(self.residuals(), size=curves.shape)
        scale = x if x.ndim == 1 else x.prod(axis=1)
        beyond = np.maximum(0.0, np.log(scale / self.data.scale.max()))
        drift = self.extrapolation_spread() * beyond[None, :] * rng.standard_normal(curves.shape)
        samples = curves * np.exp(-scatter + drift)
        if self.data.ceiling is not None:
            samples = np.minimum(samples, self.data.ceiling)
        tail = (1 - level) / 2
        lo, hi = np.nanquantile(samples, [tail, 1 - tail], axis=0)
        return lo, hi

    def param_intervals(self, level: float = 0.8) -> dict[str, tuple[float, float]]:
        """Bootstrap percentile interval of each parameter."""
        tail = (1 - level) / 2
        boot = self.bootstrap_params()
        lo, hi = np.nanquantile(boot, [tail, 1 - tail], axis=0)
        return {name: (float(a), float(b)) for name, a, b in zip(self._form.params, lo, hi)}

    def to_dict(self, *, predict=None, level: float = 0.8) -> dict:
        """The JSON shape of ``scalelab fit --format json`` for one group (without ``group``)."""
        out = {"form": self.form, "params": {k: float(v) for k, v in self.params.items()}, "n_points": self.n_points}
        if predict is not None and len(predict):
            points = self._as_x(predict)
            y = self.predict(points)
            lo, hi = self.interval(points, level)
            out["predictions"] = [
                {"x": (p.tolist() if np.ndim(p) else float(p)), "y": float(a), "lo": float(b), "hi": float(c)}
                for p, a, b, c in zip(points, y, lo, hi)
            ]
        else:
            out["predictions"] = []
        if self.selection is not None:
            out["selection"] = {k: v for k, v in self.selection.items()}
        if self.data.notes:
            out["notes"] = list(self.data.notes)
        return out


def fit(
    x,
    y,
    form: str = "auto",
    *,
    x_names=None,
    y_name: str = "y",
    ceiling: float | None = None,
    error_rate: bool = False,
    delta: float = DEFAULT_DELTA,
    n_boot: int = DEFAULT_BOOTSTRAP,
    candidates=None,
) -> FittedLaw:
    """Fit a scaling law to ``(x, y)``.

    Parameters
    ----------
    x : array-like (n,) or (n, 2), or a DataFrame with one or two columns
        Scale (data size, parameters, FLOPs), or (N, D) pairs for the joint law.
    y : array-like (n,)
        The target, decreasing with scale (a loss or an error rate).
    form : str
        ``"auto"`` (chosen by backtests inside the data), or one of
        :data:`scalelab.laws.FORMS`.
    ceiling, error_rate
        For error rates: values must lie in [0, 1]; predictions never exceed the
        chance level ``ceiling`` (default 1), where M4 saturates.
    delta : float
        Huber threshold on log residuals.
    n_boot : int
        Bootstrap replicates for intervals (computed on first use).

    Examples
    --------
    >>> import numpy as np
    >>> from scalelab import laws
    >>> x = np.geomspace(100, 1e5, 8)
    >>> law = laws.fit(x, 0.05 + 2.0 * x ** -0.5, form="saturating")
    >>> round(law.params["beta"], 2), round(law.params["E"], 3)
    (0.5, 0.05)
    """
    data = prepare(x, y, x_names=x_names, y_name=y_name, ceiling=ceiling, error_rate=error_rate)
    (result,) = fit_prepared([data], form, delta=delta, n_boot=n_boot, candidates=candidates)
    if isinstance(result, InputError):
        raise result
    return result


def fit_prepared(
    datas: list[LawData], form: str = "auto", *, delta: float = DEFAULT_DELTA, n_boot: int = DEFAULT_BOOTSTRAP, candidates=None
) -> list[FittedLaw | InputError]:
    """Fit one law to each of many prepared datasets (groups), batching the work.

    All inner backtests of a form, over every dataset, are one batched solve, and so are
    the final fits of the datasets that chose the same form; a thousand small groups
    then cost little more than one. Returns, per dataset, its law or the
    :class:`InputError` that dataset alone raised (too few points for the form, ...).
    """
    results: list[FittedLaw | InputError | None] = [None] * len(datas)
    # Datasets with a different target kind or number of x columns get different candidates.
    kinds: dict[tuple, list[int]] = {}
    for i, data in enumerate(datas):
        kinds.setdefault((data.x.ndim, data.ceiling), []).append(i)
    for (ndim, ceiling), members in kinds.items():
        chosen: dict[int, tuple[Form, dict | None]] = {}
        if form == "auto":
            names = candidates or (ONE_X_AUTO if ndim == 1 else TWO_X_AUTO)
            forms = [specialise(FORMS[n], ceiling) for n in names]
            choices = choose_forms([datas[i] for i in members], forms, delta=delta)
            for i, (choice, selection) in zip(members, choices):
                if isinstance(choice, InputError):
                    results[i] = choice
                else:
                    chosen[i] = (choice, selection)
        else:
            for i in members:
                try:
                    chosen[i] = (resolve_form(form, datas[i]), None)
                except InputError as exc:
                    results[i] = exc
        by_form: dict[str, list[int]] = {}
        for i, (choice, _) in chosen.items():
            if len(datas[i].y) < choice.n_params:
                results[i] = InputError(f"form {choice.name!r} has {choice.n_params} parameters but only {len(datas[i].y)} points were given")
            else:
                by_form.setdefault(choice.name, []).append(i)
        for indices in by_form.values():
            choice = chosen[indices[0]][0]
            for i, (u, loss) in zip(indices, fit_forms([datas[i] for i in indices], choice, delta=delta)):
                params = dict(zip(choice.params, (float(v) for v in choice.to_natural(u))))
                results[i] = FittedLaw(
                    form=choice.name, params=params, data=datas[i], loss=loss, selection=chosen[i][1],
                    n_boot=n_boot, delta=delta, _form=choice, _u=u,
                )  # fmt: skip
    return results
