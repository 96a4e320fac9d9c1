"""Which runs form a curve: the one place that decides it.

``scalelab fit``, ``backtest``, ``plan``, ``transfer``, the report, the demo and the Python
API all ask :func:`study_curves`, so they cannot disagree on what a study means.

A study's grid keys fall into roles, read off each cell's resolved configuration
(:func:`grid_roles`):

* **size**: keys of ``[model]`` (``family``, ``width``, a factory's ``model.hidden``);
* **data**: ``data_fraction`` and the dataset's other options;
* **quality**: the data-quality transforms (``label_noise``, ...);
* **replicate**: seeds, which become the scatter around a curve;
* **compression**: ``prune``, ``prune_finetune_epochs``, ``quantize`` (applied after training);
* **transfer**: ``init_from``, ``freeze``, ``head_lr`` when the grid sweeps ``init_from``;
* **federated**: keys of ``[federated]`` (``clients``, ``alpha``, ``rounds``, privacy ...),
  conditions of the run rather than settings to tune: each value is its own curve unless
  the key is on the x axis (``rounds`` and ``local_epochs`` are when x counts the
  training done: samples or FLOPs);
* **setting**: everything else (``lr``, ``batch_size``, ``epochs``, ...).

A curve is the runs that differ only along the law's x (and by seed). So the curves
split by family and by every size or dataset key that is not on the x axis; quality,
compression and transfer keys, and federated privacy, are held at their clean level
(no label noise, no pruning, trained from scratch, no noise) unless ``group`` names them; and settings are reduced
to the *envelope*: at each point, the setting with the best mean over seeds, chosen on
the validation counterpart of the target when the runs have one, else on the training
loss, never on the metric the law then models. Every run left out carries its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from scalelab.errors import InputError, did_you_mean

QUALITY_KEYS = ("label_noise", "duplicate_fraction", "class_imbalance", "feature_noise")
QUALITY_OFF = {"label_noise": 0.0, "duplicate_fraction": 0.0, "class_imbalance": 1.0, "feature_noise": 0.0}
REPLICATE_KEYS = ("seed", "subsample_seed", "split_seed", "generator_seed")
COMPRESSION_KEYS = ("prune", "prune_finetune_epochs", "quantize")
COMPRESSION_OFF = {"prune": 0.0, "prune_finetune_epochs": 0, "quantize": "none"}
TRANSFER_KEYS = ("init_from", "freeze", "head_lr")
SCRATCH = "none"
# Dataset options that set how much data a cell trains on (the x of a learning curve);
# any other dataset option (its name, its classes) is a different task: another curve.
DATA_SIZE_KEYS = ("data_fraction", "n_samples", "tokens", "unique_tokens", "flops_budget")
# Why a run that repeats its data stands on no curve of N and D (study_curves).
REPEATS = "repeating their data (more than one epoch; laws of N and D use runs that see each token once, plan --unique-tokens models repetition)"
# Client-level privacy: runs with it stand on no curve unless a group names one of these.
PRIVACY_KEYS = ("noise_multiplier", "clip_norm")
PRIVATE = "private (client-level DP; the curves use runs without it unless a group names noise_multiplier)"
# Columns that measure data or model size: an x among them puts those keys on the axis.
DATA_X = ("n_train", "data_fraction", "samples", "tokens", "n_samples", "unique_tokens")
SIZE_X = ("n_params", "nonzero_params", "n_params_non_embedding", "width", "depth")
COMPUTE_X = ("flops", "compute")
# With these x columns the training length is on the axis too (D counts every epoch).
LENGTH_X = ("samples", "tokens", "flops", "compute")


def planning_x(spec) -> tuple[str, str]:
    """The (N, D) columns a study plans on: parameters, and the training data processed:
    tokens for a language-model study, samples otherwise."""
    from scalelab.data.tokens import TEXT_DATASETS

    text = bool(spec.cells) and spec.cells[0].config["data"]["name"] in TEXT_DATASETS
    return ("n_params", "tokens" if text else "samples")


@dataclass
class Roles:
    """A study's grid keys by role (module docstring)."""

    size: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    quality: list[str] = field(default_factory=list)
    replicate: list[str] = field(default_factory=list)
    compression: list[str] = field(default_factory=list)
    transfer: list[str] = field(default_factory=list)
    federated: list[str] = field(default_factory=list)
    setting: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        names = ("size", "data", "quality", "replicate", "compression", "transfer", "federated", "setting")
        return {name: list(getattr(self, name)) for name in names}


