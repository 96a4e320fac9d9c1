"""The numbers behind a report: laws per group, backtests, and plans.

Everything goes through the public fitting API (:mod:`scalelab.fitting`,
:func:`scalelab.laws.fit`, :mod:`scalelab.plan`). A section whose data cannot support
it (too few scales for a backtest, one model size for a joint law) becomes a note in
the report rather than an error: the rest of the report is still worth having.

The fairness numbers (:func:`gap_trends`) are plain means over seeds, no law: whether the
gap between the best- and worst-served class narrows or widens is read off the runs. So are
the compression numbers (:func:`compression_points`): per model size and compression
setting, means over seeds, and which points sit on the Pareto frontiers of the target
against model bytes and against inference throughput.

The transfer numbers (:func:`transfer`) are :func:`scalelab.transfer.transfer_analysis` of
the from-scratch and fine-tuned runs: one from-scratch law per model size, and for each
fine-tuned point the effective data D_E and the data transferred D_T = D_E − D_F.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalelab.errors import InputError, did_you_mean
from scalelab.report.data import COMPRESSION_KEYS, ReportData
from scalelab.transfer import TransferAnalysis, transfer_of_runs

EXTRAPOLATE = 10.0  # laws are drawn, and predicted, out to this many times the largest x


@dataclass
class LawResult:
    """One group's law, or why it could not be fitted."""

    group: object
    law: object | None = None  # a FittedLaw
    error: str | None = None
    x: np.ndarray | None = None  # the data it was fitted on
    y: np.ndarray | None = None
    prediction: dict | None = None  # {"x": ..., "y": ..., "lo": ..., "hi": ...}
    param_intervals: dict = field(default_factory=dict)


@dataclass
class PlanResult:
    """A joint law L(N, D) for one family, with its compute-optimal frontier."""

    label: str
    law: object
    k: float  # FLOPs per parameter per sample
    k_source: str
    budget: float
    allocation: object  # plan.Allocation at ``budget``
    frontier: list  # plan.Allocation at each budget of a sweep
    marginal: dict
    runs: pd.DataFrame  # N, D, C, y of the runs the law was fitted on
    best: dict | None = None  # the best point (mean over seeds), where "now" is read
    hardware: dict | None = None  # plan.hardware_estimate of the budget on one H100
    verdict: str = ""  # plan.marginal_verdict: more data or a bigger model, at the best point


@dataclass
class GapTrend:
    """How one family's largest model's class error gap moves from the smallest to the largest
    training set (at one class-imbalance level), means over seeds."""

    family: str | None
    model: str
    n_params: float | None
    imbalance: float | None  # the class_imbalance level, when the grid sweeps several
    n_lo: float
    n_hi: float
    gap_lo: float
    gap_hi: float
    worst_lo: float
    worst_hi: float
    smallest_model: str | None = None  # the family's smallest model, at n_hi, for comparison
    smallest_gap: float | None = None

    @property
    def direction(self) -> str:
        """``narrows``, ``widens``, or ``stays`` when the two means round to the same tenth of a
        point (the report shows one decimal, and never "narrows from 9.8 to 9.8")."""
        if round(100 * self.gap_hi, 1) == round(100 * self.gap_lo, 1):
            return "stays"
        return "narrows" if self.gap_hi < self.gap_lo else "widens"


@dataclass
class Analysis:
    laws: list[LawResult]
    backtests: list[dict]  # fitting.backtest_groups output
    plans: list[PlanResult]
    notes: list[str]
    level: float
    fairness: list[GapTrend] = field(default_factory=list)
    compression: pd.DataFrame | None = None  # compression_points: one row per model size and compression setting
    transfer: TransferAnalysis | None = None  # D_E and D_T of the fine-tuned runs (grid sweeps init_from)
    isoflops: list[dict] = field(default_factory=list)  # the measured isoFLOP profiles per family (grid sweeps flops_budget)
    settings: dict = field(default_factory=dict)  # report.tuning: lr and batch laws, repeated data, the loss-to-error link
    federated: dict | None = None  # report.federated: rounds against data, privacy against error


