"""Effective data transferred (Hernandez et al. 2021, "Scaling Laws for Transfer").

A transfer study runs each model from scratch and fine-tuned (``init_from``) at several
fractions of the target data. For a fine-tuned model trained on D_F target samples:

* D_E, the *effective data*, is how many samples the same model trained from scratch
  would need to do as well. It is read off the model's fitted from-scratch law
  y(D): the D where y(D) equals the fine-tuned runs' mean.
* D_T = D_E − D_F is the data the pretraining was worth. It is negative when the
  checkpoint hurt (negative transfer).

The interval of D_T pairs each bootstrap replicate of the from-scratch law (with the
drift beyond the data that the law's own intervals add) with a resample of the
fine-tuned runs (seeds drawn with replacement), so it carries both the law's uncertainty
and the seeds' scatter. It is a percentile interval: with few runs it can be narrow,
and need not be centred on the point estimate, which is read off the law itself.
The metric must fall with more data (a loss or an error rate). A fine-tuned mean better than anything the
from-scratch law reaches within ``REACH`` times the largest D makes D_E unbounded: the
point and the upper end are then reported as infinite. D_E beyond the data is an
extrapolation of the law, and is flagged.

With several model sizes, D_T = k·D_F^α·N^β is fitted by least squares in logs (with
one size, D_T = k·D_F^α), and its parameters' intervals come from refitting each
replicate's D_T values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalelab.errors import InputError

from scalelab.curves import SCRATCH, TRANSFER_KEYS, grid_roles, transfer_runs

DATA_KEY = "data_fraction"
REACH = 1000.0  # how far beyond the largest from-scratch D the law is inverted
_GRID_POINTS = 600


@dataclass(frozen=True)
class TransferPoint:
    """D_E and D_T for one model, fine-tuning setting and target fraction."""

    model: str  # a readable label of the model (and the fine-tuning setting)
    n_params: float
    data_fraction: float | None
    d_f: float  # target samples the fine-tuned runs trained on
    y_finetuned: float  # their mean of the metric
    y_scratch: float | None  # the from-scratch runs' mean at the same fraction, when run
    n_seeds: int
    d_e: float  # from-scratch samples needed to match; inf when the law never gets there
    d_e_lo: float
    d_e_hi: float
    d_t: float  # d_e − d_f
    d_t_lo: float
    d_t_hi: float
    extrapolated: bool  # d_e lies beyond the largest from-scratch run

    def to_dict(self) -> dict:
        return {name: _json_number(value) for name, value in self.__dict__.items()}


@dataclass(frozen=True)
class TransferFit:
    """D_T = k·D_F^α·N^β (``beta`` is None when the study has one model size)."""

    k: float
    alpha: float
    beta: float | None
    intervals: dict[str, tuple[float, float]]
    n_points: int

    def formula(self) -> str:
        text = f"D_T = {self.k:.3g}·D_F^{self.alpha:.3g}"
        return text + (f"·N^{self.beta:.3g}" if self.beta is not None else "")

    def to_dict(self) -> dict:
        return {
            "k": self.k,
            "alpha": self.alpha,
            "beta": self.beta,
            "intervals": {name: [lo, hi] for name, (lo, hi) in self.intervals.items()},
            "n_points": self.n_points,
            "formula": self.formula(),
        }


@dataclass
class TransferAnalysis:
    """Every fine-tuned point's D_E and D_T, the from-scratch law of each model, and the fit."""

    metric: str
    level: float
    points: list[TransferPoint]
    fit: TransferFit | None
    laws: dict = field(default_factory=dict)  # model label -> the from-scratch FittedLaw
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "level": self.level,
            "points": [p.to_dict() for p in self.points],
            "fit": self.fit.to_dict() if self.fit else None,
            "notes": list(self.notes),
        }

    def frame(self) -> pd.DataFrame:
        """The points as a table, one row per model, setting and fraction."""
        return pd.DataFrame([p.__dict__ for p in self.points])


