"""The curve layer (``scalelab.curves``): which runs form each curve, and why others do not.

The study is a real parsed study file; its runs table is written here, as the store
would hold it, so each awkward case (a failed cell, a NaN metric, a lost setting, two
seeds, an uneven seed count, a setting tie) is exact.
"""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalelab.curves import axis_keys, grid_roles, selection_metric, study_curves
from scalelab.errors import InputError
from scalelab.spec import parse_spec

STUDY = """
name = "roles"

[data]
name = "digits"

[train]
epochs = 2

[grid]
family = ["mlp", "seed_cnn"]
width = [0.5, 1]
data_fraction = [0.25, 0.5, 1.0]
label_noise = [0.0, 0.2]
lr = [1e-3, 1e-2]
seed = [0, 1]

[target]
metric = "test_error"
"""


def spec_of(text: str):
    return parse_spec(tomllib.loads(text), source="roles.toml")


def runs_of(spec, metric=lambda p: 0.5, **extra) -> pd.DataFrame:
    """A runs table for every cell of ``spec``, all done, with ``metric(params)`` as every loss."""
    rows = []
    for cell in spec.cells:
        value = metric(cell.params)
        rows.append({"cell_id": cell.cell_id, "state": "done", **cell.params, "test_error": value, "test_loss": value,
                     "train_loss": value, "n_train": 100 * cell.params.get("data_fraction", 1.0), "n_params": 1000 * cell.params.get("width", 1.0),
                     "flops": 1e9, "flops_per_sample": 1e9 / (100 * cell.params.get("data_fraction", 1.0)), **extra})  # fmt: skip
    return pd.DataFrame(rows)


def test_roles_of_each_grid_key():
    roles = grid_roles(spec_of(STUDY))
    assert roles.size == ["family", "width"] and roles.data == ["data_fraction"] and roles.quality == ["label_noise"]
    assert roles.setting == ["lr"] and roles.replicate == ["seed"]


def test_learning_curves_split_by_model_hold_clean_data_and_take_the_envelope():
    spec = spec_of(STUDY)
    # lr 1e-2 trains better (lower train loss) everywhere; test error says the opposite.
    runs = runs_of(spec).assign(train_loss=lambda r: np.where(r["lr"] == 1e-2, 0.1, 0.2),
                                test_error=lambda r: np.where(r["lr"] == 1e-2, 0.3, 0.2))  # fmt: skip
    curves = study_curves(spec, runs, x_cols=["n_train"], y_col="test_error")
    assert [c.label for c in curves.curves] == ["mlp, width 0.5", "mlp, width 1", "seed_cnn, width 0.5", "seed_cnn, width 1"]
    assert curves.held == {"label_noise": 0.0} and curves.selected_on == "train_loss"
    for curve in curves.curves:
        assert len(curve.runs) == 6  # 3 fractions x 2 seeds
        assert set(curve.runs["lr"]) == {1e-2}  # chosen on the training loss, not on test_error
        assert set(curve.runs["label_noise"]) == {0.0}
    reasons = curves.left_out["reason"]
    assert reasons.str.contains("label_noise = 0.2").sum() == 48 and reasons.str.contains("lost").sum() == 24
    assert len(curves.left_out) + sum(len(c.runs) for c in curves.curves) == len(runs) == 96


def test_a_joint_law_has_one_curve_per_family():
    spec = spec_of(STUDY)
    curves = study_curves(spec, runs_of(spec), x_cols=["n_params", "samples"], y_col="test_error")
    assert [c.label for c in curves.curves] == ["mlp", "seed_cnn"] and curves.by == ["family"]
    assert all(len(c.runs) == 12 for c in curves.curves)  # 2 widths x 3 fractions x 2 seeds


def test_group_splits_a_held_key_instead_of_holding_it():
    spec = spec_of(STUDY)
    curves = study_curves(spec, runs_of(spec), x_cols=["n_train"], y_col="test_error", group="label_noise")
    assert len(curves.curves) == 8 and "label_noise" in curves.by and curves.held == {}
    assert curves.curves[0].key == {"family": "mlp", "width": 0.5, "label_noise": 0.0}