def check_options(data: ReportData, *, form: str) -> None:
    """Fail fast, as ``scalelab fit`` would, on a bad column or form (exit 2)."""
    from scalelab.laws import FORMS

    for col in [*data.x_cols, data.y_col]:
        if col not in data.done.columns:
            raise InputError(f"{data.source}: no column {col!r}{did_you_mean(col, data.done.columns)} (columns: {', '.join(map(str, data.done.columns))})")
        values = pd.to_numeric(data.done[col], errors="coerce")
        if (values.isna() & data.done[col].notna()).any():
            bad = data.done[col][values.isna() & data.done[col].notna()].iloc[0]
            raise InputError(f"{data.source}: column {col!r} holds a non-numeric value {bad!r}")
    if data.group is not None and data.group not in data.done.columns:
        raise InputError(f"{data.source}: no column {data.group!r} to group by{did_you_mean(data.group, data.done.columns)} (columns: {', '.join(map(str, data.done.columns))})")
    if form != "auto":
        if form not in FORMS:
            raise InputError(f"unknown form {form!r}; known: auto, {', '.join(FORMS)}")
        if FORMS[form].n_x != len(data.x_cols):
            raise InputError(f"form {form!r} takes {FORMS[form].n_x} x column(s), got {len(data.x_cols)} ({', '.join(data.x_cols)})")


def analyse(data: ReportData, *, form: str = "auto", level: float = 0.8, chance: float | None = None, n_boot: int = 1000,
            progress: Callable[[str], None] | None = None) -> Analysis:  # fmt: skip
    """Fit, backtest and plan; see the module docstring for what becomes a note.

    ``progress`` is called with the name of each stage as it starts (laws, backtests,
    plans, ...): the analysis of a large study takes a minute or more, and a caller
    that shows progress says where it is.
    """
    from scalelab.fitting import default_chance

    step = progress or (lambda _stage: None)

    notes: list[str] = []
    if not len(data.done):
        if data.kind == "csv":  # a report on a file of runs that holds none is a mistake, not a report
            raise InputError(f"{data.source}: no done rows to fit ({len(data.runs)} rows in the file)")
        return Analysis([], [], [], ["No done runs yet: nothing to fit."], level)
    check_options(data, form=form)
    if chance is None:
        chance = default_chance(data.done, data.y_col)
    with np.errstate(over="ignore", invalid="ignore"):  # far out, some bootstrap curves overflow: they leave the band
        step("fitting laws with bootstrap intervals")
        laws = fit_laws(data, form=form, level=level, chance=chance, n_boot=n_boot, notes=notes)
        step("backtesting each form on the largest scales")
        backtests = backtest(data, level=level, chance=chance, n_boot=n_boot, notes=notes)
        step("planning budgets per family")
        plans = plan_families(data, level=level, chance=chance, n_boot=n_boot, notes=notes)
        step("transfer, isoFLOP, tuning and federated analyses")
        transferred = transfer(data, level=level, chance=chance, n_boot=n_boot, notes=notes)
        isoflops = isoflop_profiles(data, level=level, n_boot=n_boot, notes=notes)
        from scalelab.report.tuning import analyse_settings

        settings = analyse_settings(data, level=level, notes=notes)
        from scalelab.report.federated import analyse_federated

        federated = analyse_federated(data, level=level)
    return Analysis(laws, backtests, plans, notes, level, fairness=gap_trends(data), compression=compression_points(data),
                    transfer=transferred, isoflops=isoflops, settings=settings, federated=federated)  # fmt: skip


def isoflop_profiles(data: ReportData, *, level, n_boot, notes) -> list[dict]:
    """The isoFLOP approach per family, as ``scalelab plan --approach isoflop`` gives it,
    when the grid sweeps ``flops_budget``; [] otherwise."""
    from scalelab.fitting import BUDGET_COLUMN, plan_source, study_source

    if data.kind != "study" or BUDGET_COLUMN not in data.spec.grid_keys:
        return []
    from scalelab.curves import planning_x

    x_cols = list(planning_x(data.spec))
    try:
        src = study_source(data.spec, data.runs, x_cols=x_cols, y_col=data.y_col, store=data.store)
        result = plan_source(src, x_cols=x_cols, y_col=data.y_col, approach="isoflop", level=level, n_boot=n_boot)
    except InputError as exc:
        notes.append(f"No isoFLOP profiles: {exc}")
        return []
    for skipped in result["skipped"]:
        notes.append(f"No isoFLOP profiles for {skipped['group']}: {skipped['why']}.")
    return [{"label": str(p["group"]) if p["group"] is not None else data.title, "x_cols": x_cols, **p} for p in result["plans"]]


