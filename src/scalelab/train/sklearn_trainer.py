"""The scikit-learn fit path: one cell, on the same data view as the torch trainer.

Inputs are flattened to (n, features). The estimator is fitted once on the cell's
training data, with the worker's thread budget applied to scikit-learn's OpenMP and
BLAS pools. Wall time is recorded; FLOPs are not measured for scikit-learn models, so
``flops`` is null and ``compute`` holds the fit's wall seconds instead
(``compute_unit = "seconds"``). Losses are the mean log loss of the predicted
probabilities, clipped at 1e-15 as scikit-learn's ``log_loss`` long did, so a tree's
confident mistakes cost a finite 34.5 each.
"""

from __future__ import annotations

import math
import time

import numpy as np
import sklearn
from threadpoolctl import threadpool_limits

from scalelab.data import Dataset, training_view
from scalelab.models import build_model
from scalelab.models.sklearn_models import fitted_parameter_count
from scalelab.train.class_metrics import prediction_metrics
from scalelab.train.outcome import CellOutcome

PROBABILITY_FLOOR = 1e-15


def train_cell(config: dict, dataset: Dataset, *, model=None, threads: int | None = None) -> CellOutcome:
    """Fit and evaluate one resolved cell whose family is a scikit-learn estimator.

    ``model`` is the unfitted estimator when the caller has built it already; otherwise
    it is built here. ``threads`` caps scikit-learn's thread pools (default: the torch
    thread count, which the local executor sets per worker).
    """
    started = time.perf_counter()
    seed = int(config["train"]["seed"])
    view = training_view(dataset, config["data"])
    if model is None:
        model = build_model(config["model"], view.input_shape, view.n_classes, seed=seed)
    threads = threads or _worker_threads()
    X_train, X_test, X_val = (_flat(X) for X in (view.X_train, view.X_test, view.X_val))

    with threadpool_limits(limits=threads):
        fit_started = time.perf_counter()
        model.fit(X_train, view.y_train)
        train_s = time.perf_counter() - fit_started
        train_loss, _ = _loss_and_error(model, X_train, view.y_train, view.n_classes)
        test_loss, test_error, test_predicted = _loss_error_predictions(model, X_test, view.y_test, view.n_classes)
        val = _loss_and_error(model, X_val, view.y_val, view.n_classes) if view.has_validation else None

    n_train = len(view.y_train)
    metrics = dict(
        train_loss=train_loss,
        test_loss=test_loss,
        test_error=test_error,
        n_params=fitted_parameter_count(model),
        n_train=n_train,
        n_test=int(len(view.y_test)),
        flops=None,
        flops_per_sample=None,
        eval_flops=None,
        train_s=train_s,
        wall_s=time.perf_counter() - started,
        samples_per_s=n_train / train_s if train_s > 0 else float("nan"),
        flops_per_s=None,
        compute=train_s,
        compute_unit="seconds",
        device="cpu",
        device_name=_cpu_name(),
        dtype="float32",
        seed=seed,
        threads=threads,
        sklearn_version=sklearn.__version__,
    )
    metrics.update(prediction_metrics(view, test_predicted))
    if val is not None:
        metrics.update(val_loss=val[0], val_error=val[1], n_val=int(len(view.y_val)))
    if len(view.train_rows) != view.n_distinct:
        metrics["n_distinct"] = view.n_distinct
    n_iter = getattr(model, "n_iter_", None)
    if isinstance(n_iter, (int, np.integer)):
        metrics["steps"] = int(n_iter)  # boosting rounds actually run
    return CellOutcome(state="done", metrics=metrics)


def _flat(X: np.ndarray) -> np.ndarray:
    return X.reshape(len(X), math.prod(X.shape[1:]))  # explicit width: -1 fails on an empty array


def _cpu_name() -> str:
    """The processor's model, found as the torch trainer finds it (imported here, on use,
    so that importing this module stays free of torch)."""
    from scalelab.train.torch_trainer import cpu_name

    return cpu_name()


def _worker_threads() -> int:
    import torch

    return torch.get_num_threads()


def _loss_and_error(model, X: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[float, float]:
    """Mean log loss (NaN without ``predict_proba``) and error rate of a fitted estimator."""
    loss, error, _ = _loss_error_predictions(model, X, y, n_classes)
    return loss, error


def _loss_error_predictions(model, X: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[float, float, np.ndarray]:
    """Mean log loss (NaN without ``predict_proba``), error rate and predicted classes."""
    if callable(getattr(model, "predict_proba", None)):
        proba = _full_probabilities(model, model.predict_proba(X), n_classes)
        # + 0.0 turns the -0.0 of a perfect fit into 0.0
        loss = float(-np.mean(np.log(np.maximum(proba[np.arange(len(y)), y], PROBABILITY_FLOOR)))) + 0.0
        predicted = proba.argmax(axis=1)
    else:
        loss = math.nan
        predicted = np.asarray(model.predict(X))
    return loss, float(np.mean(predicted != y)), predicted


def _full_probabilities(model, proba: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities for every class, where the estimator only knows the classes it saw."""
    classes = np.asarray(getattr(model, "classes_", np.arange(proba.shape[1])))
    if proba.shape[1] == n_classes and np.array_equal(classes, np.arange(n_classes)):
        return proba
    full = np.zeros((len(proba), n_classes))
    full[:, classes.astype(np.int64)] = proba
    return full
