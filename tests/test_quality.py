"""The data-quality axis, validation split and preprocessing (issue: workloads from the seed).

Label noise, duplicates, class imbalance and feature noise touch the training subset
only, are seeded, and keep the nested-subsample property of the underlying rows.
Preprocessing uses statistics of the training data only.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from scalelab.data import DataQuality, load_dataset, nested_subsample, plan_rows, training_view
from scalelab.data.dataset import checked_dataset
from scalelab.errors import DatasetError, InputError
from scalelab.spec import parse_spec
from scalelab.train.torch_trainer import train_cell

SOURCE = "q.toml"


def config(data=None, model=None, **train) -> dict:
    raw = {"name": "q", "data": {"name": "digits", **(data or {})}, "model": model or {"family": "mlp"}, "train": {"epochs": 1, **train}}
    (cell,) = parse_spec(raw, source=SOURCE).cells
    return cell.config


@pytest.fixture(scope="module")
def digits():
    return load_dataset(config()["data"])


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """In-process training on one thread: on a busy 2-core machine torch's thread pool spins
    and tiny models train tens of times slower (as in a worker, which gets its share of cores)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def balanced(n_classes: int = 4, per_class: int = 50):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(n_classes), per_class)
    X = rng.normal(size=(len(y), 3, 2, 2)).astype(np.float32) * np.array([1, 5, 0.1], np.float32)[:, None, None] + 2
    X_test = rng.normal(size=(20, 3, 2, 2)).astype(np.float32)
    return checked_dataset("toy", X, y, X_test, np.arange(20) % n_classes)


def clean_config() -> dict:
    """A resolved ``[data]`` configuration with every setting off, for datasets made in a test."""
    return {"name": "toy", "data_fraction": 1.0, "subsample_seed": 0, "test_size": 0.2, "split_seed": 0, "options": {}}


# ---------------------------------------------------------------------------------------------
# Properties of the row plan
# ---------------------------------------------------------------------------------------------

labels = hnp.arrays(np.int64, st.integers(4, 300), elements=st.integers(0, 4))
qualities = st.fixed_dictionaries(
    {
        "label_noise": st.sampled_from([0.0, 0.1, 0.5]),
        "duplicate_fraction": st.sampled_from([0.0, 0.3, 0.9]),
        "class_imbalance": st.sampled_from([1.0, 3.0, 100.0]),
        "validation_split": st.sampled_from([0.0, 0.2]),
    }
)


def plan_or_none(y, fraction, seed, quality):
    try:
        return plan_rows(y, n_classes=5, quality=DataQuality(data_fraction=fraction, seed=seed, **quality))
    except DatasetError:
        return None


@settings(max_examples=150, deadline=None)
@given(y=labels, a=st.floats(0.05, 1.0), b=st.floats(0.05, 1.0), seed=st.integers(0, 2**32 - 1), quality=qualities)
def test_nested_subsample_property_holds_with_quality_transforms_on(y, a, b, seed, quality):
    small_fraction, large_fraction = sorted((a, b))
    small, large = plan_or_none(y, small_fraction, seed, quality), plan_or_none(y, large_fraction, seed, quality)
    assume(small is not None and large is not None)
    assert set(small.distinct_rows.tolist()) <= set(large.distinct_rows.tolist())


@settings(max_examples=100, deadline=None)
@given(y=labels, fraction=st.floats(0.05, 1.0), seed=st.integers(0, 2**32 - 1), quality=qualities)
def test_plan_rows_invariants(y, fraction, seed, quality):
    plan = plan_or_none(y, fraction, seed, quality)
    assume(plan is not None)
    assert not set(plan.train_rows.tolist()) & set(plan.val_rows.tolist()), "validation rows leak into training"
    assert set(np.unique(y[plan.train_rows]).tolist()) == set(np.unique(y).tolist()), "a class lost all its training rows"
    assert np.all(np.diff(plan.train_rows) >= 0)
    # Copies carry exactly the label of the row they copy.
    for row in np.unique(plan.train_rows):
        assert len(set(plan.train_labels[plan.train_rows == row].tolist())) == 1


@settings(max_examples=100, deadline=None)
@given(y=labels, fraction=st.floats(0.05, 1.0), seed=st.integers(0, 2**32 - 1))
def test_with_every_transform_off_the_plan_is_the_nested_subsample(y, fraction, seed):
    plan = plan_or_none(y, fraction, seed, {})
    assume(plan is not None)
    np.testing.assert_array_equal(plan.train_rows, nested_subsample(y, fraction, seed=seed))
    np.testing.assert_array_equal(plan.train_labels, y[plan.train_rows])
    assert len(plan.val_rows) == 0


def test_duplicates_spend_the_budget_on_exact_copies(digits):
    clean = training_view(digits, config({"data_fraction": 0.5})["data"])
    dup = training_view(digits, config({"data_fraction": 0.5, "duplicate_fraction": 0.4})["data"])
    assert len(dup.y_train) == len(clean.y_train)  # the same training budget
    assert dup.n_distinct == pytest.approx(0.6 * len(clean.y_train), abs=10)
    assert set(dup.train_rows.tolist()) <= set(clean.train_rows.tolist())
    np.testing.assert_array_equal(dup.X_train, digits.X_train[dup.train_rows])  # copies are exact
    assert np.array_equal(np.bincount(dup.y_train), np.bincount(clean.y_train))  # class shares kept


