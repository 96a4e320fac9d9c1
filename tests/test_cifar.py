"""CIFAR-10 and CIFAR-100 from local folders in their real formats (issue: workloads from the seed).

Each test writes a small folder in the exact layout the dataset's authors distribute
(see ``dataset_writers``): nothing is downloaded. The pickles are untrusted input: a
crafted one must be refused before it can run anything, and a test checks that it did not.
"""

from __future__ import annotations

import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from bad_input import StoreSnapshot, assert_input_error
from cli_helpers import cli_env, run_cli, runs_json, write_study
from dataset_writers import (
    CreatesFile,
    RunsCommand,
    binary_records,
    cifar_images,
    python2_pickle,
    write_cifar10_binary,
    write_cifar10_python,
    write_cifar100_binary,
    write_cifar100_python,
)

from scalelab.data import load_dataset
from scalelab.data.safe_pickle import load_data_pickle
from scalelab.errors import DatasetError, InputError
from scalelab.models import build_model, count_parameters
from scalelab.spec import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]


def cifar_config(name: str, path, **options) -> dict:
    raw = {"name": "c", "data": {"name": name, **({"path": str(path)} if path else {}), **options}, "model": {"family": "seed_cnn"}}
    return parse_spec(raw, source="c.toml").cells[0].config["data"]


def batch_bytes(*, data, labels, key=b"labels", protocol=4, **extra) -> bytes:
    return pickle.dumps({b"batch_label": b"x", key: labels, b"data": data, **extra}, protocol=protocol)


# ---------------------------------------------------------------------------------------------
# Loading every supported layout
# ---------------------------------------------------------------------------------------------


def test_python2_layout_of_the_writer_is_what_pickle_itself_reads():
    """The fixture's Python 2 opcodes decode, with the standard unpickler, to the original batch."""
    data, labels = cifar_images(7, n_classes=10, seed=0)
    batch = {b"labels": labels.tolist(), b"data": data, b"batch_label": b"training batch 1 of 5"}
    loaded = pickle.loads(python2_pickle(batch), encoding="bytes")  # trusted here: we wrote it
    assert loaded[b"labels"] == batch[b"labels"] and loaded[b"batch_label"] == batch[b"batch_label"]
    np.testing.assert_array_equal(loaded[b"data"], data)


@pytest.mark.parametrize("writer", ["python2", "protocol-2", "protocol-4", "protocol-5", "binary"])
def test_cifar10_folders_load_to_the_same_images(tmp_path, writer):
    if writer == "binary":
        folder = write_cifar10_binary(tmp_path)
    elif writer == "python2":
        folder = write_cifar10_python(tmp_path)
    else:
        folder = write_cifar10_python(tmp_path, python2=False, protocol=int(writer.split("-")[1]))
    ds = load_dataset(cifar_config("cifar10", folder))
    assert ds.input_shape == (3, 32, 32) and ds.n_classes == 10
    assert ds.X_train.dtype == np.uint8  # kept compact; the view converts
    assert len(ds.y_train) == 5 * 40 and len(ds.y_test) == 50
    expected = np.concatenate([cifar_images(40, n_classes=10, seed=i)[0] for i in range(1, 6)])
    np.testing.assert_array_equal(ds.X_train.reshape(200, -1), expected)
    np.testing.assert_array_equal(ds.y_test, cifar_images(50, n_classes=10, seed=99)[1])
    # Channel-planar rows: the first 1024 bytes are the red plane.
    np.testing.assert_array_equal(ds.X_train[0, 0].ravel(), expected[0, :1024])