def transfer_analysis(
    runs: pd.DataFrame,
    *,
    y_col: str,
    group_keys: list[str],
    variant_keys: list[str] = (),
    label: str = "runs",
    level: float = 0.8,
    n_boot: int = 1000,
    chance: float | None = None,
    seed: int = 0,
) -> TransferAnalysis:
    """D_E and D_T of each fine-tuned point of ``runs`` (the runs table of a study).

    ``runs`` needs ``init_from`` (``"none"`` from scratch), ``n_train`` and ``y_col``.
    ``group_keys`` name one model each (family, width, ...): each gets its own
    from-scratch law. ``variant_keys`` (``freeze``, ``head_lr``), and ``init_from`` when
    the fine-tuned runs start from more than one checkpoint, split the fine-tuned runs of
    a model into settings compared against the same law.

    Raises :class:`InputError` when there is nothing to compare: no fine-tuned or no
    from-scratch runs, or a model whose from-scratch law cannot be fitted.
    """
    from scalelab.fitting import is_error_rate
    from scalelab.laws import fit

    if not 0 < level < 1:
        raise InputError(f"level {level} must be between 0 and 1")
    for col in ("init_from", "n_train", y_col):
        if col not in runs.columns:
            raise InputError(f"{label}: no column {col!r}; a transfer study sweeps init_from = [\"none\", ...] (columns: {', '.join(map(str, runs.columns))})")
    done = runs[runs["state"] == "done"].copy() if "state" in runs.columns else runs.copy()
    done[y_col] = pd.to_numeric(done[y_col], errors="coerce")
    done["n_train"] = pd.to_numeric(done["n_train"], errors="coerce")
    done = done[np.isfinite(done[y_col]) & (done["n_train"] > 0)].reset_index(drop=True)  # rows are picked by label below
    start = done["init_from"].fillna(SCRATCH).astype(str)
    scratch, tuned = done[start == SCRATCH], done[start != SCRATCH]
    if not len(tuned) or not len(scratch):
        missing = "fine-tuned" if not len(tuned) else "from-scratch"
        raise InputError(f'{label}: no done {missing} runs; a transfer study needs both (grid init_from = ["none", "pretrain"])')

    rng = np.random.default_rng(seed)
    error_rate = is_error_rate(y_col)
    points: list[TransferPoint] = []
    laws = {}
    notes: list[str] = []
    replicate_dt: list[np.ndarray] = []  # per point, D_T of each replicate (aligned, K values)
    for model, model_scratch in _groups(scratch, group_keys):
        law_label = model or label
        model_tuned = _matching(tuned, group_keys, model_scratch)
        if not len(model_tuned):
            continue
        try:
            law = fit(model_scratch["n_train"].to_numpy(float), model_scratch[y_col].to_numpy(float), x_names=("n_train",),
                      y_name=y_col, error_rate=error_rate, ceiling=chance, n_boot=n_boot)  # fmt: skip
        except InputError as exc:
            notes.append(f"{law_label}: no from-scratch law ({exc}); its fine-tuned runs are left out.")
            continue
        by_size = model_scratch.groupby("n_train")[y_col].mean()
        if len(by_size) > 1 and by_size.iloc[-1] > by_size.iloc[0]:
            raise InputError(f"{label}: {y_col} rises with more data ({law_label}); D_E is read off a falling law, so compare a loss or an error rate")
        laws[law_label] = law
        n_params = float(pd.to_numeric(model_scratch.get("n_params"), errors="coerce").median()) if "n_params" in model_scratch else math.nan
        d_max = float(model_scratch["n_train"].max())
        grid = np.geomspace(1.0, d_max * REACH, _GRID_POINTS)
        curve = law.predict(grid)
        draws, weights = law.curve_draws(grid)
        chosen = rng.choice(len(draws), size=n_boot, p=weights / weights.sum())
        draws = draws[chosen]
        # Fine-tuned runs from different checkpoints (init_from = ["none", "pretrain", "a.pt"])
        # are different settings, as a swept freeze or head_lr is.
        splits = [k for k in variant_keys if k in model_tuned.columns]
        if model_tuned["init_from"].astype(str).nunique() > 1:
            splits = ["init_from", *splits]
        for variant, variant_rows in _groups(model_tuned, splits):
            name = ", ".join(filter(None, [model, variant]))
            by_fraction = variant_rows.groupby("n_train", sort=True)
            for d_f, rows in by_fraction:
                values = rows[y_col].to_numpy(float)
                y_f = float(values.mean())
                resampled = rng.choice(values, size=(n_boot, len(values))).mean(axis=1)
                d_e = float(_invert(curve[None, :], grid, np.array([y_f]))[0])
                d_e_draws = _invert(draws, grid, resampled)
                d_t_draws = d_e_draws - d_f
                d_e_lo, d_e_hi = _interval(d_e_draws, level)
                d_t_lo, d_t_hi = _interval(d_t_draws, level)
                fraction = pd.to_numeric(rows.get(DATA_KEY), errors="coerce").mean() if DATA_KEY in rows else math.nan
                same = model_scratch[model_scratch["n_train"] == d_f][y_col]
                points.append(TransferPoint(
                    model=name or label, n_params=n_params, data_fraction=None if math.isnan(fraction) else float(fraction),
                    d_f=float(d_f), y_finetuned=y_f, y_scratch=float(same.mean()) if len(same) else None, n_seeds=len(values),
                    d_e=d_e, d_e_lo=float(d_e_lo), d_e_hi=float(d_e_hi), d_t=d_e - float(d_f), d_t_lo=float(d_t_lo),
                    d_t_hi=float(d_t_hi), extrapolated=bool(d_e > d_max),
                ))  # fmt: skip
                replicate_dt.append(d_t_draws)
    if not points:
        raise InputError(f"{label}: no model has both a from-scratch law and fine-tuned runs to compare" + (f" ({notes[0]})" if notes else ""))
    if any(math.isinf(p.d_e) for p in points):
        notes.append(f"D_E = inf: the fine-tuned runs did better than the from-scratch law reaches within {REACH:g}× the largest from-scratch data.")
    if any(p.extrapolated and math.isfinite(p.d_e) for p in points):
        notes.append("Points marked extrapolated read D_E off the from-scratch law beyond its largest run.")
    if any(p.n_seeds == 1 for p in points):
        notes.append("Points with one fine-tuned seed: their intervals carry only the from-scratch law's uncertainty, not the seeds' scatter.")
    fit, fit_note = _fit_power(points, np.array(replicate_dt), level)
    if fit_note:
        notes.append(fit_note)
    return TransferAnalysis(metric=y_col, level=level, points=points, fit=fit, laws=laws, notes=notes)


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` interval of ``draws``, which may hold inf (no interpolation)."""
    tail = (1 - level) / 2
    lo, hi = np.quantile(draws, [tail, 1 - tail], method="nearest")
    return float(lo), float(hi)


def _invert(curves: np.ndarray, grid: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each row of ``curves`` (decreasing in D over ``grid``), the D where it falls to
    that row's target: interpolated in log D, the smallest D when the curve starts below
    the target, and inf when it never reaches it."""
    out = np.empty(len(curves))
    for i, (curve, target) in enumerate(zip(curves, targets)):
        below = np.flatnonzero(curve <= target)
        if not len(below):
            out[i] = math.inf
            continue
        j = below[0]
        if j == 0:
            out[i] = grid[0]
            continue
        hi_y, lo_y = curve[j - 1], curve[j]  # hi_y > target >= lo_y
        t = (hi_y - target) / (hi_y - lo_y) if hi_y > lo_y else 1.0
        out[i] = math.exp(math.log(grid[j - 1]) + t * (math.log(grid[j]) - math.log(grid[j - 1])))
    return out


def _fit_power(points: list[TransferPoint], draws: np.ndarray, level: float) -> tuple[TransferFit | None, str | None]:
    """Least squares of log D_T on log D_F (and log N with several sizes), over the points
    with a finite, positive D_T, and a note on what was left out; (None, why) when too few."""
    d_f = np.array([p.d_f for p in points])
    n = np.array([p.n_params for p in points])
    d_t = np.array([p.d_t for p in points])
    positive = np.isfinite(d_t) & (d_t > 0)
    # N^β only when the points it is fitted to come from two or more model sizes; with one,
    # log N is the intercept again and β would be arbitrary.
    with_n = bool(np.all(np.isfinite(n))) and len(set(n[positive])) > 1
    columns = [np.ones_like(d_f), np.log(d_f)] + ([np.log(n)] if with_n else [])
    design = np.column_stack(columns)
    formula = "D_T = k·D_F^α·N^β" if with_n else "D_T = k·D_F^α"

    def solve(values: np.ndarray):
        usable = np.isfinite(values) & (values > 0)
        if usable.sum() < design.shape[1] + 1 or np.linalg.matrix_rank(design[usable]) < design.shape[1]:
            return None, usable
        coef, *_ = np.linalg.lstsq(design[usable], np.log(values[usable]), rcond=None)
        return coef, usable

    coef, usable = solve(d_t)
    if coef is None:
        return None, f"No {formula} fit: it needs {design.shape[1] + 1} points with a finite D_T > 0 at 2 or more D_F; {int(usable.sum())} have one."
    if not with_n and len(set(n[np.isfinite(n)])) > 1:
        notes_n = "N^β is left out: the points with a finite D_T > 0 come from one model size"
    else:
        notes_n = None
    replicas, partial = [], 0
    for k in range(draws.shape[1]):
        replica, kept = solve(draws[:, k])
        if replica is not None:
            replicas.append(replica)
            partial += int(kept.sum() < usable.sum())
    names = ["k", "alpha", "beta"][: design.shape[1]]
    tail = (1 - level) / 2
    intervals = {}
    if replicas:
        stacked = np.array(replicas)
        stacked[:, 0] = np.exp(stacked[:, 0])
        for i, name in enumerate(names):
            lo, hi = np.quantile(stacked[:, i], [tail, 1 - tail])
            intervals[name] = (float(lo), float(hi))
    fit = TransferFit(k=float(math.exp(coef[0])), alpha=float(coef[1]), beta=float(coef[2]) if with_n else None,
                      intervals=intervals, n_points=int(usable.sum()))  # fmt: skip
    notes = [notes_n] if notes_n else []
    if usable.sum() < len(points):
        notes.append(f"{len(points) - int(usable.sum())} of {len(points)} points have D_T ≤ 0 or infinite and are left out of it")
    if partial or len(replicas) < draws.shape[1]:
        notes.append(f"{partial + draws.shape[1] - len(replicas)} of {draws.shape[1]} bootstrap refits left out points whose D_T "
                     "was ≤ 0 or infinite in that draw, so its intervals are approximate")  # fmt: skip
    return fit, (f"The {formula} fit: " + "; ".join(notes) + ".") if notes else None


def _groups(rows: pd.DataFrame, keys: list[str]):
    """(label, rows) per distinct combination of ``keys``: ``"width 2, depth 1"``."""
    keys = [k for k in keys if k in rows.columns]
    if not keys:
        yield "", rows
        return
    hashable = rows[keys].map(lambda v: tuple(v) if isinstance(v, list) else v)
    for values, part in hashable.groupby(keys, sort=False, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        yield ", ".join(_describe(k, v) for k, v in zip(keys, values)), rows.loc[part.index]


def _matching(rows: pd.DataFrame, keys: list[str], like: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``rows`` with the same values of ``keys`` as ``like`` (one model)."""
    keys = [k for k in keys if k in rows.columns]
    mask = pd.Series(True, index=rows.index)
    for key in keys:
        value = like[key].iloc[0]
        column = rows[key].map(lambda v: tuple(v) if isinstance(v, list) else v)
        value = tuple(value) if isinstance(value, list) else value
        mask &= column.isna() if _is_missing(value) else column == value
    return rows[mask]


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _describe(key: str, value) -> str:
    name = key.split(".")[-1]
    if name == "family":
        return str(value)
    return f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def transfer_of_runs(rows: pd.DataFrame, *, spec, y_col: str, label: str, level: float = 0.8, n_boot: int = 1000,
                     chance: float | None = None) -> TransferAnalysis:  # fmt: skip
    """:func:`transfer_analysis` of a study's transfer runs (:func:`scalelab.curves.transfer_runs`):
    one from-scratch law per model (its size keys), ``freeze`` and ``head_lr`` (where swept)
    splitting a model's fine-tuned runs into settings."""
    roles = grid_roles(spec)
    size_keys = [k for k in roles.size if k in rows.columns]
    # A list value (a factory's hidden sizes) names its model by its text, as the labels do.
    rows = rows.assign(**{k: rows[k].map(lambda v: str(v) if isinstance(v, (list, tuple)) else v) for k in size_keys})
    variants = [name for name in TRANSFER_KEYS[1:] if any(k.split(".")[-1] == name for k in roles.transfer)]
    return transfer_analysis(rows, y_col=y_col, group_keys=size_keys, variant_keys=variants, label=label, level=level,
                             n_boot=n_boot, chance=chance)  # fmt: skip


def study_transfer(study, *, y: str | None = None, level: float = 0.8, n_boot: int = 1000, chance: float | None = None) -> TransferAnalysis:
    """:func:`transfer_of_runs` of a study: the runs :func:`scalelab.curves.transfer_runs`
    picks (as the report's transfer section does)."""
    from scalelab.fitting import default_chance

    spec = study.spec
    y_col = y or spec.target_metric
    if not grid_roles(spec).transfer:
        raise InputError(f'{spec.source}: the grid does not sweep init_from; a transfer study has grid init_from = ["none", "pretrain"] (or a checkpoint path)')
    runs = study.runs()
    if y_col not in runs.columns:
        raise InputError(f"{spec.name}: no column {y_col!r} in its runs (columns: {', '.join(map(str, runs.columns))})")
    rows = transfer_runs(spec, runs, y_col=y_col)
    if rows is None:
        raise InputError(f"{spec.name}: no done runs to compare yet")
    if chance is None:
        chance = default_chance(rows, y_col)
    return transfer_of_runs(rows, spec=spec, y_col=y_col, label=spec.name, level=level, n_boot=n_boot, chance=chance)
