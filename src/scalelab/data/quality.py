"""Which training rows a cell uses, and with which labels: the data-quality axis.

:func:`plan_rows` turns a training split's labels and a cell's data settings into row
indices. It works on indices and labels only, so the coordinator can check every cell
before anything trains. Per class, in the seeded order of
:func:`~scalelab.data.subsample.class_order`:

1. ``data_fraction`` sets the class's budget: the nested, stratified subset.
2. ``class_imbalance`` (r ≥ 1) shrinks the budget of the k-th of K classes by
   ``r ** (-k / (K - 1))``: the first class keeps all of it, the last a 1/r share, so on
   balanced data the most frequent class has r times as many samples as the least.
3. ``validation_split`` holds out that share of the budget for validation (the end of
   the class's prefix), leaving at least one training sample per class.
4. ``duplicate_fraction`` spends that share of the remaining training budget on exact
   copies of the class's first rows instead of new ones.
5. ``label_noise`` replaces that share of each class's labels by a different class,
   uniformly at random. Copies keep the label of the row they copy.

Every distinct training row is a prefix of its class's order, so with the same seed and
settings the rows of a smaller ``data_fraction`` lie inside those of a larger one. The
test split is never touched. All randomness is seeded by the cell's subsample seed.

Noise nests as the rows do: whether a row's label is noisy, the class it gets, and the
feature noise added to it (:func:`feature_noise`) depend only on the row (its index in
the training split) and the subsample seed, never on the fraction or the other settings.
So the rows that a 1/4 and a 1/2 subset share carry the same noisy labels and features,
and a learning curve under noise varies the amount of data alone. Label noise marks
evenly spaced positions of each class's seeded order, so every prefix (every fraction's
training rows) and every stretch of it (the validation rows) holds the requested share
of noisy labels, to within one sample per class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalelab.data.preprocess import mean_and_std
from scalelab.data.subsample import class_order, class_share
from scalelab.errors import DatasetError

# Independent random streams per transform, keyed beside the seed (classes use [seed, class]).
_DUPLICATES, _LABEL_NOISE, _FEATURE_NOISE = 1, 2, 3
# Feature noise is drawn for fixed blocks of rows, each from its own stream, so a row's noise
# is fixed by its index and a cell only draws the blocks that hold its rows.
_NOISE_BLOCK = 1024


@dataclass(frozen=True)
class DataQuality:
    """A cell's data settings beyond the dataset itself; the defaults change nothing."""

    data_fraction: float = 1.0
    seed: int = 0
    validation_split: float = 0.0
    label_noise: float = 0.0
    duplicate_fraction: float = 0.0
    class_imbalance: float = 1.0
    feature_noise: float = 0.0

    @classmethod
    def of(cls, data_config: dict) -> "DataQuality":
        """The settings of a resolved ``[data]`` configuration; fields left out are off."""
        return cls(
            data_fraction=data_config["data_fraction"],
            seed=data_config["subsample_seed"],
            **{name: data_config[name] for name in QUALITY_DEFAULTS if name in data_config},
        )


# Settings that are off at these values; the study spec leaves them out of a cell's
# configuration when they are, so adding them changed no existing cell's id.
QUALITY_DEFAULTS = {
    "validation_split": 0.0,
    "label_noise": 0.0,
    "duplicate_fraction": 0.0,
    "class_imbalance": 1.0,
    "feature_noise": 0.0,
}


@dataclass(frozen=True)
class RowPlan:
    """Rows of the training split a cell trains and validates on, with their labels.

    ``train_rows`` is sorted and repeats a row once per copy; ``train_labels`` is
    aligned with it. ``distinct_rows`` are the different rows among them.
    """

    train_rows: np.ndarray
    train_labels: np.ndarray
    val_rows: np.ndarray
    val_labels: np.ndarray

    @property
    def distinct_rows(self) -> np.ndarray:
        return np.unique(self.train_rows)


