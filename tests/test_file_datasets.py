"""Datasets from the user's files and code: npz, csv and ``python:pkg.module:function``.

Every bad file is an input error: exit 2, one line naming the file and the problem,
and a store left exactly as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bad_input import StoreSnapshot, assert_input_error
from cli_helpers import cli_env, run_cli, runs_json, write_study

from scalelab.data import load_dataset
from scalelab.errors import DatasetError, InputError
from scalelab.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]


def data_config(**data) -> dict:
    return parse_spec({"name": "f", "data": data, "model": {"family": "mlp"}}, source="f.toml").cells[0].config["data"]


def blob_arrays(n: int = 120, n_classes: int = 3, n_features: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    return (rng.normal(size=(n, n_features)) + 3 * y[:, None]).astype(np.float32), y


def write_csv(path: Path, X: np.ndarray, y, *, target: str = "target", header=None) -> Path:
    header = header or [f"x{i}" for i in range(X.shape[1])] + [target]
    lines = [",".join(header)] + [",".join([*(f"{v:.6g}" for v in row), str(label)]) for row, label in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Good files
# ---------------------------------------------------------------------------------------------


def test_npz_without_a_test_split_is_split_by_test_size(tmp_path):
    X, y = blob_arrays()
    np.savez(tmp_path / "d.npz", X=X, y=y)
    ds = load_dataset(data_config(name="npz", path=str(tmp_path / "d.npz"), test_size=0.25))
    assert ds.n_classes == 3 and ds.input_shape == (4,)
    assert len(ds.y_test) == 30 and len(ds.y_train) == 90
    assert sorted(np.concatenate([ds.y_train, ds.y_test]).tolist()) == sorted(y.tolist())


def test_npz_with_its_own_test_split_and_image_shapes(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 1, 6, 6)), np.arange(40) % 4
    np.savez_compressed(tmp_path / "img.npz", X=X, y=y, X_test=X[:10], y_test=y[:10])
    ds = load_dataset(data_config(name="npz", path=str(tmp_path / "img.npz")))
    assert ds.input_shape == (1, 6, 6) and len(ds.y_train) == 40 and len(ds.y_test) == 10
    np.testing.assert_array_equal(ds.X_test, X[:10].astype(np.float32))


def test_npz_n_classes_allows_classes_absent_from_the_file(tmp_path):
    X, y = blob_arrays(n_classes=3)
    np.savez(tmp_path / "d.npz", X=X, y=y * 2)  # classes 0, 2, 4 of 6
    with pytest.raises(DatasetError, match="class 1 never occurs"):
        load_dataset(data_config(name="npz", path=str(tmp_path / "d.npz")))
    assert load_dataset(data_config(name="npz", path=str(tmp_path / "d.npz"), n_classes=6)).n_classes == 6


def test_csv_with_a_target_column_anywhere_and_a_test_file(tmp_path):
    X, y = blob_arrays()
    header = ["label", "a", "b", "c", "d"]
    lines = [",".join(header)] + [",".join([str(l), *(f"{v:.6g}" for v in row)]) for row, l in zip(X, y)]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    write_csv(tmp_path / "test.csv", X[:12], y[:12], header=["label", "a", "b", "c", "d"][1:] + ["label"])
    ds = load_dataset(data_config(name="csv", path=str(tmp_path / "train.csv"), target="label", test_path=str(tmp_path / "test.csv")))
    assert ds.input_shape == (4,) and len(ds.y_train) == 120 and len(ds.y_test) == 12
    np.testing.assert_allclose(ds.X_train[:3], X[:3], rtol=1e-5)


@pytest.mark.parametrize(
    "function, options",
    [
        ("blobs", {"n_samples": 90, "n_classes": 3}),
        ("blobs_bunch", {}),
        ("blobs_with_test_split", {}),
        ("digits_as_lists", {}),
    ],
)
def test_python_dataset_functions(function, options, monkeypatch):
    monkeypatch.chdir(REPO)  # python:tests.fixtures resolves from the repository root
    ds = load_dataset(data_config(name=f"python:tests.fixtures:{function}", **options))
    assert ds.n_classes == 3 and ds.input_shape == (5,)
    assert len(ds.y_train) > len(ds.y_test) > 0


def test_python_dataset_options_are_the_functions_arguments_and_part_of_the_cell():
    a = data_config(name="python:tests.fixtures:blobs", n_samples=90)
    b = data_config(name="python:tests.fixtures:blobs", n_samples=120)
    assert a["options"] == {"n_samples": 90}
    assert a != b


# ---------------------------------------------------------------------------------------------
# Bad files and functions, end to end
# ---------------------------------------------------------------------------------------------


def _bad_npz(case: str, folder: Path) -> tuple[dict, list[str]]:
    X, y = blob_arrays()
    file = folder / "data.npz"
    if case == "missing-file":
        return {"name": "npz", "path": str(folder / "absent.npz")}, ["absent.npz", "not found"]
    if case == "truncated":
        np.savez(file, X=X, y=y)
        file.write_bytes(file.read_bytes()[:300])
    elif case == "not-an-archive":
        file.write_bytes(b"hello, I am text")
    elif case == "single-array":
        np.save(folder / "one.npy", X)
        (folder / "one.npy").rename(file)
    elif case == "no-y":
        np.savez(file, X=X, labels=y)
    elif case == "nan-features":
        X[5, 1] = np.nan
        np.savez(file, X=X, y=y)
    elif case == "inf-features":
        X[9, 0] = np.inf
        np.savez(file, X=X, y=y, X_test=X[:5], y_test=y[:5])
    elif case == "mismatched-lengths":
        np.savez(file, X=X, y=y[:-2])
    elif case == "fractional-labels":
        np.savez(file, X=X, y=y + 0.5)
    elif case == "label-out-of-range":
        np.savez(file, X=X, y=y, X_test=X[:6], y_test=np.array([0, 1, 2, 0, 1, 3]))
    elif case == "negative-label":
        y = y.copy()
        y[4] = -1
        np.savez(file, X=X, y=y)
    elif case == "single-class":
        np.savez(file, X=X, y=np.zeros_like(y), X_test=X[:5], y_test=np.zeros(5, int))
    elif case == "object-array":
        np.savez(file, X=np.array([[1, "a"]] * 10, dtype=object), y=np.zeros(10))
    elif case == "test-without-labels":
        np.savez(file, X=X, y=y, X_test=X[:5])
    else:
        raise AssertionError(case)
    expected = {
        "truncated": ["truncated or corrupt"],
        "not-an-archive": ["not an npz file"],
        "single-array": ["single array"],
        "no-y": ["'y'"],
        "nan-features": ["NaN or inf"],
        "inf-features": ["NaN or inf"],
        "mismatched-lengths": ["120 feature rows", "118 labels"],
        "fractional-labels": ["integer class indices"],
        "label-out-of-range": ["label 3", "out of range"],
        "negative-label": ["label -1", "out of range"],
        "single-class": ["single class"],
        "object-array": ["cannot read as npz", "Object arrays"],
        "test-without-labels": ["test"],
    }[case]
    return {"name": "npz", "path": str(file)}, ["data.npz", *expected]


def _bad_csv(case: str, folder: Path) -> tuple[dict, list[str]]:
    X, y = blob_arrays()
    file = folder / "data.csv"
    data = {"name": "csv", "path": str(file)}
    if case == "no-target-column":
        write_csv(file, X, y, target="label")
        return data, ["data.csv", "no column 'target'", "label"]
    if case == "text-in-a-feature":
        write_csv(file, X, y)
        lines = file.read_text().splitlines()
        lines[7] = "oops," + lines[7].split(",", 1)[1]
        file.write_text("\n".join(lines) + "\n")
        return data, ["data.csv", "column 'x0' is not numeric", "line 8", "oops"]
    if case == "empty-cell":
        write_csv(file, X, y)
        lines = file.read_text().splitlines()
        lines[4] = "," + lines[4].split(",", 1)[1]
        file.write_text("\n".join(lines) + "\n")
        return data, ["data.csv", "'x0'", "line 5"]
    if case == "class-names-as-target":
        write_csv(file, X, np.array(["cat", "dog", "eel"])[y])
        return data, ["data.csv", "target column 'target' is not numeric", "cat"]
    if case == "fractional-target":
        write_csv(file, X, y + 0.25)
        return data, ["data.csv", "integer class indices", "found 0.25 on line 2"]
    if case == "ragged-rows":
        write_csv(file, X, y)
        with file.open("a") as f:
            f.write("1,2,3,4,5,6,7\n")
        return data, ["data.csv", "cannot read as CSV"]
    if case == "empty-file":
        file.write_text("")
        return data, ["data.csv", "cannot read as CSV"]
    if case == "single-class":
        write_csv(file, X, np.zeros_like(y))
        return data, ["data.csv", "single class"]
    if case == "label-gap":
        write_csv(file, X, np.where(y == 2, 7, y))
        return data, ["data.csv", "class 2 never occurs"]
    if case == "missing-test-file":
        write_csv(file, X, y)
        return {**data, "test_path": str(folder / "absent-test.csv")}, ["absent-test.csv", "not found"]
    raise AssertionError(case)


def _bad_python(case: str, folder: Path) -> tuple[dict, list[str]]:
    ref = {
        "module-not-found": ("python:no_such_module_anywhere:load", ["no_such_module_anywhere", "cannot import"]),
        "no-such-function": ("python:tests.fixtures:no_such_function", ["tests.fixtures", "no attribute 'no_such_function'"]),
        "not-callable": ("python:tests.fixtures:NOT_CALLABLE", ["NOT_CALLABLE", "not a function", "int 42"]),
        "returns-a-string": ("python:tests.fixtures:returns_a_string", ["returns_a_string", "returned a str"]),
        "raises": ("python:tests.fixtures:raises_error", ["raises_error", "ValueError", "no data today"]),
        "nan-features": ("python:tests.fixtures:nan_features", ["nan_features", "NaN or inf"]),
        "single-class": ("python:tests.fixtures:single_class", ["single_class", "single class"]),
        "fractional-labels": ("python:tests.fixtures:fractional_labels", ["fractional_labels", "integer class indices"]),
        "mismatched-lengths": ("python:tests.fixtures:mismatched_lengths", ["mismatched_lengths", "300 feature rows", "297 labels"]),
        "unexpected-argument": ("python:tests.fixtures:blobs", ["blobs", "TypeError", "colour"]),
    }[case]
    data = {"name": ref[0], **({"colour": "red"} if case == "unexpected-argument" else {})}
    return data, ref[1]


BAD = [("npz", c) for c in ("missing-file", "truncated", "not-an-archive", "single-array", "no-y", "nan-features", "inf-features",
       "mismatched-lengths", "fractional-labels", "label-out-of-range", "negative-label", "single-class", "object-array",
       "test-without-labels")] + \
      [("csv", c) for c in ("no-target-column", "text-in-a-feature", "empty-cell", "class-names-as-target", "fractional-target",
       "ragged-rows", "empty-file", "single-class", "label-gap", "missing-test-file")] + \
      [("python", c) for c in ("module-not-found", "no-such-function", "not-callable", "returns-a-string", "raises",
       "nan-features", "single-class", "fractional-labels", "mismatched-lengths", "unexpected-argument")]  # fmt: skip


def _toml_value(value) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


@pytest.mark.parametrize("kind, case", BAD, ids=[f"{k}-{c}" for k, c in BAD])
def test_bad_data_is_an_input_error_naming_the_file_and_the_store_is_untouched(tmp_path, kind, case):
    folder = tmp_path / "files"
    folder.mkdir()
    data, needles = {"npz": _bad_npz, "csv": _bad_csv, "python": _bad_python}[kind](case, folder)
    snapshot = StoreSnapshot(tmp_path / "stores")
    data_lines = "\n".join(f"{k} = {_toml_value(v)}" for k, v in data.items())
    study = write_study(tmp_path / "bad-data.toml", f'name = "bad"\n[data]\n{data_lines}\n[model]\nfamily = "mlp"\n[train]\nepochs = 1\n')
    cli = run_cli("run", study, "--store", snapshot.store, "--quiet", env=cli_env(tmp_path / "cache"), cwd=REPO)
    assert_input_error(cli, "bad-data.toml", *needles)
    snapshot.assert_untouched()


def test_a_single_class_after_subsampling_is_caught_before_training(tmp_path):
    """Two classes in the file, but a fraction so small that one of them vanishes."""
    X, y = blob_arrays(n=60, n_classes=2)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    raw = {"name": "s", "data": {"name": "npz", "path": str(tmp_path / "d.npz"), "data_fraction": 0.01}, "model": {"family": "mlp"}}
    from scalelab.estimate import preflight

    with pytest.raises(InputError, match="leaves class 0 with no training samples"):
        preflight(parse_spec(raw, source="s.toml"))


# ---------------------------------------------------------------------------------------------
# Training on each kind of file
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, family", [("npz", "mlp"), ("csv", "tree")])
def test_npz_and_csv_datasets_train(tmp_path, kind, family):
    import torch

    from scalelab.train.cell import run_cell

    X, y = blob_arrays(n=150)
    if kind == "npz":
        np.savez(tmp_path / "d.npz", X=X, y=y)
    else:
        write_csv(tmp_path / "d.csv", X, y)
    raw = {"name": "f", "data": {"name": kind, "path": str(tmp_path / f"d.{kind}"), "preprocess": "standardize"},
           "model": {"family": family}, "train": {"epochs": 5, "batch_size": 16}}  # fmt: skip
    (cell,) = parse_spec(raw, source="f.toml").cells
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as a worker would, on a busy machine
    try:
        outcome = run_cell(cell.config, load_dataset(cell.config["data"]))
    finally:
        torch.set_num_threads(previous)
    assert outcome.state == "done" and outcome.metrics["test_error"] < 0.4  # chance is 2/3
    assert outcome.metrics["n_train"] == 120 and outcome.metrics["n_test"] == 30


@pytest.mark.slow
def test_a_python_dataset_study_runs_to_done(tmp_path):
    """Workers import the user's module too (from the directory the run started in)."""
    env = cli_env(tmp_path / "cache")
    study = write_study(
        tmp_path / "user-data.toml",
        'name = "user-data"\n[data]\nname = "python:tests.fixtures:blobs"\nn_samples = 200\n'
        '[model]\nfamily = "gbdt"\nmax_iter = 10\n[grid]\ndata_fraction = [0.5, 1.0]\n',
    )
    cli = run_cli("run", study, "--store", tmp_path / "runs.db", "--workers", "2", "--quiet", env=env, cwd=REPO)
    assert cli.returncode == 0, cli.describe()
    runs = runs_json("user-data", store=tmp_path / "runs.db", env=env, cwd=REPO)
    assert len(runs) == 2 and all(r["state"] == "done" and r["test_error"] < 0.2 for r in runs), runs
    small, full = sorted(r["n_train"] for r in runs)
    assert full == 160 and abs(small - 80) <= 2  # half of each class, rounded per class