def test_class_imbalance_is_the_ratio_of_the_most_to_the_least_frequent_class():
    ds = balanced(n_classes=4, per_class=200)
    plan = plan_rows(ds.y_train, n_classes=4, quality=DataQuality(class_imbalance=8.0))
    counts = np.bincount(ds.y_train[plan.train_rows])
    assert counts.tolist() == [200, 100, 50, 25]  # 8 ** (-k/3) of each class
    assert counts.max() / counts.min() == 8.0


def test_validation_split_holds_out_a_stratified_share_of_the_training_subset(digits):
    data = config({"data_fraction": 0.5, "validation_split": 0.2})["data"]
    view = training_view(digits, data)
    whole = nested_subsample(digits.y_train, 0.5, seed=0)
    assert set(view.train_rows.tolist()) | set(view.val_rows.tolist()) == set(whole.tolist())
    assert len(view.y_val) == pytest.approx(0.2 * len(whole), abs=10)
    assert np.all(np.bincount(view.y_val, minlength=10) >= 6)  # every class is represented


def test_validation_split_that_holds_out_nothing_is_an_input_error():
    from scalelab.estimate import preflight

    raw = {"name": "q", "data": {"name": "digits", "data_fraction": 0.006, "validation_split": 0.1}, "model": {"family": "mlp"}}
    with pytest.raises(InputError, match="validation_split 0.1 holds out no samples"):
        preflight(parse_spec(raw, source=SOURCE))


# ---------------------------------------------------------------------------------------------
# Label noise: only training labels change, in the stated share, seeded
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise", [0.1, 0.4, 1.0])
def test_label_noise_changes_exactly_that_share_of_training_labels_and_nothing_else(digits, noise):
    before = {name: getattr(digits, name).copy() for name in ("X_train", "y_train", "X_test", "y_test")}
    view = training_view(digits, config({"label_noise": noise})["data"])
    original = digits.y_train[view.train_rows]
    changed = view.y_train != original
    for cls in range(10):  # the share holds in every class, to the nearest sample
        in_class = original == cls
        assert abs(changed[in_class].sum() - noise * in_class.sum()) <= 0.5
    assert np.all((view.y_train >= 0) & (view.y_train < 10))
    np.testing.assert_array_equal(view.y_test, digits.y_test)  # the test split is never touched
    np.testing.assert_array_equal(view.X_test, digits.X_test)
    np.testing.assert_array_equal(view.X_train, digits.X_train[view.train_rows])  # features untouched
    for name, array in before.items():
        np.testing.assert_array_equal(getattr(digits, name), array, err_msg=f"the loaded dataset's {name} changed")


def test_label_noise_is_seeded(digits):
    a = training_view(digits, config({"label_noise": 0.2}, seed=1)["data"]).y_train
    b = training_view(digits, config({"label_noise": 0.2}, seed=1)["data"]).y_train
    c = training_view(digits, config({"label_noise": 0.2}, seed=2)["data"]).y_train
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.slow
def test_test_error_grows_with_label_noise_on_digits_with_an_mlp(digits):
    """At full data, label_noise 0 < 0.2 < 0.4 in mean test error over two seeds."""
    errors = {}
    for noise in (0.0, 0.2, 0.4):
        runs = [
            train_cell(config({"label_noise": noise}, {"family": "mlp", "width": 2}, epochs=40, batch_size=32, lr=3e-3, seed=s), digits)
            for s in (0, 1)
        ]
        assert all(r.state == "done" for r in runs)
        errors[noise] = float(np.mean([r.metrics["test_error"] for r in runs]))
    assert errors[0.0] < errors[0.2] < errors[0.4], errors


# ---------------------------------------------------------------------------------------------
# Feature noise and preprocessing
# ---------------------------------------------------------------------------------------------


def test_feature_noise_is_relative_to_each_features_training_std():
    ds = balanced(per_class=500)
    clean = training_view(ds, clean_config())
    noisy = training_view(ds, {**clean_config(), "feature_noise": 0.5})
    added = (noisy.X_train - clean.X_train).reshape(len(clean.X_train), -1)
    feature_std = clean.X_train.reshape(len(clean.X_train), -1).std(axis=0)
    np.testing.assert_allclose(added.std(axis=0), 0.5 * feature_std, rtol=0.1)
    np.testing.assert_array_equal(noisy.X_test, clean.X_test)




