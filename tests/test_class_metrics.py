"""Per-class results recorded with every classification run: recall and error per class,
the worst and best class error and the gap between them (the fairness measurements)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalelab.data import load_dataset
from scalelab.spec import parse_spec
from scalelab.train.cell import run_cell
from scalelab.train.class_metrics import class_metrics


def test_worst_class_and_gap_on_a_hand_worked_example():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 0, 2, 2])  # class 0: 3/4, class 1: 1/2, class 2: 2/2
    m = class_metrics(y_true, y_pred, n_classes=4)  # class 3 never appears
    assert m["class_recall"] == [0.75, 0.5, 1.0, None]
    assert m["class_error"] == [0.25, 0.5, 0.0, None]
    assert m["worst_class_error"] == 0.5 and m["best_class_error"] == 0.0
    assert m["class_error_gap"] == 0.5


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 6).flatmap(lambda k: st.tuples(st.just(k), st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=60))))
def test_the_worst_class_is_never_better_than_the_mean_and_the_gap_is_its_spread(case):
    n_classes, pairs = case
    y_true, y_pred = (np.array(v) for v in zip(*pairs))
    m = class_metrics(y_true, y_pred, n_classes)
    present = [e for e in m["class_error"] if e is not None]
    mean_class_error = float(np.mean(present))
    assert m["best_class_error"] <= mean_class_error + 1e-12 <= m["worst_class_error"] + 2e-12
    assert m["class_error_gap"] == pytest.approx(m["worst_class_error"] - m["best_class_error"])
    assert json.loads(json.dumps(m)) == m  # plain JSON values, as the store keeps them


@pytest.mark.parametrize("family", ["mlp", "tree"])
def test_every_classification_run_records_its_per_class_results(family):
    raw = {"name": "c", "data": {"name": "digits", "data_fraction": 0.5}, "model": {"family": family}, "train": {"epochs": 2, "device": "cpu"}}
    if family == "tree":
        raw["train"] = {}
    (cell,) = parse_spec(raw).cells
    dataset = load_dataset(cell.config["data"])
    m = run_cell(cell.config, dataset).metrics
    assert len(m["class_recall"]) == dataset.n_classes == 10
    errors = [e for e in m["class_error"] if e is not None]
    assert m["worst_class_error"] == max(errors) and m["best_class_error"] == min(errors)
    # The test error is the class errors weighted by how often each class is tested.
    assert len(dataset.y_test) == m["n_test"]
    counts = np.bincount(dataset.y_test, minlength=10)
    weighted = sum(c * e for c, e in zip(counts, m["class_error"]) if e is not None) / counts.sum()
    assert weighted == pytest.approx(m["test_error"])


# -- groups declared by npz and csv datasets ---------------------------------------------
def _blobs(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, 4)).astype(np.float32) + y[:, None]
    groups = np.where(rng.random(n) < 0.3, "minority", "majority")
    return X, y, groups


def _run(data: dict) -> dict:
    raw = {"name": "g", "data": data, "model": {"family": "mlp", "width": 0.25}, "train": {"epochs": 2, "device": "cpu"}}
    (cell,) = parse_spec(raw, source="g.toml").cells
    return run_cell(cell.config, load_dataset(cell.config["data"])).metrics


def _assert_group_metrics(m: dict, expected_groups: set[str]) -> None:
    assert set(m["group_error"]) == set(m["group_n_test"]) == expected_groups
    assert sum(m["group_n_test"].values()) == m["n_test"]
    assert m["worst_group_error"] == max(m["group_error"].values())
    assert m["group_error_gap"] == pytest.approx(max(m["group_error"].values()) - min(m["group_error"].values()))
    weighted = sum(m["group_error"][g] * m["group_n_test"][g] for g in expected_groups) / m["n_test"]
    assert weighted == pytest.approx(m["test_error"])


def test_an_npz_group_array_gives_per_group_metrics_on_the_test_split(tmp_path):
    X, y, groups = _blobs(300)
    np.savez(tmp_path / "g.npz", X=X, y=y, group=groups)
    _assert_group_metrics(_run({"name": "npz", "path": str(tmp_path / "g.npz")}), {"majority", "minority"})


def test_a_csv_group_column_is_not_a_feature_and_gives_per_group_metrics(tmp_path):
    import pandas as pd

    for name, seed in (("train", 0), ("test", 1)):
        X, y, groups = _blobs(200, seed)
        frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)])
        frame["target"], frame["site"] = y, np.where(groups == "minority", 7, 3)  # numbers read as group names
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    m = _run({"name": "csv", "path": str(tmp_path / "train.csv"), "test_path": str(tmp_path / "test.csv"), "group": "site"})
    _assert_group_metrics(m, {"3", "7"})
    assert m["n_params"] == (4 * 16 + 16) + (16 * 16 + 16) + (16 * 3 + 3)  # 4 features: the group column is not one


def test_runs_without_groups_record_no_group_metrics_and_keep_their_cell_ids(tmp_path):
    X, y, _ = _blobs(120)
    np.savez(tmp_path / "plain.npz", X=X, y=y)
    assert "group_error" not in _run({"name": "npz", "path": str(tmp_path / "plain.npz")})
    raw = {"name": "c", "data": {"name": "csv", "path": "x.csv"}, "model": {"family": "mlp"}}
    assert "group" not in parse_spec(raw).cells[0].config["data"]["options"]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        pytest.param({"group": np.array(["a", "b"])}, "group must hold one value per sample (120)", id="group-length"),
        pytest.param({"X_test": "X", "y_test": "y", "group": "g"}, "not for the test split (group_test)", id="no-group-test"),
    ],
)
def test_bad_group_arrays_are_clear_errors(tmp_path, arrays, message):
    from scalelab.errors import DatasetError

    X, y, groups = _blobs(120)
    named = {"X": X, "y": y, "g": groups}
    np.savez(tmp_path / "bad.npz", X=X, y=y, **{k: named[v] if isinstance(v, str) else v for k, v in arrays.items()})
    with pytest.raises(DatasetError) as caught:
        load_dataset(parse_spec({"name": "b", "data": {"name": "npz", "path": str(tmp_path / "bad.npz")}, "model": {"family": "mlp"}}).cells[0].config["data"])
    assert message in str(caught.value) and "bad.npz" in str(caught.value)


def test_a_missing_csv_group_column_is_named(tmp_path):
    from scalelab.errors import DatasetError

    (tmp_path / "d.csv").write_text("a,b,target\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    config = parse_spec({"name": "c", "data": {"name": "csv", "path": str(tmp_path / "d.csv"), "group": "site"}, "model": {"family": "mlp"}}).cells[0].config
    with pytest.raises(DatasetError, match=r"no column 'site' \(the group\)"):
        load_dataset(config["data"])


@pytest.mark.slow
def test_on_an_imbalanced_study_the_minority_class_has_the_worst_error(tmp_path):
    """Through the command line: per-class results are in ``runs --format json``, and with
    class_imbalance = 100 the last digit (kept at 1/100 of its samples) fares worst."""
    from cli_helpers import cli_env, run_cli, runs_json, write_study

    study = write_study(
        tmp_path / "imbalance.toml",
        'name = "imbalance"\n[data]\nname = "digits"\ntest_size = 0.25\nclass_imbalance = 100\n'
        '[model]\nfamily = "mlp"\nwidth = 2\n[train]\nlr = 3e-3\nbatch_size = 32\nepochs = 10\nmin_steps = 150\n'
        "[grid]\nseed = [0, 1]\n",
    )
    env = cli_env(tmp_path / "cache")
    ran = run_cli("run", study, "--store", tmp_path / "s.db", "--quiet", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.describe()
    rows = runs_json(study, store=tmp_path / "s.db", env=env, cwd=tmp_path)
    assert len(rows) == 2 and all(len(row["class_error"]) == 10 for row in rows)
    mean_error = np.mean([row["class_error"] for row in rows], axis=0)
    assert mean_error[9] == mean_error.max()
    assert mean_error[9] > 2 * np.mean([row["test_error"] for row in rows])
    for row in rows:
        assert row["worst_class_error"] == max(row["class_error"])
