"""Checks and estimates made before any cell trains.

:func:`preflight` loads each distinct dataset once and draws every cell's subsample, so
data problems (a class lost to a small fraction, a corrupt file) are input errors
reported before the store is touched, not failures discovered mid-grid.

:func:`estimate_grid` adds what ``scalelab run --dry-run`` prints: each cell's model
size, measured FLOPs per training sample, total training FLOPs, and a time estimate
from a short calibration of each distinct model on this machine.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from scalelab.data import DataQuality, dataset_key, load_dataset, plan_rows
from scalelab.data.tokens import is_token_dataset
from scalelab.errors import DatasetError, InputError, closest
from scalelab.models.registry import family_entry, load_factory
from scalelab.spec import pretraining_cells


@dataclass(frozen=True)
class CellShape:
    """What a cell will train on: its sample count and the data's shape."""

    n_train: int
    input_shape: tuple[int, ...]
    n_classes: int
    text: bool = False  # samples are token windows, each trained on once


@dataclass(frozen=True)
class CellEstimate:
    cell_id: str
    params: dict
    n_train: int
    n_params: int
    flops_per_sample: float
    flops: float
    seconds: float


# What a study's [target] metric may name: a number every run of some family records.
TARGET_METRICS = (
    "train_loss", "test_loss", "test_error", "val_loss", "val_error",
    "worst_class_error", "best_class_error", "class_error_gap", "worst_group_error", "group_error_gap",
    "test_loss_before_compression", "test_error_before_compression",
)  # fmt: skip


def check_target(spec) -> None:
    """The study's ``[target] metric`` is one that runs record (an unknown name would train
    the whole grid before the first fit said so)."""
    metric = spec.target_metric
    if metric in TARGET_METRICS or metric.startswith("pretrain_"):
        return
    match = closest(metric, TARGET_METRICS)
    hint = f"; did you mean {match!r}?" if match else f"; known: {', '.join(TARGET_METRICS)}"
    raise InputError(f"{spec.source}: target.metric = {metric!r} is not a metric runs record{hint}")


def check_devices(spec) -> None:
    """A cell asking for CUDA on a machine without it fails before anything is written
    (the local executor trains here; a Ray cluster's workers may have the GPUs)."""
    import torch

    for cell in spec.cells:
        device = str(cell.config["train"].get("device", "auto"))
        if device.startswith("cuda") and not torch.cuda.is_available():
            where = f" (cell {json.dumps(cell.params)})" if cell.params else ""
            raise InputError(f"{spec.source}: train.device = {device!r} but CUDA is not available on this machine{where}")


def preflight(spec, *, local: bool = True) -> dict[str, CellShape]:
    """Load each dataset the study uses, check every cell's rows, and import user factories.

    Raises :class:`InputError` naming the study file (and the cell's grid values) when a
    dataset cannot be loaded, a cell's subsample, validation split or data-quality
    settings cannot be met, or a ``python:`` model factory cannot be imported. The
    ``[pretrain]`` stage's runs are checked the same way (their shapes are keyed
    ``pretrain:<id>``), and so is that their weights fit the cells that start from them.
    The target metric must be one runs record, and with ``local`` (cells train on this
    machine) a cell that asks for CUDA needs it here.
    """
    check_target(spec)
    if local:
        check_devices(spec)
    datasets: dict[str, object] = {}
    shapes: dict[str, CellShape] = {}
    factories: set[str] = set()
    for cell in [*spec.cells, *pretraining_cells(spec)]:
        data_cfg = cell.config["data"]
        key = dataset_key(data_cfg)
        where = f" (cell {json.dumps(cell.params)})" if cell.params else ""
        try:
            if key not in datasets:
                datasets[key] = load_dataset(data_cfg)
            dataset = datasets[key]
            if is_token_dataset(dataset):
                shapes[cell.cell_id] = _text_shape(spec, cell, dataset)
            else:
                plan = plan_rows(dataset.y_train, n_classes=dataset.n_classes, quality=DataQuality.of(data_cfg))
                shapes[cell.cell_id] = CellShape(len(plan.train_rows), dataset.input_shape, dataset.n_classes)
                if "federated" in cell.config:  # more clients than samples, an empty Dirichlet client
                    from scalelab.train.federated_trainer import client_partition

                    client_partition(dataset.y_train[plan.train_rows], cell.config["federated"], seed=int(cell.config["train"]["seed"]))
        except DatasetError as exc:
            raise InputError(f"{spec.source}: {exc}{where}") from None
        family = cell.config["model"]["family"]
        if family_entry(family).framework == "python" and family not in factories:
            try:
                load_factory(family)
            except InputError as exc:
                raise InputError(f"{spec.source}: model.family: {exc}") from None
            factories.add(family)
    _check_checkpoints(spec, shapes)
    _check_pretraining(spec, shapes)
    return shapes


