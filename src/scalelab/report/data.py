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

from scalelab.errors import InputError
from scalelab.transfer import SCRATCH, TRANSFER_KEYS

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
COMPRESSION_KEYS = ("prune", "prune_finetune_epochs", "quantize")
COMPRESSION_OFF = {"prune": 0.0, "prune_finetune_epochs": 0, "quantize": "none"}
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
    compression_keys = [k for k in roles["compression"] if done[k].nunique() > 1] if len(done) else []
    transfer_keys = roles["transfer"]
    tuned, winners = envelope(done, by=[*roles["size"], *roles["data"], *roles["quality"], *roles["compression"], *roles["transfer"]],
                              settings=roles["setting"], y_col=y_col)  # fmt: skip
    all_starts = tuned
    if transfer_keys:
        # Fine-tuned runs have their own section; everything else compares models trained from scratch.
        tuned = scratch_rows(tuned, transfer_keys)
        notes.append(f"Laws, curves and frontiers use the runs trained from scratch ({_init_key(transfer_keys)} = {SCRATCH}"
                     + "".join(f", {k} = {'default' if v is None else _fmt_value(v)}" for k, v in _scratch_levels(all_starts, transfer_keys).items())
                     + "); the transfer learning section compares them with the fine-tuned runs.")  # fmt: skip
    compression = compression_rows(tuned, spec=spec, compression_keys=compression_keys, quality_keys=quality_keys,
                                   size_keys=roles["size"], title=spec.name)  # fmt: skip
    uncompressed = tuned
    for key in compression_keys:
        off = clean_level(tuned, key)
        # A scikit-learn family beside a torch one reads None here: it was never compressed.
        uncompressed = uncompressed[(uncompressed[key] == off) | uncompressed[key].isna()]
        shown = "the compression section shows every setting" if compression is not None else "the other levels are left out"
        notes.append(f"Laws, curves and frontiers use the runs with {key} = {_fmt_value(off)}; {shown}.")
    if winners is not None and roles["compression"]:
        # The winners the curves and laws use: the uncompressed runs'.
        score = winners.attrs["score"]
        for key in compression_keys:
            winners = winners[(winners[key] == clean_level(tuned, key)) | winners[key].isna()]
        winners = winners.drop(columns=roles["compression"]).reset_index(drop=True)
        winners.attrs["score"] = score
    if winners is not None and transfer_keys:
        # Likewise the from-scratch runs' winners (the fine-tuned ones' settings are not shown).
        score = winners.attrs["score"]
        winners = scratch_rows(winners, transfer_keys)
        winners = winners.drop(columns=roles["transfer"]).reset_index(drop=True)
        winners.attrs["score"] = score
    clean = uncompressed
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
        quality_runs=uncompressed if quality_keys else None, winners=winners, dataset=str(config["data"].get("name", "")) or None,
        notes=notes, fairness_runs=fairness_rows(uncompressed, quality_keys=quality_keys, size_keys=roles["size"], title=spec.name),
        compression_keys=compression_keys, compression_runs=compression, transfer_keys=transfer_keys,
        transfer_runs=transfer_rows(all_starts, transfer_keys=transfer_keys, quality_keys=quality_keys,
                                    compression_keys=compression_keys, size_keys=roles["size"], title=spec.name),
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
    """The level of a data-quality or compression axis that counts as clean: off when the grid has
    it (no label noise, balanced classes, no pruning), else the mildest level swept."""
    off = {**QUALITY_OFF, **COMPRESSION_OFF}.get(key.split(".")[-1])
    return off if off is not None and (rows[key] == off).any() else rows[key].dropna().min()


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