def transfer(data: ReportData, *, level, chance, n_boot, notes) -> TransferAnalysis | None:
    """D_E and D_T of every fine-tuned point against its model's from-scratch law; None
    (and a note) when the grid does not sweep init_from or the runs cannot support it.
    The same analysis as ``scalelab transfer`` (:func:`scalelab.transfer.transfer_of_runs`)."""
    rows = data.transfer_runs
    if rows is None:
        return None
    try:
        return transfer_of_runs(rows, spec=data.spec, y_col=data.y_col, label=data.title, level=level, n_boot=n_boot, chance=chance)
    except InputError as exc:
        notes.append(f"No transfer analysis: {exc}")
        return None


def fit_laws(data: ReportData, *, form, level, chance, n_boot, notes) -> list[LawResult]:
    from scalelab.fitting import fit_groups

    try:
        results = fit_groups(data.done, label=data.source, x_cols=data.x_cols, y_col=data.y_col, group=data.group,
                             form=form, level=level, chance=chance, n_boot=n_boot)  # fmt: skip
    except InputError as exc:
        if data.kind == "csv":  # a CSV is fitted as given, so the report fails as `scalelab fit` would
            raise
        notes.append(f"No law could be fitted: {exc}")
        return []
    out = []
    rows_by_group = dict(_groups(data.done, data.group))
    for r in results:
        law = r.get("_law")
        if law is None:
            out.append(LawResult(group=r["group"], error=r.get("error", "not fitted")))
            continue
        rows = rows_by_group.get(r["group"], data.done)
        x = np.column_stack([pd.to_numeric(rows[c]).to_numpy(float) for c in data.x_cols])
        x = x[:, 0] if x.shape[1] == 1 else x
        y = pd.to_numeric(rows[data.y_col]).to_numpy(float)
        result = LawResult(group=r["group"], law=law, x=x, y=y)
        try:
            result.param_intervals = law.param_intervals(level)
            point = _prediction_point(x)
            lo, hi = law.interval(point[None, :] if x.ndim == 2 else point, level)
            result.prediction = {"x": point, "y": float(law.predict(point[None, :] if x.ndim == 2 else point)[0]),
                                 "lo": float(lo[0]), "hi": float(hi[0])}  # fmt: skip
        except (InputError, ValueError, FloatingPointError) as exc:
            result.error = f"intervals failed: {exc}"
        out.append(result)
    return out


def _prediction_point(x: np.ndarray) -> np.ndarray:
    """Where each law is asked to forecast: 10x the largest x (for N, D: the largest N, 10x D)."""
    if x.ndim == 1:
        return np.array([EXTRAPOLATE * float(x.max())])
    return np.array([float(x[:, 0].max()), EXTRAPOLATE * float(x[:, 1].max())])


def backtest(data: ReportData, *, level, chance, n_boot, notes) -> list[dict]:
    """Every form (and auto) fitted below the largest scale and scored on it, per group."""
    from scalelab.fitting import backtest_groups

    forms = [*one_x_forms(), "auto"] if len(data.x_cols) == 1 else ["chinchilla"]
    try:
        return backtest_groups(data.done, label=data.source, x_cols=data.x_cols, y_col=data.y_col, group=data.group,
                               forms=forms, holdout=1, gap=1.0, level=level, chance=chance, n_boot=n_boot)  # fmt: skip
    except InputError as exc:
        notes.append(f"No backtest: {exc}")
        return []


def one_x_forms() -> list[str]:
    """The forms ``auto`` chooses among for one x."""
    try:
        from scalelab.laws.core import ONE_X_AUTO

        return list(ONE_X_AUTO)
    except ImportError:  # the laws package moved it; fall back on every one-x form
        from scalelab.laws import FORMS

        return [name for name, f in FORMS.items() if f.n_x == 1 and name != "compute"]


