"""Automatic choice of form by backtests inside the fitted range.

Never by in-sample fit, which always prefers the most flexible form. Instead: hold out
the largest one, then two, scales of the data given, fit each candidate on the rest,
and score its extrapolation error (mean absolute log error) on what was held out. The
form with the lowest mean score wins; ties go to the form with fewer parameters.
"""

from __future__ import annotations

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


def split_errors(datas: list[LawData], form: Form, *, delta: float) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Inner backtests of one form on each dataset, all fitted in one batched solve.

    Per dataset, per inner split: the log errors log(predicted/actual) at the held-out
    points, and how many e-folds of scale beyond the largest training scale each lies.
    """
    jobs = [(i, train) for i, data in enumerate(datas) for train in inner_splits(data, form)]
    fits = fit_forms([datas[i].subset(train) for i, train in jobs], form, delta=delta, polished=False)
    out: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in datas]
    for (i, train), (u, _) in zip(jobs, fits):
        data, held = datas[i], ~train
        pred = form.predict(form.to_natural(u)[None, :], data.x[held], data.ceiling)[0]
        errors = np.log(np.maximum(pred, 1e-300)) - np.log(data.y[held])
        distance = np.log(data.scale[held] / data.scale[train].max())
        out[i].append((errors, distance))
    return out


def extrapolation_spread(data: LawData, form: Form, *, delta: float) -> float | None:
    """Log-scale error per e-fold of extrapolation, measured by inner backtests (RMS).

    None when the data has too few scales to backtest this form.
    """
    rates = [np.abs(errors) / np.maximum(distance, 1e-3) for errors, distance in split_errors([data], form, delta=delta)[0]]
    return float(np.sqrt(np.mean(np.square(np.concatenate(rates))))) if rates else None


def choose_forms(datas: list[LawData], candidates: list[Form], *, delta: float) -> list[tuple[Form | InputError, dict[str, float | None]]]:
    """For each dataset, the candidate with the best inner-backtest score, and every score.

    A score is the mean |log error| over the held-out points of each inner split, averaged
    over splits. Candidates that cannot be backtested (too few scales for their
    parameters) score None; if none can be, the simplest candidate with enough points is
    used. Ties go to the form with fewer parameters. A dataset too small for every
    candidate gets the :class:`InputError` that says so instead of a form.
    """
    scores: list[dict[str, float | None]] = [{} for _ in datas]
    for form in candidates:
        for score, splits in zip(scores, split_errors(datas, form, delta=delta)):
            score[form.name] = float(np.mean([np.mean(np.abs(e)) for e, _ in splits])) if splits else None
    choices: list[tuple[Form | InputError, dict[str, float | None]]] = []
    for data, score in zip(datas, scores):
        try:
            choices.append((_pick(data, candidates, score), score))
        except InputError as exc:
            choices.append((exc, score))
    return choices


def choose_form(data: LawData, candidates: list[Form], *, delta: float) -> tuple[Form, dict[str, float | None]]:
    """:func:`choose_forms` for one dataset; raises its :class:`InputError`."""
    choice, score = choose_forms([data], candidates, delta=delta)[0]
    if isinstance(choice, InputError):
        raise choice
    return choice, score


def _pick(data: LawData, candidates: list[Form], scores: dict[str, float | None]) -> Form:
    scored = [f for f in candidates if scores[f.name] is not None]
    if scored:
        return min(scored, key=lambda f: (round(scores[f.name], 12), f.n_params))
    usable = [f for f in candidates if f.n_params <= len(data.y)]
    if not usable:
        raise InputError(f"{len(data.y)} points are too few for any form (the simplest needs {min(f.n_params for f in candidates)})")
    return min(usable, key=lambda f: f.n_params)