def test_size_on_the_axis_splits_by_data_instead():
    spec = spec_of(STUDY)
    roles = grid_roles(spec)
    assert axis_keys(roles, ["n_params"], spec.grid_keys) == ["width"]
    curves = study_curves(spec, runs_of(spec), x_cols=["n_params"], y_col="test_error")
    assert curves.by == ["family", "data_fraction"] and len(curves.curves) == 6


def test_failed_diverged_and_missing_values_are_left_out_with_their_reason():
    spec = spec_of(STUDY)
    runs = runs_of(spec)
    runs.loc[0, "state"] = "failed"
    runs.loc[1, "state"] = "diverged"
    runs.loc[2, "test_error"] = np.nan
    curves = study_curves(spec, runs, x_cols=["n_train"], y_col="test_error")
    reasons = dict(zip(curves.left_out["cell_id"], curves.left_out["reason"]))
    assert reasons[runs.loc[0, "cell_id"]] == "failed" and reasons[runs.loc[1, "cell_id"]] == "diverged"
    assert "without a value" in reasons[runs.loc[2, "cell_id"]]
    on_curves = {cid for c in curves.curves for cid in c.runs["cell_id"]}
    assert not on_curves & set(runs.loc[:2, "cell_id"])


def test_a_validation_split_chooses_on_validation_never_on_the_modelled_metric():
    spec = spec_of(STUDY)
    runs = runs_of(spec, val_error=0.4, val_loss=0.9)
    assert selection_metric(runs, "test_error") == "val_error"
    assert selection_metric(runs, "test_loss") == "val_loss"
    assert selection_metric(runs.drop(columns=["val_error", "val_loss"]), "test_error") == "train_loss"
    with pytest.raises(InputError, match="train_loss"):
        selection_metric(runs.drop(columns=["val_error", "val_loss", "train_loss"]), "test_error")
    # The training loss itself is never chosen on when it is what the law models.
    with pytest.raises(InputError):
        selection_metric(runs.drop(columns=["val_error", "val_loss"]), "train_loss")


def test_uneven_seeds_keep_every_seed_of_the_winning_setting():
    spec = spec_of(STUDY)
    runs = runs_of(spec).assign(train_loss=lambda r: np.where(r["lr"] == 1e-3, 0.1, 0.2))
    # Drop one seed of the winning setting at one point: the other seed still carries it.
    victim = runs[(runs["lr"] == 1e-3) & (runs["seed"] == 1)].index[0]
    runs = runs.drop(index=victim)
    curves = study_curves(spec, runs, x_cols=["n_train"], y_col="test_error")
    assert sum(len(c.runs) for c in curves.curves) == 23
    assert all(set(c.runs["lr"]) == {1e-3} for c in curves.curves)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.01, 1.0), min_size=96, max_size=96))
def test_every_run_is_on_exactly_one_curve_or_left_out(losses):
    spec = spec_of(STUDY)
    runs = runs_of(spec).assign(train_loss=losses)
    curves = study_curves(spec, runs, x_cols=["n_train"], y_col="test_error")
    on_curves = [cid for c in curves.curves for cid in c.runs["cell_id"]]
    left = list(curves.left_out["cell_id"])
    assert sorted(on_curves + left) == sorted(runs["cell_id"])
    # At each point of each curve, one setting only, and it has the lowest mean train loss there.
    for curve in curves.curves:
        for _, point in curve.runs.groupby("data_fraction"):
            assert point["lr"].nunique() == 1
            at = runs[(runs["family"] == curve.key["family"]) & (runs["width"] == curve.key["width"])
                      & (runs["data_fraction"] == point["data_fraction"].iloc[0]) & (runs["label_noise"] == 0.0)]  # fmt: skip
            means = at.groupby("lr")["train_loss"].mean()
            assert point["train_loss"].mean() == pytest.approx(means.min())