@pytest.mark.parametrize("writer", [write_cifar100_python, write_cifar100_binary], ids=["python", "binary"])
@pytest.mark.parametrize("labels, n_classes", [("fine", 100), ("coarse", 20)])
def test_cifar100_fine_and_coarse_labels(tmp_path, writer, labels, n_classes):
    folder = writer(tmp_path)
    ds = load_dataset(cifar_config("cifar100", folder, labels=labels))
    fine = cifar_images(200, n_classes=100, seed=1)[1]
    assert ds.n_classes == n_classes
    np.testing.assert_array_equal(ds.y_train, fine if labels == "fine" else fine // 5)


def test_the_parent_folder_of_the_extracted_one_works_too(tmp_path):
    write_cifar10_python(tmp_path)
    assert load_dataset(cifar_config("cifar10", tmp_path)).n_classes == 10


def test_path_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    folder = write_cifar10_binary(tmp_path)
    monkeypatch.setenv("SCALELAB_CIFAR10", str(folder))
    config = cifar_config("cifar10", None)
    assert config["options"]["path"] is None  # the cell's identity does not depend on where the copy lives
    assert len(load_dataset(config).y_train) == 200
    monkeypatch.delenv("SCALELAB_CIFAR10")
    with pytest.raises(DatasetError, match="SCALELAB_CIFAR10"):
        load_dataset(config)


def test_cifar_defaults_to_scaling_pixels_into_the_unit_interval(tmp_path):
    from scalelab.data import training_view

    config = cifar_config("cifar10", write_cifar10_binary(tmp_path))
    assert config["preprocess"] == "scale"
    view = training_view(load_dataset(config), config)
    assert view.X_train.dtype == np.float32
    assert view.X_train.min() == 0.0 and view.X_train.max() == 1.0


# ---------------------------------------------------------------------------------------------
# The restricted unpickler
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [CreatesFile, RunsCommand], ids=["builtins.open", "os.system"])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, payload):
    marker = tmp_path / "marker"
    with pytest.raises(DatasetError, match="refused") as info:
        load_data_pickle(pickle.dumps({b"data": payload(marker)}))
    assert "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "crafted",
    [
        pytest.param(b"cbuiltins\neval\n(S'1+1'\ntR.", id="eval"),
        pytest.param(b"csubprocess\ncall\n(S'true'\ntR.", id="subprocess"),
        pytest.param(b"cnumpy\nload\n(S'x'\ntR.", id="numpy-other-function"),
        pytest.param(b"\x80\x02cnumpy.core.multiarray\nscalar\n.", id="numpy-scalar"),
        pytest.param(b"(P0\n.", id="persistent-id"),
    ],
)
def test_only_the_array_globals_are_admitted(crafted):
    with pytest.raises(DatasetError, match="refused"):
        load_data_pickle(crafted)


def test_object_arrays_are_refused():
    with pytest.raises(DatasetError, match="unsupported array type"):
        load_data_pickle(pickle.dumps({b"data": np.array([1, "a"], dtype=object)}))


@pytest.mark.parametrize("cut", [1, 10, 100, -1])
def test_truncated_pickles_are_refused_in_one_line(cut):
    whole = pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2]})
    with pytest.raises(DatasetError, match="truncated or corrupt") as info:
        load_data_pickle(whole[:cut])
    assert "\n" not in str(info.value)


def test_array_bytes_that_do_not_fill_the_shape_are_refused():
    good = python2_pickle({b"data": np.zeros((2, 4), np.uint8)})
    short = good.replace(b"U\x08" + bytes(8), b"U\x07" + bytes(7))
    with pytest.raises(DatasetError, match="bytes"):
        load_data_pickle(short)


# ---------------------------------------------------------------------------------------------
# End to end: a 2x2 study on each format, and every bad folder rejected before the store is touched
# ---------------------------------------------------------------------------------------------