def test_scale_maps_each_channel_of_the_training_data_to_the_unit_interval():
    ds = balanced()
    view = training_view(ds, {**clean_config(), "preprocess": "scale", "data_fraction": 0.5})
    per_channel = view.X_train.transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(per_channel.min(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(per_channel.max(axis=1), 1.0, atol=1e-6)
    raw = ds.X_train[view.train_rows].transpose(1, 0, 2, 3).reshape(3, -1)
    low, high = raw.min(axis=1), raw.max(axis=1)
    expected = (ds.X_test - low[None, :, None, None]) / (high - low)[None, :, None, None]
    np.testing.assert_allclose(view.X_test, expected, rtol=1e-5, atol=1e-6)  # test data: training statistics


def test_standardize_uses_training_statistics_only():
    ds = balanced()
    view = training_view(ds, {**clean_config(), "preprocess": "standardize", "data_fraction": 0.5, "validation_split": 0.2})
    per_channel = view.X_train.transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(per_channel.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(per_channel.std(axis=1), 1.0, atol=1e-4)
    raw = ds.X_train[view.train_rows].transpose(1, 0, 2, 3).reshape(3, -1)
    mean, std = raw.mean(axis=1), raw.std(axis=1)
    np.testing.assert_allclose(view.X_val, (ds.X_train[view.val_rows] - mean[None, :, None, None]) / std[None, :, None, None], rtol=1e-4, atol=1e-5)


def test_tabular_inputs_are_preprocessed_per_feature():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3)) * [1, 10, 100] + [0, 5, -5]
    ds = checked_dataset("tab", X, np.arange(100) % 2, X[:10], np.arange(10) % 2)
    view = training_view(ds, {**clean_config(), "preprocess": "standardize"})
    np.testing.assert_allclose(view.X_train.std(axis=0), 1.0, atol=1e-4)


def test_a_constant_channel_is_shifted_not_divided_by_zero():
    X = np.zeros((40, 2, 3, 3), np.float32)
    X[:, 1] = np.random.default_rng(0).random((40, 3, 3))
    ds = checked_dataset("flat", X, np.arange(40) % 2, X[:4], np.arange(4) % 2)
    for method in ("scale", "standardize"):
        view = training_view(ds, {**clean_config(), "preprocess": method})
        assert np.isfinite(view.X_train).all() and np.all(view.X_train[:, 0] == 0)


# ---------------------------------------------------------------------------------------------
# The study file: strict keys, recorded settings, unchanged ids when off
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, key",
    [
        ({"label_noise": 1.5}, "data.label_noise"),
        ({"label_noise": -0.1}, "data.label_noise"),
        ({"label_noise": "0.2"}, "data.label_noise"),
        ({"duplicate_fraction": 1.0}, "data.duplicate_fraction"),
        ({"class_imbalance": 0.5}, "data.class_imbalance"),
        ({"feature_noise": math.inf}, "data.feature_noise"),
        ({"validation_split": 1.0}, "data.validation_split"),
        ({"preprocess": "minmax"}, "data.preprocess"),
        ({"preprocess": True}, "data.preprocess"),
    ],
)
def test_bad_quality_and_preprocessing_values_name_the_key(data, key):
    with pytest.raises(InputError) as info:
        config(data)
    message = str(info.value)
    assert message.startswith(f"{SOURCE}: ") and key in message and "\n" not in message


def test_settings_that_are_off_leave_the_cell_id_as_it_was():
    """A study that does not use the new settings keeps its cell ids (and its finished results)."""
    plain = parse_spec({"name": "q", "data": {"name": "digits"}, "model": {"family": "mlp"}}, source=SOURCE).cells[0]
    explicit = parse_spec(
        {"name": "q", "data": {"name": "digits", "label_noise": 0.0, "duplicate_fraction": 0.0, "class_imbalance": 1.0,
                               "feature_noise": 0.0, "validation_split": 0.0, "preprocess": "none"},
         "model": {"family": "mlp"}},
        source=SOURCE,
    ).cells[0]  # fmt: skip
    assert plain.cell_id == explicit.cell_id
    assert "label_noise" not in plain.config["data"]


def test_quality_settings_are_grid_keys_and_recorded_in_the_config():
    spec = parse_spec(
        {"name": "q", "data": {"name": "digits", "preprocess": "standardize"}, "model": {"family": "mlp"},
         "grid": {"label_noise": [0.0, 0.2], "class_imbalance": [1, 4]}},
        source=SOURCE,
    )  # fmt: skip
    assert len(spec.cells) == 4 and len({c.cell_id for c in spec.cells}) == 4
    assert [c.params["label_noise"] for c in spec.cells] == [0.0, 0.0, 0.2, 0.2]
    assert [c.params["class_imbalance"] for c in spec.cells] == [1.0, 4.0, 1.0, 4.0]
    for cell in spec.cells:
        assert cell.config["data"]["preprocess"] == "standardize"
        assert cell.config["data"].get("label_noise", 0.0) == cell.params["label_noise"]


def test_validation_metrics_are_recorded(digits):
    outcome = train_cell(config({"validation_split": 0.2, "data_fraction": 0.5}), digits)
    m = outcome.metrics
    assert m["n_val"] > 0 and m["n_train"] + m["n_val"] == len(nested_subsample(digits.y_train, 0.5, seed=0))
    assert math.isfinite(m["val_loss"]) and 0.0 <= m["val_error"] <= 1.0