def plan_families(data: ReportData, *, level, chance, n_boot, notes) -> list[PlanResult]:
    """One joint law and compute-optimal frontier per model family (their costs differ),
    planned as ``scalelab plan`` plans (:func:`scalelab.fitting.plan_source`) at
    :data:`EXTRAPOLATE` times each family's largest run, with its hours on an H100."""
    from scalelab import plan
    from scalelab.fitting import Source, plan_source, study_source

    if data.kind == "study":
        from scalelab.curves import planning_x

        x_cols, c_col = list(planning_x(data.spec)), "flops"
        if not all(c in data.runs.columns for c in (*x_cols, c_col)):
            notes.append("No plan: the runs have no measured FLOPs.")
            return []
        try:
            src = study_source(data.spec, data.runs, x_cols=x_cols, y_col=data.y_col, store=data.store)
        except InputError as exc:
            notes.append(f"No plan: {exc}")
            return []
    elif len(data.x_cols) == 2:
        x_cols = data.x_cols
        c_col = "flops" if "flops" in data.done.columns else None
        src = Source(data.done, data.source, None, data.group)
    else:
        return []
    try:
        result = plan_source(src, x_cols=x_cols, y_col=data.y_col, flops_col=c_col, budget_factor=EXTRAPOLATE if c_col else None,
                             budget=None if c_col else EXTRAPOLATE * 6.0 * float(np.max(src.table[x_cols[0]] * src.table[x_cols[1]])),
                             hardware="h100", level=level, chance=chance, n_boot=n_boot)  # fmt: skip
    except (InputError, ValueError, FloatingPointError) as exc:
        notes.append(f"No plan: {exc}")
        return []
    for skipped in result["skipped"]:
        notes.append(f"No plan for {skipped['group']}: {skipped['why']}.")
    out = []
    for p in result["plans"]:
        law, k = p["_law"], p["flops_per_param_sample"]
        rows = src.table if p["group"] is None else src.table[src.table[src.group] == p["group"]]
        if c_col is not None:
            rows = rows[pd.to_numeric(rows[c_col], errors="coerce") > 0]
        N, D = (pd.to_numeric(rows[c]).to_numpy(float) for c in x_cols)
        C = pd.to_numeric(rows[c_col]).to_numpy(float) if c_col else k * N * D
        y = pd.to_numeric(rows[data.y_col]).to_numpy(float)
        budgets = np.geomspace(float(C.min()), 100 * float(C.max()), 13)
        frontier = [plan.optimal_allocation(law, budget=float(b), flops_per_param_sample=k, level=level) for b in budgets]
        label = str(p["group"]) if p["group"] is not None else data.title
        out.append(PlanResult(label, law, k, p["notes"][0].removeprefix("cost model: "), p["budget"]["flops"], plan.Allocation(**p["budget"]), frontier,
                              p["marginal"], pd.DataFrame({"N": N, "D": D, "C": C, "y": y}), best=p["best_run"],
                              hardware=p.get("hardware"),
                              verdict=plan.marginal_verdict(p["marginal"], y_name=data.y_col, percent=data.is_error_rate)))  # fmt: skip
    return out


def gap_trends(data: ReportData) -> list[GapTrend]:
    """Per family (and class-imbalance level), the largest model's mean class error gap at
    the smallest and the largest training set: does more data close the gap or widen it?"""
    rows = data.fairness_runs
    if rows is None or "class_error_gap" not in rows.columns:
        return []
    rows = rows[np.isfinite(rows["class_error_gap"].astype(float))]
    key = data.imbalance_key
    out = []
    for family, fam_rows in _groups(rows, "family" if "family" in rows.columns else None):
        largest, smallest = size_extremes(fam_rows)
        for level, level_rows in _groups(fam_rows, key):
            model_rows = level_rows[level_rows["model"] == largest]
            means = model_rows.groupby("n_train", sort=True)[["class_error_gap", "worst_class_error"]].mean()
            if len(means) < 2:
                continue  # one training-set size: no trend to read
            lo, hi = means.iloc[0], means.iloc[-1]
            trend = GapTrend(
                family=None if family is None else str(family), model=largest,
                n_params=_mean_or_none(model_rows, "n_params"), imbalance=None if key is None else float(level),
                n_lo=float(means.index[0]), n_hi=float(means.index[-1]), gap_lo=float(lo["class_error_gap"]),
                gap_hi=float(hi["class_error_gap"]), worst_lo=float(lo["worst_class_error"]), worst_hi=float(hi["worst_class_error"]),
            )  # fmt: skip
            small = level_rows[(level_rows["model"] == smallest) & (level_rows["n_train"] == means.index[-1])]
            if smallest != largest and len(small):
                trend.smallest_model, trend.smallest_gap = smallest, float(small["class_error_gap"].mean())
            out.append(trend)
    return out


def transfer_model(point, laws: dict) -> tuple[str, str]:
    """``(model, setting)`` of a transfer point: the label of the from-scratch law it was
    compared with (a key of ``laws``) and the fine-tuning setting (``"head_lr 0.01"``, or
    ``""``) that ``transfer_analysis`` joined to it in ``point.model``."""
    if point.model in laws:
        return point.model, ""
    prefix = max((m for m in laws if point.model.startswith(f"{m}, ")), key=len, default=None)
    if prefix is not None:
        return prefix, point.model[len(prefix) + 2 :]
    if len(laws) == 1:  # one model, no size keys: the label is the study's, the name the setting's
        return next(iter(laws)), point.model
    return point.model, ""


