"""Automatic choice of form by backtests inside the fitted range.

Never by in-sample fit, which always prefers the most flexible form. Instead: hold out
the largest one, then two, scales of the data given, fit each candidate on the rest,
and score its extrapolation error (mean absolute log error) on what was held out. The
forms are then weighted by their scores (:func:`form_weights`); the best one, ties
going to the form with fewer parameters, is the one whose parameters are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scalelab.errors import InputError
from scalelab.laws.core import LawData, fit_forms
from scalelab.laws.forms import Form


def inner_splits(data: LawData, form: Form, *, max_holdout: int = 2) -> list[np.ndarray]:
    """Training masks that hold out the top 1..max_holdout scales, when enough remain.

    A form is scored only where at least two more scales than it has parameters
    remain: a fit that barely determines its parameters says little about extrapolation.
    """
    scales = np.unique(data.scale)
    masks = []
    for k in range(1, max_holdout + 1):
        if len(scales) - k < form.n_params + 2:
            break
        masks.append(data.scale < scales[-k])
    return masks


def split_errors(datas: list[LawData], form: Form, *, delta: float) -> list[list[tuple[np.ndarray, np.ndarray, float]]]:
    """Inner backtests of one form on each dataset, all fitted in one batched solve.

    Per dataset, per inner split: the log errors log(predicted/actual) at the held-out
    points, how many e-folds of scale beyond the largest training scale each lies, and
    the mean squared log residual of the training fit (the runs' own scatter).
    """
    jobs = [(i, train) for i, data in enumerate(datas) for train in inner_splits(data, form)]
    fits = fit_forms([datas[i].subset(train) for i, train in jobs], form, delta=delta, polished=False)
    out: list[list[tuple[np.ndarray, np.ndarray, float]]] = [[] for _ in datas]
    for (i, train), (u, _) in zip(jobs, fits):
        data = datas[i]
        pred = form.predict(form.to_natural(u)[None, :], data.x, data.ceiling)[0]
        log_errors = np.log(np.maximum(pred, 1e-300)) - np.log(data.y)
        distance = np.log(data.scale[~train] / data.scale[train].max())
        out[i].append((log_errors[~train], distance, float(np.mean(log_errors[train] ** 2))))
    return out


def extrapolation_spread(data: LawData, form: Form, *, delta: float) -> float | None:
    """Log-scale error per e-fold of extrapolation, measured by inner backtests.

    None when the data has too few scales to backtest this form.
    """
    return _spread(split_errors([data], form, delta=delta)[0])


def _spread(splits: list[tuple[np.ndarray, np.ndarray, float]]) -> float | None:
    """sqrt(Σ(e² − scatter) / Σd²): squared held-out errors less the runs' own scatter, per
    squared e-fold. Dividing raw errors by short distances would blow the scatter of a
    single held-out run up into a drift."""
    if not splits:
        return None
    excess = sum(float(np.sum(errors**2 - scatter)) for errors, _, scatter in splits)
    squared_distance = sum(float(np.sum(distance**2)) for _, distance, _ in splits)
    return float(np.sqrt(max(excess, 0.0) / max(squared_distance, 1e-12)))


@dataclass
class Choice:
    """The automatic choice for one dataset.

    ``scores``: each candidate's inner-backtest score (None when it could not be
    backtested). ``weights``: the forms whose predictions are averaged, summing to 1;
    ``best`` is the heaviest (or the :class:`InputError` of a dataset too small for every
    candidate). ``spreads``: each scored form's extrapolation error per e-fold.
    """

    best: Form | InputError
    scores: dict[str, float | None]
    weights: dict[str, float] = field(default_factory=dict)
    spreads: dict[str, float | None] = field(default_factory=dict)


# 0.5 and 2 were each worse on some extrapolation ratio of benchmarks/law_calibration.py.
SHARPNESS = 1.0


def form_weights(scores: dict[str, float | None], *, floor: float = 1e-3, cutoff: float = 0.01) -> dict[str, float]:
    """Weights exp(-k (s - s_best) / s_best), k = :data:`SHARPNESS`, on the scored forms,
    those under ``cutoff`` dropped.

    The temperature is the best score itself, so the weighting is scale-free: a form
    whose inner-backtest error is twice the best one's gets e^-1 of its weight. When the
    best form extrapolated almost perfectly (score under ``floor``), it gets nearly all.
    """
    scored = {k: v for k, v in scores.items() if v is not None and np.isfinite(v)}
    if not scored:
        return {}
    best = min(scored.values())
    raw = {k: float(np.exp(-SHARPNESS * (v - best) / max(best, floor))) for k, v in scored.items()}
    total = sum(raw.values())
    kept = {k: w / total for k, w in raw.items() if w / total >= cutoff}
    total = sum(kept.values())
    return {k: w / total for k, w in kept.items()}


def choose_forms(datas: list[LawData], candidates: list[Form], *, delta: float) -> list[Choice]:
    """For each dataset: every candidate's inner-backtest score, and the forms to average.

    A score is the mean |log error| over the held-out points of each inner split, averaged
    over splits. Candidates that cannot be backtested (too few scales for their
    parameters) score None; if none can be, the simplest candidate with enough points is
    used alone. Ties go to the form with fewer parameters.
    """
    scores: list[dict[str, float | None]] = [{} for _ in datas]
    spreads: list[dict[str, float | None]] = [{} for _ in datas]
    for form in candidates:
        for score, spread, splits in zip(scores, spreads, split_errors(datas, form, delta=delta)):
            score[form.name] = float(np.mean([np.mean(np.abs(e)) for e, _, _ in splits])) if splits else None
            spread[form.name] = _spread(splits)
    choices = []
    for data, score, spread in zip(datas, scores, spreads):
        try:
            best = _pick(data, candidates, score)
        except InputError as exc:
            choices.append(Choice(exc, score))
            continue
        weights = form_weights(score) or {best.name: 1.0}
        choices.append(Choice(best, score, weights, spread))
    return choices


def choose_form(data: LawData, candidates: list[Form], *, delta: float) -> tuple[Form, dict[str, float | None]]:
    """The best form for one dataset and every candidate's score; raises its :class:`InputError`."""
    choice = choose_forms([data], candidates, delta=delta)[0]
    if isinstance(choice.best, InputError):
        raise choice.best
    return choice.best, choice.scores


def _pick(data: LawData, candidates: list[Form], scores: dict[str, float | None]) -> Form:
    scored = [f for f in candidates if scores[f.name] is not None]
    if scored:
        return min(scored, key=lambda f: (round(scores[f.name], 12), f.n_params))
    usable = [f for f in candidates if f.n_params <= len(data.y)]
    if not usable:
        raise InputError(f"{len(data.y)} {'point is' if len(data.y) == 1 else 'points are'} too few for any form (the simplest needs {min(f.n_params for f in candidates)})")
    return min(usable, key=lambda f: f.n_params)
