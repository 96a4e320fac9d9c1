"""User code that studies name as ``python:tests.fixtures:NAME`` (run from the repository root).

Model factories are called as ``factory(input_shape, n_classes, **model_params)``;
dataset functions as ``function(**data_options)``.
"""

from __future__ import annotations

import math

import numpy as np


# -- model factories ----------------------------------------------------------------------
def make_net(input_shape, n_classes, *, hidden=32, layers=1):
    """A small torch MLP: the user's own model family, sized by ``hidden``."""
    from torch import nn

    stack = [nn.Flatten()]
    fan_in = math.prod(input_shape)
    for _ in range(layers):
        stack += [nn.Linear(fan_in, hidden), nn.Tanh()]
        fan_in = hidden
    stack.append(nn.Linear(fan_in, n_classes))
    return nn.Sequential(*stack)


def make_forest(input_shape, n_classes, *, n_estimators=5, max_depth=None):
    """A scikit-learn estimator factory (left unseeded: scalelab seeds it per cell)."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth)


def make_logistic(input_shape, n_classes, *, C=1.0):
    """A linear scikit-learn model: its parameters are its coefficients."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=200)


def dies_once_on_cue(input_shape, n_classes, *, cue_dir: str, hidden=32):
    """A torch MLP whose worker process dies, once, when ``cue_dir/die`` exists: the
    first build in a worker after the cue leaves ``cue_dir/died`` and exits without a
    word, as a worker killed by the system would. Every other build (the coordinator's,
    which counts the model's FLOPs before any worker starts, included) is an ordinary model."""
    import multiprocessing
    import os
    from pathlib import Path

    cue = Path(cue_dir)
    in_worker = multiprocessing.current_process().name != "MainProcess"
    if in_worker and (cue / "die").exists() and not (cue / "died").exists():
        (cue / "died").write_text(str(os.getpid()))
        os._exit(1)
    return make_net(input_shape, n_classes, hidden=hidden)


def fails_in_workers(input_shape, n_classes, *, fail: bool = False, hidden=32):
    """A torch MLP that, with ``fail``, raises when a worker builds it: the cell fails with
    a traceback, while the coordinator (which builds it once to count its FLOPs) goes on."""
    import multiprocessing

    if fail and multiprocessing.current_process().name != "MainProcess":
        raise RuntimeError("this model fails in its worker on purpose")
    return make_net(input_shape, n_classes, hidden=hidden)


def not_a_model(input_shape, n_classes):
    return "a string is not a model"


def broken_factory(input_shape, n_classes):
    raise RuntimeError("this factory is broken on purpose")


NOT_CALLABLE = 42


# -- dataset functions --------------------------------------------------------------------
def blobs(n_samples=300, n_classes=3, n_features=5, seed=0):
    """(X, y): Gaussian blobs, one per class; the caller's split gives the test set."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % n_classes
    centres = rng.normal(0, 3, size=(n_classes, n_features))
    return centres[y] + rng.normal(size=(n_samples, n_features)), y


def blobs_bunch(n_samples=300):
    """A scikit-learn Bunch with ``data`` and ``target``."""
    from sklearn.utils import Bunch

    X, y = blobs(n_samples=n_samples)
    return Bunch(data=X, target=y)


def blobs_with_test_split():
    """(X_train, y_train, X_test, y_test)."""
    X, y = blobs(n_samples=400)
    return X[:300], y[:300], X[300:], y[300:]


def digits_as_lists():
    """Plain Python lists work too."""
    X, y = blobs(n_samples=60)
    return X.tolist(), y.tolist()


def nan_features():
    X, y = blobs()
    X[7, 2] = np.nan
    return X, y


def single_class():
    X, _ = blobs()
    return X, np.zeros(len(X), dtype=int)


def fractional_labels():
    X, y = blobs()
    return X, y + 0.5


def mismatched_lengths():
    X, y = blobs()
    return X, y[:-3]


def returns_a_string():
    return "not a dataset"


def raises_error():
    raise ValueError("no data today")


def wrong_output_net(input_shape, n_classes):
    """A torch module that forgets to flatten: its output is not (batch, n_classes)."""
    from torch import nn

    return nn.Linear(input_shape[-1], n_classes)
