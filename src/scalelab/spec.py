"""Study files: validation (pydantic v2), resolution, and expansion into cells.

A study file has ``name``, ``[data]``, ``[model]``, ``[train]``, ``[grid]`` and
``[target]``. This module checks it once, fills in every default, and expands the grid
into :class:`Cell` objects whose ``cell_id`` is a hash of the fully resolved
configuration. Nothing downstream re-validates.

That configuration includes the content of every file a cell reads: the SHA-256 of its
dataset's files (``data.content_sha256``, see :mod:`scalelab.data.fingerprint`) and of an
``init_from`` checkpoint (``train.init_from_sha256``). A built-in dataset's path leaves the
id once its content is in it, so a moved copy keeps its cells and a changed file gets new
ones.

Every error is an :class:`~scalelab.errors.InputError` with one line naming the file and
the key (``study.toml: grid.data_fraction = 1.5: must be in (0, 1]``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scalelab.data.fingerprint import CONTENT_KEY, ContentHashes, identity_view
from scalelab.data.quality import QUALITY_DEFAULTS
from scalelab.data.registry import DATASETS, MNIST1D_GENERATION, dataset_entry, dataset_option_names, is_known_dataset
from scalelab.data.tokens import TEXT_DATASETS
from scalelab.errors import InputError, did_you_mean
from scalelab.models.registry import FAMILIES, family_entry, family_knob_names, is_known_family

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_CELLS = 100_000
SEED_MAX = 2**32 - 1  # numpy and scikit-learn accept seeds in [0, 2**32)
# [data] settings at the values that switch them off; resolved configurations leave them out.
_DATA_OFF = {**QUALITY_DEFAULTS, "preprocess": "none", "classes": None, "files": None}
# Dataset options added later, left out when unset so that existing cells keep their ids.
_OPTIONS_OFF = {"group": None, **dict.fromkeys(MNIST1D_GENERATION)}
# [train] settings added after the first release, left out of a cell's id when off, so
# that adding them kept every existing cell's id (and its stored result) valid.
_TRAIN_OFF = {
    "compile": False,
    "batch_seeds": False,
    "data_parallel": 1,
    "data_parallel_timeout": 600.0,
    "prune": 0.0,
    "prune_finetune_epochs": 0,
    "quantize": "none",
    "init_from": None,
    "freeze": "none",
    "head_lr": None,
    "lr_schedule": "constant",
    "warmup": 0,
    "grad_clip": 0.0,
    "early_stopping": None,
    "eval_points": 10,  # the default is left out of the id: evaluating changes no weight
}
# [train] settings that change how a cell is run, never its result: never in its id.
_NOT_IN_ID = ("data_parallel_timeout",)
# Only a decaying schedule reads these; with "constant" they are left out of the id.
_DECAY_ONLY = {"min_lr_ratio": 0.0, "cooldown": 0.2}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DataFields(_Strict):
    """The ``[data]`` fields every dataset shares; dataset options sit beside them."""

    name: str = Field(min_length=1)
    test_size: float = Field(0.2, gt=0, lt=1, description="test share when the dataset has no test split of its own")
    split_seed: int = Field(0, ge=0, le=SEED_MAX, description="seed of the train/test split")
    data_fraction: float = Field(1.0, allow_inf_nan=True, description="share of the training split used, in (0, 1]")  # NaN gets the range message
    subsample_seed: int | None = Field(None, ge=0, le=SEED_MAX, description="seeds the subsample and the data-quality transforms; defaults to train.seed")
    validation_split: float = Field(0.0, ge=0, lt=1, description="share of the training subset held out for val_loss and val_error")
    preprocess: Literal["none", "scale", "standardize"] | None = Field(None, description="none | scale | standardize; defaults to the dataset's own")
    label_noise: float = Field(0.0, ge=0, le=1, description="share of training labels replaced by a different class")
    duplicate_fraction: float = Field(0.0, ge=0, lt=1, description="share of the training budget spent on exact duplicates")
    class_imbalance: float = Field(1.0, ge=1, le=1e6, description="ratio of the most to the least frequent class")
    classes: list[int] | None = Field(None, min_length=2, description="keep only these classes, relabelled 0 … k−1 in this order")
    feature_noise: float = Field(0.0, ge=0, le=1000, description="Gaussian noise std relative to each feature's std")
    files: list[str] | None = Field(
        None, min_length=1, description="files or folders a python: dataset function reads; their content joins the cell's id"
    )

    @field_validator("data_fraction")
    @classmethod
    def _fraction_in_unit_interval(cls, value: float) -> float:
        if not (0.0 < value <= 1.0) or math.isnan(value):
            raise ValueError("must be in (0, 1]")
        return value

    @field_validator("classes")
    @classmethod
    def _distinct_class_indices(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (min(value) < 0 or len(set(value)) != len(value)):
            raise ValueError("must be distinct class indices, 0 or more")
        return value

    @field_validator("files")
    @classmethod
    def _non_empty_paths(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not all(value):
            raise ValueError("must name files or folders (an empty string names none)")
        return value

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if not is_known_dataset(value):
            raise ValueError(f"unknown dataset {value!r}{did_you_mean(value, DATASETS)}; known: {', '.join(sorted(DATASETS))}, or python:pkg.module:function")
        return value


class ModelFields(_Strict):
    """The ``[model]`` field every family shares; its knobs (width, depth, ...) sit beside it."""

    family: str = Field(min_length=1)

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        if not is_known_family(value):
            raise ValueError(f"unknown model family {value!r}{did_you_mean(value, FAMILIES)}; known: {', '.join(sorted(FAMILIES))}, or python:pkg.module:factory")
        return value


class EarlyStoppingFields(_Strict):
    """``[train] early_stopping = {patience = 3, min_delta = 0.0}``: stop when the
    validation loss has not improved by ``min_delta`` for ``patience`` evaluations."""

    patience: int = Field(ge=1, le=1_000_000, description="evaluations without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest drop in validation loss that counts as improvement")


class TrainFields(_Strict):
    """``[train]``: how each cell is trained."""

    epochs: int = Field(10, ge=1, le=1_000_000)
    min_steps: int = Field(0, ge=0, le=100_000_000, description="train more epochs when the data is small, up to this many steps")
    batch_size: int = Field(64, ge=1, le=1_000_000)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0)
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seeds initialisation, shuffling and (by default) the subsample")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32", description="bf16 autocasts matmuls and convolutions; auto picks bf16 where the hardware runs it natively"
    )
    compile: bool = Field(False, description="torch.compile the model (opt-in: compiling costs time up front)")
    batch_seeds: bool = Field(False, description="train the cells that differ only in seed together, as one vmapped model (mlp, seed_cnn)")
    data_parallel: int = Field(1, ge=1, le=1024, description="train each cell as this many DistributedDataParallel processes")
    data_parallel_timeout: float = Field(
        600.0, gt=0, le=86_400, description="seconds a data-parallel rank waits for the others in a collective before the cell fails (a hung rank)"
    )
    prune: float = Field(0.0, ge=0, lt=1, description="after training, zero this share of the Linear and conv weights with the smallest magnitude")
    prune_finetune_epochs: int = Field(0, ge=0, le=10_000, description="epochs of training after pruning, the mask held")
    quantize: Literal["none", "int8"] = Field("none", description="after training, int8 dynamic quantisation of the Linear layers")
    init_from: str | None = Field(
        None,
        min_length=1,
        description='a checkpoint (state_dict file) to start from, its SHA-256 joining the cell\'s id; "pretrain" for the [pretrain] stage\'s; "none" for no checkpoint',
    )
    freeze: Literal["none", "backbone"] = Field("none", description="backbone: train only the classifier head (needs init_from)")
    head_lr: float | None = Field(None, gt=0, description="learning rate of the classifier head; default lr")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto uses CUDA when present")
    lr_schedule: Literal["constant", "cosine", "wsd"] = Field(
        "constant", description="cosine decays to min_lr_ratio at the cell's own last step; wsd holds lr, then decays over the last cooldown share"
    )
    warmup: int = Field(0, ge=0, le=100_000_000, description="steps of linear warmup")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine and wsd: the last step's lr as a share of lr")
    cooldown: float = Field(0.2, gt=0, le=1, description="wsd: share of the steps spent decaying")
    grad_clip: float = Field(0.0, ge=0, description="clip the gradients' global norm to this; 0 is off")
    early_stopping: EarlyStoppingFields | None = Field(None, description="{patience, min_delta}: stop on the validation loss, keep the best weights")
    eval_points: int = Field(10, ge=0, le=10_000, description="log-spaced evaluations recorded as the run's training curve; 0 records none")


class ResourceFields(_Strict):
    """``[resources]``: what one cell reserves on a Ray cluster (``--executor ray``)."""

    cpus: float = Field(1.0, gt=0, le=4096, description="CPUs per cell; also its torch threads")
    gpus: float = Field(0.0, ge=0, le=64, description="GPUs per cell (a fraction shares one)")


class FederatedFields(_Strict):
    """``[federated]``: each cell a federated run over clients that split its training set
    (:mod:`scalelab.train.federated`)."""

    clients: int = Field(ge=1, le=1_000_000, description="K, the clients the training set is split among")
    participation: float = Field(1.0, gt=0, le=1, description="share of the clients sampled each round")
    rounds: int = Field(ge=1, le=1_000_000, description="rounds of communication")
    local_epochs: int = Field(1, ge=1, le=10_000, description="epochs of local SGD per client and round")
    partition: Literal["iid", "dirichlet", "by_class"] = Field("iid", description="how the clients' data differ")
    alpha: float | None = Field(None, gt=0, description="dirichlet: the concentration; small is skewed")
    classes_per_client: int | None = Field(None, ge=1, description="by_class: classes each client holds")
    aggregation: Literal["fedavg", "fedprox"] = "fedavg"
    mu: float = Field(0.0, ge=0, description="fedprox: weight of the proximal term")
    noise_multiplier: float | None = Field(None, ge=0, description="client-level DP: noise std as a multiple of clip_norm")
    clip_norm: float | None = Field(None, gt=0, description="client-level DP: L2 bound on each client's update")
    delta: float = Field(1e-5, gt=0, lt=1, description="the delta at which epsilon is reported")
    engine: Literal["scalelab", "flower"] = Field("scalelab", description="flower: run the cell on Flower's own simulation engine")


class TrackingFields(_Strict):
    """``[tracking]``: where ``scalelab run`` mirrors the study's runs (:mod:`scalelab.tracking`).
    Not training configuration: it joins no cell's id."""

    mlflow: str | None = Field(None, min_length=1, max_length=4096, description="MLflow tracking URI; setting it turns tracking on (MLFLOW_TRACKING_URI wins)")
    experiment: str | None = Field(None, min_length=1, max_length=500, description="MLflow experiment (default: the study's name)")