STUDY = """\
name = "{name}"

[data]
name = "{dataset}"
{path_line}

[model]
family = "seed_cnn"

[train]
epochs = 2
batch_size = 32

[grid]
width = [0.25, 0.5]
data_fraction = [0.5, 1.0]
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "dataset, writer, n_classes, via_env",
    [
        pytest.param("cifar10", write_cifar10_python, 10, False, id="cifar10-python"),
        pytest.param("cifar10", write_cifar10_binary, 10, True, id="cifar10-binary-from-env"),
        pytest.param("cifar100", write_cifar100_python, 100, False, id="cifar100-python"),
    ],
)
def test_a_two_by_two_seed_cnn_study_runs_to_done(tmp_path, dataset, writer, n_classes, via_env):
    folder = writer(tmp_path / "data")
    env = cli_env(tmp_path / "cache")
    if via_env:
        env["SCALELAB_CIFAR10"] = str(folder)
    path_line = "" if via_env else f'path = "{folder}"'
    study = write_study(tmp_path / "study.toml", STUDY.format(name="cifar", dataset=dataset, path_line=path_line))
    store = tmp_path / "runs.db"
    cli = run_cli("run", study, "--store", store, "--workers", "2", "--quiet", env=env, cwd=tmp_path)
    assert cli.returncode == 0, cli.describe()

    runs = runs_json("cifar", store=store, env=env, cwd=tmp_path)
    assert len(runs) == 4
    for run in runs:
        assert run["state"] == "done", run
        assert run["n_train"] == (200 if run["data_fraction"] == 1.0 else 100)
        assert run["n_test"] == 50
        expected = build_model({"family": "seed_cnn", "knobs": {"width": run["width"]}}, (3, 32, 32), n_classes)
        assert run["n_params"] == count_parameters(expected)
        assert math.isfinite(run["train_loss"]) and math.isfinite(run["test_loss"])
        assert 0 < run["test_loss"] < 3 * math.log(n_classes)
        assert 0.0 <= run["test_error"] <= 1.0
        assert run["flops"] > 0


def _write_batch(path: Path, **fields) -> None:
    path.write_bytes(batch_bytes(**fields))


def _cifar10_python(tmp_path: Path) -> Path:
    return write_cifar10_python(tmp_path / "data", python2=False, protocol=4)


def _break(case: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """A CIFAR folder broken in one way, and what the error line must name."""
    images, labels = cifar_images(40, n_classes=10, seed=1)
    if case == "truncated-pickle":
        folder = _cifar10_python(tmp_path)
        whole = (folder / "data_batch_2").read_bytes()
        (folder / "data_batch_2").write_bytes(whole[: len(whole) // 2])
        return folder, ["data_batch_2", "truncated or corrupt"]
    if case == "garbage-file":
        folder = _cifar10_python(tmp_path)
        (folder / "test_batch").write_bytes(b"this is not a pickle at all")
        return folder, ["test_batch", "corrupt"]
    if case == "wrong-image-shape":
        folder = _cifar10_python(tmp_path)
        _write_batch(folder / "data_batch_1", data=images[:, :3000].copy(), labels=labels.tolist())
        return folder, ["data_batch_1", "shape", "3072"]
    if case == "wrong-dtype":
        folder = _cifar10_python(tmp_path)
        _write_batch(folder / "data_batch_1", data=images.astype(np.float32), labels=labels.tolist())
        return folder, ["data_batch_1", "uint8"]
    if case == "label-out-of-range":
        folder = _cifar10_python(tmp_path)
        _write_batch(folder / "data_batch_3", data=images, labels=[*labels.tolist()[:-1], 10])
        return folder, ["data_batch_3", "label 10", "out of range"]
    if case == "more-images-than-labels":
        folder = _cifar10_python(tmp_path)
        _write_batch(folder / "data_batch_1", data=images, labels=labels.tolist()[:-1])
        return folder, ["data_batch_1", "40 images", "39 labels"]
    if case == "no-labels-entry":
        folder = _cifar10_python(tmp_path)
        _write_batch(folder / "data_batch_1", data=images, labels=labels.tolist(), key=b"fine_labels")
        return folder, ["data_batch_1", "'labels'"]
    if case == "not-a-dict":
        folder = _cifar10_python(tmp_path)
        (folder / "data_batch_5").write_bytes(pickle.dumps([1, 2, 3]))
        return folder, ["data_batch_5", "dict"]
    if case == "object-array":
        folder = _cifar10_python(tmp_path)
        _write_batch(folder / "data_batch_1", data=np.array([b"x"] * 40, dtype=object), labels=labels.tolist())
        return folder, ["data_batch_1", "unsupported array type"]
    if case == "missing-batch":
        folder = _cifar10_python(tmp_path)
        (folder / "data_batch_4").unlink()
        return folder, ["data_batch_4", "missing"]
    if case == "binary-truncated":
        folder = write_cifar10_binary(tmp_path / "data")
        whole = (folder / "data_batch_1.bin").read_bytes()
        (folder / "data_batch_1.bin").write_bytes(whole[:-100])
        return folder, ["data_batch_1.bin", "truncated"]
    if case == "binary-label-out-of-range":
        folder = write_cifar10_binary(tmp_path / "data")
        test_images, test_labels = cifar_images(50, n_classes=10, seed=99)
        test_labels[3] = 12
        (folder / "test_batch.bin").write_bytes(binary_records(test_images, test_labels))
        return folder, ["test_batch.bin", "label 12", "out of range"]
    if case == "binary-empty":
        folder = write_cifar10_binary(tmp_path / "data")
        (folder / "data_batch_2.bin").write_bytes(b"")
        return folder, ["data_batch_2.bin", "empty"]
    if case == "not-a-cifar-folder":
        folder = tmp_path / "data" / "photos"
        folder.mkdir(parents=True)
        (folder / "cat.png").write_bytes(b"\x89PNG")
        return folder, ["photos", "not a CIFAR-10 folder"]
    if case == "folder-missing":
        return tmp_path / "nowhere", ["nowhere", "not found"]
    raise AssertionError(case)


BAD_FOLDERS = [
    "truncated-pickle", "garbage-file", "wrong-image-shape", "wrong-dtype", "label-out-of-range",
    "more-images-than-labels", "no-labels-entry", "not-a-dict", "object-array", "missing-batch",
    "binary-truncated", "binary-label-out-of-range", "binary-empty", "not-a-cifar-folder", "folder-missing",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_a_bad_cifar_folder_is_an_input_error_and_the_store_is_untouched(tmp_path, case):
    folder, needles = _break(case, tmp_path)
    snapshot = StoreSnapshot(tmp_path / "stores")
    study = write_study(tmp_path / "bad-cifar.toml", STUDY.format(name="bad", dataset="cifar10", path_line=f'path = "{folder}"'))
    cli = run_cli("run", study, "--store", snapshot.store, "--quiet", env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert_input_error(cli, "bad-cifar.toml", *needles)
    snapshot.assert_untouched()


@pytest.mark.parametrize("payload", [CreatesFile, RunsCommand], ids=["builtins.open", "os.system"])
def test_a_malicious_data_batch_exits_2_and_its_command_never_runs(tmp_path, payload):
    folder = _cifar10_python(tmp_path)
    marker = tmp_path / "marker-file"
    images, labels = cifar_images(40, n_classes=10, seed=1)
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"labels": labels.tolist(), b"data": images, b"x": payload(marker)}))
    snapshot = StoreSnapshot(tmp_path / "stores")
    study = write_study(tmp_path / "evil.toml", STUDY.format(name="evil", dataset="cifar10", path_line=f'path = "{folder}"'))
    cli = run_cli("run", study, "--store", snapshot.store, "--quiet", env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert_input_error(cli, "evil.toml", "data_batch_1", "refused")
    assert not marker.exists(), "the pickle's command ran"
    snapshot.assert_untouched()


def test_cifar100_label_out_of_range_names_the_file(tmp_path):
    folder = write_cifar100_python(tmp_path / "data")
    images, fine = cifar_images(200, n_classes=100, seed=1)
    fine[5] = 100
    (folder / "train").write_bytes(pickle.dumps({b"data": images, b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()}))
    with pytest.raises(DatasetError, match=r"train: label 100 is out of range \[0, 100\)"):
        load_dataset(cifar_config("cifar100", folder))


# ---------------------------------------------------------------------------------------------
# The shipped example studies
# ---------------------------------------------------------------------------------------------


def test_the_seed_example_is_the_documents_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALELAB_CIFAR10", str(write_cifar10_binary(tmp_path)))
    spec = load_spec(REPO / "examples" / "cifar10-seed.toml")
    for cell in spec.cells:
        data, model, train = cell.config["data"], cell.config["model"], cell.config["train"]
        assert data["name"] == "cifar10" and data["data_fraction"] == 1.0
        assert data["validation_split"] == 0.2 and data["preprocess"] == "scale"
        assert model == {"family": "seed_cnn", "knobs": {"width": 1.0}}
        assert (train["optimizer"], train["lr"], train["batch_size"], train["epochs"]) == ("adam", 1e-3, 64, 10)
    assert spec.target_metric == "test_error"


def test_the_scaling_example_sweeps_width_and_data(tmp_path, monkeypatch):
    from scalelab.estimate import preflight

    monkeypatch.setenv("SCALELAB_CIFAR10", str(write_cifar10_python(tmp_path)))
    spec = load_spec(REPO / "examples" / "cifar10-scaling.toml")
    assert len(spec.cells) == 5 * 6 * 3
    assert {c.params["width"] for c in spec.cells} == {0.25, 0.5, 1.0, 2.0, 4.0}
    assert {c.params["data_fraction"] for c in spec.cells} == {1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0}
    shapes = preflight(spec)  # every cell's data can be prepared from the copy the variable names
    assert {shape.input_shape for shape in shapes.values()} == {(3, 32, 32)}
    shutil.rmtree(tmp_path / "cifar-10-batches-py")
    with pytest.raises(InputError, match="cifar10-scaling.toml: .*cifar-10-batches-py: cifar10 folder not found"):
        preflight(spec)