def _text_shape(spec, cell, dataset) -> CellShape:
    """A text cell's windows (:func:`scalelab.data.tokens.token_plan`); a FLOP budget is
    turned into tokens by the model's measured FLOPs per token, as the trainer will."""
    from scalelab.data.tokens import needs_flops_per_token, token_plan
    from scalelab.data.view import cell_inputs

    data_cfg = cell.config["data"]
    input_shape, n_classes = cell_inputs(dataset, data_cfg)
    shape = CellShape(0, input_shape, n_classes, text=True)
    flops_per_token = None
    if needs_flops_per_token(data_cfg):
        from scalelab.train.torch_trainer import token_flops

        flops_per_token = token_flops(_build_checked(spec, cell, shape), input_shape[0])
    plan = token_plan(dataset, data_cfg, batch_size=cell.config["train"]["batch_size"], flops_per_token=flops_per_token)
    return CellShape(plan.n_windows, input_shape, n_classes, text=True)


def _check_checkpoints(spec, shapes: dict[str, CellShape]) -> None:
    """Every ``init_from`` checkpoint loads (weights only) and fits its cells' models."""
    checked: set[str] = set()
    weights: dict[str, dict] = {}
    for cell in spec.cells:
        path = cell.config["train"].get("init_from")
        if path is None or "pretrain" in cell.config:
            continue
        shape = shapes[cell.cell_id]
        key = json.dumps([path, cell.config["model"], shape.input_shape, shape.n_classes])
        if key in checked:
            continue
        from scalelab.train.checkpoints import apply_weights, load_weights

        try:
            if path not in weights:
                weights[path] = load_weights(path)
            apply_weights(_build_checked(spec, cell, shape), weights[path], source=path)
        except InputError as exc:
            raise InputError(f"{spec.source}: train.init_from: {exc}") from None
        checked.add(key)


def _check_pretraining(spec, shapes: dict[str, CellShape]) -> None:
    """A pretrained model's weights load into the model of each cell that starts from
    them: the same family and knobs, on inputs of the same shape (the head may differ)."""
    from scalelab.spec import pretrain_id
    from scalelab.train.checkpoints import apply_weights

    checked: set[tuple] = set()
    sources = {c.cell_id: c for c in pretraining_cells(spec)}
    for cell in spec.cells:
        checkpoint_id = pretrain_id(cell.config)
        if checkpoint_id is None:
            continue
        source = sources[f"pretrain:{checkpoint_id}"]
        source_shape, shape = shapes[source.cell_id], shapes[cell.cell_id]
        # Cells sharing a checkpoint may still differ in their data's shape (a swept option).
        key = (checkpoint_id, shape.input_shape, shape.n_classes)
        if key in checked:
            continue
        pretrained = _build_checked(spec, source, source_shape)
        try:
            apply_weights(_build_checked(spec, cell, shape), pretrained.state_dict(), source="pretrained checkpoint")
        except InputError as exc:
            raise InputError(
                f"{spec.source}: [pretrain] data of shape {source_shape.input_shape} gives a model whose weights do not fit "
                f"the cells' model on data of shape {shape.input_shape} ({exc})"
            ) from None
        checked.add(key)


