"""Seed batching: the cells of a seed group train side by side as one vmapped model.

With ``[train] batch_seeds = true``, cells that differ only in their seed are handed to
one worker together. Their models' parameters are stacked (``torch.func``'s
``stack_module_state``) and a single ``vmap``-ed forward and backward pass trains them
all: one matmul per layer for every seed instead of one per seed, and one optimizer
step over the stacked tensors. Each seed keeps what a separate run would have had: its
own initialisation, its own shuffling generator, its own data subset, and the
optimizer's state, which is element-wise (Adam, AdamW, SGD with momentum), so each
seed's slice of it is exactly that seed's own. The losses are summed before the
backward pass; the gradient of a sum is each seed's own gradient, so a seed that
diverges (NaN) does not touch the others.

Results match separate runs within float tolerance (batched matrix products may sum in a
different order). Evaluation and every recorded metric go through the same functions as
a separate run; timings are the group's, shared out among its seeds by the samples each trained on.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from scalelab.data import Dataset, training_view
from scalelab.models import build_model, count_parameters
from scalelab.train.compress import size_metrics
from scalelab.train.flops import forward_flops, training_step_flops
from scalelab.train.outcome import CellOutcome
from scalelab.train.torch_trainer import (
    TRAINING_LOOP_RANGE,
    autocast_for,
    diverged_outcome,
    epoch_mean_loss,
    evaluate_into,
    make_optimizer,
    planned_epochs,
    resolve_device,
    resolve_precision,
    run_metrics,
    samples_seen,
    synchronize,
    train_cell,
)


def train_seed_group(configs: list[dict], dataset: Dataset) -> list[CellOutcome]:
    """Train the cells ``configs`` (equal but for their seeds) together; one outcome each,
    in order.

    Seeds whose training subsets differ in size (possible with some data-quality
    settings) cannot share a batch shape; they are then trained one after another.
    """
    started = time.perf_counter()
    views = [training_view(dataset, config["data"]) for config in configs]
    if len({len(view.y_train) for view in views}) > 1:
        return [train_cell(config, dataset) for config in configs]

    model_cfg, train_cfg = configs[0]["model"], configs[0]["train"]
    device = resolve_device(train_cfg["device"])
    precision = resolve_precision(train_cfg["precision"], device)
    autocast = autocast_for(precision, device)
    seeds = [int(config["train"]["seed"]) for config in configs]
    n_seeds = len(seeds)

    # One copy of the training data when every seed has the same subset (a fixed
    # subsample_seed); otherwise one slice per seed, indexed per seed below.
    shared = all(np.array_equal(v.X_train, views[0].X_train) and np.array_equal(v.y_train, views[0].y_train) for v in views)
    if shared:
        X = torch.from_numpy(views[0].X_train).to(device)
        y = torch.from_numpy(views[0].y_train).to(device)
    else:
        X = torch.from_numpy(np.stack([v.X_train for v in views])).to(device)
        y = torch.from_numpy(np.stack([v.y_train for v in views])).to(device)
    n_train = len(views[0].y_train)

    models = [build_model(model_cfg, views[0].input_shape, views[0].n_classes, seed=seed).to(device) for seed in seeds]
    params, buffers = stack_module_state(models)
    template = copy.deepcopy(models[0]).to("meta")  # the architecture, without storage

    def seed_loss(seed_params, seed_buffers, xb, yb):
        return F.cross_entropy(functional_call(template, (seed_params, seed_buffers), (xb,)), yb)

    batched_loss = vmap(seed_loss)
    optimizer = make_optimizer(list(params.values()), train_cfg)
    batch_size = min(train_cfg["batch_size"], n_train)
    X_one = X if shared else X[0]
    y_one = y if shared else y[0]
    flops_per_sample = training_step_flops(models[0], X_one[:batch_size], y_one[:batch_size]) / batch_size
    X_test_one = torch.from_numpy(views[0].X_test[:1]).to(device)
    eval_flops_per_sample = forward_flops(models[0], X_test_one)

    shufflers = [torch.Generator().manual_seed(seed) for seed in seeds]
    seed_rows = torch.arange(n_seeds, device=device).unsqueeze(1)
    steps_per_epoch = math.ceil(n_train / batch_size)
    epochs = planned_epochs(n_train, batch_size, train_cfg)
    outcomes = [CellOutcome(state="done") for _ in seeds]
    finished_at: list[tuple[int, int] | None] = [None] * n_seeds  # (epochs, steps) of a diverged seed
    train_loss = [float("nan")] * n_seeds
    epochs_done = 0

    synchronize(device)
    train_started = time.perf_counter()
    with torch.profiler.record_function(TRAINING_LOOP_RANGE):
        for epoch in range(epochs):
            orders = torch.stack([torch.randperm(n_train, generator=g) for g in shufflers]).to(device)
            step_losses = torch.empty(steps_per_epoch, n_seeds, device=device)
            for step in range(steps_per_epoch):
                index = orders[:, step * batch_size : (step + 1) * batch_size]
                xb, yb = (X[index], y[index]) if shared else (X[seed_rows, index], y[seed_rows, index])
                with autocast:
                    losses = batched_loss(params, buffers, xb, yb)
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()
                optimizer.step()
                step_losses[step] = losses.detach()
            epochs_done = epoch + 1
            finite = torch.isfinite(step_losses).cpu()  # one host sync per epoch
            means = epoch_mean_loss(step_losses, n_train, batch_size).tolist()
            for s in range(n_seeds):
                if finished_at[s] is not None:
                    continue
                if bool(finite[:, s].all()):
                    train_loss[s] = means[s]
                    continue
                outcomes[s] = diverged_outcome(epoch, steps_per_epoch, first_bad=int((~finite[:, s]).nonzero()[0, 0]))
                finished_at[s] = (epochs_done, outcomes[s].metrics["diverged_step"])
                # Evaluated as a separate run would be: right after the epoch it diverged in.
                _evaluate_seed(outcomes[s], models[s], params, s, views[s], autocast=autocast, steps=finished_at[s][1])
            if all(f is not None for f in finished_at):
                break
    synchronize(device)
    group_train_s = time.perf_counter() - train_started

    for s in range(n_seeds):
        if finished_at[s] is None:
            finished_at[s] = (epochs_done, epochs_done * steps_per_epoch)
            _evaluate_seed(outcomes[s], models[s], params, s, views[s], autocast=autocast, steps=finished_at[s][1])
    wall_s = time.perf_counter() - started
    n_params = count_parameters(models[0])
    seen = [samples_seen(n_train, batch_size, steps) for _, steps in finished_at]
    for s, outcome in enumerate(outcomes):
        seed_epochs, seed_steps = finished_at[s]
        # The group's time, shared by the samples each seed trained on (a seed that diverged
        # early trained on fewer), so every seed reports the group's rate of useful samples.
        share = seen[s] / (sum(seen) or 1)
        outcome.metrics.update(
            run_metrics(
                train_loss=train_loss[s],
                n_params=n_params,
                n_train=n_train,
                n_test=len(views[s].y_test),
                epochs=seed_epochs,
                steps=seed_steps,
                batch_size=batch_size,
                flops_per_sample=flops_per_sample,
                eval_flops_per_sample=eval_flops_per_sample,
                train_s=group_train_s * share,
                wall_s=wall_s * share,
                device=device,
                precision=precision,
            ),
            memory_format="contiguous",
            compiled=False,
            seed=seeds[s],
            seeds_batched=n_seeds,
            group_train_s=group_train_s,
        )
    return outcomes


def _evaluate_seed(outcome: CellOutcome, model: torch.nn.Module, params: dict, s: int, view, *, autocast, steps: int) -> None:
    """Copy seed ``s``'s slice of the stacked parameters into its own module and evaluate
    it with the same function a separate run uses."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(params[name][s])
    device = next(model.parameters()).device
    X_test = torch.from_numpy(view.X_test).to(device)
    y_test = torch.from_numpy(view.y_test).to(device)
    evaluate_into(outcome, model, view, X_test, y_test, autocast=autocast, steps=steps)
    outcome.metrics.update(size_metrics(model))
