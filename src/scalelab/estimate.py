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

from scalelab.data import dataset_key, load_dataset, nested_subsample
from scalelab.errors import DatasetError, InputError


@dataclass(frozen=True)
class CellShape:
    """What a cell will train on: its sample count and the data's shape."""

    n_train: int
    input_shape: tuple[int, ...]
    n_classes: int


@dataclass(frozen=True)
class CellEstimate:
    cell_id: str
    params: dict
    n_train: int
    n_params: int
    flops_per_sample: float
    flops: float
    seconds: float


def preflight(spec) -> dict[str, CellShape]:
    """Load each dataset the study uses and check every cell's subsample.

    Raises :class:`InputError` naming the study file and the cell's grid values when a
    dataset cannot be loaded or a subsample loses a class.
    """
    datasets: dict[str, object] = {}
    shapes: dict[str, CellShape] = {}
    for cell in spec.cells:
        data_cfg = cell.config["data"]
        key = dataset_key(data_cfg)
        try:
            if key not in datasets:
                datasets[key] = load_dataset(data_cfg)
            dataset = datasets[key]
            rows = nested_subsample(dataset.y_train, data_cfg["data_fraction"], seed=data_cfg["subsample_seed"])
        except DatasetError as exc:
            where = f" (cell {json.dumps(cell.params)})" if cell.params else ""
            raise InputError(f"{spec.source}: {exc}{where}") from None
        shapes[cell.cell_id] = CellShape(len(rows), dataset.input_shape, dataset.n_classes)
    return shapes


def estimate_grid(spec, shapes: dict[str, CellShape], *, workers: int, calibrate_s: float = 10.0) -> list[CellEstimate]:
    """Per-cell parameter count, measured FLOPs and estimated seconds (one worker's view).

    Each distinct model (family, knobs, input shape, batch size, precision) is built
    once; its FLOPs per sample are counted with ``FlopCounterMode`` and its speed is
    timed over a few training steps with the threads one worker would get. Models not
    timed within ``calibrate_s`` use the median FLOP/s of those that were; with
    ``calibrate_s = 0`` nothing is timed and ``seconds`` is a rough guess from FLOPs alone.
    """
    import torch

    from scalelab.execute.local import threads_per_worker
    from scalelab.models import build_model, count_parameters
    from scalelab.train.flops import training_step_flops
    from scalelab.train.torch_trainer import planned_epochs

    torch.set_num_threads(threads_per_worker(workers))
    measured: dict[str, tuple[int, float, float | None]] = {}  # key -> (n_params, flops/sample, flop/s)
    model_of: dict[str, str] = {}  # cell id -> key
    budget_end = time.perf_counter() + calibrate_s
    for cell in spec.cells:
        shape = shapes[cell.cell_id]
        train = cell.config["train"]
        batch = min(train["batch_size"], shape.n_train)
        key = json.dumps([cell.config["model"], shape.input_shape, shape.n_classes, batch, train["precision"]])
        model_of[cell.cell_id] = key
        if key in measured:
            continue
        torch.manual_seed(0)
        model = build_model(cell.config["model"], shape.input_shape, shape.n_classes)
        inputs = torch.rand(batch, *shape.input_shape)
        targets = torch.randint(0, shape.n_classes, (batch,))
        flops_per_sample = training_step_flops(model, inputs, targets) / batch
        speed = None
        if time.perf_counter() < budget_end:
            speed = _time_steps(model, inputs, targets, train) * flops_per_sample
        measured[key] = (count_parameters(model), flops_per_sample, speed)

    speeds = sorted(s for *_, s in measured.values() if s)
    fallback = speeds[len(speeds) // 2] if speeds else 1e10
    estimates = []
    for cell in spec.cells:
        shape = shapes[cell.cell_id]
        train = cell.config["train"]
        n_params, flops_per_sample, speed = measured[model_of[cell.cell_id]]
        batch = min(train["batch_size"], shape.n_train)
        flops = flops_per_sample * shape.n_train * planned_epochs(shape.n_train, batch, train)
        estimates.append(
            CellEstimate(cell.cell_id, cell.params, shape.n_train, n_params, flops_per_sample, flops, flops / (speed or fallback))
        )
    return estimates


def _time_steps(model, inputs, targets, train: dict, steps: int = 3) -> float:
    """Training samples per second of ``model`` on one batch, after one warm-up step."""
    import contextlib

    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if train["precision"] == "bf16" else contextlib.nullcontext()

    def step():
        with autocast:
            loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    return steps * len(inputs) / elapsed if elapsed > 0 else math.inf
