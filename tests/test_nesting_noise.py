"""Data-quality noise nests like the rows do: a sample's noisy label and its feature noise
depend on the sample and the subsample seed only, so the cells of one learning curve
(one seed, growing data fractions) see the same corrupted samples where they overlap."""

from __future__ import annotations

import numpy as np
import pytest

from scalelab.data import load_dataset, training_view
from scalelab.spec import parse_spec

NOISY = {"label_noise": 0.2, "feature_noise": 0.3}


def data_config(**data) -> dict:
    raw = {"name": "nest", "data": {"name": "digits", **data}, "model": {"family": "mlp"}}
    (cell,) = parse_spec(raw, source="nest.toml").cells
    return cell.config["data"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset(data_config())


def view(digits, **data):
    return training_view(digits, data_config(**data))


def rows_and_labels(v) -> dict[int, int]:
    """Every row a view uses (training and validation) with the label it gets."""
    pairs = zip(np.concatenate([v.train_rows, v.val_rows]).tolist(), np.concatenate([v.y_train, v.y_val]).tolist())
    return dict(pairs)


@pytest.mark.parametrize("small, large", [(0.25, 0.5), (0.125, 1.0)])
def test_rows_shared_by_two_fractions_have_the_same_noisy_labels_and_features(digits, small, large):
    a = view(digits, data_fraction=small, **NOISY)
    b = view(digits, data_fraction=large, **NOISY)
    shared, in_a, in_b = np.intersect1d(a.train_rows, b.train_rows, return_indices=True)
    assert len(shared) == len(a.train_rows)  # the smaller subset lies inside the larger one
    np.testing.assert_array_equal(a.y_train[in_a], b.y_train[in_b])
    np.testing.assert_array_equal(a.X_train[in_a], b.X_train[in_b])
    # The noise is really there: labels flipped and features moved on the shared rows.
    assert np.mean(a.y_train[in_a] != digits.y_train[shared]) > 0.1
    assert not np.allclose(a.X_train[in_a], digits.X_train[shared])


def test_a_validation_row_keeps_its_noisy_label_when_a_larger_fraction_trains_on_it(digits):
    a = view(digits, data_fraction=0.25, validation_split=0.2, **NOISY)
    b = view(digits, data_fraction=0.5, validation_split=0.2, **NOISY)
    labels_a, labels_b = rows_and_labels(a), rows_and_labels(b)
    assert set(a.val_rows.tolist()) & set(b.train_rows.tolist())  # rows that change role exist
    assert all(labels_b[row] == label for row, label in labels_a.items())
    _, in_a, in_b = np.intersect1d(a.val_rows, b.train_rows, return_indices=True)
    np.testing.assert_array_equal(a.X_val[in_a], b.X_train[in_b])


@pytest.mark.parametrize("fraction", [0.125, 0.25, 0.5, 1.0])
def test_the_noise_rate_is_as_requested_at_every_fraction(digits, fraction):
    v = view(digits, data_fraction=fraction, label_noise=0.2, validation_split=0.2)
    for rows, labels, side in ((v.train_rows, v.y_train, "train"), (v.val_rows, v.y_val, "validation")):
        flipped = labels != digits.y_train[rows]
        assert np.all(labels[flipped] != digits.y_train[rows][flipped])
        # Within one sample per class of the requested share, on each side.
        assert abs(flipped.sum() - 0.2 * len(rows)) <= 10, (side, flipped.sum(), len(rows))
    assert 0.18 <= np.mean(v.y_train != digits.y_train[v.train_rows]) <= 0.22


def test_feature_noise_keeps_its_scale_at_every_fraction(digits):
    """The noise's scale is each feature's spread over the whole training split, at any fraction."""
    feature_std = digits.X_train.reshape(len(digits.X_train), -1).std(axis=0)
    varying = feature_std > 0.1
    for fraction in (0.25, 1.0):
        v = view(digits, data_fraction=fraction, feature_noise=0.5)
        added = (v.X_train - digits.X_train[v.train_rows]).reshape(len(v.train_rows), -1)
        np.testing.assert_allclose(added.std(axis=0)[varying], 0.5 * feature_std[varying], rtol=0.25)


def test_another_subsample_seed_draws_other_noise(digits):
    a = view(digits, subsample_seed=0, **NOISY)
    b = view(digits, subsample_seed=1, **NOISY)
    np.testing.assert_array_equal(a.train_rows, b.train_rows)  # full data: the same rows
    assert np.mean(a.y_train != b.y_train) > 0.1
    assert not np.allclose(a.X_train, b.X_train)
