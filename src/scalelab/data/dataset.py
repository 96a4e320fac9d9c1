"""The in-memory dataset every trainer consumes, and the checks that make it trustworthy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalelab.errors import DatasetError


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays of one classification dataset, held in memory.

    ``X_*`` are float32 with shape ``(n, *input_shape)``; ``y_*`` are int64 class indices
    in ``[0, n_classes)``.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])


def checked_dataset(name: str, X_train, y_train, X_test, y_test, *, n_classes: int | None = None) -> Dataset:
    """Validate raw arrays once and return them as a :class:`Dataset`.

    Raises :class:`DatasetError` naming ``name`` and the problem: mismatched lengths,
    NaN or inf features, non-integer or out-of-range labels, or a single class.
    """
    arrays = {}
    for split, X, y in (("train", X_train, y_train), ("test", X_test, y_test)):
        X = np.asarray(X)
        y = np.asarray(y)
        if X.ndim < 2:
            raise DatasetError(f"{name}: {split} features must have a sample axis and at least one feature, got shape {X.shape}")
        if y.ndim != 1:
            raise DatasetError(f"{name}: {split} labels must be one-dimensional, got shape {y.shape}")
        if len(X) != len(y):
            raise DatasetError(f"{name}: {split} has {len(X)} feature rows but {len(y)} labels")
        if len(y) == 0:
            raise DatasetError(f"{name}: {split} split is empty")
        if not np.issubdtype(X.dtype, np.number):
            raise DatasetError(f"{name}: {split} features are not numeric (dtype {X.dtype})")
        X = X.astype(np.float32, copy=False)
        if not np.isfinite(X).all():
            bad = int(np.argwhere(~np.isfinite(X).reshape(len(X), -1).all(axis=1))[0, 0])
            raise DatasetError(f"{name}: {split} features contain NaN or inf (first at row {bad})")
        if np.issubdtype(y.dtype, np.floating):
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise DatasetError(f"{name}: {split} labels must be integer class indices")
        elif not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"{name}: {split} labels must be integer class indices (dtype {y.dtype})")
        arrays[split] = (np.ascontiguousarray(X), y.astype(np.int64))
    (X_train, y_train), (X_test, y_test) = arrays["train"], arrays["test"]
    if X_train.shape[1:] != X_test.shape[1:]:
        raise DatasetError(f"{name}: train features have shape {X_train.shape[1:]} but test features {X_test.shape[1:]}")
    if n_classes is None:
        n_classes = int(max(y_train.max(), y_test.max())) + 1
    for split, y in (("train", y_train), ("test", y_test)):
        if y.min() < 0 or y.max() >= n_classes:
            raise DatasetError(f"{name}: {split} label {int(y.min() if y.min() < 0 else y.max())} is out of range [0, {n_classes})")
    if len(np.unique(y_train)) < 2:
        raise DatasetError(f"{name}: the training split has a single class; classification needs at least two")
    return Dataset(name=name, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test, n_classes=int(n_classes))
