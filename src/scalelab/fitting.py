"""Scaling-law fits on a study's runs or a CSV file, one law per group.

This is the bridge between tables (the runs of a study, or any CSV of N, D, loss) and
:mod:`scalelab.laws`: it reads and checks the columns once, splits by ``group``, and
fits, predicts or backtests each group, turning a group that cannot be fitted into an
``error`` entry rather than a crash.
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scalelab.curves import CurveSet
from scalelab.errors import InputError, did_you_mean


@dataclass
class Source:
    """The rows a law is fitted to, and where they came from.

    ``table``: a CSV's rows, or a study's runs on its curves (:mod:`scalelab.curves`),
    with a ``curve`` column naming each. ``group``: the column that splits them into
    laws (``curve`` for a study). ``curves``: the study's :class:`~scalelab.curves.CurveSet`
    (what was grouped by and what was left out), None for a CSV.
    """

    table: pd.DataFrame
    label: str
    target: str | None
    group: str | None
    curves: CurveSet | None = None
    store: str | None = None
    changes: str | None = None  # how a study file's grid differs from the one the store last ran
    x_cols: list[str] | None = None  # a study's: the x columns its curves were formed for
    spec: object | None = None  # a study's StudySpec
    runs: pd.DataFrame | None = None  # a study's whole runs table, for analyses that form their own view

    def curve_key(self, label) -> dict | None:
        """The values that identify the curve named ``label`` (None for a CSV group)."""
        if self.curves is None:
            return None
        return next((dict(c.key) for c in self.curves.curves if c.label == label), None)


def load_source(source: str, *, store: str, x_cols=None, y_col: str | None = None, group=None, default_x=("n_train",)) -> Source:
    """A CSV file, read as is (``group`` is a column of it), or a study (file or name):
    its runs on the curves that :func:`scalelab.curves.study_curves` forms for a law of
    ``y_col`` (default: the study's target) against ``x_cols`` (default ``default_x``, or
    ``default_x(spec)`` when it is a function of the study)."""
    path = Path(source).expanduser()
    if path.suffix.lower() == ".csv":
        return Source(read_csv(path), str(path), None, group)
    from scalelab.runs import runs_frame
    from scalelab.store import RunStore
    from scalelab.study import resolve_spec

    from scalelab.runs import grid_changes

    spec = resolve_spec(source, store=store)
    with RunStore.open_existing(store) as opened:
        opened.study_info(spec.name)  # a study never run on this store is an input error
        runs = runs_frame(opened, spec.name, spec=spec)  # the grid as its file reads now
        changes = grid_changes(opened, spec).describe(str(source))
    if not x_cols:
        x_cols = default_x(spec) if callable(default_x) else default_x
    src = study_source(spec, runs, x_cols=list(x_cols), y_col=y_col or spec.target_metric, group=group, store=str(store))
    src.changes = changes
    return src


def study_source(spec, runs: pd.DataFrame, *, x_cols, y_col: str, group=None, store: str | None = None) -> Source:
    """A study's runs (its runs table) on the curves of a law of ``y_col`` against ``x_cols``."""
    from scalelab.curves import study_curves

    if len(x_cols) > 2:
        raise InputError(f"--x was given {len(x_cols)} times; a law takes one x, or two (N, D)")
    curves = study_curves(spec, runs, x_cols=x_cols, y_col=y_col, group=group)
    if not curves.curves:
        raise InputError(f"{spec.name}: no runs to fit; " + "; ".join(curves.summary()[1:]) if len(curves.left_out) else f"{spec.name}: no runs yet")
    return Source(curves.frame("curve"), spec.name, spec.target_metric, "curve", curves, store, x_cols=list(x_cols), spec=spec, runs=runs)


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV file of runs, or an InputError naming it."""
    if not path.is_file():
        raise InputError(f"{path}: CSV file not found")
    try:
        table = pd.read_csv(path)
        with path.open(encoding="utf-8") as stream:
            header = next(csv.reader(stream), [])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as CSV ({str(exc).splitlines()[0]})") from None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:  # pandas would rename the second one 'name.1' and carry on
        raise InputError(f"{path}: column {repeated[0]!r} appears more than once in the header; give each column its own name")
    return table


def numeric_column(table: pd.DataFrame, column: str, *, label: str) -> np.ndarray:
    """A column as floats, or an InputError naming the missing column or bad value."""
    if column not in table.columns:
        raise InputError(f"{label}: no column {column!r}{did_you_mean(column, table.columns)} (columns: {', '.join(map(str, table.columns))})")
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() & table[column].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{label}: column {column!r} holds a non-numeric value {table[column].iloc[row]!r} (row {row + 1})")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise InputError(f"{label}: column {column!r} is empty at row {row + 1}")
    return values.to_numpy(dtype=float)


def is_error_rate(name: str) -> bool:
    """Targets named like an error rate (test_error, val_err) are bounded in [0, 1]."""
    return bool(re.search(r"(^|_)(error|err)(_|$)", name))


def default_chance(table: pd.DataFrame, y_col: str) -> float | None:
    """Chance level of an error-rate target, 1 − 1/K, when the runs record their K classes."""
    if not is_error_rate(y_col) or "n_classes" not in table.columns:
        return None
    classes = pd.to_numeric(table["n_classes"], errors="coerce").dropna()
    return 1.0 - 1.0 / float(classes.max()) if len(classes) and classes.max() >= 2 else None


def parse_predict(values: list[str] | None, n_x: int, *, option: str = "--predict") -> np.ndarray | None:
    """``--predict`` values (or another ``option``'s): numbers, or ``N,D`` pairs for two x columns."""
    if not values:
        return None
    points = []
    for text in values:
        parts = text.split(",")
        if len(parts) != n_x:
            raise InputError(f"{option} {text!r}: expected {'N,D' if n_x == 2 else 'one number'}")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise InputError(f"{option} {text!r} is not a number") from None
        points.append(numbers if n_x == 2 else numbers[0])
    return np.array(points, dtype=float)


def grouped(table: pd.DataFrame, group: str | None, *, label: str):
    """(group value, rows) pairs in first-seen order; one pair with None when ungrouped."""
    if group is None:
        yield None, table
        return
    if group not in table.columns:
        raise InputError(f"{label}: no column {group!r} to group by{did_you_mean(group, table.columns)} (columns: {', '.join(map(str, table.columns))})")
    for value, rows in table.groupby(group, sort=False, dropna=False):
        yield (value.item() if hasattr(value, "item") else value), rows


GROUP_BATCH = 250  # groups fitted in one batched solve (see fit_groups)


def fit_groups(table, *, label, x_cols, y_col, group=None, form="auto", predict=None, level=0.8, chance=None, n_boot=1000):
    """One result dict per group, in the JSON shape of ``scalelab fit``.

    Every group is checked first; the valid ones are then fitted together
    (:func:`scalelab.laws.law.fit_prepared` batches their solves), so many small groups
    cost little more than one.
    """
    from scalelab.laws.core import prepare
    from scalelab.laws.law import fit_prepared

    for col in [*x_cols, y_col]:
        numeric_column(table, col, label=label)  # fail fast, naming the column
    error_rate = is_error_rate(y_col) or chance is not None
    points = parse_predict(predict, len(x_cols))
    entries, datas = [], []
    for value, rows in grouped(table, group, label=label):
        entry = {"group": value}
        try:
            x = np.column_stack([numeric_column(rows, c, label=label) for c in x_cols])
            datas.append(prepare(x, numeric_column(rows, y_col, label=label), x_names=tuple(x_cols), y_name=y_col,
                                 ceiling=chance, error_rate=error_rate))  # fmt: skip
            entry["_data"] = len(datas) - 1
        except InputError as exc:
            entry["error"] = _group_error(exc, group, label)
        entries.append(entry)
    # Groups are solved together in batches of GROUP_BATCH: batching amortises the per-solve
    # overhead, while a batch much larger than that made each solve slower than linear
    # (larger arrays, and every iteration waits for the batch's slowest group).
    laws = []
    for begin in range(0, len(datas), GROUP_BATCH):
        batch = fit_prepared(datas[begin : begin + GROUP_BATCH], form, n_boot=n_boot)
        if points is not None:  # intervals need every group's bootstrap: batched too, not one per group
            from scalelab.laws.law import compute_bootstraps

            compute_bootstraps([law for law in batch if not isinstance(law, InputError)])
        laws.extend(batch)
    for entry in entries:
        if "_data" not in entry:
            continue
        law = laws[entry.pop("_data")]
        try:
            if isinstance(law, InputError):
                raise law
            entry.update(law.to_dict(predict=points, level=level))
            entry["_law"] = law
        except InputError as exc:
            entry["error"] = _group_error(exc, group, label)
    return entries


def chain_groups(table, *, label, x_cols, y_col, via, group=None, form="auto", predict=None, level=0.8, chance=None, n_boot=1000):
    """One result per group for ``y_col`` predicted through the loss ``via`` in two steps
    (:mod:`scalelab.laws.link`): the law of ``via`` against ``x_cols`` (its ``form`` and
    ``params``), the ``link`` from the runs' ``via`` to their ``y_col``, and predictions of
    ``y_col`` with intervals carried through both steps (each with the predicted ``loss``)."""
    from scalelab.laws.link import fit_chain

    if via == y_col:
        raise InputError(f"{label}: --via {via} is the target itself; name the loss the metric follows (e.g. --via test_loss)")
    for col in [*x_cols, y_col, via]:
        numeric_column(table, col, label=label)  # fail fast, naming the column
    error_rate = is_error_rate(y_col) or chance is not None
    points = parse_predict(predict, len(x_cols))
    entries = []
    for value, rows in grouped(table, group, label=label):
        entry = {"group": value, "via": via}
        try:
            x = np.column_stack([numeric_column(rows, c, label=label) for c in x_cols])
            chain = fit_chain(x if len(x_cols) == 2 else x[:, 0], numeric_column(rows, via, label=label),
                              numeric_column(rows, y_col, label=label), form=form, error_rate=error_rate, ceiling=chance,
                              x_names=tuple(x_cols), loss_name=via, metric_name=y_col, n_boot=n_boot)  # fmt: skip
            as_dict = chain.to_dict(predict=points, level=level)
            law = chain.loss_law
            entry.update({"form": law.form, "params": dict(law.params), "n_points": law.n_points, "at_bound": dict(law.at_bound),
                          "link": as_dict["link"], "predictions": as_dict["predictions"], "_law": chain})  # fmt: skip
        except InputError as exc:
            entry["error"] = _group_error(exc, group, label)
        entries.append(entry)
    return entries


def fit_source(src: Source, *, x_cols, y_col, form="auto", predict=None, level=0.8, chance=None, n_boot=1000, via=None) -> list[dict]:
    """:func:`fit_groups` on a source's groups (a study's curves), each entry with its
    ``curve`` (the values that identify it) when the source is a study; with ``via``,
    :func:`chain_groups` (``y_col`` through the loss ``via``)."""
    fitter = fit_groups if via is None else functools.partial(chain_groups, via=via)
    results = fitter(src.table, label=src.label, x_cols=x_cols, y_col=y_col, group=src.group, form=form, predict=predict,
                     level=level, chance=chance, n_boot=n_boot)  # fmt: skip
    if src.curves is not None:
        for r in results:
            r["curve"] = src.curve_key(r["group"])
    return results


def backtest_source(src: Source, *, x_cols, y_col, forms, holdout=1, gap=1.0, level=0.8, chance=None, n_boot=1000) -> list[dict]:
    """:func:`backtest_groups` on a source's groups, each with its ``curve`` on a study."""
    results = backtest_groups(src.table, label=src.label, x_cols=x_cols, y_col=y_col, group=src.group, forms=forms, holdout=holdout,
                              gap=gap, level=level, chance=chance, n_boot=n_boot)  # fmt: skip
    if src.curves is not None:
        for r in results:
            r["curve"] = src.curve_key(r["group"])
    return results


def _group_error(exc: InputError, group: str | None, label: str) -> str:
    """A group's error message; without groups the whole command fails with it."""
    if group is None:
        raise InputError(f"{label}: {exc}") from None
    return str(exc)


def backtest_groups(table, *, label, x_cols, y_col, group=None, forms, holdout=1, gap=1.0, level=0.8, chance=None, n_boot=1000):
    """Backtest rows per group: ``[{"group": g, "rows": [BacktestRow, ...]}]``."""
    from scalelab.laws.backtest import backtest_forms
    from scalelab.laws.core import prepare

    error_rate = is_error_rate(y_col) or chance is not None
    out = []
    for col in [*x_cols, y_col]:
        numeric_column(table, col, label=label)  # fail fast, naming the column
    for value, rows in grouped(table, group, label=label):
        try:
            x = np.column_stack([numeric_column(rows, c, label=label) for c in x_cols])
            data = prepare(x, numeric_column(rows, y_col, label=label), x_names=tuple(x_cols), y_name=y_col,
                           ceiling=chance, error_rate=error_rate)  # fmt: skip
            result = backtest_forms(data, forms, holdout=holdout, gap=gap, level=level, fit_kwargs={"n_boot": n_boot})
            out.append({"group": value, "rows": result})
        except InputError as exc:
            if group is None:
                raise InputError(f"{label}: {exc}") from None
            out.append({"group": value, "error": str(exc), "rows": []})
    return out


def plan_source(src: Source, *, x_cols, y_col, flops_col=None, budget=None, target=None, hardware=None, precision=None,
                utilisation=None, level=0.8, chance=None, n_boot=1000, budget_factor=None, approach: str = "joint",
                unique=None) -> dict:  # fmt: skip
    """One plan per group of ``src`` (per family, for a study): ``{"plans": [...], "skipped": [...]}``.

    Each plan is :func:`plan_table` of the group's rows, with its ``group`` (and ``curve``).
    A group whose runs have no measured FLOPs (a scikit-learn family) is skipped, with why.
    ``budget_factor`` plans each group at that many times its largest run's FLOPs instead
    of one ``budget`` for all. ``approach``: ``joint`` (the law L(N, D), :func:`plan_table`)
    or ``isoflop`` (the optima of each budget's profile, :func:`isoflop_table`).
    ``unique``: only this many distinct tokens (or samples) exist; the budget is planned
    by the data-constrained law (:func:`scalelab.repetition.unique_plan`).
    """
    if approach not in APPROACHES:
        raise InputError(f"--approach {approach!r}: unknown; use one of {', '.join(APPROACHES)}")
    if unique is not None:
        if approach != "joint" or target is not None:
            raise InputError("--unique-tokens plans a --budget by the data-constrained law; it takes no --target or --approach")
        from scalelab.repetition import unique_plan

        return unique_plan(src, x_cols=x_cols, y_col=y_col, flops_col=flops_col, budget=budget, unique=unique, level=level,
                           n_boot=n_boot)  # fmt: skip
    if approach == "joint" and budget is None and target is None and budget_factor is None:
        raise InputError("the joint law answers a question: give --budget FLOPS or --target VALUE")
    if approach != "joint" and target is not None:
        raise InputError(f"--target is answered on the joint law's frontier; use --approach joint (the {approach} approach gives N*(C) and D*(C))")
    if hardware is not None:
        from scalelab.hardware import check_hardware

        check_hardware(hardware, precision)  # before any fitting
    plans, skipped = [], []
    for value, rows in grouped(src.table, src.group, label=src.label):
        name = f"{src.label}: {value}" if value is not None else src.label
        if flops_col is not None and flops_col in rows.columns:
            measured = pd.to_numeric(rows[flops_col], errors="coerce") > 0
            if not measured.any():
                skipped.append({"group": value, "curve": src.curve_key(value), "why": f"its runs have no measured FLOPs ({flops_col}); a scikit-learn model has none"})
                continue
        if budget_factor is not None:
            budget = budget_factor * float(pd.to_numeric(rows[flops_col]).max())
        try:
            if approach == "envelope":
                result = envelope_table(rows.reset_index(drop=True), src=src, label=name, x_cols=x_cols, y_col=y_col, budget=budget,
                                        hardware=hardware, precision=precision, utilisation=utilisation, level=level, n_boot=n_boot)  # fmt: skip
            elif approach == "isoflop":
                result = isoflop_table(rows.reset_index(drop=True), label=name, x_cols=x_cols, y_col=y_col, budget=budget,
                                       hardware=hardware, precision=precision, utilisation=utilisation, level=level, n_boot=n_boot,
                                       store=src.store)  # fmt: skip
            else:
                result = plan_table(rows.reset_index(drop=True), label=name, x_cols=x_cols, y_col=y_col, flops_col=flops_col, budget=budget,
                                    target=target, hardware=hardware, precision=precision, utilisation=utilisation, level=level,
                                    chance=chance, n_boot=n_boot, store=src.store)  # fmt: skip
        except InputError as exc:
            if src.group is None:
                raise
            skipped.append({"group": value, "curve": src.curve_key(value), "why": str(exc).removeprefix(f"{name}: ")})
            continue
        plans.append({"group": value, "curve": src.curve_key(value), **result})
    if not plans:
        raise InputError(f"{src.label}: nothing to plan: " + "; ".join(f"{s['group']}: {s['why']}" for s in skipped))
    return with_settings({"plans": plans, "skipped": skipped}, src, y_col=y_col, level=level)


def with_settings(result: dict, src: Source, *, y_col: str, level: float) -> dict:
    """``result``'s plans with the learning rate and batch size their budget's run should
    use (``hparams``, :mod:`scalelab.tuning`), when the study's grid sweeps them; a law
    the runs cannot support leaves ``hparams_error`` instead."""
    if src.spec is None or src.runs is None:
        return result
    from scalelab.tuning import study_hparams, swept_hparams

    asks = [(p, p["budget"]) for p in result["plans"] if isinstance(p.get("budget"), dict)]
    if not swept_hparams(src.spec) or not asks:
        return result
    try:
        laws = study_hparams(src.spec, src.runs, y_col=y_col, level=level)["laws"]
    except InputError as exc:
        for plan, _ in asks:
            plan["hparams_error"] = str(exc)
        return result
    for plan, budget in asks:
        data = budget.get("tokens", budget.get("samples"))
        plan["hparams"] = laws.recommend(n_params=budget["n_params"], tokens=data, level=level)
    return result


def plan_table(table, *, label, x_cols, y_col, flops_col=None, budget=None, target=None, hardware=None, precision=None,
               utilisation=None, level=0.8, chance=None, n_boot=1000, store=None) -> dict:  # fmt: skip
    """Fit the joint law in (N, D) and answer a budget or target question, as a dict.

    ``flops_col`` holds each run's measured training FLOPs; k (FLOPs per parameter per
    sample) is their median over N·D. Without it, k = 6 (the dense-transformer rule) and
    the result says so. ``_law`` holds the fitted law (left out of JSON).
    """
    from scalelab import plan
    from scalelab.laws import fit

    if hardware is not None:
        from scalelab.hardware import check_hardware

        check_hardware(hardware, precision)
    if len(x_cols) != 2:
        raise InputError(f"{label}: planning needs two x columns, parameters and data (--x N --x D)")
    N = numeric_column(table, x_cols[0], label=label)
    D = numeric_column(table, x_cols[1], label=label)
    y = numeric_column(table, y_col, label=label)
    notes = []
    if flops_col is not None:  # named, so it must be there: never silently fall back to 6
        C = numeric_column(table, flops_col, label=label)
        if not np.all(C > 0):
            row = int(np.flatnonzero(~(C > 0))[0])
            raise InputError(f"{label}: column {flops_col!r} (measured FLOPs) must be positive; row {row + 1} holds {C[row]:g}")
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero N or D is refused by the fit, in one line
            k = float(np.median(C / (N * D)))
        notes.append(f"cost model: C = {k:.3g}·N·D FLOPs, the median measured in the runs ({flops_col})")
    else:
        k = 6.0
        notes.append("cost model: C = 6·N·D FLOPs (no measured FLOPs column given)")
    error_rate = is_error_rate(y_col) or chance is not None
    law = fit(np.column_stack([N, D]), y, form="chinchilla", x_names=tuple(x_cols), y_name=y_col,
              ceiling=chance, error_rate=error_rate, n_boot=n_boot)  # fmt: skip
    out = {"law": law.to_dict(), "flops_per_param_sample": k, "notes": notes, "_law": law}
    if budget is not None:
        alloc = plan.optimal_allocation(law, budget=budget, flops_per_param_sample=k, level=level)
        out["budget"] = alloc.__dict__
        near = int(np.argmin(np.abs(np.log(N / alloc.n_params)) + np.abs(np.log(D / alloc.samples))))
        out["nearest_run"] = {str(c): _plain(table.iloc[near][c]) for c in table.columns if c not in ("reason",)}
        spend = budget
    else:
        alloc = plan.compute_for_target(law, target=target, flops_per_param_sample=k, level=level)
        if alloc is None:
            out["target"] = {"value": target, "reachable": False,
                             "why": f"the fitted asymptote E = {law.params['E']:.4g} is not below {target:g}"}  # fmt: skip
            spend = None
        else:
            out["target"] = {"value": target, "reachable": True, **alloc.__dict__}
            spend = alloc.flops
    best = plan.best_point(N, D, y)
    out["best_run"] = best
    out["marginal"] = plan.marginal_value(law, n_params=best["n_params"], samples=best["samples"], flops_per_param_sample=k, level=level)
    if hardware and spend is not None:
        out["hardware"] = plan.hardware_estimate(spend, hardware=hardware, precision=precision, runs=table,
                                                 utilisation=utilisation, store=store)  # fmt: skip
    return out


APPROACHES = ("joint", "isoflop", "envelope")
BUDGET_COLUMN = "flops_budget"  # the grid's compute budgets, one isoFLOP profile each


def isoflop_table(table, *, label, x_cols, y_col, budget=None, hardware=None, precision=None, utilisation=None, level=0.8,
                  n_boot=1000, store=None) -> dict:  # fmt: skip
    """Chinchilla's approach 2 on runs grouped by their ``flops_budget``: each budget's
    profile of ``y_col`` against the parameters ``x_cols[0]``, its floor, and the power
    laws N*(C) ∝ C^a and D*(C) ∝ C^b of the tokens ``x_cols[1]`` (:mod:`scalelab.laws.isoflop`).
    With ``budget``, N* and D* there."""
    from scalelab.laws.isoflop import fit_isoflop

    if len(x_cols) != 2:
        raise InputError(f"{label}: the isoFLOP approach needs two x columns, parameters and data (--x N --x D)")
    if BUDGET_COLUMN not in table.columns:
        raise InputError(f"{label}: the isoFLOP approach needs runs at fixed compute budgets: a grid over data.flops_budget "
                         f"(a CSV needs a {BUDGET_COLUMN!r} column)")  # fmt: skip
    C = numeric_column(table, BUDGET_COLUMN, label=label)
    N = numeric_column(table, x_cols[0], label=label)
    D = numeric_column(table, x_cols[1], label=label)
    y = numeric_column(table, y_col, label=label)
    try:
        fitted = fit_isoflop(C, N, y, D, level=level, n_boot=n_boot)
    except ValueError as exc:
        raise InputError(f"{label}: {exc}") from None
    notes = [(f"isoFLOP profiles: {y_col} against log10 {x_cols[0]} at each of {len(fitted.profiles)} budgets, a parabola each; "
              "N* = n0·C^a and D* = d0·C^b fitted through their floors")]  # fmt: skip
    for p in fitted.profiles:
        if p.why:
            notes.append(f"C = {p.flops:.3g}: left out: {p.why}")
        elif not p.interior:
            notes.append(f"C = {p.flops:.3g}: the floor N* = {p.n_opt:.3g} lies outside the sizes measured "
                         f"({p.n_params.min():.3g} to {p.n_params.max():.3g}); it is an extrapolation")  # fmt: skip
        elif len(p.n_params) <= 3:
            notes.append(f"C = {p.flops:.3g}: three sizes fit the parabola exactly, so its interval cannot show their noise")
    out = {"approach": "isoflop", "isoflop": fitted.to_dict(), "notes": notes, "_law": fitted,
           "tokens_per_param": [{"flops": p.flops, "tokens_per_param": p.tokens_opt / p.n_opt} for p in fitted.profiles if p.n_opt]}  # fmt: skip
    return _answer_budget(out, fitted, budget=budget, hardware=hardware, precision=precision, utilisation=utilisation,
                          runs=table, store=store)  # fmt: skip


def _answer_budget(out: dict, fitted, *, budget, hardware, precision, utilisation, runs, store) -> dict:
    """``out`` with N* and D* at ``budget`` by ``fitted``'s power laws, and its hours on ``hardware``."""
    from scalelab import plan

    if budget is not None:
        if not (budget > 0 and np.isfinite(budget)):
            raise InputError(f"--budget {budget:g}: must be positive and finite")
        out["budget"] = fitted.laws.allocation(budget)
        if hardware:
            out["hardware"] = plan.hardware_estimate(budget, hardware=hardware, precision=precision, runs=runs,
                                                     utilisation=utilisation, store=store)  # fmt: skip
    return out


# The curve's own measure of the target: curves record training and validation loss.
CURVE_LOSS = {"val_loss": "val_loss", "test_loss": "val_loss", "train_loss": "train_loss"}
ENVELOPE_SCHEDULES = ("constant", "wsd")


def envelope_table(table, *, src: Source, label, x_cols, y_col, budget=None, hardware=None, precision=None, utilisation=None,
                   level=0.8, n_boot=1000) -> dict:  # fmt: skip
    """Chinchilla's approach 1 on the study's training curves (:mod:`scalelab.laws.envelope`):
    the lowest loss any run reached at each compute, the size of that run, and the power
    laws through them. Refused for a CSV (no curves) and for runs on a cosine schedule."""
    from scalelab.laws.envelope import RunCurve, fit_envelope
    from scalelab.store import RunStore

    if src.spec is None or src.store is None:
        raise InputError(f"{label}: the envelope approach reads each run's training curve from the store; a CSV file has none")
    schedules = {c.cell_id: c.config["train"].get("lr_schedule", "constant") for c in src.spec.cells}
    cosine = sorted({schedules.get(i, "constant") for i in table["cell_id"]} - set(ENVELOPE_SCHEDULES))
    if cosine:
        raise InputError(f"{label}: the envelope reads a run's loss part-way through training as the loss of a shorter run, "
                         f"which holds for constant or wsd schedules only; these runs use {', '.join(cosine)} "
                         "(a cosine run part-way has not decayed yet): use --approach isoflop or joint")  # fmt: skip
    metric = CURVE_LOSS.get(y_col)
    if metric is None:
        raise InputError(f"{label}: the envelope approach follows a loss along training curves (train_loss or val_loss), not {y_col!r}")
    N = numeric_column(table, x_cols[0], label=label)
    with RunStore.open_existing(src.store) as store:
        curves = store.curves(table["cell_id"])
    stand_in = f" (curves record no {y_col}; {metric} stands in for it)" if metric != y_col else ""
    runs, notes = [], [f"envelope of the training curves' {metric} against FLOPs spent{stand_in}"]
    for cell_id, n in zip(table["cell_id"], N):
        points = [p for p in curves.get(cell_id, []) if p.get(metric) is not None and p.get(x_cols[1]) is not None and p.get("flops")]
        if len(points) >= 2:
            runs.append(RunCurve(float(n), *(np.array([p[k] for p in points], dtype=float) for k in ("flops", x_cols[1], metric))))
    if len(runs) < len(table):
        notes.append(f"{len(table) - len(runs)} of {len(table)} runs have no curve of {metric} and {x_cols[1]} (two points or more) and are left out")
    try:
        fitted = fit_envelope(runs, level=level, n_boot=n_boot)
    except ValueError as exc:
        raise InputError(f"{label}: {exc}") from None
    out = {"approach": "envelope", "envelope": fitted.to_dict(), "notes": notes, "_law": fitted}
    return _answer_budget(out, fitted, budget=budget, hardware=hardware, precision=precision, utilisation=utilisation,
                          runs=table, store=src.store)  # fmt: skip


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return value
