"""The fitted law users hold: parameters, predictions and honest intervals."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scalelab.errors import InputError
from scalelab.laws.bootstrap import bootstrap_many
from scalelab.laws.core import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_DELTA,
    ONE_X_AUTO,
    TWO_X_AUTO,
    LawData,
    bounds_hit,
    bounds_that_matter,
    cells,
    effective_delta,
    fit_forms,
    prepare,
    resolve_form,
    too_few_points,
)
from scalelab.laws.forms import FORMS, Form, specialise
from scalelab.laws.select import Choice, choose_forms, extrapolation_spread

# Log-scale error per e-fold of extrapolation assumed when the data is too small to
# measure it by inner backtests.
DEFAULT_SPREAD = 0.25
# The least drift per e-fold an interval assumes. Inner backtests on smooth curves see
# errors near zero over their short held-out distances, while real curves bend beyond
# them: without a floor, 80% intervals covered about 60% of held-out points on real
# learning and pretraining curves at 2x and 8x (benchmarks/law_calibration.py).
MIN_SPREAD = 0.06


@dataclass
class FittedLaw:
    """A form fitted to data.

    ``params`` are in natural units. ``predict(x)`` gives the law's value;
    ``interval(x, level)`` a prediction interval for a new run at ``x`` (parameter
    uncertainty from the bootstrap over runs, the scatter of runs around the law, and
    beyond the data the extrapolation error the form showed in inner backtests).

    With ``form="auto"``: ``selection`` holds each candidate's inner-backtest score and
    ``weights`` the forms whose predictions are averaged (a weighted geometric mean;
    intervals are the weighted mixture of theirs). ``form`` and ``params`` are then the
    heaviest form's, and :meth:`member` gives any other.
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
    weights: dict[str, float] | None = None
    _members: dict[str, FittedLaw] = field(default_factory=dict, repr=False)
    # Parameters that rest on a bound of the form: name -> "lower" | "upper".
    at_bound: dict[str, str] = field(default_factory=dict)

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
        x = self._as_x(x)
        if not self._members:
            return self._own_predict(x)
        logs = sum(w * np.log(self._members[name]._own_predict(x)) for name, w in self.weights.items())
        return np.exp(logs)

    def member(self, name: str) -> FittedLaw:
        """The single-form law of one of the averaged forms (``self`` when not averaged)."""
        if not self._members:
            if name != self.form:
                raise InputError(f"this law is {self.form!r} alone; it has no member {name!r}")
            return self
        if name not in self._members:
            raise InputError(f"no member {name!r}; the averaged forms are {', '.join(self._members)}")
        return self._members[name]

    def _own_predict(self, x: np.ndarray) -> np.ndarray:
        theta = self._form.to_natural(self._u)[None, :]
        return self._form.predict(theta, x, self.data.ceiling)[0]

    def bootstrap_params(self) -> np.ndarray:
        """Natural parameters of each bootstrap replicate, shape (n_boot, n_params); computed once
        (:func:`compute_bootstraps` computes those of many laws together)."""
        if self._boot is None:
            compute_bootstraps([self])
        return self._boot

    def extrapolation_spread(self) -> float:
        """How wrong this form has been per e-fold of extrapolation in inner backtests
        (log scale, RMS), or a default when the data is too small to tell; computed once."""
        if self._spread is None:
            measured = extrapolation_spread(self.data, self._form, delta=self.delta)
            self._spread = DEFAULT_SPREAD if measured is None else measured
        return self._spread

    def residuals(self) -> np.ndarray:
        """Log residuals of the data around the fitted law (its heaviest form's, when averaged)."""
        return np.log(self._own_predict(self.data.x)) - np.log(self.data.y)

    def interval(self, x, level: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
        """A ``level`` prediction interval for a new run at each x: (lower, upper) arrays."""
        if not 0 < level < 1:
            raise InputError(f"level {level} must be between 0 and 1")
        x = self._as_x(x)
        members = [(self._members[n], w) for n, w in self.weights.items()] if self._members else [(self, 1.0)]
        samples = [m._samples(x) for m, _ in members]
        weights = [np.full(len(block), w / len(block)) for block, (_, w) in zip(samples, members)]
        tail = (1 - level) / 2
        lo, hi = _weighted_quantiles(np.vstack(samples), np.concatenate(weights), [tail, 1 - tail])
        return lo, hi

    def curve_draws(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Draws of the law's *mean* curve at each x, shape (K, m), with each row's weight
        (they sum to 1): every averaged form's bootstrap replicates, weighted by the form,
        each with the misspecification drift beyond the data that :meth:`interval` adds,
        but without the scatter of single runs. What a quantity read off the law (the data
        a target needs, say) is uncertain by.

        A draw's drift is one standard normal per row, scaled by the spread at each x, so
        each row is a smooth curve rather than independent noise at each point.
        """
        x = self._as_x(x)
        members = [(self._members[n], w) for n, w in self.weights.items()] if self._members else [(self, 1.0)]
        curves = []
        for member, _ in members:
            drawn = member._with_drift(member._form.predict(member.bootstrap_params(), x, member.data.ceiling), x,
                                       np.random.default_rng(2), per_curve=True)  # fmt: skip
            curves.append(drawn if member.data.ceiling is None else np.minimum(drawn, member.data.ceiling))
        weights = [np.full(len(block), w / len(block)) for block, (_, w) in zip(curves, members)]
        return np.vstack(curves), np.concatenate(weights)

    def _with_drift(self, curves: np.ndarray, x: np.ndarray, rng: np.random.Generator, *, per_curve: bool) -> np.ndarray:
        """Bootstrap ``curves`` (n_boot, m) at each x with the drift beyond the data: a
        misspecification error that grows with the distance in e-folds, at the rate the
        form's inner backtests showed (bootstrapping the parameters alone trusts the form's
        shape far outside the data). ``per_curve``: one standard normal per curve (a smooth
        curve), else one per point."""
        scale = x if x.ndim == 1 else x.prod(axis=1)
        beyond = np.maximum(0.0, np.log(scale / self.data.scale.max()))
        spread = max(self.extrapolation_spread(), MIN_SPREAD)
        # The spread is measured net of the runs' scatter; it still holds the parameters'
        # uncertainty, which the bootstrap draws: the drift adds only what that misses.
        with np.errstate(divide="ignore", invalid="ignore"):
            boot_var = np.nanvar(np.log(curves), axis=0)
        missing = np.maximum((spread * beyond) ** 2 - boot_var, 0.0)
        if per_curve:
            # Growing with the distance, the missing spread is monotone in x: the running
            # maximum keeps a drawn curve from bending back up where boot_var happens to rise.
            missing = np.maximum.accumulate(missing)
        normal = rng.standard_normal((len(curves), 1) if per_curve else curves.shape)
        return curves * np.exp(np.sqrt(missing)[None, :] * normal)

    def _samples(self, x: np.ndarray) -> np.ndarray:
        """Draws of a new run's value at each x, shape (n_boot, m), for this single form: a
        bootstrap curve with its drift (:meth:`_with_drift`) and one run's scatter around the law."""
        curves = self._form.predict(self.bootstrap_params(), x, self.data.ceiling)  # (B, m)
        rng = np.random.default_rng(1)
        # Residuals of a fit are smaller than the runs' scatter by the parameters it spent
        # on them: sqrt(cells / (cells - p)) restores it (the usual degrees of freedom).
        n_cells = len(np.unique(self.data.x, axis=0))
        inflation = np.sqrt(n_cells / max(n_cells - self._form.n_params, 1))
        scatter = rng.choice(self.residuals(), size=curves.shape) * inflation
        samples = self._with_drift(curves, x, rng, per_curve=False) * np.exp(-scatter)
        if self.data.ceiling is not None:
            samples = np.minimum(samples, self.data.ceiling)
        return samples

    def selection_summary(self) -> str:
        """One line on what auto did: the forms averaged with their weights, and every score."""
        if not self.selection:
            return f"{self.form} (fixed form)"
        scored = sorted(((k, v) for k, v in self.selection.items() if v is not None), key=lambda kv: kv[1])
        if not scored:
            return f"auto used {self.form} alone: too few scales to backtest any form, so the simplest that fits"
        ranking = ", ".join(f"{k} {v:.3g}" for k, v in scored)
        if len(scored) == 1:
            return f"auto used {self.form} alone: the only form with enough scales to backtest (mean |log error| {ranking})"
        weights = ", ".join(f"{k} {w:.0%}" for k, w in sorted((self.weights or {}).items(), key=lambda kv: -kv[1]))
        return (f"auto averaged {weights} (params shown: {self.form}), weighted by extrapolation error inside the data "
                f"(mean |log error| holding out the largest scales: {ranking})")  # fmt: skip

    def _repr_html_(self) -> str:
        """A notebook view: the law, its parameters with intervals, and a figure."""
        from scalelab.report import law_html

        return law_html(self)

    def param_intervals(self, level: float = 0.8) -> dict[str, tuple[float, float]]:
        """Bootstrap percentile interval of each parameter."""
        tail = (1 - level) / 2
        boot = self.bootstrap_params()
        lo, hi = np.nanquantile(boot, [tail, 1 - tail], axis=0)
        return {name: (float(a), float(b)) for name, a, b in zip(self._form.params, lo, hi)}

    def to_dict(self, *, predict=None, level: float = 0.8) -> dict:
        """The JSON shape of ``scalelab fit --format json`` for one group (without ``group``)."""
        out = {"form": self.form, "params": {k: float(v) for k, v in self.params.items()}, "n_points": self.n_points,
               "at_bound": dict(self.at_bound)}  # fmt: skip
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
        if self.weights is not None:
            out["weights"] = dict(self.weights)
        if self.data.notes:
            out["notes"] = list(self.data.notes)
        return out


def compute_bootstraps(laws: list[FittedLaw]) -> None:
    """Fill the bootstrap replicates of every law (and of every form an averaged law
    holds) in batched solves: all replicates of one form, over all the laws, are refitted
    together. Each law gets exactly the replicates it would compute alone; laws that
    already have theirs are left as they are.

    Call it once on the laws of many groups before asking them for intervals: each law
    alone pays a batched solve of its own, and a thousand small ones cost far more than
    one large one.
    """
    singles: dict[int, FittedLaw] = {}
    for law in laws:
        for single in (law._members.values() if law._members else [law]):
            if single._boot is None:
                singles.setdefault(id(single), single)
    kinds: dict[tuple, list[FittedLaw]] = {}
    for single in singles.values():
        kinds.setdefault((single._form, single.data.ceiling, single.delta), []).append(single)
    for (form, ceiling, delta), members in kinds.items():
        jobs = [(m.data.x, m.data.y, m._u, m.n_boot) for m in members]
        for member, internal in zip(members, bootstrap_many(form, ceiling, delta, jobs)):
            member._boot = form.to_natural(internal)


def huber_threshold(law: FittedLaw) -> float:
    """The Huber threshold a law's fit used: its ``delta`` raised to the curve's scatter
    (:func:`scalelab.laws.core.effective_delta`)."""
    return effective_delta(cells(law.data.x, law.data.y), law.delta)


def _weighted_quantiles(samples: np.ndarray, weights: np.ndarray, levels) -> list[np.ndarray]:
    """Quantiles of each column of ``samples`` (K, m) where row k carries ``weights[k]``; NaNs skipped."""
    order = np.argsort(samples, axis=0)  # NaNs sort last
    ordered = np.take_along_axis(samples, order, axis=0)
    w = np.where(np.isnan(ordered), 0.0, weights[order])
    cumulative = np.cumsum(w, axis=0) - 0.5 * w  # midpoints, like numpy's default interpolation
    cumulative /= np.maximum(w.sum(axis=0), 1e-300)
    out = []
    for level in levels:
        column = [np.interp(level, cumulative[w[:, j] > 0, j], ordered[w[:, j] > 0, j]) if (w[:, j] > 0).any() else np.nan
                  for j in range(samples.shape[1])]  # fmt: skip
        out.append(np.array(column))
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
        Huber threshold on log residuals, at least; a curve's fit raises it to 1.345
        times the scatter of its points around a smooth curve (:func:`huber_threshold`).
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
        plans: dict[int, Choice] = {}
        if form == "auto":
            names = candidates or (ONE_X_AUTO if ndim == 1 else TWO_X_AUTO)
            forms = {n: specialise(FORMS[n], ceiling) for n in names}
            for i, choice in zip(members, choose_forms([datas[i] for i in members], list(forms.values()), delta=delta)):
                if isinstance(choice.best, InputError):
                    results[i] = choice.best
                else:
                    plans[i] = choice
        else:
            forms = {}
            for i in members:
                try:
                    resolved = resolve_form(form, datas[i])
                except InputError as exc:
                    results[i] = exc
                    continue
                forms[resolved.name] = resolved
                plans[i] = Choice(resolved, {}, {resolved.name: 1.0})
        # Every (dataset, form) fit that the plans need, batched per form.
        needed: dict[str, list[int]] = {}
        for i, plan in plans.items():
            for name in plan.weights:
                needed.setdefault(name, []).append(i)
        fitted: dict[tuple[int, str], FittedLaw] = {}
        for name, indices in needed.items():
            chosen = forms[name]
            problems = {i: too_few_points(datas[i], chosen) for i in indices}
            for i, problem in problems.items():
                if problem is not None:
                    results[i] = problem
            indices = [i for i in indices if problems[i] is None]
            for i, (u, loss) in zip(indices, fit_forms([datas[i] for i in indices], chosen, delta=delta)):
                params = dict(zip(chosen.params, (float(v) for v in chosen.to_natural(u))))
                fitted[i, name] = FittedLaw(
                    form=name, params=params, data=datas[i], loss=loss, n_boot=n_boot, delta=delta, _form=chosen, _u=u,
                    _spread=plans[i].spreads.get(name), at_bound=bounds_hit(chosen, datas[i], u),
                )  # fmt: skip
        for i, plan in plans.items():
            if results[i] is not None:
                continue
            if form != "auto":
                results[i] = fitted[i, plan.best.name]
                continue
            weights = _without_forms_at_bounds(plan.weights, {name: fitted[i, name] for name in plan.weights})
            law = fitted[i, max(weights, key=lambda n: (weights[n], -forms[n].n_params))]
            law.selection, law.weights = plan.scores, weights
            law._members = {name: fitted[i, name] for name in weights}
            _share_replicates(law._members, weights, n_boot)
            results[i] = law
    return results


def _without_forms_at_bounds(weights: dict[str, float], members: dict[str, FittedLaw]) -> dict[str, float]:
    """``weights`` without the forms whose fit rests on a bound that matters (a limit of
    the search, not of the law: their extrapolation is the box's, not the data's),
    renormalised. When every form is at such a bound the weights stay as they are."""
    kept = {name: w for name, w in weights.items() if not bounds_that_matter(members[name]._form, members[name].at_bound)}
    total = sum(kept.values())
    if not kept or total <= 0:
        return dict(weights)
    return {name: w / total for name, w in kept.items()}


MIN_MEMBER_BOOT = 100


def _share_replicates(members: dict[str, FittedLaw], weights: dict[str, float], n_boot: int) -> None:
    """Give each averaged form a share of the ``n_boot`` replicates by its weight (at least
    :data:`MIN_MEMBER_BOOT`). The mixture's intervals weight each form's draws by the form,
    not by their number, so ``n_boot`` draws in all describe it as well as ``n_boot`` per
    form, at a fraction of the cost."""
    if len(members) < 2:
        return
    for name, member in members.items():
        member.n_boot = min(n_boot, max(MIN_MEMBER_BOOT, int(np.ceil(n_boot * weights[name]))))
