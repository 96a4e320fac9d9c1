"""The in-memory dataset every trainer consumes, and the checks that make it trustworthy."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from scalelab.errors import DatasetError


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays of one classification dataset, held in memory.

    ``X_*`` have shape ``(n, *input_shape)`` and are float32, or uint8 for 8-bit images
    (CIFAR), which take a quarter of the memory; every trainer reads them through
    :func:`scalelab.data.training_view`, which converts them. ``y_*`` are int64 class
    indices in ``[0, n_classes)``.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    groups_test: np.ndarray | None = None  # each test sample's group (strings), for per-group metrics

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])


def checked_dataset(name: str, X_train, y_train, X_test, y_test, *, n_classes: int | None = None) -> Dataset:
    """Validate raw arrays once and return them as a :class:`Dataset`.

    Features become float32, except uint8 ones, which are kept as they are.

    Raises :class:`DatasetError` naming ``name`` and the problem: mismatched lengths,
    NaN or inf features, non-integer or out-of-range labels, or a single class.
    """
    arrays = {split: checked_arrays(name, split, X, y) for split, X, y in (("train", X_train, y_train), ("test", X_test, y_test))}
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


def checked_arrays(name: str, split: str, X, y) -> tuple[np.ndarray, np.ndarray]:
    """One split's features and labels, checked and converted (float32 or uint8 features, int64 labels).

    Raises :class:`DatasetError` naming ``name``, ``split`` and the problem.
    """
    try:
        X = np.asarray(X)
        y = np.asarray(y)
    except (ValueError, TypeError) as exc:  # ragged lists, objects numpy cannot convert
        raise DatasetError(f"{name}: {split} data is not a rectangular array ({' '.join(str(exc).split())})") from None
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
    if X.dtype != np.uint8:  # 8-bit images stay compact; they cannot hold NaN or inf
        X = X.astype(np.float32, copy=False)
    if X.dtype != np.uint8 and not np.isfinite(X).all():
        bad = int(np.argwhere(~np.isfinite(X).reshape(len(X), -1).all(axis=1))[0, 0])
        raise DatasetError(f"{name}: {split} features contain NaN or inf (first at row {bad})")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DatasetError(f"{name}: {split} labels must be integer class indices")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{name}: {split} labels must be integer class indices (dtype {y.dtype})")
    return np.ascontiguousarray(X), y.astype(np.int64)


def _checked_groups(name: str, what: str, groups, n: int) -> np.ndarray | None:
    """Group values as a 1-D array of strings, one per sample; :class:`DatasetError` otherwise."""
    if groups is None:
        return None
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) != n:
        raise DatasetError(f"{name}: {what} must hold one value per sample ({n}), got shape {groups.shape}")
    return groups.astype(str)


def stratified_split(X, y, *, test_size: float, split_seed: int, name: str | None = None):
    """Stratified train/test split ``(X_train, X_test, y_train, y_test)`` for datasets without a test split.

    Both sides must hold every class at least once; otherwise :class:`DatasetError`
    (prefixed with ``name`` when given).
    """
    from sklearn.model_selection import train_test_split

    prefix = f"{name}: " if name else ""
    classes, counts = np.unique(y, return_counts=True)
    n_test = math.ceil(test_size * len(y))
    if min(n_test, len(y) - n_test) < len(classes):
        raise DatasetError(
            f"{prefix}test_size {test_size} splits {len(y)} samples into {len(y) - n_test} train and {n_test} test; "
            f"each side needs at least one sample of each of the {len(classes)} classes"
        )
    if counts.min() < 2:
        raise DatasetError(
            f"{prefix}class {classes[counts.argmin()]} has a single sample; a stratified train/test split needs "
            "at least two of each class"
        )
    return train_test_split(X, y, test_size=test_size, random_state=split_seed, stratify=y)


def dataset_from_arrays(
    name: str, X, y, X_test=None, y_test=None, *, n_classes: int | None, test_size: float, split_seed: int, groups=None, groups_test=None
) -> Dataset:
    """A :class:`Dataset` from a user's arrays, split into train and test when no test split is given.

    ``groups`` (and ``groups_test`` with a test split) give each sample's group, for
    per-group metrics on the test split; values are compared as strings.

    With ``n_classes`` unset, the classes are ``0 … max label`` and every one of them
    must occur in the training split, so a stray label (a typo, a 1-based class) is an
    error rather than an empty class. Raises :class:`DatasetError` naming ``name``.
    """
    if (X_test is None) != (y_test is None):
        raise DatasetError(f"{name}: a test split needs both test features and test labels")
    split = "data" if X_test is None else "train"
    X, y = checked_arrays(name, split, X, y)
    if y.min() < 0 or (n_classes is not None and y.max() >= n_classes):
        bad = int(y.min() if y.min() < 0 else y.max())
        raise DatasetError(f"{name}: {split} label {bad} is out of range [0, {n_classes or int(y.max()) + 1})")
    groups = _checked_groups(name, "group", groups, len(y))
    if X_test is None:
        train_index, test_index, y, y_test = stratified_split(np.arange(len(y)), y, test_size=test_size, split_seed=split_seed, name=name)
        X, X_test = X[train_index], X[test_index]
        groups_test = None if groups is None else groups[test_index]
    else:
        if groups is not None and groups_test is None:
            raise DatasetError(f"{name}: groups are given for the training data but not for the test split (group_test)")
        groups_test = _checked_groups(name, "group_test", groups_test, len(y_test))
    # Inferred from the training labels: a test label beyond them is out of range.
    dataset = checked_dataset(name, X, y, X_test, y_test, n_classes=n_classes or int(y.max()) + 1)
    if groups_test is not None:
        dataset = replace(dataset, groups_test=groups_test)
    if n_classes is None:
        absent = np.setdiff1d(np.arange(dataset.n_classes), dataset.y_train)
        if len(absent):
            raise DatasetError(
                f"{name}: labels must be 0 … {dataset.n_classes - 1} with every class in the training split, "
                f"but class {int(absent[0])} never occurs there (npz and csv datasets take data.n_classes "
                "when some classes are really absent)"
            )
    return dataset
