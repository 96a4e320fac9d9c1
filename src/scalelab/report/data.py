"""What a report is built from: the runs, and what each column of them means.

A study's grid keys fall into roles, read off each cell's resolved configuration:

* **size**: keys of ``[model]`` (``family``, ``width``, a factory's ``model.hidden``):
  one line per model in the learning curves, one law per model;
* **data**: ``data_fraction`` and the dataset's other options: the x of learning curves;
* **quality**: the data-quality transforms (``label_noise``, ...): their own figure, and
  left out of laws and frontiers, which use clean data;
* **replicate**: seeds, which give the spread bands;
* **setting**: everything else (``lr``, ``batch_size``, ``epochs``, ...). Laws and curves
  use the *envelope*: for each model and data size, the setting with the best mean over
  seeds (on validation metrics when there are any), and the report says which won where.

Classification runs also record how the worst-served class fares (``worst_class_error``,
``class_error_gap``, and per-group results on datasets that declare groups). Stores
written before that lack these columns, and their list and dict columns (``class_error``,
``group_error``) are never grouped on or averaged: the report reads only the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalelab.errors import InputError

QUALITY_KEYS = ("label_noise", "duplicate_fraction", "class_imbalance", "feature_noise")
QUALITY_OFF = {"label_noise": 0.0, "duplicate_fraction": 0.0, "class_imbalance": 1.0, "feature_noise": 0.0}
REPLICATE_KEYS = ("seed", "subsample_seed", "split_seed", "generator_seed")
QUALITY_LABELS = {
    "label_noise": "share of training labels flipped",
    "duplicate_fraction": "share of the training budget spent on duplicates",
    "class_imbalance": "ratio of the most to the least frequent class",
    "feature_noise": "feature noise",
}
# The per-class and per-group numbers a run may carry; the fairness section reads these.
FAIRNESS_METRICS = ("worst_class_error", "best_class_error", "class_error_gap", "worst_group_error", "group_error_gap")
IMBALANCE_KEY = "class_imbalance"


@dataclass
class ReportData:
    """The runs behind a report and the roles of their columns.

    ``runs`` holds every row (all states, for the state summary and failures); ``done``
    the rows fitted and plotted: done, on clean data, on the best setting.
    """

    title: str
    kind: str  # "study" or "csv"
    source: str
    runs: pd.DataFrame
    done: pd.DataFrame
    x_cols: list[str]
    y_col: str
    group: str | None
    description: str = ""
    store: str | None = None
    grid: dict = field(default_factory=dict)  # grid key -> list of values, as written
    size_keys: list[str] = field(default_factory=list)
    quality_keys: list[str] = field(default_factory=list)
    setting_keys: list[str] = field(default_factory=list)
    replicate_keys: list[str] = field(default_factory=list)
    quality_runs: pd.DataFrame | None = None  # done rows on the best setting, every quality level
    fairness_runs: pd.DataFrame | None = None  # done rows with per-class results, every class_imbalance level
    winners: pd.DataFrame | None = None  # which setting won where (setting_keys swept)
    dataset: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def families(self) -> list[str]:
        if "family" in self.done.columns:
            return sorted({str(f) for f in self.done["family"].dropna()})
        return []

    @property
    def is_error_rate(self) -> bool:
        from scalelab.fitting import is_error_rate

        return is_error_rate(self.y_col)

    @property
    def imbalance_key(self) -> str | None:
        """The grid key of class imbalance when the runs sweep more than one level of it."""
        return next((k for k in self.quality_keys if k.split(".")[-1] == IMBALANCE_KEY), None)


def study_data(study, *, x=None, y=None, group=None) -> ReportData:
    """The report's view of a study bound to its store (every state, every field)."""
    spec = study.spec
    runs = study.runs()
    runs = _with_samples(runs)
    config = spec.cells[0].config if spec.cells else {"data": {}, "model": {}, "train": {}}
    roles = _roles(spec)
    y_col = y or spec.target_metric
    x_cols = list(x) if x else ["n_train"]
    _check_count(x_cols)
    done = runs[runs["state"] == "done"].copy()
    for col in [*x_cols, y_col]:
        if col not in runs.columns:
            raise InputError(f"{spec.name}: no column {col!r} in its runs (columns: {', '.join(map(str, runs.columns))})")
        done[col] = pd.to_numeric(done[col], errors="coerce")
    done = done[np.isfinite(done[y_col].astype(float))]
    notes = []
    n_left = int((runs["state"] != "done").sum())
    if n_left:
        notes.append(f"{n_left} of {len(runs)} cells are not done ({_state_list(runs)}); figures and laws use the {len(done)} done runs.")

    quality_keys = [k for k in roles["quality"] if done[k].nunique() > 1] if len(done) else []
    tuned, winners = envelope(done, by=[*roles["size"], *roles["data"], *roles["quality"]], settings=roles["setting"], y_col=y_col)
    clean = tuned
    for key in quality_keys:
        off = clean_level(tuned, key)
        clean = clean[clean[key] == off]
        notes.append(f"Laws, curves and frontiers use the runs with {key} = {off:g}; the data-quality figure shows every level.")
    if roles["setting"]:
        notes.append(
            f"The grid sweeps {', '.join(roles['setting'])}: curves and laws use, for each model and data size, "
            "the setting with the best mean over seeds (the envelope); see 'Best settings'."
        )
    if group is None and roles["size"] and len(clean):
        clean = clean.copy()
        clean["model"] = model_labels(clean, roles["size"])
        group = "model" if clean["model"].nunique() > 1 else None
    return ReportData(
        title=spec.name, kind="study", source=str(spec.source), runs=runs, done=clean.reset_index(drop=True),
        x_cols=x_cols, y_col=y_col, group=group, description=spec.description, store=str(study.store_path),
        grid={k: sorted({_hashable(c.params[k]) for c in spec.cells}, key=_sort_key) for k in spec.grid_keys},
        size_keys=roles["size"], quality_keys=quality_keys, setting_keys=roles["setting"], replicate_keys=roles["replicate"],
        quality_runs=tuned if quality_keys else None, winners=winners, dataset=str(config["data"].get("name", "")) or None,
        notes=notes, fairness_runs=fairness_rows(tuned, quality_keys=quality_keys, size_keys=roles["size"], title=spec.name),
    )  # fmt: skip