def transfer_rows(tuned: pd.DataFrame, *, transfer_keys: list[str], quality_keys: list[str], compression_keys: list[str],
                  size_keys: list[str], title: str) -> pd.DataFrame | None:  # fmt: skip
    """The done rows behind the transfer section, or None when the grid does not sweep
    ``init_from``: the runs from scratch (at the level the rest of the report uses) and
    every fine-tuned run, at the clean data-quality and compression levels.

    Each row gets its cell's transfer keys under their own names (``init_from``, ``freeze``,
    ``head_lr``: a grid may call them ``train.init_from``), ``init_from`` as text with a
    missing value read as ``"none"`` (a scikit-learn family is never fine-tuned), and a
    readable ``model`` label, as the fairness and compression rows have.
    """
    if not transfer_keys or not len(tuned):
        return None
    rows = tuned
    for key in [*quality_keys, *compression_keys]:
        off = clean_level(tuned, key)
        rows = rows[(rows[key] == off) | rows[key].isna()]
    scratch = scratch_rows(rows, transfer_keys)
    rows = pd.concat([scratch, rows[~_is_scratch(rows, transfer_keys)]]).sort_index()
    if not len(rows):
        return None
    rows = rows.copy()
    for key in transfer_keys:
        rows[key.split(".")[-1]] = rows[key]
    rows["init_from"] = rows["init_from"].where(rows["init_from"].notna(), SCRATCH).astype(str)
    rows["model"] = model_labels(rows, size_keys) if size_keys else title
    return rows.reset_index(drop=True)


def scratch_rows(rows: pd.DataFrame, transfer_keys: list[str]) -> pd.DataFrame:
    """The rows trained from scratch (``init_from = "none"``, or missing: a scikit-learn
    family), at one level of each other transfer key swept (:func:`_scratch_levels`)."""
    rows = rows[_is_scratch(rows, transfer_keys)]
    for key, level in _scratch_levels(rows, transfer_keys).items():
        rows = rows[(rows[key] == level) | rows[key].isna()] if level is not None else rows[rows[key].isna()]
    return rows


def _is_scratch(rows: pd.DataFrame, transfer_keys: list[str]) -> pd.Series:
    column = rows[_init_key(transfer_keys)]
    return column.isna() | (column.astype(str) == SCRATCH)


def _init_key(transfer_keys: list[str]) -> str:
    return next(k for k in transfer_keys if k.split(".")[-1] == "init_from")


def _scratch_levels(rows: pd.DataFrame, transfer_keys: list[str]) -> dict:
    """The level of ``freeze`` and ``head_lr`` the from-scratch runs are read at, where they
    hold more than one: off (no freezing, the head at the model's learning rate) when
    swept, else the smallest head_lr."""
    rows = rows[_is_scratch(rows, transfer_keys)]
    levels = {}
    for key in transfer_keys:
        name = key.split(".")[-1]
        if name == "init_from" or key not in rows.columns or rows[key].nunique(dropna=False) < 2:
            continue
        if name == "freeze":
            levels[key] = "none" if (rows[key] == "none").any() else rows[key].dropna().min()
        else:
            levels[key] = None if rows[key].isna().any() else rows[key].dropna().min()
    return levels


def _sweeps_init_from(spec, transfer_keys: list[str]) -> bool:
    """Whether the grid has more than one ``init_from`` (the key may be ``train.init_from``)."""
    key = next((k for k in transfer_keys if k.split(".")[-1] == "init_from"), None)
    return key is not None and len({str(c.params.get(key)) for c in spec.cells}) > 1


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
    roles: dict[str, list[str]] = {"size": [], "data": [], "quality": [], "replicate": [], "compression": [], "transfer": [], "setting": []}
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
        elif name in COMPRESSION_KEYS and section == "train":
            roles["compression"].append(key)
        elif name in TRANSFER_KEYS and section == "train":
            roles["transfer"].append(key)
        elif section == "model":
            roles["size"].append(key)
        elif section == "data" and name != "validation_split":
            roles["data"].append(key)
        else:
            roles["setting"].append(key)
    if roles["transfer"] and not _sweeps_init_from(spec, roles["transfer"]):
        # Every cell starts the same way: freeze or head_lr are training settings like any other.
        roles["setting"] = [k for k in spec.grid_keys if k in (*roles["setting"], *roles["transfer"])]
        roles["transfer"] = []
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