def plan_rows(y: np.ndarray, *, n_classes: int, quality: DataQuality) -> RowPlan:
    """The rows and labels a cell uses, following the steps in this module's docstring.

    Raises :class:`DatasetError` when the fraction leaves a class empty or the
    validation split would hold out nothing.

    Examples
    --------
    >>> y = np.repeat(np.arange(2), 10)
    >>> plan = plan_rows(y, n_classes=2, quality=DataQuality(data_fraction=0.5, duplicate_fraction=0.4))
    >>> len(plan.train_rows), len(plan.distinct_rows)
    (10, 6)
    """
    y = np.asarray(y)
    q = quality
    classes = np.unique(y)
    train, val = [], []
    for rank, cls in enumerate(classes.tolist()):
        order = class_order(y, cls, seed=q.seed)
        budget = class_share(len(order), q.data_fraction, cls=cls)
        if q.class_imbalance != 1.0:
            budget = max(1, round(budget * q.class_imbalance ** (-rank / max(1, len(classes) - 1))))
        n_val = min(round(q.validation_split * budget), budget - 1)
        n_fit = budget - n_val
        n_distinct = n_fit if q.duplicate_fraction == 0.0 else max(1, round(n_fit * (1.0 - q.duplicate_fraction)))
        distinct = order[:n_distinct]
        copies = np.random.default_rng([q.seed, cls, _DUPLICATES]).choice(distinct, size=n_fit - n_distinct, replace=True)
        train += [distinct, copies]
        val.append(order[n_fit:budget])
    train_rows = np.sort(np.concatenate(train))
    val_rows = np.sort(np.concatenate(val))
    if q.validation_split > 0 and len(val_rows) == 0:
        raise DatasetError(
            f"validation_split {q.validation_split} holds out no samples from the {len(train_rows)} training "
            "samples of this cell; use a larger data_fraction or validation_split"
        )

    labels = y.astype(np.int64)  # a copy: the dataset's own labels are never changed
    if q.label_noise > 0:
        noisy = noisy_label_rows(y, rate=q.label_noise, seed=q.seed)
        # The class each row would get, drawn for every row of the split so it depends on the row alone.
        shift = np.random.default_rng([q.seed, 0, _LABEL_NOISE]).integers(1, n_classes, size=len(y))
        labels[noisy] = (labels[noisy] + shift[noisy]) % n_classes
    return RowPlan(train_rows=train_rows, train_labels=labels[train_rows], val_rows=val_rows, val_labels=labels[val_rows])


def noisy_label_rows(y: np.ndarray, *, rate: float, seed: int) -> np.ndarray:
    """A mask over the training split: the rows whose label ``label_noise = rate`` replaces.

    In each class's seeded order (:func:`~scalelab.data.subsample.class_order`), position
    ``p`` is noisy when ``round((p + 1) * rate)`` exceeds ``round(p * rate)``: the first
    ``n`` positions hold ``round(n * rate)`` noisy rows for every ``n``. Because cells
    take prefixes of this order, every fraction gets the requested share, and a row is
    noisy in all of them or in none. The order is a seeded shuffle, so which rows are
    noisy is random.

    Examples
    --------
    >>> y = np.repeat(np.arange(2), 10)
    >>> int(noisy_label_rows(y, rate=0.3, seed=0).sum())
    6
    """
    noisy = np.zeros(len(y), dtype=bool)
    for cls in np.unique(y).tolist():
        order = class_order(y, cls, seed=seed)
        prefix_counts = np.floor(np.arange(len(order) + 1) * rate + 0.5)  # noisy rows among the first n
        noisy[order[np.diff(prefix_counts) > 0]] = True
    return noisy


def feature_noise(X: np.ndarray, rows: np.ndarray, *, quality: DataQuality) -> np.ndarray:
    """The Gaussian noise ``feature_noise`` adds to ``rows`` of the training split ``X``.

    Per feature, the noise's standard deviation is ``quality.feature_noise`` times that
    feature's standard deviation over the whole training split ``X``: a property of the
    dataset, not of the cell's subset, so a row gets the same noise at every fraction.
    The standard-normal draws of row ``r`` come from the stream of its block of rows,
    seeded by the subsample seed. Returns float32, shaped ``(len(rows), *X.shape[1:])``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    sample_shape = X.shape[1:]
    noise = np.empty((len(rows), *sample_shape), dtype=np.float32)
    blocks = rows // _NOISE_BLOCK
    for block in np.unique(blocks).tolist():
        draws = np.random.default_rng([quality.seed, block, _FEATURE_NOISE]).standard_normal((_NOISE_BLOCK, *sample_shape), dtype=np.float32)
        mine = np.flatnonzero(blocks == block)
        noise[mine] = draws[rows[mine] % _NOISE_BLOCK]
    noise *= (mean_and_std(X, axes=(0,))[1][0] * quality.feature_noise).astype(np.float32)
    return noise
