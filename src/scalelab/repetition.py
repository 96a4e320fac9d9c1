"""Planning when the data is limited: the data-constrained law on a study's runs
(``scalelab plan --budget C --unique-tokens U``, :mod:`scalelab.laws.data_constrained`).

The law needs runs that see each token once and runs that repeat their data. A language
model's runs record both counts: ``tokens`` processed and ``unique_tokens`` among them.
For other families the same roles are played by the samples processed (n_train x
epochs) and the distinct training samples (``n_train``). The runs come from the curve
layer with the unique count on the axis, so repeated runs are kept here, where every
law of N and D alone leaves them out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalelab.errors import InputError

UNIQUE_COLUMN = "unique_tokens"  # a CSV's column of distinct tokens (or samples) per run


def unique_column(x_cols) -> str:
    """The column counting distinct data beside the data column ``x_cols[1]``."""
    return UNIQUE_COLUMN if x_cols[1] == "tokens" else "n_train" if x_cols[1] == "samples" else UNIQUE_COLUMN


def repetition_rows(src, *, x_cols, y_col: str) -> pd.DataFrame:
    """The rows the law is fitted to, with a ``curve`` column: a study's clean runs with
    repeated ones kept (every setting reduced to its envelope), or a CSV as given."""
    if src.spec is None:
        return src.table.assign(curve=src.table[src.group].astype(str)) if src.group else src.table.assign(curve=None)
    from scalelab.curves import study_curves

    curves = study_curves(src.spec, src.runs, x_cols=[*x_cols, unique_column(x_cols)], y_col=y_col)
    return curves.frame("curve")


def unique_plan(src, *, x_cols, y_col: str, flops_col: str | None, budget: float | None, unique: float, level: float = 0.8,
                n_boot: int = 200) -> dict:  # fmt: skip
    """The optimal N, D and epochs for ``budget`` FLOPs when only ``unique`` distinct tokens
    (or samples) exist, per curve, with intervals: ``{"plans": [...], "skipped": [...]}``
    in the shape of :func:`scalelab.fitting.plan_source`."""
    from scalelab.fitting import is_error_rate, numeric_column
    from scalelab.laws.data_constrained import fit_data_constrained

    if budget is None:
        raise InputError("--unique-tokens plans a compute budget under a data limit: give --budget FLOPS as well")
    if not (unique > 0 and np.isfinite(unique)):
        raise InputError(f"--unique-tokens {unique:g}: must be positive and finite")
    if not (budget > 0 and np.isfinite(budget)):
        raise InputError(f"--budget {budget:g}: must be positive and finite")
    if is_error_rate(y_col):
        raise InputError(f"--unique-tokens models a loss (the data-constrained law has no ceiling), not the error rate {y_col!r}: "
                         "add --y test_loss (or another loss column)")  # fmt: skip
    u_col = unique_column(x_cols)
    rows = repetition_rows(src, x_cols=x_cols, y_col=y_col)
    plans, skipped = [], []
    for curve, part in rows.groupby("curve", sort=False, dropna=False) if rows["curve"].notna().any() else [(None, rows)]:
        label = src.label if curve is None else f"{src.label}: {curve}"
        try:
            N, D, U, y = (numeric_column(part, c, label=label) for c in (*x_cols, u_col, y_col))
            k = _cost_model(part, flops_col, N, D, label=label)
            fitted = fit_data_constrained(N, D, np.minimum(U, D), y, level=level, n_boot=n_boot)
        except InputError as exc:
            if curve is None:
                raise InputError(f"{label}: {exc}") from None
            skipped.append({"group": curve, "curve": src.curve_key(curve), "why": str(exc)})
            continue
        allocation = fitted.allocation(budget, unique, level, flops_per_token_param=k)
        notes = [(f"data-constrained law L(N, D, U) (Muennighoff et al. 2023) fitted on {fitted.n_points} runs: "
                 f"{int(np.sum(D <= 1.01 * U))} seeing each {x_cols[1].removesuffix('s')} once, "
                 f"{int(np.sum(D > 1.05 * U))} repeating their data"),
                 f"cost model: C = {k:.3g}·N·D FLOPs" + (f", the median measured in the runs ({flops_col})" if flops_col else " (no FLOPs column)"),
                 *fitted.notes]  # fmt: skip
        if fitted.at_bound:
            notes.append("at a bound of the fit: " + ", ".join(f"{name} ({side})" for name, side in fitted.at_bound.items())
                         + "; the runs do not pin it down")  # fmt: skip
        most = float(np.max(D / np.minimum(U, D)))
        if allocation["epochs"] > most * 1.5:
            notes.append(f"the plan repeats the data {allocation['epochs']:.3g} times, beyond the {most:.3g} epochs any run measured: an extrapolation")
        plans.append({"group": curve, "curve": src.curve_key(curve), "approach": "data-constrained", "unique": unique,
                      "u_col": u_col, "budget": {"flops": budget, **allocation}, "law": fitted.to_dict(), "notes": notes,
                      "_law": fitted})  # fmt: skip
    if not plans:
        raise InputError(f"{src.label}: nothing to plan: " + "; ".join(f"{s['group']}: {s['why']}" for s in skipped))
    from scalelab.fitting import with_settings

    return with_settings({"plans": plans, "skipped": skipped}, src, y_col=y_col, level=level)


def _cost_model(rows: pd.DataFrame, flops_col: str | None, N: np.ndarray, D: np.ndarray, *, label: str) -> float:
    """FLOPs per parameter per token: the runs' median measured ratio, or 6 without FLOPs."""
    if flops_col is None or flops_col not in rows.columns:
        return 6.0
    from scalelab.fitting import numeric_column

    C = numeric_column(rows, flops_col, label=label)
    if not np.all(C > 0):
        raise InputError(f"{label}: column {flops_col!r} (measured FLOPs) must be positive")
    return float(np.median(C / (N * D)))