def csv_data(path: Path, *, x=None, y=None, group=None) -> ReportData:
    """The report's view of a CSV of runs (any columns; ``--x`` and ``--y`` name the law's)."""
    from scalelab.fitting import load_table

    table, label, _ = load_table(str(path), store="")
    if not x or not y:
        raise InputError(f"{label}: give --x COL and --y COL for a CSV file")
    x_cols = list(x)
    _check_count(x_cols)
    runs = table.copy()
    done = runs[runs["state"] == "done"].copy() if "state" in runs.columns else runs.copy()
    notes = []
    if len(done) < len(runs):
        notes.append(f"{len(runs) - len(done)} of {len(runs)} rows are not done ({_state_list(runs)}); laws use the {len(done)} done rows.")
    return ReportData(title=Path(label).name, kind="csv", source=label, runs=runs, done=done.reset_index(drop=True),
                      x_cols=x_cols, y_col=y, group=group, notes=notes)  # fmt: skip


def envelope(runs: pd.DataFrame, *, by: list[str], settings: list[str], y_col: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Rows of the best setting at each point of ``by``, and a table of the winners.

    The best setting has the lowest mean over seeds of the validation counterpart of
    ``y_col`` when the runs have one (``val_error`` for ``test_error``), else of ``y_col``.
    """
    if not settings or not len(runs):
        return runs, None
    score = y_col.replace("test_", "val_", 1)
    if score == y_col or score not in runs.columns or runs[score].isna().any():
        score = y_col
    keys = [k for k in by if k in runs.columns]
    frame = runs.assign(_setting=runs[settings].astype(str).agg(" | ".join, axis=1))
    means = frame.groupby([*keys, "_setting"], dropna=False, sort=False)[score].mean().reset_index()
    best = means.loc[means.groupby(keys, dropna=False, sort=False)[score].idxmin()] if keys else means.nsmallest(1, score)
    chosen = frame.merge(best[[*keys, "_setting"]], on=[*keys, "_setting"], how="inner")
    winners = chosen.drop_duplicates([*keys]).loc[:, [*keys, *settings]].reset_index(drop=True)
    winners.attrs["score"] = score
    return chosen.drop(columns="_setting"), winners


def clean_level(rows: pd.DataFrame, key: str):
    """The level of a data-quality axis that counts as clean data: off when the grid has
    it (no label noise, balanced classes), else the mildest level swept."""
    off = QUALITY_OFF.get(key.split(".")[-1])
    return off if off is not None and (rows[key] == off).any() else rows[key].min()


def fairness_rows(tuned: pd.DataFrame, *, quality_keys: list[str], size_keys: list[str], title: str) -> pd.DataFrame | None:
    """The done rows behind the fairness section, or None when no run recorded per-class results.

    Every class-imbalance level stays (how the gap responds to imbalance is half the
    question); other quality axes keep their clean level, as the learning curves do.
    Rows of an older run without ``worst_class_error`` (a store that predates it) drop out.
    """
    if not len(tuned) or "worst_class_error" not in tuned.columns or "n_train" not in tuned.columns:
        return None
    rows = tuned
    for key in quality_keys:
        if key.split(".")[-1] != IMBALANCE_KEY:
            rows = rows[rows[key] == clean_level(tuned, key)]
    rows = rows.copy()
    # Only the scalar columns become numbers; class_error and group_error stay as recorded.
    for col in FAIRNESS_METRICS:
        if col in rows.columns:
            rows[col] = pd.to_numeric(rows[col], errors="coerce")
    rows = rows[np.isfinite(rows["worst_class_error"].astype(float))]
    if not len(rows):
        return None
    # A readable string per model: lines and the largest model are picked by it, never by
    # the raw size values (a factory's hidden sizes are lists, which cannot be grouped on).
    rows["model"] = model_labels(rows, size_keys) if size_keys else title
    return rows.reset_index(drop=True)


def model_labels(rows: pd.DataFrame, size_keys: list[str]) -> pd.Series:
    """A readable label per row for its model: ``"mlp, width 0.5"``."""

    def label(row) -> str:
        parts = []
        for key in size_keys:
            value = row[key]
            parts.append(str(value) if key == "family" else f"{key.split('.')[-1]} {_fmt_value(value)}")
        return ", ".join(parts)

    return rows.apply(label, axis=1).astype(str)


def _roles(spec) -> dict[str, list[str]]:
    """Grid keys by role (module docstring), from where each lands in a cell's configuration."""
    roles: dict[str, list[str]] = {"size": [], "data": [], "quality": [], "replicate": [], "setting": []}
    cell = spec.cells[0] if spec.cells else None
    for key in spec.grid_keys:
        name = key.split(".")[-1]
        section = key.split(".")[0] if "." in key else next(
            (s for s in ("model", "data", "train") if cell is not None and name in _names(cell.config.get(s, {}))), "train"
        )  # fmt: skip
        if name in REPLICATE_KEYS:
            roles["replicate"].append(key)
        elif name in QUALITY_KEYS:
            roles["quality"].append(key)
        elif section == "model":
            roles["size"].append(key)
        elif section == "data" and name != "validation_split":
            roles["data"].append(key)
        else:
            roles["setting"].append(key)
    return roles


def _names(section: dict) -> set[str]:
    """Keys of a resolved section, with those of its nested tables (a family's ``knobs``)."""
    names = set(section)
    for value in section.values():
        if isinstance(value, dict):
            names |= _names(value)
    return names


def _with_samples(runs: pd.DataFrame) -> pd.DataFrame:
    """Add ``samples``, the training samples processed (the D of a joint law)."""
    runs = runs.copy()
    if "flops" in runs.columns and "flops_per_sample" in runs.columns:
        flops = pd.to_numeric(runs["flops"], errors="coerce")
        per = pd.to_numeric(runs["flops_per_sample"], errors="coerce")
        runs["samples"] = flops / per.where(per > 0)
    return runs


def _check_count(x_cols: list[str]) -> None:
    if len(x_cols) > 2:
        raise InputError(f"--x was given {len(x_cols)} times; a law takes one x, or two (N, D)")


def _state_list(runs: pd.DataFrame) -> str:
    counts = runs["state"].value_counts()
    return ", ".join(f"{n} {state}" for state, n in counts.items() if state != "done")


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def _fmt_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