class PretrainFile(_Strict):
    """``[pretrain]``: the source task whose trained weights cells with
    ``init_from = "pretrain"`` start from. The model is the cell's own (same family and
    knobs); ``train.seed`` follows the cell's, so one checkpoint is trained per model size
    and seed and shared by every cell that has them."""

    data: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)


class TargetFields(_Strict):
    """``[target]``: what the scaling laws model."""

    metric: str = Field("test_loss", min_length=1)


class StudyFile(_Strict):
    """The top level of a study file, before the sections are resolved."""

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    # One table (a Cartesian product), or a list of tables ([[grid]]): the cells of each
    # product, together, so one study can hold a dense sweep and a second axis beside it.
    grid: dict[str, Any] | list[dict[str, Any]] | None = None
    target: TargetFields = Field(default_factory=TargetFields)
    resources: ResourceFields = Field(default_factory=ResourceFields)
    tracking: TrackingFields = Field(default_factory=TrackingFields)
    pretrain: PretrainFile | None = None
    federated: dict[str, Any] | None = None


# What a pretraining run may not set: it trains one plain model whose weights are kept.
_PRETRAIN_TRAIN_REFUSED = (
    "seed", "init_from", "freeze", "head_lr", "batch_seeds", "data_parallel", "prune", "prune_finetune_epochs", "quantize", "early_stopping",
)  # fmt: skip
PRETRAIN = "pretrain"


