"""Train one cell of a study with a ``[federated]`` section: its training set split among
clients, federated rounds (``scalelab.train.federated``), and the metrics a federated
scaling study needs besides the usual ones.

What a federated run records, beyond a torch run's metrics:

- ``clients``, ``rounds``, ``clients_per_round``, ``local_epochs``, ``client_samples``
  (the smallest, median and largest client), ``label_skew`` (the mean total-variation
  distance of the clients' label mixes from the whole set's);
- ``bytes_up`` and ``bytes_down``: weights sent over the whole run (float32);
- ``client_error``: each client's test error, the global model's per-class test error
  weighted by that client's own label mix (the error on test data drawn as its data is);
  ``worst_client_error``, ``best_client_error``, ``client_error_gap``;
- with privacy: ``epsilon`` at ``delta``, from the accountant.

The FLOPs are the training step's measured FLOPs per sample times every sample every
sampled client trained on.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from scalelab.data import Dataset, training_view
from scalelab.data.partition import label_skew, partition_clients
from scalelab.models import build_model, count_parameters
from scalelab.train.compress import size_metrics
from scalelab.train.federated import (
    FederatedSettings,
    clients_per_round,
    federated_train,
    load_parameters,
)
from scalelab.train.flops import forward_flops, training_step_flops
from scalelab.train.outcome import CellOutcome
from scalelab.train.privacy import client_level_epsilon
from scalelab.train.torch_trainer import (
    autocast_for,
    evaluate_into,
    resolve_device,
    run_metrics,
    synchronize,
)


def client_partition(y_train: np.ndarray, federated: dict, *, seed: int) -> list[np.ndarray]:
    """The clients' shares of a cell's training rows, as its ``[federated]`` section asks."""
    return partition_clients(y_train, clients=federated["clients"], scheme=federated["partition"], alpha=federated.get("alpha"),
                             classes_per_client=federated.get("classes_per_client"), seed=seed)  # fmt: skip


def settings_of(config: dict) -> FederatedSettings:
    """The simulation's settings from a resolved cell configuration."""
    fed, train = config["federated"], config["train"]
    return FederatedSettings(rounds=fed["rounds"], participation=fed["participation"], local_epochs=fed["local_epochs"],
                             batch_size=train["batch_size"], lr=train["lr"], aggregation=fed["aggregation"], mu=fed["mu"],
                             noise_multiplier=fed.get("noise_multiplier"), clip_norm=fed.get("clip_norm"), seed=int(train["seed"]))  # fmt: skip


def client_errors(class_error: list, mixes: np.ndarray) -> list[float]:
    """Each client's expected test error: the per-class errors weighted by its label mix
    (classes absent from the test set count for nothing and the weights are renormalised)."""
    errors = np.array([np.nan if e is None else e for e in class_error], dtype=float)
    present = np.isfinite(errors)
    weights = mixes[:, present]
    return (weights @ errors[present] / weights.sum(axis=1).clip(min=1e-12)).tolist()


def train_federated_cell(config: dict, dataset: Dataset) -> CellOutcome:
    """Train and evaluate one federated cell on an already loaded dataset."""
    started = time.perf_counter()
    fed, train_cfg = config["federated"], config["train"]
    seed = int(train_cfg["seed"])
    device = resolve_device(train_cfg["device"])
    autocast = autocast_for("fp32", device)
    view = training_view(dataset, config["data"])
    parts = client_partition(view.y_train, fed, seed=seed)
    model = build_model(config["model"], view.input_shape, view.n_classes, seed=seed).to(device)
    X = torch.from_numpy(view.X_train).to(device)
    y = torch.from_numpy(view.y_train).to(device)
    settings = settings_of(config)
    probe = min(settings.batch_size, len(y))
    flops_per_sample = training_step_flops(model, X[:probe], y[:probe]) / probe
    eval_flops_per_sample = forward_flops(model, torch.from_numpy(view.X_test[:1]).to(device))

    synchronize(device)
    train_started = time.perf_counter()
    if fed.get("engine") == "flower":
        from scalelab.train.flower_engine import flower_train

        params, history = flower_train(model, X, y, parts, settings)
    else:
        params, history = federated_train(model, X, y, parts, settings)
    synchronize(device)
    train_s = time.perf_counter() - train_started

    outcome = CellOutcome(state="done")
    final_loss = history.mean_client_loss[-1]
    if not np.isfinite(final_loss) or not all(torch.isfinite(p).all() for p in params.values()):
        outcome.state, outcome.reason = "diverged", "non-finite client loss or weights after federated training"
    load_parameters(model, params)
    X_test = torch.from_numpy(view.X_test).to(device)
    y_test = torch.from_numpy(view.y_test).to(device)
    evaluate_into(outcome, model, view, X_test, y_test, autocast=autocast, steps=history.local_steps)
    outcome.metrics.update(size_metrics(model))

    # Every sample of every sampled client, local_epochs times a round.
    samples = sum(len(parts[k]) for chosen in history.sampled for k in chosen) * settings.local_epochs
    metrics = run_metrics(train_loss=final_loss, n_params=count_parameters(model), n_train=len(y), n_test=len(y_test),
                          epochs=settings.rounds * settings.local_epochs, steps=history.local_steps, batch_size=settings.batch_size,
                          flops_per_sample=flops_per_sample, eval_flops_per_sample=eval_flops_per_sample, train_s=train_s,
                          wall_s=time.perf_counter() - started, device=device, precision="fp32")  # fmt: skip
    # run_metrics counts samples as whole batches of one model; a federated run's are the clients' own.
    metrics.update(flops=float(flops_per_sample * samples), compute=float(flops_per_sample * samples), samples=int(samples),
                   samples_per_s=samples / train_s if train_s > 0 else float("nan"),
                   flops_per_s=flops_per_sample * samples / train_s if train_s > 0 else float("nan"))  # fmt: skip
    outcome.metrics.update(metrics)
    sizes = np.array([len(p) for p in parts])
    mixes = np.stack([np.bincount(view.y_train[p], minlength=view.n_classes) / len(p) for p in parts])
    errors = client_errors(outcome.metrics["class_error"], mixes)
    outcome.metrics.update(
        clients=int(fed["clients"]), rounds=int(settings.rounds), clients_per_round=clients_per_round(fed["clients"], settings.participation),
        local_epochs=int(settings.local_epochs), client_samples=[int(sizes.min()), float(np.median(sizes)), int(sizes.max())],
        label_skew=label_skew(view.y_train, parts), bytes_up=int(history.bytes_up), bytes_down=int(history.bytes_down),
        client_error=errors, worst_client_error=float(max(errors)), best_client_error=float(min(errors)),
        client_error_gap=float(max(errors) - min(errors)),
    )  # fmt: skip
    if settings.private:
        outcome.metrics.update(delta=float(fed["delta"]), epsilon=client_level_epsilon(
            noise_multiplier=settings.noise_multiplier, sample_rate=clients_per_round(fed["clients"], settings.participation) / fed["clients"],
            rounds=settings.rounds, delta=fed["delta"]))  # fmt: skip
    return outcome
