"""Automatic choice of form by backtests inside the fitted range.

Never by in-sample fit, which always prefers the most flexible form. Instead: hold out
the largest one, then two, scales of the data given, fit each candidate on the rest,
and score its extrapolation error (mean absolute log error) on what was held out. The
form with the lowest mean score wins; ties go to the form with fewer parameters.
"""

from __future__ import annotations

import numpy as np

from scalelab.errors import InputError
from scalelab.laws.core import LawData, fit_form
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


def held_out_log_errors(data: LawData, form: Form, train: np.ndarray, *, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Fit on ``train``; return log(predicted/actual) at the other points, and how many
    e-folds of scale beyond the largest training scale each of them lies."""
    u, _ = fit_form(data.subset(train), form, delta=delta, polished=False)
    held = ~train
    pred = form.predict(form.to_natural(u)[None, :], data.x[held], data.ceiling)[0]
    errors = np.log(np.maximum(pred, 1e-300)) - np.log(data.y[held])
    distance = np.log(data.scale[held] / data.scale[train].max())
    return errors, distance


def extrapolation_error(data: LawData, form: Form, train: np.ndarray, *, delta: float) -> float:
    """Mean |log predicted − log actual| on the points outside ``train``."""
    errors, _ = held_out_log_errors(data, form, train, delta=delta)
    return float(np.mean(np.abs(errors)))


def extrapolation_spread(data: LawData, form: Form, *, delta: float) -> float | None:
    """Log-scale error per e-fold of extrapolation, measured by inner backtests (RMS).

    None when the data has too few scales to backtest this form.
    """
    rates = []
    for train in inner_splits(data, form):
        errors, distance = held_out_log_errors(data, form, train, delta=delta)
        rates.extend(np.abs(errors) / np.maximum(distance, 1e-3))
    return float(np.sqrt(np.mean(np.square(rates)))) if rates else None


def choose_form(data: LawData, candidates: list[Form], *, delta: float) -> tuple[Form, dict[str, float | None]]:
    """The candidate with the best inner-backtest score, and every candidate's score.

    Candidates that cannot be backtested (too few scales for their parameters) score
    None; if none can be, the simplest candidate with enough points is used.
    """
    scores: dict[str, float | None] = {}
    for form in candidates:
        masks = inner_splits(data, form)
        scores[form.name] = float(np.mean([extrapolation_error(data, form, m, delta=delta) for m in masks])) if masks else None
    scored = [f for f in candidates if scores[f.name] is not None]
    if scored:
        best = min(scored, key=lambda f: (round(scores[f.name], 12), f.n_params))
        return best, scores
    usable = [f for f in candidates if f.n_params <= len(data.y)]
    if not usable:
        raise InputError(f"{len(data.y)} points are too few for any form (the simplest needs {min(f.n_params for f in candidates)})")
    return min(usable, key=lambda f: f.n_params), scores