@dataclass(frozen=True)
class Cell:
    """One point of the grid: a fully resolved configuration and its stable id."""

    cell_id: str
    config: dict  # {"data": {...}, "model": {...}, "train": {...}}, JSON-compatible
    params: dict  # the grid keys as the user wrote them, and this cell's values


@dataclass(frozen=True)
class StudySpec:
    """A validated study: its name, target, grid keys and expanded cells."""

    name: str
    description: str
    target_metric: str
    grid_keys: tuple[str, ...]
    cells: tuple[Cell, ...]
    source: str  # the file it came from, or a label for in-memory specs
    raw: dict = field(repr=False)  # the study file as parsed, for the store's record
    resources: dict = field(default_factory=lambda: ResourceFields().model_dump())  # per cell, for the Ray executor
    tracking: dict = field(default_factory=lambda: TrackingFields().model_dump())  # where runs are mirrored; not in any cell id
    # {resolved path: (size, mtime_ns, sha256)} of every file whose content joined a cell's
    # id, for the run store's hash cache.
    file_hashes: dict = field(default_factory=dict, repr=False, compare=False)


def cell_id_of(config: dict) -> str:
    """Stable id of a resolved configuration: the first 16 hex digits of its SHA-256.

    A ``[data]`` section (the cell's, and its ``[pretrain]`` stage's) whose files' content
    is in it counts by that content, not by the built-in dataset's path
    (:func:`scalelab.data.fingerprint.identity_view`). Settings that change how a cell is
    run but never its result (``train.data_parallel_timeout``) are left out."""
    identity = dict(config)
    if isinstance(identity.get("train"), dict):
        identity["train"] = {k: v for k, v in identity["train"].items() if k not in _NOT_IN_ID}
    if isinstance(identity.get("data"), dict):
        identity["data"] = identity_view(identity["data"])
    if isinstance(identity.get("pretrain"), dict) and isinstance(identity["pretrain"].get("data"), dict):
        identity["pretrain"] = {**identity["pretrain"], "data": identity_view(identity["pretrain"]["data"])}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_spec(path: str | Path, *, hashes: ContentHashes | None = None) -> StudySpec:
    """Read, validate and expand a study file.

    ``hashes``: the cache of file hashes to use (a run store's, see
    :func:`scalelab.study.resolve_spec`); by default this process's own.

    Raises :class:`InputError` naming the file and the offending key or value.
    """
    path = Path(path).expanduser()
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{label}: study file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{label}: cannot read study file ({exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{label}: invalid TOML: {exc}") from None
    return parse_spec(raw, source=label, hashes=hashes)


def parse_spec(raw: dict, *, source: str = "<study>", hashes: ContentHashes | None = None) -> StudySpec:
    """Validate a study given as a dict (the parsed TOML) and expand its grid.

    The files the cells read are hashed here (through ``hashes``, a cache by path, size and
    mtime; by default this process's own), so every command that parses a study agrees on
    its cells' ids. Relative data paths are relative to the current directory.
    """
    hashes = hashes if hashes is not None else ContentHashes()
    try:
        top = StudyFile.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"{source}: {_describe(exc)}") from None

    grids = top.grid if isinstance(top.grid, list) else [top.grid or {}]
    if isinstance(top.grid, list) and not top.grid:
        raise InputError(f"{source}: [[grid]] holds no table; give at least one, or remove it")
    products = [_route_grid(grid, top, source, label=_grid_label(top.grid, index)) for index, grid in enumerate(grids)]
    n_cells = sum(math.prod(len(v) for *_, v in routed) for routed in products)
    if n_cells > MAX_CELLS:
        raise InputError(f"{source}: the grid has {n_cells} cells, more than the limit of {MAX_CELLS}")
    every_key = _union_routes(products)

    cells: list[Cell] = []
    seen: set[str] = set()
    for routed in products:
        own: set[str] = set()  # a product repeating itself is a mistake; two products may share cells
        swept = {(section, name) for _, section, name, _ in routed}
        for combo in itertools.product(*(values for *_, values in routed)):
            sections = {"data": dict(top.data), "model": dict(top.model), "train": dict(top.train)}
            if top.federated is not None or any(section == "federated" for _, section, _, _ in routed):
                sections["federated"] = dict(top.federated or {})
            params = {}
            for (key, section, name, _), value in zip(routed, combo):
                sections[section][name] = value
                params[key] = value
            if _frozen_from_scratch(sections["train"], swept):
                continue  # init_from x freeze: a model trained from scratch has no backbone to freeze
            config = _resolve(sections, source=source, grid_keys={(s, n): k for k, s, n, _ in routed}, params=params, pretrain=top.pretrain, hashes=hashes)
            cell_id = cell_id_of(config)
            if cell_id in own:
                if family_entry(config["model"]["family"]).framework == "sklearn":
                    raise InputError(
                        f"{source}: two cells have the same configuration ({params}): the scikit-learn family "
                        f"{config['model']['family']!r} ignores [train] settings other than seed; sweep those in a separate study"
                    )
                raise InputError(f"{source}: the grid repeats a value, so two cells have the same configuration ({params})")
            own.add(cell_id)
            if cell_id in seen:
                continue  # already a cell of an earlier [[grid]] table
            seen.add(cell_id)
            cells.append(Cell(cell_id=cell_id, config=config, params=_resolved_params(config, every_key)))

    if top.pretrain is not None and not any("pretrain" in cell.config for cell in cells):
        raise InputError(f'{source}: [pretrain] is set but no cell uses it; add train.init_from = "pretrain" (or grid init_from = ["none", "pretrain"])')
    return StudySpec(
        name=top.name,
        description=top.description,
        target_metric=top.target.metric,
        grid_keys=tuple(key for key, *_ in every_key),
        cells=tuple(cells),
        source=source,
        raw=raw,
        resources=top.resources.model_dump(),
        tracking=top.tracking.model_dump(),
        file_hashes=dict(hashes.used),
    )


def _grid_label(grid, index: int) -> str:
    """How a message names a grid table: ``grid``, or ``grid[2]`` (1-based) in a [[grid]] list."""
    return f"grid[{index + 1}]" if isinstance(grid, list) else "grid"


def _route_grid(grid: dict, top: StudyFile, source: str, *, label: str) -> list[tuple[str, str, str, list]]:
    """One grid table's keys as (key as written, section, field, values), validated."""
    if not isinstance(grid, dict):
        raise InputError(f"{source}: {label} must be a table of keys and value lists")
    if not grid and label != "grid":
        raise InputError(f"{source}: {label} is empty; give at least one key with a list of values")
    if label == "grid" and top.grid is not None and not grid:
        raise InputError(f"{source}: [grid] is empty; give at least one key with a list of values, or remove [grid]")
    routed: list[tuple[str, str, str, list]] = []
    for key, values in _flatten_sections(grid).items():
        section, name = _route_grid_key(key, source)
        values = list(values) if isinstance(values, list) else [values]
        if not values:
            raise InputError(f"{source}: {label}.{key} is an empty list; the grid would have no cells")
        if name in (top.__dict__[section] or {}):
            raise InputError(f"{source}: {key!r} is set in both [{section}] and [{label}]; keep one")
        twin = next((other for other, s, n, _ in routed if (s, n) == (section, name)), None)
        if twin is not None:
            raise InputError(f"{source}: {label}.{key} and {label}.{twin} set the same field; keep one")
        routed.append((key, section, name, values))
    return routed


def _union_routes(products: list[list[tuple[str, str, str, list]]]) -> list[tuple[str, str, str, list]]:
    """Every key any grid table sweeps, once, in the order first written: a run's columns."""
    union: dict[tuple[str, str], tuple[str, str, str, list]] = {}
    for routed in products:
        for route in routed:
            union.setdefault((route[1], route[2]), route)
    return list(union.values())


def _frozen_from_scratch(train: dict, swept: set[tuple[str, str]]) -> bool:
    """A grid crossing ``init_from`` (with ``"none"``) and ``freeze``: the from-scratch cells
    with a frozen backbone mean nothing, and are left out of the grid rather than refused."""
    crossed = {("train", "init_from"), ("train", "freeze")} <= swept
    return crossed and train.get("init_from") in (None, "none") and train.get("freeze", "none") != "none"


def _flatten_sections(grid: dict) -> dict:
    """``model.hidden = [...]`` in TOML is a nested table; read it as the key ``"model.hidden"``."""
    flat = {}
    for key, values in grid.items():
        if key in ("data", "model", "train", "federated") and isinstance(values, dict):
            flat.update({f"{key}.{name}": inner for name, inner in values.items()})
        else:
            flat[key] = values
    return flat


def _route_grid_key(key: str, source: str) -> tuple[str, str]:
    """Which section a grid key belongs to: ``train.lr`` explicitly, or ``lr`` by its name."""
    if "." in key:
        section, _, name = key.partition(".")
        if section not in ("data", "model", "train", "federated"):
            raise InputError(f"{source}: grid.{key}: unknown section {section!r}; use data., model., train. or federated.")
        return section, name
    homes = []
    if key in TrainFields.model_fields:
        homes.append("train")
    if key in DataFields.model_fields or key in dataset_option_names():
        homes.append("data")
    if key in ModelFields.model_fields or key in family_knob_names():
        homes.append("model")
    if key in FederatedFields.model_fields:
        homes.append("federated")
    if not homes:
        known = [*TrainFields.model_fields, *DataFields.model_fields, *dataset_option_names(), *ModelFields.model_fields,
                 *family_knob_names(), *FederatedFields.model_fields]  # fmt: skip
        raise InputError(
            f"{source}: grid.{key}: unknown key{did_you_mean(key, known)}; it is not a field of [data], [model], [train] or [federated] "
            f"(a python: family's or dataset's own parameter is written model.{key} or data.{key})"
        )
    if len(homes) > 1:
        raise InputError(f"{source}: grid.{key} is ambiguous; write it as one of {', '.join(h + '.' + key for h in homes)}")
    return homes[0], key


def _resolve(
    sections: dict, *, source: str, grid_keys: dict, params: dict, pretrain: PretrainFile | None = None, hashes: ContentHashes
) -> dict:
    """Validate one cell's merged sections and fill every default."""
    data_raw, model_raw, train_raw = sections["data"], sections["model"], sections["train"]

    def fail(section: str, exc: ValidationError, allowed=()) -> InputError:
        line = _describe(exc, section=section, grid_keys=grid_keys, params=params, allowed=allowed)
        return InputError(f"{source}: {line}")

    def split_section(section: str, raw: dict, common: type[BaseModel], specific_to):
        """Validate the shared fields, then the ones specific to what they name (dataset, family)."""
        try:
            head = common.model_validate({k: v for k, v in raw.items() if k in common.model_fields})
        except ValidationError as exc:
            raise fail(section, exc) from None
        specific = specific_to(head)
        try:
            rest = specific.model_validate({k: v for k, v in raw.items() if k not in common.model_fields})
        except ValidationError as exc:
            raise fail(section, exc, allowed=[*common.model_fields, *specific.model_fields]) from None
        return head, rest

    def data_section(section: str, raw: dict, seed: int) -> dict:
        data, options = split_section(section, raw, DataFields, lambda d: dataset_entry(d.name).options)
        data_dict = _data_config(data, options, seed=seed)
        try:
            content = hashes.data_sha256(data_dict)
        except InputError as exc:
            raise InputError(f"{source}: {section}.{str(exc).removeprefix('data.')}") from None
        if content is not None:
            # The bytes the cell reads, not only their path, decide what the cell is.
            data_dict[CONTENT_KEY] = content
        return data_dict

    model, knobs = split_section("model", model_raw, ModelFields, lambda m: family_entry(m.family).knobs)
    try:
        train = TrainFields.model_validate(train_raw)
    except ValidationError as exc:
        raise fail("train", exc) from None
    if train.init_from == "none":
        train = train.model_copy(update={"init_from": None})

    if train.batch_seeds:
        _check_seed_batching(model.family, train, source)
    _check_compression(train, source)
    _check_initialisation(train, source)
    data_dict = data_section("data", data_raw, train.seed)
    _check_text(model.family, knobs, data_dict, data_raw, train, source)
    _check_schedule(train, data_dict, source)
    train_dict = _train_config(train)
    config = {"data": data_dict, "model": {"family": model.family, "knobs": knobs.model_dump(mode="json")}, "train": train_dict}
    sklearn = family_entry(model.family).framework == "sklearn"
    if train.init_from == PRETRAIN and not sklearn:  # a scikit-learn estimator ignores [train] but its seed
        if pretrain is None:
            raise InputError(f'{source}: train.init_from = "pretrain" needs a [pretrain] section (the data and training to pretrain on)')
        refused = next((name for name in pretrain.train if name in _PRETRAIN_TRAIN_REFUSED), None)
        if refused == "seed":
            raise InputError(f"{source}: pretrain.train.seed: not settable; each cell's checkpoint is pretrained with the cell's own train.seed")
        if refused:
            raise InputError(f"{source}: pretrain.train.{refused}: not settable; pretraining trains one plain model whose weights are kept")
        try:
            pretrain_train = TrainFields.model_validate({**pretrain.train, "seed": train.seed})
        except ValidationError as exc:
            raise fail("pretrain.train", exc) from None
        # The whole source task joins the cell's configuration, so its id changes with it.
        config["pretrain"] = {"data": data_section("pretrain.data", pretrain.data, train.seed), "train": _train_config(pretrain_train)}
    elif train.init_from not in (None, PRETRAIN):
        # The weights' content, not only the path, decides what the cell is.
        train_dict["init_from_sha256"] = _checkpoint_sha256(train.init_from, source, hashes)
    if "federated" in sections:
        config["federated"] = _federated_config(sections["federated"], model.family, train, fail=fail, source=source)
    if sklearn:
        # Only the seed means anything to a scikit-learn estimator; the torch settings are
        # dropped so that sweeping one of them is caught as a repeated configuration.
        config["train"] = {"seed": train_dict["seed"]}
    return config


# What a federated cell may not set in [train]: its clients run plain local SGD (the
# server's rounds are its schedule) in one process, each a copy of one small model.
_FEDERATED_TRAIN_REFUSED = ("batch_seeds", "data_parallel", "compile", "early_stopping", "init_from", "prune", "quantize", "lr_schedule", "warmup", "grad_clip")


def _federated_config(raw: dict, family: str, train: TrainFields, *, fail, source: str) -> dict:
    """A resolved ``[federated]`` section, checked against the cell's family and training."""
    try:
        fed = FederatedFields.model_validate(raw)
    except ValidationError as exc:
        raise fail("federated", exc) from None
    if not family_entry(family).seed_batchable:
        able = ", ".join(name for name, entry in FAMILIES.items() if entry.seed_batchable)
        raise InputError(f"{source}: [federated]: model family {family!r} cannot train its clients as one vmapped model (families that can: {able})")
    clash = _first_on(train, _FEDERATED_TRAIN_REFUSED)
    if clash:
        raise InputError(f"{source}: [federated] and {clash} cannot be combined: clients train by plain local SGD")
    if train.optimizer != "sgd":
        raise InputError(f'{source}: [federated]: clients train by plain local SGD; set train.optimizer = "sgd" (not {train.optimizer!r})')
    if fed.partition == "dirichlet" and fed.alpha is None:
        raise InputError(f"{source}: federated.partition = \"dirichlet\" needs federated.alpha (> 0; small is skewed)")
    if fed.partition == "by_class" and fed.classes_per_client is None:
        raise InputError(f"{source}: federated.partition = \"by_class\" needs federated.classes_per_client")
    if (fed.noise_multiplier is None) != (fed.clip_norm is None):
        missing = "clip_norm" if fed.clip_norm is None else "noise_multiplier"
        raise InputError(f"{source}: federated: differential privacy needs both noise_multiplier and clip_norm; federated.{missing} is not set")
    if fed.aggregation == "fedavg" and fed.mu:
        raise InputError(f'{source}: federated.mu = {fed.mu:g} is the FedProx term; set federated.aggregation = "fedprox"')
    if fed.engine == "flower" and fed.noise_multiplier is not None:
        raise InputError(f'{source}: federated.engine = "flower" runs Flower\'s plain FedAvg; client-level privacy needs engine = "scalelab"')
    out = fed.model_dump(mode="json")
    if out["engine"] == "scalelab":
        del out["engine"]
    # Settings of another partition or of no privacy are left out, so they cannot split ids.
    for name in ("alpha", "classes_per_client", "noise_multiplier", "clip_norm"):
        if out[name] is None:
            del out[name]
    if fed.partition != "dirichlet":
        out.pop("alpha", None)
    if fed.partition != "by_class":
        out.pop("classes_per_client", None)
    if fed.noise_multiplier is None:
        del out["delta"]
    return out


def _data_config(data: DataFields, options: BaseModel, *, seed: int) -> dict:
    """A resolved ``[data]`` section: defaults filled, settings that are off left out."""
    data_dict = data.model_dump(mode="json")
    if data_dict["subsample_seed"] is None:
        data_dict["subsample_seed"] = seed
    if data_dict["preprocess"] is None:
        data_dict["preprocess"] = dataset_entry(data.name).preprocess
    # Settings that are off are left out, so the capability to set them changed no existing
    # cell's id; what they mean when off never changes, so no two configurations collide.
    for name, off in _DATA_OFF.items():
        if data_dict[name] == off:
            del data_dict[name]
    data_dict["options"] = {k: v for k, v in options.model_dump(mode="json").items() if not (k in _OPTIONS_OFF and v == _OPTIONS_OFF[k])}
    return data_dict


def _train_config(train: TrainFields) -> dict:
    """A resolved ``[train]`` section, the settings added after the first release left out when off."""
    train_dict = train.model_dump(mode="json")
    for name, off in _TRAIN_OFF.items():
        if train_dict[name] == off:
            del train_dict[name]
    if train.lr_schedule == "constant":
        for name in _DECAY_ONLY:
            del train_dict[name]
    return train_dict


def _check_schedule(train: TrainFields, data: dict, source: str) -> None:
    """Schedule settings that would do nothing, and early stopping without a validation split."""
    if train.lr_schedule == "constant":
        stray = next((name for name in _DECAY_ONLY if name in train.model_fields_set), None)
        if stray:
            raise InputError(f'{source}: train.{stray} applies to a decaying schedule; set train.lr_schedule = "cosine" or "wsd"')
    if train.lr_schedule == "cosine" and "cooldown" in train.model_fields_set:
        raise InputError(f'{source}: train.cooldown applies to lr_schedule = "wsd", not "cosine"')
    if train.early_stopping is not None:
        if train.data_parallel > 1:
            raise InputError(f"{source}: train.early_stopping and train.data_parallel = {train.data_parallel} cannot be combined; choose one")
        if not data.get("validation_split") and data["name"] not in TEXT_DATASETS:
            raise InputError(f"{source}: train.early_stopping watches the validation loss; set data.validation_split (for example 0.1)")
        if train.eval_points < 2:
            raise InputError(f"{source}: train.early_stopping needs train.eval_points of 2 or more (it checks at each evaluation)")


# [data] fields a text dataset reads; its held-out text is whole documents (val_share, test_share).
_TEXT_DATA_FIELDS = ("name", "split_seed", "data_fraction", "subsample_seed")
# [train] settings a text cell does not take: its tokens set its steps, and these paths
# train classifiers only so far.
_TEXT_TRAIN_REFUSED = {
    "epochs": "the token budget sets a text cell's steps; use data.tokens or data.flops_budget",
    "min_steps": "the token budget sets a text cell's steps; use data.tokens or data.flops_budget",
    "batch_seeds": "seed batching trains classifiers only; train the seeds as separate cells",
    "data_parallel": "data-parallel training is for classifiers so far; train each text cell in one process",
    "prune": "compression is for classifiers so far",
    "quantize": "compression is for classifiers so far",
    "init_from": "starting from other weights is for classifiers so far",
}


def _check_text(family: str, knobs: BaseModel, data: dict, data_raw: dict, train: TrainFields, source: str) -> None:
    """A text dataset needs a model that reads token windows, and the reverse; fills the
    window length (``data.window``) from the model's ``context`` when it is unset."""
    text = data["name"] in TEXT_DATASETS
    if family == "gpt" and not text:
        raise InputError(f"{source}: model.family = 'gpt' reads token windows; use data.name = 'text' or 'pystdlib'")
    if not text:
        return
    if family_entry(family).framework != "python" and family != "gpt":
        raise InputError(f"{source}: model.family = {family!r} cannot read token windows; use family = 'gpt' with data.name = {data['name']!r}")
    stray = next((name for name in data_raw if name in DataFields.model_fields and name not in _TEXT_DATA_FIELDS), None)
    if stray:
        raise InputError(f"{source}: data.{stray} does not apply to a text dataset (validation and test text are held-out documents: data.val_share, data.test_share)")
    for name, why in _TEXT_TRAIN_REFUSED.items():
        # epochs and min_steps are refused when written at all: they would be ignored.
        if name in train.model_fields_set and (name in ("epochs", "min_steps") or getattr(train, name) != TrainFields.model_fields[name].default):
            raise InputError(f"{source}: train.{name} with data.name = {data['name']!r}: {why}")
    options = data["options"]
    if options.get("window") is None:
        if family != "gpt":
            raise InputError(f"{source}: data.window (tokens per window) is needed for model.family = {family!r}")
        options["window"] = knobs.context
    elif family == "gpt" and options["window"] > knobs.context:
        raise InputError(f"{source}: data.window = {options['window']} is longer than model.context = {knobs.context}, the longest window the model reads")


def pretrain_config(config: dict) -> dict | None:
    """The configuration of the run whose weights a cell starts from (``init_from =
    "pretrain"``): the ``[pretrain]`` data and training with the cell's model. ``None`` for a
    cell without a pretraining stage."""
    if "pretrain" not in config:
        return None
    return {"data": config["pretrain"]["data"], "model": config["model"], "train": config["pretrain"]["train"]}


def pretrain_id(config: dict) -> str | None:
    """The id of a cell's pretrained checkpoint: its configuration's hash, shared by every
    cell with the same model and seed."""
    source = pretrain_config(config)
    return None if source is None else cell_id_of(source)


def _check_seed_batching(family: str, train: TrainFields, source: str) -> None:
    """``batch_seeds`` needs a family whose seeds can share one vmapped model, and neither
    ``compile`` nor ``data_parallel``."""
    if not family_entry(family).seed_batchable:
        able = ", ".join(name for name, entry in FAMILIES.items() if entry.seed_batchable)
        raise InputError(f"{source}: train.batch_seeds = true: model family {family!r} cannot batch its seeds (families that can: {able})")
    clash = _first_on(train, ("compile", "data_parallel", "lr_schedule", "warmup", "grad_clip", "early_stopping"))
    if clash:
        raise InputError(f"{source}: train.batch_seeds = true and {clash} cannot be combined; choose one")


def _check_compression(train: TrainFields, source: str) -> None:
    """Compression applies to one trained model in one process."""
    if train.prune_finetune_epochs and not train.prune:
        raise InputError(f"{source}: train.prune_finetune_epochs = {train.prune_finetune_epochs} needs train.prune > 0")
    clash = _first_on(train, ("batch_seeds", "data_parallel"))
    if clash and (train.prune or train.quantize != "none"):
        raise InputError(f"{source}: {clash} cannot be combined with train.prune or train.quantize; choose one")


def _first_on(train: TrainFields, names: tuple[str, ...]) -> str | None:
    """``train.NAME = value`` (TOML-style) for the first of ``names`` not at its off value."""
    for name in names:
        value = getattr(train, name)
        if value != _TRAIN_OFF[name]:
            shown = json.dumps(value.model_dump() if isinstance(value, BaseModel) else value)
            return f"train.{name} = {shown}"
    return None


def _check_initialisation(train: TrainFields, source: str) -> None:
    if train.freeze != "none" and train.init_from is None:
        raise InputError(f'{source}: train.freeze = "{train.freeze}" needs train.init_from (a checkpoint to start from)')
    if train.batch_seeds and (train.init_from is not None or train.head_lr is not None):
        raise InputError(f"{source}: train.batch_seeds = true cannot be combined with train.init_from or train.head_lr; choose one")


def _checkpoint_sha256(path: str, source: str, hashes: ContentHashes) -> str:
    """The SHA-256 of a checkpoint file, read once per file version (grids repeat it)."""
    file = Path(path).expanduser()
    try:
        file.stat()
    except OSError:
        raise InputError(f"{source}: train.init_from = {path!r}: checkpoint file not found") from None
    if not file.is_file():
        raise InputError(f"{source}: train.init_from = {path!r}: not a file")
    try:
        return hashes.file_sha256(file)
    except OSError as exc:
        raise InputError(f"{source}: train.init_from = {path!r}: cannot read ({exc.strerror or exc})") from None


def pretraining_cells(spec: StudySpec) -> list[Cell]:
    """The distinct pretraining runs of a study's ``[pretrain]`` stage, as cells with id
    ``pretrain:<checkpoint id>`` (params: the model knobs and seed they are trained for)."""
    runs: dict[str, Cell] = {}
    for cell in spec.cells:
        checkpoint_id = pretrain_id(cell.config)
        if checkpoint_id is not None and checkpoint_id not in runs:
            source = pretrain_config(cell.config)
            params = {**source["model"]["knobs"], "seed": source["train"]["seed"]}
            runs[checkpoint_id] = Cell(cell_id=f"pretrain:{checkpoint_id}", config=source, params=params)
    return list(runs.values())


def seed_group_key(config: dict) -> str | None:
    """Which cells train together under ``batch_seeds``: those whose configurations differ
    only in ``train.seed`` (and a ``data.subsample_seed`` that follows it). ``None`` when the
    cell trains alone."""
    if not config["train"].get("batch_seeds"):
        return None
    seed = config["train"]["seed"]
    shared = {
        "data": {**config["data"], "subsample_seed": "seed" if config["data"]["subsample_seed"] == seed else config["data"]["subsample_seed"]},
        "model": config["model"],
        "train": {k: v for k, v in config["train"].items() if k != "seed"},
    }
    return cell_id_of(shared)


def _resolved_params(config: dict, routed) -> dict:
    """The grid values of a cell after validation (so ``width = 1`` reads back as 1.0)."""
    params = {}
    for key, section, name, _ in routed:
        block = config[section]
        nested = block.get("options" if section == "data" else "knobs", {})
        if name in block:
            params[key] = block[name]
        elif name in nested:
            params[key] = nested[name]
        elif section == "data" and name in _DATA_OFF:
            params[key] = _DATA_OFF[name]  # a setting at its "off" value, left out of the config
        elif section == "federated":
            params[key] = FederatedFields.model_fields[name].default  # off (no privacy, the default engine), left out of the config
        elif section == "train" and name in _TRAIN_OFF and family_entry(config["model"]["family"]).framework != "sklearn":
            params[key] = "none" if name == "init_from" else _TRAIN_OFF[name]  # how a user writes "no checkpoint"
        else:
            params[key] = None  # a torch setting swept beside a scikit-learn family, which ignores it
    return params


def _fields_of(model_name: str) -> list[str]:
    """The keys of the section model a validation error came from (its title is the
    model's class name), for a "did you mean" on an unknown key."""
    pending, seen = [_Strict], {}
    while pending:
        cls = pending.pop()
        seen[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    model = seen.get(model_name)
    return list(model.model_fields) if model is not None else []


def _describe(
    exc: ValidationError,
    *,
    section: str | None = None,
    grid_keys: dict | None = None,
    params: dict | None = None,
    allowed=(),
) -> str:
    """One line naming the key and the problem of a pydantic error."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    name = loc[0] if loc else ""
    if section is None:
        where = ".".join(loc)
    elif grid_keys and (section, name) in grid_keys:
        key = grid_keys[(section, name)]
        where = f"grid.{key} = {json.dumps(params[key], default=str)}"
    else:
        where = ".".join([section, *loc])
    if error["type"] == "extra_forbidden":
        hint = did_you_mean(loc[-1] if loc else "", allowed or _fields_of(exc.title))
        if allowed:
            return f"{where}: unknown key here{hint}; [{section}] takes {', '.join(allowed)}"
        return f"{where}: unknown key{hint}"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    if not (grid_keys and section and (section, name) in grid_keys) and _is_scalar(error.get("input")):
        where = f"{where} = {json.dumps(error['input'], default=str)}"
    return f"{where}: {message}"


def _is_scalar(value) -> bool:
    return value is not None and not isinstance(value, (dict, list, tuple))
