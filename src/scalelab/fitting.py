"""Scaling-law fits on a study's runs or a CSV file, one law per group.

This is the bridge between tables (the runs of a study, or any CSV of N, D, loss) and
:mod:`scalelab.laws`: it reads and checks the columns once, splits by ``group``, and
fits, predicts or backtests each group, turning a group that cannot be fitted into an
``error`` entry rather than a crash.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from scalelab.errors import InputError


def load_table(source: str, *, store: str) -> tuple[pd.DataFrame, str, str | None]:
    """The rows to fit, a label for messages, and the study's target metric (None for CSV).

    A ``.csv`` path is read as is. Anything else is a study (file or name); only its
    ``done`` runs are used, and the runs left out are reported on stderr.
    """
    path = Path(source).expanduser()
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise InputError(f"{path}: CSV file not found")
        try:
            table = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read as CSV ({str(exc).splitlines()[0]})") from None
        return table, str(path), None
    from scalelab.runs import runs_frame
    from scalelab.store import RunStore
    from scalelab.study import resolve_spec

    spec = resolve_spec(source, store=store)
    with RunStore.open_existing(store) as opened:
        runs = runs_frame(opened, spec.name)
    done = runs[runs["state"] == "done"].copy()
    if "flops" in done and "flops_per_sample" in done:
        # Training samples processed (n_train x epochs, exactly): the D of a joint law.
        done["samples"] = pd.to_numeric(done["flops"]) / pd.to_numeric(done["flops_per_sample"])
    left_out = runs["state"].value_counts().drop("done", errors="ignore")
    if len(left_out):
        print(
            f"scalelab: fitting {len(done)} done runs of {spec.name}; left out "
            + ", ".join(f"{n} {state}" for state, n in left_out.items()),
            file=sys.stderr,
        )
    return done.reset_index(drop=True), spec.name, spec.target_metric


def numeric_column(table: pd.DataFrame, column: str, *, label: str) -> np.ndarray:
    """A column as floats, or an InputError naming the missing column or bad value."""
    if column not in table.columns:
        raise InputError(f"{label}: no column {column!r} (columns: {', '.join(map(str, table.columns))})")
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


def parse_predict(values: list[str] | None, n_x: int) -> np.ndarray | None:
    """``--predict`` values: numbers, or ``N,D`` pairs for two x columns."""
    if not values:
        return None
    points = []
    for text in values:
        parts = text.split(",")
        if len(parts) != n_x:
            raise InputError(f"--predict {text!r}: expected {'N,D' if n_x == 2 else 'one number'}")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise InputError(f"--predict {text!r} is not a number") from None
        points.append(numbers if n_x == 2 else numbers[0])
    return np.array(points, dtype=float)


def grouped(table: pd.DataFrame, group: str | None, *, label: str):
    """(group value, rows) pairs in first-seen order; one pair with None when ungrouped."""
    if group is None:
        yield None, table
        return
    if group not in table.columns:
        raise InputError(f"{label}: no column {group!r} to group by (columns: {', '.join(map(str, table.columns))})")
    for value, rows in table.groupby(group, sort=False, dropna=False):
        yield (value.item() if hasattr(value, "item") else value), rows


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
    laws = fit_prepared(datas, form, n_boot=n_boot)
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


def plan_table(table, *, label, x_cols, y_col, flops_col=None, budget=None, target=None, hardware=None,
               utilisation=None, level=0.8, chance=None, n_boot=1000) -> dict:  # fmt: skip
    """Fit the joint law in (N, D) and answer a budget or target question, as a dict.

    ``flops_col`` holds each run's measured training FLOPs; k (FLOPs per parameter per
    sample) is their median over N·D. Without it, k = 6 (the dense-transformer rule) and
    the result says so.
    """
    from scalelab import plan
    from scalelab.laws import fit

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
        k = float(np.median(C / (N * D)))
        notes.append(f"cost model: C = {k:.3g}·N·D FLOPs, the median measured in the runs ({flops_col})")
    else:
        k = 6.0
        notes.append("cost model: C = 6·N·D FLOPs (no measured FLOPs column given)")
    error_rate = is_error_rate(y_col) or chance is not None
    law = fit(np.column_stack([N, D]), y, form="chinchilla", x_names=tuple(x_cols), y_name=y_col,
              ceiling=chance, error_rate=error_rate, n_boot=n_boot)  # fmt: skip
    out = {"law": law.to_dict(), "flops_per_param_sample": k, "notes": notes}
    best = int(np.argmin(y))
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
    out["marginal"] = plan.marginal_value(law, n_params=float(N[best]), samples=float(D[best]), flops_per_param_sample=k, level=level)
    if hardware and spend is not None:
        if utilisation is None:
            utilisation, how = _observed_utilisation(table)
        else:
            how = "given with --utilisation"
        out["hardware"] = {"name": hardware, "utilisation": utilisation, "utilisation_source": how,
                           "hours": plan.hours_on(spend, hardware=hardware, utilisation=utilisation)}  # fmt: skip
    return out


def _observed_utilisation(table) -> tuple[float, str]:
    """Median achieved FLOP/s of the runs over this machine's measured matmul peak."""
    from scalelab import plan

    if "flops_per_s" in table.columns and table["flops_per_s"].notna().any():
        achieved = float(pd.to_numeric(table["flops_per_s"], errors="coerce").median())
        peak = plan.measured_cpu_peak()
        util = min(1.0, achieved / peak)
        return util, f"observed in this study's runs: median {achieved:.3g} FLOP/s of this machine's measured {peak:.3g} FLOP/s matmul peak"
    return 0.4, "assumed 40% (the source has no measured throughput)"


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return value
