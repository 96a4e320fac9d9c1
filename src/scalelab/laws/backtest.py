"""Backtests: hold out the largest scales, fit on the rest, score the extrapolation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scalelab.errors import InputError
from scalelab.laws.core import LawData


@dataclass
class BacktestRow:
    """One form's extrapolation to the held-out scales."""

    form: str
    chosen: str | None  # for "auto": the form it picked
    n_fit: int
    points: list[dict] = field(default_factory=list)  # x, actual, predicted, lo, hi, abs_error, rel_error, covered
    error: str | None = None
    weights: dict[str, float] | None = None  # for "auto": the forms it averaged

    @property
    def abs_error(self) -> float:
        return float(np.mean([p["abs_error"] for p in self.points])) if self.points else float("nan")

    @property
    def rel_error(self) -> float:
        return float(np.mean([p["rel_error"] for p in self.points])) if self.points else float("nan")

    @property
    def coverage(self) -> float:
        return float(np.mean([p["covered"] for p in self.points])) if self.points else float("nan")

    def to_dict(self) -> dict:
        out = {"form": self.form, "n_fit": self.n_fit, "points": self.points}
        if self.chosen is not None:
            out["chosen"] = self.chosen
        if self.weights is not None:
            out["weights"] = self.weights
        if self.error is not None:
            out["error"] = self.error
        else:
            out.update(abs_error=self.abs_error, rel_error=self.rel_error, coverage=self.coverage)
        return out


def holdout_mask(data: LawData, *, holdout: int = 1, gap: float = 1.0) -> np.ndarray:
    """Points to fit on: below the ``holdout`` largest scales, and at most 1/``gap`` of the smallest held-out one."""
    scales = np.unique(data.scale)
    if holdout < 1 or holdout >= len(scales):
        raise InputError(f"cannot hold out {holdout} of {len(scales)} distinct scales")
    first_held = scales[-holdout]
    if gap <= 1:
        return data.scale < first_held
    # Sizes made from fractions round per class (1/4 of 1347 may be 337): allow 2% slack.
    return (data.scale <= first_held / gap * 1.02) & (data.scale < first_held)


def backtest_forms(data: LawData, forms, *, holdout: int = 1, gap: float = 1.0, level: float = 0.8, fit_kwargs=None) -> list[BacktestRow]:
    """Fit each form on the smaller scales and score it on the held-out largest ones.

    ``forms`` may include ``"auto"``, which chooses among the candidates using only the
    points it is fitted on. Errors are absolute (target units) and relative.
    """
    from scalelab.laws.law import fit

    train = holdout_mask(data, holdout=holdout, gap=gap)
    held = data.scale >= np.unique(data.scale)[-holdout]
    rows = []
    for name in forms:
        try:
            law = fit(
                data.x[train], data.y[train], form=name, x_names=data.x_names, y_name=data.y_name,
                ceiling=data.ceiling, **(fit_kwargs or {}),
            )  # fmt: skip
        except InputError as exc:
            rows.append(BacktestRow(name, None, int(train.sum()), error=str(exc)))
            continue
        x_held, y_held = data.x[held], data.y[held]
        pred = law.predict(x_held)
        lo, hi = law.interval(x_held, level)
        points = [
            {
                "x": (xv.tolist() if np.ndim(xv) else float(xv)),
                "actual": float(a),
                "predicted": float(p),
                "lo": float(low),
                "hi": float(high),
                "abs_error": float(abs(p - a)),
                "rel_error": float(abs(p - a) / abs(a)) if a else float("nan"),
                "covered": bool(low <= a <= high),
            }
            for xv, a, p, low, high in zip(x_held, y_held, pred, lo, hi)
        ]
        auto = name == "auto"
        rows.append(BacktestRow(name, law.form if auto else None, int(train.sum()), points, weights=law.weights if auto else None))
    return rows