def estimate_grid(spec, shapes: dict[str, CellShape], *, workers: int, calibrate_s: float = 10.0, cells=None) -> list[CellEstimate]:
    """Per-cell parameter count, measured FLOPs and estimated seconds (one worker's view).

    Each distinct torch model (family, knobs, input shape, batch size, precision) is
    built once; its FLOPs per sample are counted with ``FlopCounterMode`` and its speed
    is timed over a few training steps with the threads one worker would get. Models not
    timed within ``calibrate_s`` use the median FLOP/s of those that were; with
    ``calibrate_s = 0`` nothing is timed and ``seconds`` is a rough guess from FLOPs alone.

    scikit-learn estimators are not measured before they are fitted: their ``n_params``
    is an upper bound from the knobs and their ``flops`` a rough count of the fit's
    operations (see :func:`_sklearn_estimate`), good for ordering cells and little else.

    ``cells``: the cells to estimate, by default the study's (pass
    :func:`~scalelab.spec.pretraining_cells` for its ``[pretrain]`` stage).

    Raises :class:`InputError` when a family cannot be built for the data (a
    convolutional family on tabular data) or a ``python:`` factory fails.
    """
    import torch

    from scalelab.execute.threads import fair_share
    from scalelab.models import count_parameters, is_torch_model
    from scalelab.train.flops import training_step_flops
    from scalelab.train.torch_trainer import planned_epochs

    torch.set_num_threads(fair_share(workers))
    measured: dict[str, tuple] = {}  # key -> ("torch", n_params, flops/sample, flop/s) or ("sklearn", estimator)
    model_of: dict[str, str] = {}  # cell id -> key
    budget_end = time.perf_counter() + calibrate_s
    cells = spec.cells if cells is None else cells
    for cell in cells:
        shape = shapes[cell.cell_id]
        train = cell.config["train"]
        batch = min(train.get("batch_size", shape.n_train), shape.n_train)
        key = json.dumps([cell.config["model"], shape.input_shape, shape.n_classes, shape.text, batch, train.get("precision")])
        model_of[cell.cell_id] = key
        if key in measured:
            continue
        model = _build_checked(spec, cell, shape)
        if not is_torch_model(model):
            measured[key] = ("sklearn", model)
            continue
        if shape.text:  # token windows and their next tokens
            inputs = torch.randint(0, shape.n_classes, (batch, *shape.input_shape))
            targets = torch.randint(0, shape.n_classes, (batch, *shape.input_shape))
        else:
            inputs = torch.rand(batch, *shape.input_shape)
            targets = torch.randint(0, shape.n_classes, (batch,))
        try:
            flops_per_sample = training_step_flops(model, inputs, targets) / batch
        except Exception as exc:
            if family_entry(cell.config["model"]["family"]).framework != "python":
                raise  # a built-in family that cannot train one batch is a bug, not bad input
            raise InputError(
                f"{spec.source}: {cell.config['model']['family']}: the model cannot train on a batch of shape "
                f"{tuple(inputs.shape)} with {shape.n_classes} classes ({type(exc).__name__}: {' '.join(str(exc).split())})"
            ) from None
        speed = None
        if time.perf_counter() < budget_end:
            speed = _time_steps(model, inputs, targets, train) * flops_per_sample
        measured[key] = ("torch", count_parameters(model), flops_per_sample, speed)

    speeds = sorted(m[3] for m in measured.values() if m[0] == "torch" and m[3])
    fallback = speeds[len(speeds) // 2] if speeds else 1e10
    estimates = []
    for cell in cells:
        shape = shapes[cell.cell_id]
        train = cell.config["train"]
        entry = measured[model_of[cell.cell_id]]
        if entry[0] == "sklearn":
            n_params, operations, seconds = _sklearn_estimate(entry[1], shape)
            estimates.append(CellEstimate(cell.cell_id, cell.params, shape.n_train, n_params, 0.0, operations, seconds))
            continue
        _, n_params, flops_per_sample, speed = entry
        batch = min(train["batch_size"], shape.n_train)
        if "federated" in cell.config:
            # Each round, m of K clients train local_epochs over their share of the data.
            from scalelab.train.federated import clients_per_round

            fed = cell.config["federated"]
            share = clients_per_round(fed["clients"], fed["participation"]) / fed["clients"]
            epochs = fed["rounds"] * fed["local_epochs"] * share
        else:
            epochs = 1 if shape.text else planned_epochs(shape.n_train, batch, train)
        flops = flops_per_sample * shape.n_train * epochs
        estimates.append(
            CellEstimate(cell.cell_id, cell.params, shape.n_train, n_params, flops_per_sample, flops, flops / (speed or fallback))
        )
    return estimates


def _build_checked(spec, cell, shape: CellShape):
    """A cell's model built with seed 0; a family that cannot take this data is an input error."""
    from scalelab.models import build_model

    family = cell.config["model"]["family"]
    user_code = family_entry(family).framework == "python"
    # Built-in builders reject shapes they cannot take with ValueError; a user's factory may raise anything.
    rejected = Exception if user_code else (ValueError, TypeError)
    try:
        return build_model(cell.config["model"], shape.input_shape, shape.n_classes, seed=0)
    except InputError as exc:
        raise InputError(f"{spec.source}: model.family: {exc}") from None
    except rejected as exc:
        where = f" (cell {json.dumps(cell.params)})" if cell.params else ""
        message = " ".join(str(exc).split())
        if user_code:
            raise InputError(
                f"{spec.source}: {family} raised {type(exc).__name__}: {message}; "
                f"it was called with input shape {shape.input_shape} and {shape.n_classes} classes{where}"
            ) from None
        raise InputError(f"{spec.source}: model family {family!r}: {message}{where}") from None


# Rough fit speeds of scikit-learn estimators on one core, in the operations counted by
# _sklearn_estimate; measured on digits and CIFAR-sized random data, within a factor of a few.
SKLEARN_OPS_PER_S = {"tree": 1e8, "gbdt": 6e7, "other": 1e8}


def _sklearn_estimate(estimator, shape: CellShape) -> tuple[int, float, float]:
    """(upper bound on parameters, operations, seconds) of fitting ``estimator`` on the cell's data.

    A tree sorts every feature at each of about log2(n) levels: n·F·log2(n)² operations,
    at most 2·leaves − 1 nodes. Histogram boosting fills one histogram per tree and
    round: rounds·trees·n·F operations, at most rounds·trees·leaves leaves (one tree per
    class and round, one in all for two classes). Anything else: one pass, n·F.
    """
    n, features = shape.n_train, math.prod(shape.input_shape)
    log_n = math.log2(max(n, 2))
    name = type(estimator).__name__
    if name == "DecisionTreeClassifier":
        leaves = estimator.max_leaf_nodes or n
        return 2 * leaves - 1, n * features * log_n**2, n * features * log_n**2 / SKLEARN_OPS_PER_S["tree"]
    if name == "HistGradientBoostingClassifier":
        trees = estimator.max_iter * (shape.n_classes if shape.n_classes > 2 else 1)
        operations = trees * n * features
        return trees * estimator.max_leaf_nodes, operations, operations / SKLEARN_OPS_PER_S["gbdt"]
    return 0, float(n * features), n * features / SKLEARN_OPS_PER_S["other"]


def _time_steps(model, inputs, targets, train: dict, steps: int = 3) -> float:
    """Training samples per second of ``model`` on one batch, after one warm-up step."""
    import torch

    from scalelab.train.torch_trainer import autocast_for, training_rate

    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    return training_rate(model, inputs, targets, optimizer, autocast_for(train["precision"], inputs.device), steps=steps)