COMPRESSION_MEANS = ("test_error", "test_error_before_compression", "nonzero_params", "model_bytes", "inference_samples_per_s", "n_params")


def compression_points(data: ReportData) -> pd.DataFrame | None:
    """Per model size and compression setting, the means over seeds of what the compression
    section shows; None without a compression sweep.

    Columns: ``model``, ``compression``, ``prune``, ``prune_finetune_epochs``, ``quantize``,
    the means of :attr:`ReportData.compression_y` and :data:`COMPRESSION_MEANS` (those the
    runs have), ``seeds``, ``inference_device`` (every device the runs were timed on), and
    ``on_bytes_frontier`` / ``on_speed_frontier``: no point with fewer bytes (more samples/s)
    has a lower mean. Rows in table order: models by size, each setting by prune ratio, the
    uncompressed run first.
    """
    rows = data.compression_runs
    if rows is None:
        return None
    y = data.compression_y
    metrics = [c for c in dict.fromkeys([y, *COMPRESSION_MEANS]) if c in rows.columns]
    rows = rows.assign(**{c: pd.to_numeric(rows[c], errors="coerce") for c in metrics})
    keys = ["model", "compression", *COMPRESSION_KEYS]
    grouped = rows.groupby(keys, sort=False)
    points = grouped[metrics].mean()
    points["seeds"] = grouped.size()
    if "inference_device" in rows.columns:
        points["inference_device"] = grouped["inference_device"].agg(lambda v: ", ".join(sorted({str(d) for d in v.dropna()})))
    else:
        points["inference_device"] = ""
    points = points.reset_index()
    models = list(dict.fromkeys(points["model"]))
    if "n_params" in points.columns and points["n_params"].notna().any():
        models = list(points.groupby("model", sort=False)["n_params"].mean().sort_values(kind="stable").index)
    points = points.assign(
        _model=points["model"].map({m: i for i, m in enumerate(models)}), _quantized=points["quantize"] != "none"
    ).sort_values(["_model", "prune", "prune_finetune_epochs", "_quantized", "quantize"], kind="stable")
    points = points.drop(columns=["_model", "_quantized"]).reset_index(drop=True)
    target = points[y].to_numpy(float)
    for name, col, more in (("on_bytes_frontier", "model_bytes", False), ("on_speed_frontier", "inference_samples_per_s", True)):
        points[name] = False
        if col in points.columns:
            x = points[col].to_numpy(float)
            ok = np.flatnonzero(np.isfinite(x) & (x > 0) & np.isfinite(target))
            if len(ok):
                points.loc[ok[pareto(x[ok], target[ok], more_is_better=more)], name] = True
    return points


def pareto(x, y, *, more_is_better: bool = False) -> np.ndarray:
    """Indices of the Pareto frontier of low ``y`` against low ``x`` (high with
    ``more_is_better``), in order from the best x: each beats every point before it."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.lexsort((y, -x if more_is_better else x))
    best = np.minimum.accumulate(y[order])
    return order[np.r_[True, best[1:] < best[:-1]]]


def size_extremes(rows: pd.DataFrame) -> tuple[str, str]:
    """The labels of the largest and smallest model in ``rows``, by mean parameters.

    Means, because a fitted tree's parameter count moves with its data; without a
    parameter count, the models in grid order stand in.
    """
    models = list(dict.fromkeys(rows["model"]))
    if "n_params" not in rows.columns:
        return models[-1], models[0]
    sizes = pd.to_numeric(rows["n_params"], errors="coerce").groupby(rows["model"]).mean()
    if sizes.isna().all():
        return models[-1], models[0]
    return str(sizes.idxmax()), str(sizes.idxmin())


def _mean_or_none(rows: pd.DataFrame, col: str) -> float | None:
    if col not in rows.columns:
        return None
    value = pd.to_numeric(rows[col], errors="coerce").mean()
    return float(value) if np.isfinite(value) else None


def _groups(table: pd.DataFrame, group: str | None):
    """(value, rows) pairs in first-seen order, as ``fit_groups`` orders its groups."""
    if group is None:
        yield None, table
        return
    for value, rows in table.groupby(group, sort=False, dropna=False):
        yield (value.item() if hasattr(value, "item") else value), rows