@dataclass
class Curve:
    """One curve: its label (``"mlp, width 0.5"``), the values that identify it, and its runs."""

    label: str
    key: dict
    runs: pd.DataFrame


@dataclass
class CurveSet:
    """The curves of a study for one law (x and y), and every run left out, with why.

    ``by``: the keys the curves split on. ``held``: keys held at one level (quality,
    compression and transfer keys at their clean level). ``selected_on``: the metric the
    envelope was chosen on (None when the grid sweeps no setting). ``left_out``: one row
    per run not on any curve, with ``cell_id``, ``reason`` and the run's grid values.
    """

    study: str
    x_cols: list[str]
    y_col: str
    roles: Roles
    by: list[str]
    held: dict
    settings: list[str]
    selected_on: str | None
    curves: list[Curve]
    left_out: pd.DataFrame
    winners: pd.DataFrame | None = None
    n_runs: int = 0

    def frame(self, column: str = "curve") -> pd.DataFrame:
        """Every curve's runs in one table, ``column`` holding the curve's label."""
        if not self.curves:
            return pd.DataFrame(columns=[column])
        return pd.concat([c.runs.assign(**{column: c.label}) for c in self.curves], ignore_index=True)

    def to_dict(self) -> dict:
        """The JSON shape: what the curves split on and hold, and every run left out with why."""
        return {"study": self.study, "by": list(self.by), "held": dict(self.held), "selected_on": self.selected_on,
                "settings": list(self.settings), "curves": [{"label": c.label, "key": c.key, "n_runs": len(c.runs)} for c in self.curves],
                "left_out": [{"cell_id": r.get("cell_id"), "reason": r["reason"]} for r in self.left_out.to_dict("records")],
                "summary": self.summary()}  # fmt: skip

    def summary(self) -> list[str]:
        """What was grouped by and what was left out, as lines for a terminal or a report."""
        n_on = sum(len(c.runs) for c in self.curves)
        split = f", one curve per {', '.join(self.by)}" if self.by else ""
        lines = [f"{self.study}: {len(self.curves)} curve{'s' * (len(self.curves) != 1)} of {self.y_col} against "
                 f"{' and '.join(self.x_cols)}, {n_on} runs{split}"]  # fmt: skip
        if self.held:
            lines.append("held at: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in self.held.items()))
        if self.selected_on is not None:
            lines.append(f"best {', '.join(self.settings)} per point by mean {self.selected_on} over seeds (the envelope)")
        if len(self.left_out):
            counts = self.left_out["reason"].value_counts(sort=False)
            lines.append(f"left out {len(self.left_out)} of {self.n_runs} runs: " + "; ".join(f"{n} {reason}" for reason, n in counts.items()))
        return lines


def grid_roles(spec) -> Roles:
    """Grid keys by role (module docstring), from where each lands in a cell's configuration."""
    from scalelab.spec import FederatedFields

    roles = Roles()
    cell = spec.cells[0] if spec.cells else None
    for key in spec.grid_keys:
        name = key.split(".")[-1]
        # A [federated] setting that is off in the first cell (no privacy there) is left
        # out of its configuration, so the section's own fields name it.
        fallback = "federated" if name in FederatedFields.model_fields else "train"
        section = key.split(".")[0] if "." in key else next(
            (s for s in ("model", "data", "train", "federated") if cell is not None and name in _names(cell.config.get(s, {}))), fallback
        )  # fmt: skip
        if section == "federated":
            roles.federated.append(key)
        elif name in REPLICATE_KEYS:
            roles.replicate.append(key)
        elif name in QUALITY_KEYS:
            roles.quality.append(key)
        elif name in COMPRESSION_KEYS and section == "train":
            roles.compression.append(key)
        elif name in TRANSFER_KEYS and section == "train":
            roles.transfer.append(key)
        elif section == "model":
            roles.size.append(key)
        elif section == "data" and name != "validation_split":
            roles.data.append(key)
        else:
            roles.setting.append(key)
    if roles.transfer and not _sweeps(spec, next((k for k in roles.transfer if k.split(".")[-1] == "init_from"), None)):
        # Every cell starts the same way: freeze or head_lr are training settings like any other.
        roles.setting = [k for k in spec.grid_keys if k in (*roles.setting, *roles.transfer)]
        roles.transfer = []
    return roles


def with_samples(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``samples``: the training samples processed (n_train × epochs, exactly),
    read off the measured FLOPs; the D of a joint law. A language model's ``tokens`` are
    the tokens it processed, whole steps of its batch, even where the grid asked for
    fewer (the runs table keeps those as ``recorded_tokens``)."""
    runs = runs.copy()
    if "recorded_tokens" in runs.columns:
        recorded = pd.to_numeric(runs["recorded_tokens"], errors="coerce")
        runs["tokens"] = recorded.where(recorded.notna(), pd.to_numeric(runs["tokens"], errors="coerce"))
    if "recorded_unique_tokens" in runs.columns:
        # The distinct tokens a run saw: its unique prefix, or fewer when it stopped inside
        # its first pass (the U of the data-constrained law).
        available = pd.to_numeric(runs["recorded_unique_tokens"], errors="coerce")
        runs["unique_tokens"] = np.fmin(available, pd.to_numeric(runs["tokens"], errors="coerce"))
    if "flops" in runs.columns and "flops_per_sample" in runs.columns:
        flops = pd.to_numeric(runs["flops"], errors="coerce")
        per = pd.to_numeric(runs["flops_per_sample"], errors="coerce")
        runs["samples"] = flops / per.where(per > 0)
    return runs


def study_curves(spec, runs: pd.DataFrame, *, x_cols, y_col: str, group=None) -> CurveSet:
    """The curves of ``spec``'s ``runs`` (its runs table) for a law of ``y_col`` against ``x_cols``.

    ``group``: a column, or a list of them, to split on as well (a quality, compression or
    setting key named here is split on rather than held or reduced to the envelope).

    When the grid sweeps ``unique_tokens``, runs that repeat their data (more than one
    epoch over it) stand on no curve unless ``unique_tokens`` is among ``x_cols`` or
    ``group``: a law of N and D assumes each token is new (:data:`REPEATS`).
    """
    x_cols = [x_cols] if isinstance(x_cols, str) else list(x_cols)
    groups = [] if group is None else [group] if isinstance(group, str) else list(group)
    runs = with_samples(runs)
    for col in [*x_cols, y_col, *groups]:
        if col not in runs.columns:
            raise InputError(f"{spec.name}: no column {col!r} in its runs{did_you_mean(col, runs.columns)} (columns: {', '.join(map(str, runs.columns))})")
    roles = grid_roles(spec)
    left: list[pd.DataFrame] = []

    def leave(rows: pd.DataFrame, reason) -> None:
        if len(rows):
            reasons = rows.apply(reason, axis=1) if callable(reason) else reason
            left.append(rows.assign(reason=reasons))

    rows = runs
    leave(rows[rows["state"] != "done"], lambda r: f"{r['state']}")
    rows = rows[rows["state"] == "done"].copy()
    for col in [*x_cols, y_col]:
        rows[col] = pd.to_numeric(rows[col], errors="coerce")
    if "samples" in x_cols and "flops" in rows.columns:
        # samples are counted from the measured FLOPs, which scikit-learn models do not have.
        unmeasured = ~(pd.to_numeric(rows["flops"], errors="coerce") > 0)
        leave(rows[unmeasured], "no measured FLOPs to count training samples by (scikit-learn models have none)")
        rows = rows[~unmeasured]
    finite = np.isfinite(rows[[*x_cols, y_col]].astype(float)).all(axis=1)
    leave(rows[~finite], f"without a value of {' or '.join([*x_cols, y_col])}")
    rows = rows[finite]

    held: dict = {}
    if roles.transfer and not any(k in groups for k in roles.transfer):
        init_key = next(k for k in roles.transfer if k.split(".")[-1] == "init_from")
        tuned = ~is_scratch(rows, roles.transfer)
        leave(rows[tuned], "fine-tuned (from a checkpoint; the transfer analysis compares them)")
        scratch = rows[~tuned]
        levels = scratch_levels(scratch, roles.transfer)
        held[init_key] = SCRATCH
        for key, level in levels.items():
            keep = (scratch[key] == level) | scratch[key].isna() if level is not None else scratch[key].isna()
            leave(scratch[~keep], lambda r, key=key: f"{key} = {_fmt(r[key])} (the curves use {key} = {_fmt(levels[key])})")
            scratch = scratch[keep]
            held[key] = "default" if level is None else level
        rows = scratch
    for key in [*roles.compression, *roles.quality]:
        if key in groups or rows[key].nunique() < 2:
            continue
        off = clean_level(rows, key)
        # A scikit-learn family beside a torch one reads None for compression: never compressed.
        keep = (rows[key] == off) | rows[key].isna()
        kind = "compressed" if key in roles.compression else "data quality"
        leave(rows[~keep], lambda r, key=key, kind=kind: f"{key} = {_fmt(r[key])} ({kind}; the curves use {_fmt(off)})")
        rows = rows[keep]
        held[key] = off

    private_keys = [k for k in roles.federated if k.split(".")[-1] in PRIVACY_KEYS]
    if private_keys and not any(k in groups for k in private_keys):
        private = rows[private_keys].notna().any(axis=1)
        leave(rows[private], PRIVATE)
        rows = rows[~private]
        held.update(dict.fromkeys(private_keys, "none (no privacy)"))
        roles = replace(roles, federated=[k for k in roles.federated if k not in private_keys])

    repeats_swept = [k for k in roles.data if k.split(".")[-1] == "unique_tokens"]
    if repeats_swept and not {"unique_tokens", *repeats_swept} & {*x_cols, *groups} and "epochs" in rows.columns:
        repeated = pd.to_numeric(rows["epochs"], errors="coerce") > 1 + 1e-9
        leave(rows[repeated], REPEATS)
        rows = rows[~repeated]
        held[repeats_swept[0]] = "each token once"

    axis = axis_keys(roles, x_cols, spec.grid_keys)
    family = [k for k in roles.size if k.split(".")[-1] == "family"]
    split = [k for k in [*roles.size, *roles.data, *roles.federated] if k not in axis]
    by = list(dict.fromkeys([*family, *split, *groups]))
    settings = [k for k in roles.setting if k not in axis and k not in groups]
    point = [k for k in dict.fromkeys([*by, *axis, *held]) if k in rows.columns]
    winners, selected_on = None, None
    if settings and len(rows):
        selected_on = selection_metric(rows, y_col)
        rows, lost, winners = envelope(rows, point=point, settings=settings, score=selected_on)
        leave(lost, lambda r: f"a setting that lost at its point (chosen on {selected_on})")

    curves = []
    by_present = [k for k in by if k in rows.columns]
    # One curve with nothing to split on is named by its model family, not the study.
    default = str(spec.cells[0].config["model"]["family"]) if spec.cells else spec.name
    for value, curve_rows in _groupby(rows, by_present):
        key = dict(zip(by_present, value))
        curves.append(Curve(label=curve_label(key, default), key=key, runs=curve_rows.reset_index(drop=True)))
    left_out = pd.concat(left, ignore_index=True) if left else pd.DataFrame(columns=[*runs.columns, "reason"])
    return CurveSet(study=spec.name, x_cols=x_cols, y_col=y_col, roles=roles, by=by_present, held=held, settings=settings,
                    selected_on=selected_on, curves=curves, left_out=left_out, winners=winners, n_runs=len(runs))  # fmt: skip


def axis_keys(roles: Roles, x_cols: list[str], grid_keys) -> list[str]:
    """The grid keys that move along the law's x: they vary within one curve."""
    axis: list[str] = []
    data_size = [k for k in roles.data if k.split(".")[-1] in DATA_SIZE_KEYS]
    model_size = [k for k in roles.size if k.split(".")[-1] != "family"]
    for col in x_cols:
        if col in DATA_X or col in COMPUTE_X:
            axis += data_size
        if col in SIZE_X or col in COMPUTE_X:
            axis += model_size
        if col in LENGTH_X:
            axis += [k for k in roles.setting if k.split(".")[-1] in ("epochs", "max_steps", "min_steps", "tokens")]
            axis += [k for k in roles.federated if k.split(".")[-1] in ("rounds", "local_epochs")]
        if col in grid_keys:
            axis.append(col)
    return list(dict.fromkeys(axis))


def selection_metric(rows: pd.DataFrame, y_col: str) -> str:
    """What the envelope is chosen on: the validation counterpart of ``y_col`` (``val_error``
    for ``test_error``) when every run has one, else the training loss. Choosing on the
    modelled metric itself would fit the law through the luckiest test draws."""
    candidates = [y_col.replace("test_", "val_", 1)] if y_col.startswith("test_") else []
    candidates += ["val_loss", "train_loss"]
    for name in candidates:
        if name != y_col and name in rows.columns and pd.to_numeric(rows[name], errors="coerce").notna().all():
            return name
    raise InputError(f"the grid sweeps settings, but the runs record neither a validation metric nor train_loss to choose "
                     f"the best setting on (never {y_col}, the metric the law models)")  # fmt: skip


def envelope(rows: pd.DataFrame, *, point: list[str], settings: list[str], score: str):
    """``(kept, lost, winners)``: at each point, the runs of the setting with the lowest mean
    ``score`` over seeds, the other runs, and a table of which setting won where."""
    # Each value as text on its own: a setting one [[grid]] table leaves unset is None
    # beside another's numbers, and a column's astype(str) keeps such NaN a float.
    frame = rows.assign(_setting=rows[settings].map(str).agg(" | ".join, axis=1), _score=pd.to_numeric(rows[score], errors="coerce"))
    means = frame.groupby([*point, "_setting"], dropna=False, sort=False)["_score"].mean().reset_index()
    best = means.loc[means.groupby(point, dropna=False, sort=False)["_score"].idxmin()] if point else means.nsmallest(1, "_score")
    marked = frame.merge(best[[*point, "_setting"]].assign(_won=True), on=[*point, "_setting"], how="left")
    marked.index = frame.index
    won = marked["_won"].eq(True)
    kept = rows[won.to_numpy()]
    winners = marked[won].drop_duplicates(point).loc[:, [*point, *settings]].reset_index(drop=True)
    winners.attrs["score"] = score
    return kept, rows[~won.to_numpy()], winners


def clean_level(rows: pd.DataFrame, key: str):
    """The level of a data-quality or compression axis that counts as clean: off when the grid
    has it (no label noise, balanced classes, no pruning), else the mildest level swept."""
    off = {**QUALITY_OFF, **COMPRESSION_OFF}.get(key.split(".")[-1])
    return off if off is not None and (rows[key] == off).any() else rows[key].dropna().min()


def is_scratch(rows: pd.DataFrame, transfer_keys: list[str]) -> pd.Series:
    """Rows trained from scratch: ``init_from = "none"``, or missing (a scikit-learn family)."""
    column = rows[init_key(transfer_keys)]
    return column.isna() | (column.astype(str) == SCRATCH)


def init_key(transfer_keys: list[str]) -> str:
    """The grid key of ``init_from`` (it may be written ``train.init_from``)."""
    return next(k for k in transfer_keys if k.split(".")[-1] == "init_from")


def scratch_levels(rows: pd.DataFrame, transfer_keys: list[str]) -> dict:
    """The level of ``freeze`` and ``head_lr`` the from-scratch runs are read at, where they
    hold more than one: off (no freezing, the head at the model's learning rate) when swept,
    else the smallest head_lr. None stands for the default (the key left out)."""
    rows = rows[is_scratch(rows, transfer_keys)]
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


def curve_label(key: dict, default: str) -> str:
    """A readable label for a curve: ``"mlp, width 0.5"``; ``default`` when nothing splits."""
    parts = [str(v) if k.split(".")[-1] == "family" else f"{k.split('.')[-1]} {_fmt(v)}" for k, v in key.items()]
    return ", ".join(parts) or default


def model_labels(rows: pd.DataFrame, size_keys: list[str]) -> pd.Series:
    """A readable label per row for its model: ``"mlp, width 0.5"``."""
    return rows.apply(lambda row: curve_label({k: row[k] for k in size_keys}, ""), axis=1).astype(str)


def _groupby(rows: pd.DataFrame, keys: list[str]):
    """(values, rows) per distinct combination of ``keys`` in first-seen order; list values
    (a factory's hidden sizes) are grouped by their text."""
    if not keys:
        if len(rows):
            yield (), rows
        return
    text = rows[keys].apply(lambda column: column.map(lambda v: str(v) if isinstance(v, (list, tuple, dict)) else v))
    for positions in text.groupby(keys, sort=False, dropna=False).indices.values():
        part = rows.iloc[positions]
        yield tuple(_plain(part[k].iloc[0]) for k in keys), part


def _sweeps(spec, key: str | None) -> bool:
    return key is not None and len({str(c.params.get(key)) for c in spec.cells}) > 1


def _names(section: dict) -> set[str]:
    """Keys of a resolved section, with those of its nested tables (a family's ``knobs``)."""
    names = set(section)
    for value in section.values():
        if isinstance(value, dict):
            names |= _names(value)
    return names


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def transfer_runs(spec, runs: pd.DataFrame, *, x_cols=("n_train",), y_col: str, group=()) -> pd.DataFrame | None:
    """The runs a transfer analysis compares, or None when the grid does not sweep
    ``init_from``: the curves split by the transfer keys (clean data quality and
    compression, the envelope of other settings), keeping the from-scratch runs at the
    level the other curves use and every fine-tuned run.

    Each row gets its cell's transfer keys under their own names (``init_from``, ``freeze``,
    ``head_lr``: a grid may call them ``train.init_from``), ``init_from`` as text with a
    missing value read as ``"none"`` (a scikit-learn family is never fine-tuned), and a
    readable ``model`` label.
    """
    roles = grid_roles(spec)
    if not roles.transfer:
        return None
    view = study_curves(spec, runs, x_cols=x_cols, y_col=y_col, group=[*roles.transfer, *group]).frame("curve")
    if not len(view):
        return None
    scratch = view[is_scratch(view, roles.transfer)]
    for key, level in scratch_levels(view, roles.transfer).items():
        scratch = scratch[(scratch[key] == level) | scratch[key].isna()] if level is not None else scratch[scratch[key].isna()]
    rows = pd.concat([scratch, view[~is_scratch(view, roles.transfer)]]).sort_index().copy()
    for key in roles.transfer:
        rows[key.split(".")[-1]] = rows[key]
    rows["init_from"] = rows["init_from"].where(rows["init_from"].notna(), SCRATCH).astype(str)
    rows["model"] = model_labels(rows, roles.size) if roles.size else spec.name
    return rows.drop(columns="curve").reset_index(drop=True)
