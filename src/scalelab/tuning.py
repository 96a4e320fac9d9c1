"""The settings a big run needs beside N and D: the best learning rate and batch size at
each scale, and the laws they follow (``scalelab hparams``, and ``plan``'s answer).

The runs come from the curve layer (:func:`scalelab.curves.study_curves`) with ``lr`` and
``batch_size`` split on instead of reduced to the envelope, so what counts as a clean run
(done, clean data, each token once) is decided where every other answer decides it. Each
point is one model size at one amount of data; its optimum is found by
:mod:`scalelab.laws.hparam_laws` on the validation counterpart of the target (never on the
test metric the laws then report).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalelab.errors import InputError

HPARAMS = ("lr", "batch_size")


def swept_hparams(spec) -> dict[str, str]:
    """``{"lr": grid key, "batch_size": grid key}`` for those of the two the grid sweeps."""
    from scalelab.curves import grid_roles

    keys = {}
    for key in grid_roles(spec).setting:
        name = key.split(".")[-1]
        if name in HPARAMS and len({str(c.params.get(key)) for c in spec.cells}) > 1:
            keys[name] = key
    return keys


def score_column(runs: pd.DataFrame, y_col: str) -> str:
    """What the optimum is chosen on: the validation counterpart of ``y_col`` when the runs
    record it (``val_loss`` for ``test_loss``), else ``y_col`` itself when it is already a
    validation metric. The test metric would pick the luckiest test draw."""
    if y_col not in runs.columns:
        raise InputError(f"--y {y_col}: no column {y_col!r} in the runs (a metric they record: test_loss, val_loss, ...)")
    if y_col.startswith("val_"):
        return y_col
    candidate = y_col.replace("test_", "val_", 1)
    for name in (candidate, "val_loss"):
        if name in runs.columns and pd.to_numeric(runs[name], errors="coerce").notna().any():
            return name
    raise InputError(f"choosing the learning rate and batch size needs a validation metric ({candidate} or val_loss); "
                     "these runs record none (set data.validation_split, or use a dataset with a validation split)")  # fmt: skip


def hparam_runs(spec, runs: pd.DataFrame, *, y_col: str) -> tuple[pd.DataFrame, dict]:
    """The runs the laws see, one row each: ``n_params``, the data column (``tokens`` or
    ``samples``), ``lr``, ``batch_size``, ``score`` and ``point`` (the size and data of
    the grid, one label per point), and a dict of what was decided (score column, x
    columns, runs left out with why)."""
    from scalelab.curves import planning_x, study_curves

    keys = swept_hparams(spec)
    if not keys:
        raise InputError(f"{spec.name}: the grid sweeps neither lr nor batch_size; the learning-rate and batch-size laws need "
                         "several of them at each model size (grid lr = [...], batch_size = [...])")  # fmt: skip
    x_cols = list(planning_x(spec))
    score = score_column(runs, y_col)
    curves = study_curves(spec, runs, x_cols=x_cols, y_col=score, group=list(keys.values()))
    frame = curves.frame("curve")
    if not len(frame):
        raise InputError(f"{spec.name}: no finished runs to choose settings from; " + "; ".join(curves.summary()[1:]))
    # A point is one size and amount of data as the grid gives them; the runs of one point
    # may have processed slightly different tokens (whole steps of their batch): the
    # point's D is their median.
    point_keys = [k for k in [*curves.by, *curves.roles.size, *curves.roles.data] if k in frame.columns and k not in keys.values()]
    point_keys = list(dict.fromkeys(point_keys))
    table = pd.DataFrame({
        "n_params": pd.to_numeric(frame[x_cols[0]], errors="coerce"),
        "data": pd.to_numeric(frame[x_cols[1]], errors="coerce"),
        "lr": pd.to_numeric(frame[keys["lr"]], errors="coerce") if "lr" in keys else float(spec.cells[0].config["train"]["lr"]),
        "batch_size": (pd.to_numeric(frame[keys["batch_size"]], errors="coerce") if "batch_size" in keys
                       else float(spec.cells[0].config["train"]["batch_size"])),
        "score": pd.to_numeric(frame[score], errors="coerce"),
        "flops": pd.to_numeric(frame["flops"], errors="coerce") if "flops" in frame.columns else np.nan,
        "point": frame[point_keys].astype(str).agg(" | ".join, axis=1) if point_keys else "all",
    })  # fmt: skip
    for column in ("n_params", "data"):
        table[column] = table.groupby("point")[column].transform("median")
    diverged = curves.left_out[curves.left_out["reason"] == "diverged"] if len(curves.left_out) else curves.left_out
    info = {"score": score, "x_cols": x_cols, "swept": sorted(keys), "left_out": curves.left_out, "n_diverged": len(diverged),
            "diverged_lr": sorted({float(v) for v in diverged[keys["lr"]]}) if "lr" in keys and len(diverged) else []}  # fmt: skip
    return table.reset_index(drop=True), info


def study_hparams(spec, runs: pd.DataFrame, *, y_col: str, level: float = 0.8, n_boot: int = 300) -> dict:
    """The learning-rate and batch-size laws of a study, as a dict: ``laws`` (the fitted
    :class:`~scalelab.laws.hparam_laws.HparamLaws`), ``optima`` per point, ``score``, the
    ``x_cols`` and ``notes`` (what was left out, optima at the grid's edge)."""
    from scalelab.laws.hparam_laws import fit_hparam_laws

    table, info = hparam_runs(spec, runs, y_col=y_col)
    flops = table["flops"].to_numpy(dtype=float)
    laws = fit_hparam_laws(table["n_params"].to_numpy(float), table["data"].to_numpy(float), table["lr"].to_numpy(float),
                           table["batch_size"].to_numpy(float), table["score"].to_numpy(float),
                           flops=flops if np.all(flops > 0) else None, level=level, n_boot=n_boot)  # fmt: skip
    notes = [(f"optimum per point: a smooth fit of {info['score']} over log lr and log batch_size around the best runs, "
             f"{level:.0%} intervals by a bootstrap over runs")]  # fmt: skip
    if info["n_diverged"]:
        lrs = ", ".join(f"{v:g}" for v in info["diverged_lr"])
        notes.append(f"{info['n_diverged']} runs diverged" + (f" (lr = {lrs})" if lrs else "") + ": too high a learning rate counts as no result")
    return {"laws": laws, "score": info["score"], "x_cols": info["x_cols"], "swept": info["swept"], "notes": notes}


def recommend(result: dict, *, n_params: float | None = None, data: float | None = None, flops: float | None = None,
              level: float = 0.8) -> dict:  # fmt: skip
    """The recommended ``lr`` and ``batch_size`` (with intervals) at (N, D) or a FLOP budget."""
    return result["laws"].recommend(n_params=n_params, tokens=data, flops=flops, level=level)
