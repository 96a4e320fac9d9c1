"""What a report is built from: the runs, and what each column of them means.

A study's grid keys fall into roles, read off each cell's resolved configuration:

* **size**: keys of ``[model]`` (``family``, ``width``, a factory's ``model.hidden``):
  one line per model in the learning curves, one law per model;
* **data**: ``data_fraction`` and the dataset's other options: the x of learning curves;
* **quality**: the data-quality transforms (``label_noise``, ...): their own figure, and
  left out of laws and frontiers, which use clean data;
* **replicate**: seeds, which give the spread bands;
* **compression**: ``prune``, ``prune_finetune_epochs`` and ``quantize``, applied after
  training: their own section (the target against model bytes and inference speed), and
  left out of everything else, which uses the uncompressed runs;
* **transfer**: ``init_from``, ``freeze`` and ``head_lr`` of ``[train]``, how a cell starts
  (from scratch, ``init_from = "none"``, or fine-tuned from a checkpoint): when the grid
  sweeps ``init_from``, their own section (the data the checkpoint was worth, D_T, from
  :mod:`scalelab.transfer`), and left out of everything else, which uses the from-scratch
  runs (at the default ``head_lr`` when that is swept too);
* **setting**: everything else (``lr``, ``batch_size``, ``epochs``, ...). Laws and curves
  use the *envelope*: for each model and data size, the setting with the best mean over
  seeds (on validation metrics when there are any), and the report says which won where.

Classification runs also record how the worst-served class fares (``worst_class_error``,
``class_error_gap``, and per-group results on datasets that declare groups). Stores
written before that lack these columns, and their list and dict columns (``class_error``,
``group_error``) are never grouped on or averaged: the report reads only the numbers.
Likewise every torch run records its model's size and speed (``nonzero_params``,
``model_bytes``, ``inference_samples_per_s``), and compressed runs those of the model as
trained (``test_error_before_compression``, ...); older stores lack them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalelab.curves import (
    COMPRESSION_KEYS,
    COMPRESSION_OFF,
    clean_level,
    model_labels,
    study_curves,
    transfer_runs,
    with_samples,
)
from scalelab.errors import InputError

QUALITY_LABELS = {
    "label_noise": "share of training labels flipped",
    "duplicate_fraction": "share of the training budget spent on duplicates",
    "class_imbalance": "ratio of the most to the least frequent class",
    "feature_noise": "feature noise",
}
# The per-class and per-group numbers a run may carry; the fairness section reads these.
FAIRNESS_METRICS = ("worst_class_error", "best_class_error", "class_error_gap", "worst_group_error", "group_error_gap")
IMBALANCE_KEY = "class_imbalance"
# What the compression section reads; a compressed run's test_error is the compressed model's.
COMPRESSION_METRICS = ("nonzero_params", "model_bytes", "inference_samples_per_s", "test_error_before_compression",
                       "test_loss_before_compression", "inference_samples_per_s_before_compression",
                       "nonzero_params_before_compression", "prune_finetune_flops")  # fmt: skip


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
    compression_keys: list[str] = field(default_factory=list)  # prune, quantize, ... where the grid sweeps them
    quality_runs: pd.DataFrame | None = None  # done rows on the best setting, every quality level
    fairness_runs: pd.DataFrame | None = None  # done rows with per-class results, every class_imbalance level
    compression_runs: pd.DataFrame | None = None  # done rows at full data, every compression setting (prune or quantize swept)
    transfer_keys: list[str] = field(default_factory=list)  # init_from, freeze, head_lr where the grid sweeps init_from
    transfer_runs: pd.DataFrame | None = None  # done rows from scratch and fine-tuned, clean quality and compression levels
    winners: pd.DataFrame | None = None  # which setting won where (setting_keys swept)
    dataset: str | None = None
    notes: list[str] = field(default_factory=list)
    curves: object = None  # the main CurveSet of a study (scalelab.curves), None for a CSV
    spec: object = None  # the study's spec, None for a CSV
    training_curves: dict = field(default_factory=dict)  # cell id -> its stored curve points, for the runs in done

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

    @property
    def compression_y(self) -> str:
        """The metric the compression section plots: the target, measured again on the
        compressed model, unless it is the training loss (compression comes after training)."""
        return "test_loss" if self.y_col == "train_loss" else self.y_col


def study_data(study, *, x=None, y=None, group=None) -> ReportData:
    """The report's view of a study bound to its store (every state, every field).

    Which runs each section uses is decided by :func:`scalelab.curves.study_curves`, as
    for ``scalelab fit`` and ``plan``: the laws and curves use the main curves (clean
    data, uncompressed, from scratch, the envelope of the settings); the data-quality,
    compression and transfer sections ask for the same curves split by their own keys.
    """
    spec = study.spec
    runs = with_samples(study.runs())
    config = spec.cells[0].config if spec.cells else {"data": {}, "model": {}, "train": {}}
    y_col = y or spec.target_metric
    x_cols = list(x) if x else ["n_train"]
    _check_count(x_cols)
    main = study_curves(spec, runs, x_cols=x_cols, y_col=y_col, group=group)
    roles = main.roles
    done = runs[runs["state"] == "done"]
    notes = []
    n_left = int((runs["state"] != "done").sum())
    if n_left:
        notes.append(f"{n_left} of {len(runs)} cells are not done ({_state_list(runs)}); figures and laws use the done runs.")
    quality_keys = [k for k in roles.quality if done[k].nunique() > 1] if len(done) else []
    compression_keys = [k for k in roles.compression if done[k].nunique() > 1] if len(done) else []
    transfer_keys = roles.transfer
    clean = main.frame("model")
    if transfer_keys:
        notes.append("Laws, curves and frontiers use the runs trained from scratch ("
                     + ", ".join(f"{k} = {_fmt_value(v)}" for k, v in main.held.items() if k in transfer_keys)
                     + "); the transfer learning section compares them with the fine-tuned runs.")  # fmt: skip
    compression = None
    if compression_keys:
        compression = compression_rows(_view(spec, runs, x_cols, y_col, [*compression_keys, *_as_list(group)]), spec=spec,
                                       compression_keys=compression_keys, quality_keys=[], size_keys=roles.size, title=spec.name)  # fmt: skip
    for key in compression_keys:
        shown = "the compression section shows every setting" if compression is not None else "the other levels are left out"
        notes.append(f"Laws, curves and frontiers use the runs with {key} = {_fmt_value(main.held.get(key))}; {shown}.")
    for key in quality_keys:
        if key in main.held:
            notes.append(f"Laws, curves and frontiers use the runs with {key} = {main.held[key]:g}; the data-quality figure shows every level.")
    if main.selected_on is not None:
        notes.append(
            f"The grid sweeps {', '.join(main.settings)}: curves and laws use, for each model and data size, the setting with the "
            f"best mean {main.selected_on} over seeds (the envelope; never the {y_col} the laws model); see 'Best settings'."
        )  # fmt: skip
    quality_runs = _view(spec, runs, x_cols, y_col, [*quality_keys, *_as_list(group)]) if quality_keys else None
    uncompressed = quality_runs if quality_runs is not None else clean
    return ReportData(
        title=spec.name, kind="study", source=str(spec.source), runs=runs, done=clean.reset_index(drop=True),
        x_cols=x_cols, y_col=y_col, group="model" if len(main.curves) > 1 else None, description=spec.description,
        store=str(study.store_path), grid={k: sorted({_hashable(c.params[k]) for c in spec.cells}, key=_sort_key) for k in spec.grid_keys},
        size_keys=roles.size, quality_keys=quality_keys, setting_keys=main.settings, replicate_keys=roles.replicate,
        quality_runs=quality_runs, winners=_winners(main), dataset=str(config["data"].get("name", "")) or None,
        notes=notes, fairness_runs=fairness_rows(uncompressed, quality_keys=quality_keys, size_keys=roles.size, title=spec.name),
        compression_keys=compression_keys, compression_runs=compression, transfer_keys=transfer_keys,
        transfer_runs=transfer_runs(spec, runs, x_cols=x_cols, y_col=y_col, group=_as_list(group)) if transfer_keys else None,
        curves=main, spec=spec, training_curves=_stored_curves(study.store_path, clean),
    )  # fmt: skip


def _stored_curves(store_path, rows: pd.DataFrame) -> dict:
    """The training curves the store keeps for ``rows`` (none for a store without any)."""
    from scalelab.store import RunStore

    if not len(rows) or "cell_id" not in rows.columns:
        return {}
    with RunStore.open_existing(store_path) as store:
        return store.curves(rows["cell_id"])


def _winners(curves) -> pd.DataFrame | None:
    """Which setting won where, without the keys every curve holds at one level."""
    if curves.winners is None:
        return None
    winners = curves.winners.drop(columns=[k for k in curves.held if k in curves.winners.columns]).reset_index(drop=True)
    winners.attrs["score"] = curves.selected_on
    return winners


def _view(spec, runs: pd.DataFrame, x_cols, y_col: str, split: list[str]) -> pd.DataFrame:
    """The runs of the curves split by ``split`` as well (every level of those keys)."""
    return study_curves(spec, runs, x_cols=x_cols, y_col=y_col, group=list(dict.fromkeys(split))).frame("model")


def _as_list(group) -> list[str]:
    return [] if group is None else [group] if isinstance(group, str) else list(group)


def csv_data(path: Path, *, x=None, y=None, group=None) -> ReportData:
    """The report's view of a CSV of runs (any columns; ``--x`` and ``--y`` name the law's)."""
    from scalelab.fitting import read_csv

    table, label = read_csv(path), str(path)
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
    rows = _numeric_rows(rows, FAIRNESS_METRICS, required="worst_class_error")
    if rows is None:
        return None
    # A readable string per model: lines and the largest model are picked by it, never by
    # the raw size values (a factory's hidden sizes are lists, which cannot be grouped on).
    rows["model"] = model_labels(rows, size_keys) if size_keys else title
    return rows.reset_index(drop=True)


def _numeric_rows(rows: pd.DataFrame, columns, *, required: str) -> pd.DataFrame | None:
    """A copy of ``rows`` with ``columns`` as numbers, keeping rows where ``required`` is
    finite; None when none is. Only these scalar columns are converted: list and dict
    columns (class_error, group_error) stay as recorded."""
    rows = rows.copy()
    for col in columns:
        if col in rows.columns:
            rows[col] = pd.to_numeric(rows[col], errors="coerce")
    rows = rows[np.isfinite(rows[required].astype(float))]
    return rows if len(rows) else None


def compression_rows(tuned: pd.DataFrame, *, spec, compression_keys: list[str], quality_keys: list[str],
                     size_keys: list[str], title: str) -> pd.DataFrame | None:  # fmt: skip
    """The done rows behind the compression section, or None when the grid sweeps neither
    ``prune`` nor ``quantize`` or no run recorded its model's size (a store from before).

    Every compression setting stays; quality axes keep their clean level, and each model
    its largest data fraction: the section compares models, not data sizes. Each row gets
    its cell's ``prune``, ``prune_finetune_epochs`` and ``quantize`` under those names (a
    grid may call them ``train.prune``, or fix one in ``[train]``) and a readable
    ``compression`` label. Rows without ``model_bytes`` (scikit-learn models) drop out.
    """
    swept = [k for k in compression_keys if k.split(".")[-1] in ("prune", "quantize")]
    if not swept or not len(tuned) or "model_bytes" not in tuned.columns:
        return None
    rows = tuned
    for key in quality_keys:
        rows = rows[rows[key] == clean_level(tuned, key)]
    rows = _numeric_rows(rows, COMPRESSION_METRICS, required="model_bytes")
    if rows is None:
        return None
    settings = {c.cell_id: compression_setting(c.config.get("train", {})) for c in spec.cells}
    chosen = rows["cell_id"].map(settings)
    for i, name in enumerate(COMPRESSION_KEYS):
        rows[name] = [s[i] if isinstance(s, tuple) else COMPRESSION_OFF[name] for s in chosen]
    rows["compression"] = [compression_label(*s) for s in zip(rows["prune"], rows["prune_finetune_epochs"], rows["quantize"])]
    if rows["compression"].nunique() < 2:
        return None
    # A readable string per model, as the fairness rows have (a factory's sizes are lists).
    rows["model"] = model_labels(rows, size_keys) if size_keys else title
    scale = "data_fraction" if "data_fraction" in rows.columns else "n_train" if "n_train" in rows.columns else None
    if scale is not None:
        values = pd.to_numeric(rows[scale], errors="coerce")
        rows = rows[values == values.groupby(rows["model"]).transform("max")]
    return rows.reset_index(drop=True)


def compression_setting(train: dict) -> tuple[float, int, str]:
    """``(prune, prune_finetune_epochs, quantize)`` of a resolved ``[train]`` (off when left out)."""
    return (float(train.get("prune") or 0.0), int(train.get("prune_finetune_epochs") or 0), str(train.get("quantize") or "none"))


def compression_label(prune: float, finetune_epochs: int, quantize: str) -> str:
    """``"prune 0.5 + int8"``, ``"prune 0.9, fine-tuned 2 epochs"``, or ``"uncompressed"``."""
    parts = []
    if prune > 0:
        parts.append(f"prune {prune:g}" + (f", fine-tuned {finetune_epochs} epoch{'s' * (finetune_epochs != 1)}" if finetune_epochs else ""))
    if quantize != "none":
        parts.append(quantize)
    return " + ".join(parts) or "uncompressed"


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
