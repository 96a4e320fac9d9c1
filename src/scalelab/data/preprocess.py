"""Feature preprocessing with statistics from a cell's training data only.

``scale`` maps the training minimum to 0 and the maximum to 1; ``standardize`` subtracts
the training mean and divides by the training standard deviation. Statistics are per
channel for inputs shaped (C, H, W) or (C, L), so an image's pixels share one scale
(CIFAR's 0–255 becomes exactly [0, 1]), and per feature for tabular inputs (F,). A
constant channel is only shifted, never divided by zero. Validation and test data are
transformed with the training statistics, so nothing about them leaks into training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PREPROCESSING = ("none", "scale", "standardize")


@dataclass(frozen=True)
class Preprocessor:
    """``(x - offset) / scale``, with ``offset`` and ``scale`` broadcastable over one sample."""

    method: str
    offset: np.ndarray | None = None
    scale: np.ndarray | None = None

    def apply_inplace(self, X: np.ndarray) -> np.ndarray:
        """Transform a float32 array in place (and return it)."""
        if self.method != "none":
            X -= self.offset
            X /= self.scale
        return X

    def transformed(self, X: np.ndarray) -> np.ndarray:
        """A float32 transformed copy of ``X`` (``X`` itself when there is nothing to do)."""
        if self.method == "none":
            return X if X.dtype == np.float32 else X.astype(np.float32)
        return self.apply_inplace(X.astype(np.float32))


def fit_preprocessor(X_train: np.ndarray, *, method: str) -> Preprocessor:
    """Statistics of ``method`` on the training array ``X_train`` (n, *input_shape)."""
    if method not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing {method!r}; use one of {', '.join(PREPROCESSING)}")
    if method == "none":
        return Preprocessor("none")
    # One statistic per channel (axis 1) for shaped inputs, per feature for flat ones.
    axes = (0,) if X_train.ndim == 2 else (0, *range(2, X_train.ndim))
    if method == "scale":
        low = X_train.min(axis=axes, keepdims=True).astype(np.float64)
        spread = X_train.max(axis=axes, keepdims=True).astype(np.float64) - low
    else:
        low, spread = mean_and_std(X_train, axes=axes)
    spread[spread == 0] = 1.0
    return Preprocessor(method, offset=low[0].astype(np.float32), scale=spread[0].astype(np.float32))


def mean_and_std(X: np.ndarray, *, axes: tuple[int, ...], chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over ``axes``, accumulated in float64 a chunk of rows at a time.

    Chunks keep the float64 temporaries small: a whole CIFAR training set in float64 is 1.2 GB.
    """
    total = np.zeros([1 if axis in axes else size for axis, size in enumerate(X.shape)], dtype=np.float64)
    squares = total.copy()
    for start in range(0, len(X), chunk):
        block = X[start : start + chunk].astype(np.float64)
        total += block.sum(axis=axes, keepdims=True)
        squares += np.square(block).sum(axis=axes, keepdims=True)
    count = X.size / total.size
    mean = total / count
    return mean, np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
