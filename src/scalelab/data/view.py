"""A cell's view of a dataset: the one place where a cell's data is prepared.

Both trainers call :func:`training_view`, which runs the whole per-cell pipeline:
nested subsample and data-quality transforms on the training split only
(:mod:`scalelab.data.quality`), the validation split, feature noise, then
preprocessing with statistics from the training data (:mod:`scalelab.data.preprocess`),
ending with float32 arrays ready to become tensors. The loaded dataset is never
modified, so a worker can reuse it for every cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalelab.data.dataset import Dataset
from scalelab.data.preprocess import fit_preprocessor
from scalelab.data.quality import DataQuality, feature_noise, plan_rows


@dataclass(frozen=True)
class TrainingView:
    """The arrays one cell trains, validates and tests on (float32 features, int64 labels).

    ``train_rows`` and ``val_rows`` are the rows of the dataset's training split the
    samples came from (a row repeats once per duplicate). ``X_val`` is empty when the
    cell has no validation split.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    n_classes: int
    preprocess: str
    groups_test: np.ndarray | None = None  # each test sample's group, when the dataset declares groups
    # A text cell's token plan (scalelab.data.tokens.TokenPlan): samples are windows of
    # tokens, trained once in the order given; the bytes of text the held-out targets
    # stand for turn a loss in nats per token into bits per byte.
    tokens: object | None = None
    val_bytes: int = 0
    test_bytes: int = 0

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])

    @property
    def has_validation(self) -> bool:
        return len(self.y_val) > 0

    @property
    def is_text(self) -> bool:
        return self.tokens is not None

    @property
    def n_distinct(self) -> int:
        """Different training samples (fewer than ``len(y_train)`` when some are duplicates)."""
        return int(len(np.unique(self.train_rows)))


def training_view(dataset: Dataset, data_config: dict, *, batch_size: int | None = None, flops_per_token: float | None = None) -> TrainingView:
    """Prepare the data of one cell from its resolved ``[data]`` configuration.

    A text dataset's cell is its token windows (:func:`scalelab.data.tokens.token_view`),
    which need the cell's ``batch_size`` (tokens are whole steps) and, with a FLOP budget,
    the model's measured ``flops_per_token``.

    Raises :class:`~scalelab.errors.DatasetError` when the cell's settings cannot be met
    (a fraction that empties a class, a validation split that holds out nothing).
    """
    from scalelab.data.tokens import is_token_dataset, token_view

    if is_token_dataset(dataset):
        return token_view(dataset, data_config, batch_size=batch_size, flops_per_token=flops_per_token)
    quality = DataQuality.of(data_config)
    plan = plan_rows(dataset.y_train, n_classes=dataset.n_classes, quality=quality)

    distinct, copy_of = np.unique(plan.train_rows, return_inverse=True)
    X_distinct = dataset.X_train[distinct].astype(np.float32, copy=False)  # indexing already copied
    X_val = dataset.X_train[plan.val_rows].astype(np.float32, copy=False)
    if quality.feature_noise > 0:
        # Each row's own noise (see scalelab.data.quality), so shared rows agree across fractions.
        noise = feature_noise(dataset.X_train, np.concatenate([distinct, plan.val_rows]), quality=quality)
        X_distinct += noise[: len(distinct)]
        X_val += noise[len(distinct) :]
    # Exact duplicates: a copy repeats its row after the noise, as a duplicate in the wild would.
    X_train = X_distinct if len(distinct) == len(plan.train_rows) else X_distinct[copy_of]

    method = data_config.get("preprocess", "none")
    preprocessor = fit_preprocessor(X_train, method=method)
    preprocessor.apply_inplace(X_train)
    preprocessor.apply_inplace(X_val)
    return TrainingView(
        X_train=np.ascontiguousarray(X_train),
        y_train=plan.train_labels,
        X_val=np.ascontiguousarray(X_val),
        y_val=plan.val_labels,
        X_test=np.ascontiguousarray(preprocessor.transformed(dataset.X_test)),
        y_test=dataset.y_test,
        train_rows=plan.train_rows,
        val_rows=plan.val_rows,
        n_classes=dataset.n_classes,
        preprocess=method,
        groups_test=dataset.groups_test,
    )


def cell_inputs(dataset, data_config: dict) -> tuple[tuple[int, ...], int]:
    """``(input_shape, n_classes)`` a cell's model is built for: the dataset's own, or for
    text a window of ``window`` tokens and the vocabulary."""
    from scalelab.data.tokens import is_token_dataset

    if is_token_dataset(dataset):
        return (int(data_config["options"]["window"]),), dataset.n_classes
    return dataset.input_shape, dataset.n_classes
