"""The bad-input contract, table-driven: hundreds of distinct bad inputs across every command.

DESIGN.md, "Exit codes": a usage or input error exits 2 with one clear line on stderr
naming the file, key or value at fault, and nothing written. Each case below gives the
command line, the files it needs and the words its error line must hold, and asserts:
exit 2, exactly one non-empty stderr line holding every needle, nothing on stdout, no
traceback, and nothing written anywhere in the case's folder: a store copied from a real
run keeps its bytes and modification time, no file appears beside it, and a store that
was absent is not created.

The cases run in this process through :func:`scalelab.cli.main`, the console script's
own entry point (argparse's ``SystemExit`` is the exit status), so that hundreds of them
stay quick; :func:`test_in_process_matches_the_real_command` runs a sample of them as
real ``python -m scalelab`` subprocesses with the same assertions.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import shutil
import signal
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from cli_helpers import cli_env, nonempty_lines, run_cli, write_study
from dataset_writers import write_foreign_sqlite

from scalelab.cli import main

EXIT_USAGE = 2

# -- the pristine store: a tiny real run ---------------------------------------------------
TINY = 'name = "tiny"\n[data]\nname = "digits"\n[model]\nfamily = "mlp"\n[train]\nepochs = 1\nbatch_size = 64\ndevice = "cpu"\n[grid]\nwidth = [0.25]\nseed = [0, 1]\n'


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """(pristine store, cache folder): a store made by running a tiny study to completion."""
    root = tmp_path_factory.mktemp("pristine")
    study = write_study(root / "tiny.toml", TINY)
    cli = run_cli("run", study, "--store", root / "store.db", "--workers", "1", "--quiet", env=cli_env(root / "cache"), cwd=root)
    assert cli.returncode == 0, cli.describe()
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("store.db")) == ["store.db"]
    return root / "store.db", root / "cache"


# -- what a case is ------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # {tmp}, {store} and {study} are filled in
    needles: tuple[str, ...]
    files: dict = field(default_factory=dict)  # relative path -> str | bytes | callable(path)
    store: str = "existing"  # existing | absent | or a key of STORE_MAKERS
    xfail: str | None = None


def case(id, argv, needles, files=None, store="existing", xfail=None) -> Case:
    if isinstance(needles, str):
        needles = (needles,)
    return Case(id, tuple(argv), tuple(needles), dict(files or {}), store, xfail)


def _truncated_store(path: Path, pristine: Path) -> None:
    path.write_bytes(pristine.read_bytes()[:4096 + 100])


STORE_MAKERS: dict[str, Callable] = {
    "folder": lambda path, pristine: path.mkdir(),
    "text": lambda path, pristine: path.write_text("these are not the runs you are looking for\n"),
    "foreign": lambda path, pristine: write_foreign_sqlite(path),
    "garbage": lambda path, pristine: path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16),
    "truncated": _truncated_store,
    "empty": lambda path, pristine: path.write_bytes(b""),
}


# -- TOML writing for generated study files -------------------------------------------------
def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def study_text(sections: dict) -> str:
    """A study file from {"": top-level keys, "data": {...}, "train": {...}, ...}."""
    lines = [f"{k} = {toml_value(v)}" for k, v in sections.get("", {}).items()]
    for name, body in sections.items():
        if name == "":
            continue
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def base_study(**overrides) -> dict:
    sections = {
        "": {"name": "bad"},
        "data": {"name": "digits"},
        "model": {"family": "mlp"},
        "train": {"epochs": 1, "device": "cpu"},
    }
    for section, body in overrides.items():
        sections[section] = {**sections.get(section, {}), **body}
    return sections


RUN = ("run", "{study}", "--store", "{store}", "--quiet")


def study_case(id, sections_or_text, needles, store="existing", xfail=None, files=None) -> Case:
    text = sections_or_text if isinstance(sections_or_text, (str, bytes)) else study_text(sections_or_text)
    needles = (needles,) if isinstance(needles, str) else tuple(needles)
    return case(f"run-study-{id}", RUN, ("bad.toml", *needles), {"bad.toml": text, **(files or {})}, store, xfail)


# -- 1. study files: each field x each kind of bad value ------------------------------------
BIG = 2**32
# (section, key, [bad values]); the error line must name section.key
FIELD_VALUES = [
    ("data", "test_size", [0.0, 1.0, -0.1, "a fifth", math.nan]),
    ("data", "split_seed", [-1, BIG, 1.5, "0"]),
    ("data", "data_fraction", [0.0, 1.5, -1.0, math.nan, math.inf, "half"]),
    ("data", "subsample_seed", [-1, BIG]),
    ("data", "validation_split", [-0.1, 1.0, math.nan, "some"]),
    ("data", "label_noise", [-0.1, 1.5, math.nan, "lots"]),
    ("data", "duplicate_fraction", [1.0, -0.5]),
    ("data", "class_imbalance", [0.5, 2e6, math.nan, "skewed"]),
    ("data", "classes", [[1], [0, 0], [-1, 2], "0,1"]),
    ("data", "feature_noise", [-1.0, 1001.0, math.inf]),
    ("data", "preprocess", ["whiten", 1]),
    ("train", "epochs", [0, -1, 1.5, "ten", 10**7, True]),
    ("train", "min_steps", [-1, 10**9]),
    ("train", "batch_size", [0, -8, 2_000_000, 32.5, "64"]),
    ("train", "lr", [0.0, -1e-3, math.nan, math.inf, "fast"]),
    ("train", "optimizer", ["rmsprop", 1]),
    ("train", "momentum", [1.0, -0.1]),
    ("train", "weight_decay", [-1.0, math.nan]),
    ("train", "seed", [-1, BIG, 0.5]),
    ("train", "precision", ["fp16"]),
    ("train", "compile", ["yes"]),
    ("train", "batch_seeds", [1]),
    ("train", "data_parallel", [0, 2000]),
    ("train", "prune", [1.0, -0.1]),
    ("train", "prune_finetune_epochs", [-1]),
    ("train", "quantize", ["int4"]),
    ("train", "freeze", ["all"]),
    ("train", "head_lr", [0.0, -1.0]),
    ("train", "device", ["tpu", "cuda:x"]),
    ("train", "init_from", [""]),
    ("model", "width", [0.0, -1.0, 2000.0, math.nan, "wide"]),
    ("model", "depth", [0, 65, 1.5, "two"]),
    ("resources", "cpus", [0.0, 5000.0]),
    ("resources", "gpus", [-1.0, 65.0]),
    ("target", "metric", [3]),
]


def _value_id(value) -> str:
    if isinstance(value, str):
        return "str-" + (value.replace(" ", "_").replace(",", "_") or "empty")
    if isinstance(value, list):
        return "list-" + "_".join(map(str, value))
    return f"{type(value).__name__}-{value}"


def field_cases() -> list[Case]:
    cases = []
    for section, key, values in FIELD_VALUES:
        for value in values:
            cases.append(study_case(f"{section}.{key}={_value_id(value)}", base_study(**{section: {key: value}}), f"{section}.{key}"))
    return cases


# The same kinds of values inside [grid] lists, beside a good value.
GRID_VALUES = [
    ("width", [0.25, -1.0]), ("width", [0.25, 0.0]), ("depth", [1, 0]), ("epochs", [1, 0]), ("epochs", [1, 2.5]),
    ("lr", [0.01, -0.01]), ("batch_size", [32, 0]), ("data_fraction", [0.5, 1.5]), ("data_fraction", [0.5, 0.0]),
    ("label_noise", [0.0, 2.0]), ("seed", [0, -1]), ("optimizer", ["adam", "lion"]), ("test_size", [0.2, 1.0]),
    ("validation_split", [0.0, 1.0]), ("class_imbalance", [1.0, 0.1]),
]  # fmt: skip


def grid_cases() -> list[Case]:
    return [
        study_case(f"grid.{key}={_value_id(values[-1])}", base_study(grid={key: values}), key)
        for key, values in GRID_VALUES
    ]


UNKNOWN_KEYS = [
    ("", "bogus"), ("data", "pathh"), ("model", "colour"), ("train", "epochz"), ("grid", "widht"),
    ("target", "metrik"), ("resources", "tpus"),
]  # fmt: skip


def unknown_key_cases() -> list[Case]:
    cases = []
    for section, key in UNKNOWN_KEYS:
        value = [1, 2] if section == "grid" else 1
        cases.append(study_case(f"unknown-key-{section or 'top'}.{key}", base_study(**{section: {key: value}}), key))
    return cases


HEAD = 'name = "bad"\n[data]\nname = "digits"\n[model]\nfamily = "mlp"\n'
TRAIN = '[train]\nepochs = 1\ndevice = "cpu"\n'

STRUCTURE_CASES = [
    study_case("invalid-toml-unclosed-table", HEAD + "[grid\nwidth = [1]\n", "TOML"),
    study_case("invalid-toml-duplicate-key", HEAD + 'family = "tree"\n', "TOML"),
    study_case("invalid-toml-unclosed-string", 'name = "bad\n', "TOML"),
    study_case("invalid-toml-bare-word", HEAD + TRAIN + "lr = fast\n", "TOML"),
    study_case("no-name", '[data]\nname = "digits"\n[model]\nfamily = "mlp"\n', "name"),
    study_case("empty-name", base_study(**{"": {"name": ""}}), "name"),
    study_case("name-too-long", base_study(**{"": {"name": "n" * 201}}), "name"),
    study_case("name-not-a-string", base_study(**{"": {"name": 3}}), "name"),
    study_case("description-not-a-string", base_study(**{"": {"description": 5}}), "description"),
    study_case("data-not-a-table", 'name = "bad"\ndata = 3\n[model]\nfamily = "mlp"\n', "data"),
    study_case("model-not-a-table", 'name = "bad"\nmodel = "mlp"\n[data]\nname = "digits"\n', "model"),
    study_case("no-data-name", 'name = "bad"\n[data]\ntest_size = 0.2\n[model]\nfamily = "mlp"\n', "data.name"),
    study_case("no-model-family", 'name = "bad"\n[data]\nname = "digits"\n[model]\nwidth = 1\n', "family"),
    study_case("unknown-family", base_study(model={"family": "transformer"}), "transformer"),
    study_case("unknown-dataset", base_study(data={"name": "imagenet"}), "imagenet"),
    study_case("python-family-missing-module", base_study(model={"family": "python:no_such_pkg_xyz.models:make"}), "no_such_pkg_xyz"),
    study_case("python-dataset-missing-module", base_study(data={"name": "python:no_such_pkg_xyz.data:load"}), "no_such_pkg_xyz"),
    study_case("empty-grid-table", HEAD + TRAIN + "[grid]\n", "grid"),
    study_case("empty-grid-list", base_study(grid={"width": []}), "width"),
    study_case("grid-key-unknown-to-family", base_study(grid={"max_iter": [10, 20]}), "max_iter"),
    study_case("too-many-cells", base_study(grid={"seed": list(range(400)), "width": [0.25 + i / 1000 for i in range(300)]}), "cells"),
    study_case("unknown-target-metric", base_study(target={"metric": "test_eror"}), ("target.metric", "test_eror")),
    study_case("target-metric-not-recorded", base_study(target={"metric": "accuracy"}), ("target.metric", "accuracy")),
    study_case("empty-target-metric", base_study(target={"metric": ""}), "target.metric"),
    study_case("class-lost-by-subsampling", base_study(grid={"data_fraction": [0.001]}), ("data_fraction", "0.001")),
    study_case("classes-beyond-the-dataset", base_study(data={"classes": [0, 42]}), "42"),
    study_case("freeze-without-init-from", base_study(train={"freeze": "backbone"}), "freeze"),
    study_case("batch-seeds-on-a-tree", study_text(base_study(train={"batch_seeds": True})).replace('"mlp"', '"tree"'), "batch_seeds"),
    study_case("init-from-missing-file", base_study(train={"init_from": "nowhere/weights.pt"}), "weights.pt"),
    study_case("init-from-a-folder", base_study(train={"init_from": "."}), "init_from"),
    study_case("init-from-a-text-file", base_study(train={"init_from": "notes.pt"}), ("notes.pt", "not a torch checkpoint"),
               files={"notes.pt": "these are not weights\n"}),
    study_case("init-from-a-plain-pickle", base_study(train={"init_from": "plain.pt"}), ("plain.pt", "refused"),
               files={"plain.pt": pickle.dumps({"w": 1}, protocol=4)}),
    study_case("init-from-an-empty-file", base_study(train={"init_from": "empty.pt"}), "empty.pt", files={"empty.pt": b""}),
    study_case("pretrain-refuses-seed", HEAD + TRAIN + 'init_from = "pretrain"\n[pretrain.data]\nname = "digits"\n[pretrain.train]\nseed = 3\n', "seed"),
    study_case("pretrain-unknown-key", HEAD + TRAIN + 'init_from = "pretrain"\n[pretrain]\nbogus = 1\n', "bogus"),
    study_case("init-from-pretrain-without-pretrain", base_study(train={"init_from": "pretrain"}), "pretrain"),
    study_case("device-cuda-on-cpu-machine", base_study(train={"device": "cuda"}), "train.device"),
    study_case("not-utf8", b'name = "bad\xff\xfe"\n', "bad.toml"),
    study_case("cifar10-missing-folder", base_study(data={"name": "cifar10", "path": "no-such-cifar"}), "no-such-cifar"),
    study_case("cifar10-path-is-a-file", base_study(data={"name": "cifar10", "path": "cifar.txt"}), "cifar.txt", files={"cifar.txt": "x"}),
    study_case("cifar10-empty-folder", base_study(data={"name": "cifar10", "path": "cifar"}), "cifar", files={"cifar/.keep": ""}),
    study_case("synthetic-too-few-samples", base_study(data={"name": "synthetic", "n_samples": 5}), "n_samples"),
    study_case("synthetic-one-class", base_study(data={"name": "synthetic", "n_classes": 1}), "n_classes"),
    study_case("synthetic-bad-shape", base_study(data={"name": "synthetic", "shape": "32x32"}), "shape"),
    study_case("mnist1d-negative-translation", base_study(data={"name": "mnist1d", "max_translation": -3}), "max_translation"),
    study_case("gbdt-zero-rounds", base_study(model={"family": "gbdt", "max_iter": 0}), "max_iter"),
    study_case("gbdt-learning-rate-too-big", base_study(model={"family": "gbdt", "learning_rate": 11.0}), "learning_rate"),
    study_case("tree-one-leaf", base_study(model={"family": "tree", "max_leaf_nodes": 1}), "max_leaf_nodes"),
    study_case("seed-cnn-width-too-big", base_study(model={"family": "seed_cnn", "width": 100.0}), "width"),
]

MISSING_STUDY_CASES = [
    case("run-missing-study-file", ("run", "no-such-study.toml", "--store", "{store}"), ("no-such-study.toml",)),
    case("run-missing-study-file-absent-store", ("run", "no-such-study.toml", "--store", "{store}"), ("no-such-study.toml",), store="absent"),
    case("run-study-file-is-a-folder", ("run", "{tmp}/folder.toml", "--store", "{store}"), ("folder.toml",), {"folder.toml/.keep": ""}),
    case("run-unknown-study-name", ("run", "no-such-study", "--store", "{store}"), ("no-such-study",)),
    case("run-study-name-without-store", ("run", "tiny", "--store", "{store}"), ("runs.db", "no store"), store="absent"),
]


# -- 2. datasets: files that are not what the study says -------------------------------------
def csv_study(path="data.csv", **data) -> str:
    return study_text(base_study(data={"name": "csv", "path": path, "target": "label", **data}))


def npz_study(path="data.npz", **data) -> str:
    return study_text(base_study(data={"name": "npz", "path": path, **data}))


def good_rows(n=60, *, label=lambda i: i % 3) -> str:
    return "".join(f"{i * 0.1:.2f},{(i * 7) % 11 * 0.3:.2f},{label(i)}\n" for i in range(n))


def _npz(**arrays):
    def write(path: Path) -> None:
        np.savez(path, **arrays)

    return write


def _truncated_npz(path: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, X=np.ones((50, 4)), y=np.arange(50) % 2)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def _npz_with_corrupt_member(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", b"\x93NUMPY this is not an array header")
        buffer = io.BytesIO()
        np.save(buffer, np.arange(20) % 2)
        archive.writestr("y.npy", buffer.getvalue())


def _npz_object_array(path: Path) -> None:
    np.savez(path, X=np.array([{"a": 1}] * 20, dtype=object), y=np.arange(20) % 2)


X = np.random.default_rng(0).normal(size=(40, 3))
Y = np.arange(40) % 2


def _with(array, index, value):
    array = array.astype(float).copy()
    array[index] = value
    return array


def data_case(id, study, needles, files, xfail=None) -> Case:
    needles = (needles,) if isinstance(needles, str) else tuple(needles)
    return case(f"run-data-{id}", RUN, needles, {"bad.toml": study, **files}, store="absent", xfail=xfail)


HEADER = "a,b,label\n"
DATASET_CASES = [
    # CSV
    data_case("csv-missing-file", csv_study("nowhere.csv"), "nowhere.csv", {}),
    data_case("csv-path-is-a-folder", csv_study("folder.csv"), "folder.csv", {"folder.csv/.keep": ""}),
    data_case("csv-empty-file", csv_study(), "data.csv", {"data.csv": ""}),
    data_case("csv-header-only", csv_study(), ("data.csv", "no rows"), {"data.csv": HEADER}),
    data_case("csv-duplicate-column", csv_study(), ("data.csv", "'a'"), {"data.csv": "a,a,label\n" + good_rows()}),
    data_case("csv-target-column-missing", csv_study(target="class"), ("data.csv", "class"), {"data.csv": HEADER + good_rows()}),
    data_case("csv-text-feature", csv_study(), ("data.csv", "b"), {"data.csv": HEADER + good_rows() + "0.5,tall,1\n"}),
    data_case("csv-nan-feature", csv_study(), ("data.csv", "a"), {"data.csv": HEADER + good_rows() + "nan,0.5,1\n"}),
    data_case("csv-inf-feature", csv_study(), ("data.csv", "b"), {"data.csv": HEADER + good_rows() + "0.5,inf,1\n"}),
    data_case("csv-empty-feature-cell", csv_study(), ("data.csv", "a"), {"data.csv": HEADER + good_rows() + ",0.5,1\n"}),
    data_case("csv-negative-label", csv_study(), ("data.csv", "label"), {"data.csv": HEADER + good_rows() + "0.5,0.5,-1\n"}),
    data_case("csv-fractional-label", csv_study(), ("data.csv", "label"), {"data.csv": HEADER + good_rows() + "0.5,0.5,1.5\n"}),
    data_case("csv-text-label", csv_study(), ("data.csv", "label"), {"data.csv": HEADER + good_rows() + "0.5,0.5,cat\n"}),
    data_case("csv-missing-label", csv_study(), ("data.csv", "label"), {"data.csv": HEADER + good_rows() + "0.5,0.5,\n"}),
    data_case("csv-ragged-row", csv_study(), "data.csv", {"data.csv": HEADER + good_rows() + "0.5,0.5,1,7,8\n"}),
    data_case("csv-truncated-mid-row", csv_study(), "data.csv", {"data.csv": HEADER + good_rows() + "0.5"}),
    data_case("csv-binary-garbage", csv_study(), "data.csv", {"data.csv": bytes(range(256)) * 4}),
    data_case("csv-single-class", csv_study(), ("data.csv", "class"), {"data.csv": HEADER + good_rows(label=lambda i: 0)}),
    data_case("csv-label-beyond-n-classes", csv_study(n_classes=2), ("data.csv", "label 2"), {"data.csv": HEADER + good_rows()}),
    data_case("csv-only-the-target-column", csv_study(), "data.csv", {"data.csv": "label\n" + "".join(f"{i % 2}\n" for i in range(40))}),
    data_case("csv-missing-test-file", csv_study(test_path="test.csv"), "test.csv", {"data.csv": HEADER + good_rows()}),
    data_case("csv-test-file-other-columns", csv_study(test_path="test.csv"), "test.csv",
              {"data.csv": HEADER + good_rows(), "test.csv": "a,c,label\n" + good_rows(20)}),
    data_case("csv-group-column-missing", csv_study(group="site"), ("data.csv", "site"), {"data.csv": HEADER + good_rows()}),
    data_case("csv-single-class-after-subsampling",
              study_text(base_study(data={"name": "csv", "path": "data.csv", "target": "label"}, grid={"data_fraction": [0.02]})),
              ("data_fraction", "class"), {"data.csv": HEADER + good_rows(200, label=lambda i: int(i == 7 or i == 150))}),
    # NPZ
    data_case("npz-missing-file", npz_study("nowhere.npz"), "nowhere.npz", {}),
    data_case("npz-text-file", npz_study(), "data.npz", {"data.npz": "X,y\n1,2\n"}),
    data_case("npz-empty-file", npz_study(), "data.npz", {"data.npz": b""}),
    data_case("npz-truncated", npz_study(), "data.npz", {"data.npz": _truncated_npz}),
    data_case("npz-corrupt-member", npz_study(), "data.npz", {"data.npz": _npz_with_corrupt_member}),
    data_case("npz-no-X", npz_study(), ("data.npz", "X"), {"data.npz": _npz(features=X, y=Y)}),
    data_case("npz-no-y", npz_study(), ("data.npz", "y"), {"data.npz": _npz(X=X, labels=Y)}),
    data_case("npz-length-mismatch", npz_study(), ("data.npz", "39"), {"data.npz": _npz(X=X, y=Y[:39])}),
    data_case("npz-complex-features", npz_study(), ("data.npz", "complex"), {"data.npz": _npz(X=X * (1 + 1j), y=Y)}),
    data_case("npz-nan-feature", npz_study(), ("data.npz", "NaN", "row 3"), {"data.npz": _npz(X=_with(X, (3, 1), np.nan), y=Y)}),
    data_case("npz-inf-feature", npz_study(), ("data.npz", "inf", "row 5"), {"data.npz": _npz(X=_with(X, (5, 0), np.inf), y=Y)}),
    data_case("npz-negative-label", npz_study(), ("data.npz", "y"), {"data.npz": _npz(X=X, y=_with(Y, 2, -1).astype(int))}),
    data_case("npz-fractional-label", npz_study(), ("data.npz", "y"), {"data.npz": _npz(X=X, y=_with(Y, 2, 0.5))}),
    data_case("npz-label-beyond-n-classes", npz_study(n_classes=2), ("data.npz", "label 2"), {"data.npz": _npz(X=X, y=np.arange(40) % 3)}),
    data_case("npz-single-class", npz_study(), ("data.npz", "class"), {"data.npz": _npz(X=X, y=np.zeros(40, dtype=int))}),
    data_case("npz-object-array", npz_study(), "data.npz", {"data.npz": _npz_object_array}),
    data_case("npz-string-features", npz_study(), ("data.npz", "not numeric"), {"data.npz": _npz(X=np.array([["a", "b"]] * 40), y=Y)}),
    data_case("npz-no-rows", npz_study(), "data.npz", {"data.npz": _npz(X=np.zeros((0, 3)), y=np.zeros(0, dtype=int))}),
    data_case("npz-one-dimensional-X", npz_study(), ("data.npz", "(40,)"), {"data.npz": _npz(X=np.arange(40.0), y=Y)}, ),
    data_case("npz-2d-labels", npz_study(), ("data.npz", "y"), {"data.npz": _npz(X=X, y=np.stack([Y, Y], axis=1))}),
    data_case("npz-test-without-labels", npz_study(), ("data.npz", "test labels"), {"data.npz": _npz(X=X, y=Y, X_test=X[:10])}),
    data_case("npz-test-feature-mismatch", npz_study(), ("data.npz", "test features"), {"data.npz": _npz(X=X, y=Y, X_test=X[:10, :2], y_test=Y[:10])}),
    data_case("npz-group-length-mismatch", npz_study(), ("data.npz", "group"), {"data.npz": _npz(X=X, y=Y, group=np.arange(10))}),
]


# -- 3. command-line flags ------------------------------------------------------------------
GOOD_CSV = "n,d,flops,loss,model\n" + "".join(
    f"{n},{d},{6 * n * d},{0.1 + 3 * n ** -0.3 + 5 * d ** -0.3:.6f},{'ab'[i % 2]}\n"
    for i, (n, d) in enumerate((n, d) for n in (1000, 2000, 4000, 8000, 16000) for d in (10_000, 40_000, 160_000))
)
LAW_FILES = {"runs.csv": GOOD_CSV}
LAW_ARGS = {
    "fit": ("fit", "{tmp}/runs.csv", "--x", "n", "--y", "loss", "--bootstrap", "20"),
    "backtest": ("backtest", "{tmp}/runs.csv", "--x", "n", "--y", "loss", "--bootstrap", "20"),
    "plan": ("plan", "{tmp}/runs.csv", "--x", "n", "--x", "d", "--y", "loss", "--flops", "flops", "--budget", "1e12", "--bootstrap", "20"),
    "report": ("report", "{tmp}/runs.csv", "--x", "n", "--y", "loss", "-o", "{tmp}/r.html", "--bootstrap", "20"),
    "transfer": ("transfer", "tiny", "--store", "{store}", "--bootstrap", "20"),
}

SHARED_FLAG_VALUES = [
    ("--level", ["0", "1", "nan", "high"]),
    ("--chance", ["0", "2", "nan", "x"]),
    ("--bootstrap", ["0", "-5", "many"]),
]


def shared_flag_cases() -> list[Case]:
    cases = []
    for command, base in LAW_ARGS.items():
        for flag, values in SHARED_FLAG_VALUES:
            for value in values:
                cases.append(case(f"{command}{flag}={value}", (*base, flag, value), (flag, value), LAW_FILES))
    return cases


F, B, P, R = LAW_ARGS["fit"], LAW_ARGS["backtest"], LAW_ARGS["plan"], LAW_ARGS["report"]
CSV_FIT = ("fit", "{tmp}/runs.csv")
CSV_PLAN = ("plan", "{tmp}/runs.csv", "--flops", "flops")
STUDY_ARGS = ("--store", "{store}")

FLAG_CASES = [
    # run
    case("run--workers=0", (*RUN, "--workers", "0"), ("--workers", "0"), {"bad.toml": TINY}),
    case("run--workers=-1", (*RUN, "--workers", "-1"), ("--workers", "-1"), {"bad.toml": TINY}),
    case("run--workers=two", (*RUN, "--workers", "two"), ("--workers", "two"), {"bad.toml": TINY}),
    case("run--workers=1.5", (*RUN, "--workers", "1.5"), ("--workers", "1.5"), {"bad.toml": TINY}),
    case("run--executor=slurm", (*RUN, "--executor", "slurm"), ("--executor", "slurm"), {"bad.toml": TINY}),
    case("run-unknown-option", (*RUN, "--bogus-option"), "--bogus-option", {"bad.toml": TINY}),
    case("run-no-study", ("run",), "STUDY"),
    case("run-store-in-missing-folder", ("run", "{study}", "--store", "{tmp}/nowhere/runs.db"), ("nowhere", "does not exist"), {"bad.toml": TINY}),
    case("run-dry-run-bad-study", (*RUN, "--dry-run"), ("bad.toml", "train.epochs"), {"bad.toml": TINY.replace("epochs = 1", "epochs = 0")}),
    case("unknown-command", ("frobnicate",), "frobnicate"),
    case("no-command", (), "COMMAND"),
    # status and runs
    case("status--format=xml", ("status", "--store", "{store}", "--format", "xml"), ("--format", "xml")),
    case("status-unknown-study", ("status", "no-such-study", "--store", "{store}"), "no-such-study"),
    case("status-two-studies", ("status", "tiny", "tiny", "--store", "{store}"), "tiny"),
    case("runs--format=xml", ("runs", "tiny", "--store", "{store}", "--format", "xml"), ("--format", "xml")),
    case("runs-no-study", ("runs", "--store", "{store}"), "STUDY"),
    case("runs-unknown-study", ("runs", "no-such-study", "--store", "{store}"), "no-such-study"),
    case("runs-bad-study-file", ("runs", "{study}", "--store", "{store}"), ("bad.toml", "train.lr"), {"bad.toml": TINY.replace("batch_size = 64", "lr = -1.0")}),
    # fit
    case("fit--format=csv", (*F, "--format", "csv"), ("--format", "csv"), LAW_FILES),
    case("fit--form=bogus", (*F, "--form", "bogus"), "bogus", LAW_FILES),
    case("fit--x-missing-column", ("fit", "{tmp}/runs.csv", "--x", "size", "--y", "loss"), "size", LAW_FILES),
    case("fit--y-missing-column", ("fit", "{tmp}/runs.csv", "--x", "n", "--y", "accuracy"), "accuracy", LAW_FILES),
    case("fit--group-missing-column", (*F, "--group", "family"), "family", LAW_FILES),
    case("fit--x-three-times", (*F, "--x", "d", "--x", "flops"), "--x", LAW_FILES),
    case("fit--x-twice-the-same", ("fit", "{tmp}/runs.csv", "--x", "n", "--x", "n", "--y", "loss"), ("--x", "twice"), LAW_FILES),
    case("fit-csv-without-x", ("fit", "{tmp}/runs.csv", "--y", "loss"), ("runs.csv", "--x"), LAW_FILES),
    case("fit-csv-without-y", ("fit", "{tmp}/runs.csv", "--x", "n"), ("runs.csv", "--y"), LAW_FILES),
    case("fit--predict-not-a-number", (*F, "--predict", "abc"), ("--predict", "abc"), LAW_FILES),
    case("fit--predict-negative", (*F, "--predict", "-5"), ("runs.csv", "prediction points", "positive"), LAW_FILES),
    case("fit--predict-nan", (*F, "--predict", "nan"), ("runs.csv", "prediction points", "finite"), LAW_FILES),
    case("fit--predict-pair-for-one-x", (*F, "--predict", "1000,2000"), ("--predict", "1000,2000"), LAW_FILES),
    case("fit--predict-single-for-two-x", ("fit", "{tmp}/runs.csv", "--x", "n", "--x", "d", "--y", "loss", "--predict", "1000"),
         ("--predict", "1000"), LAW_FILES),
    case("fit--predict-triple", ("fit", "{tmp}/runs.csv", "--x", "n", "--x", "d", "--y", "loss", "--predict", "1,2,3"),
         ("--predict", "1,2,3"), LAW_FILES),
    case("fit--predict-without-value", (*F, "--predict"), "--predict", LAW_FILES),
    case("fit-no-source", ("fit",), "SOURCE"),
    case("fit-study--x-missing-column", ("fit", "tiny", *STUDY_ARGS, "--x", "size"), "size"),
    case("fit-study--y-missing-column", ("fit", "tiny", *STUDY_ARGS, "--y", "accuracy"), "accuracy"),
    case("fit-study--group-missing-column", ("fit", "tiny", *STUDY_ARGS, "--group", "colour"), "colour"),
    # backtest
    case("backtest--form=bogus", (*B, "--form", "bogus"), "bogus", LAW_FILES),
    case("backtest--form=bogus-after-a-good-one", (*B, "--form", "power", "--form", "bogus"), "bogus", LAW_FILES),
    case("backtest--holdout=0", (*B, "--holdout", "0"), ("--holdout", "0"), LAW_FILES),
    case("backtest--holdout=-1", (*B, "--holdout", "-1"), ("--holdout", "-1"), LAW_FILES),
    case("backtest--holdout=x", (*B, "--holdout", "x"), ("--holdout", "x"), LAW_FILES),
    case("backtest--holdout-all-scales", (*B, "--holdout", "5"), ("runs.csv", "hold out 5"), LAW_FILES),
    case("backtest--gap=0.5", (*B, "--gap", "0.5"), ("--gap", "0.5"), LAW_FILES),
    case("backtest--gap=0", (*B, "--gap", "0"), ("--gap", "0"), LAW_FILES),
    case("backtest--gap=nan", (*B, "--gap", "nan"), ("--gap", "nan"), LAW_FILES),
    case("backtest--gap=inf", (*B, "--gap", "inf"), ("--gap", "inf"), LAW_FILES),
    case("backtest--gap=wide", (*B, "--gap", "wide"), ("--gap", "wide"), LAW_FILES),
    case("backtest--format=csv", (*B, "--format", "csv"), ("--format", "csv"), LAW_FILES),
    case("backtest--x-missing-column", ("backtest", "{tmp}/runs.csv", "--x", "size", "--y", "loss"), "size", LAW_FILES),
    case("backtest--y-missing-column", ("backtest", "{tmp}/runs.csv", "--x", "n", "--y", "accuracy"), "accuracy", LAW_FILES),
    case("backtest-study--x-missing-column", ("backtest", "tiny", *STUDY_ARGS, "--x", "size"), "size"),
    # plan
    case("plan-budget-and-target", (*P, "--target", "0.2"), ("--budget", "--target"), LAW_FILES),
    case("plan-neither-budget-nor-target", ("plan", "{tmp}/runs.csv", "--x", "n", "--x", "d", "--y", "loss"), ("--budget", "--target"), LAW_FILES),
    *[case(f"plan--budget={v}", (*CSV_PLAN, "--x", "n", "--x", "d", "--y", "loss", f"--budget={v}"), ("--budget", shown), LAW_FILES)
      for v, shown in (("0", "0"), ("-1e12", "-1e+12"), ("nan", "nan"), ("inf", "inf"), ("lots", "lots"))],
    *[case(f"plan--target={v}", (*CSV_PLAN, "--x", "n", "--x", "d", "--y", "loss", f"--target={v}"), ("--target", v), LAW_FILES)
      for v in ("nan", "-inf", "low")],
    case("plan--hardware=tpu9", (*P, "--hardware", "tpu9"), ("--hardware", "tpu9"), LAW_FILES),
    case("plan--precision=fp16", (*P, "--hardware", "a100", "--precision", "fp16"), ("--precision", "fp16"), LAW_FILES),
    case("plan--precision-the-hardware-lacks", (*P, "--hardware", "v100", "--precision", "bf16"), ("v100", "bf16"), LAW_FILES),
    case("plan--utilisation=0", (*P, "--utilisation", "0"), ("--utilisation", "0"), LAW_FILES),
    case("plan--utilisation=1.5", (*P, "--utilisation", "1.5"), ("--utilisation", "1.5"), LAW_FILES),
    case("plan--format=csv", (*P, "--format", "csv"), ("--format", "csv"), LAW_FILES),
    case("plan--flops-missing-column", (*CSV_PLAN[:2], "--x", "n", "--x", "d", "--y", "loss", "--flops", "compute", "--budget", "1e12"), "compute", LAW_FILES),
    case("plan--x-missing-column", (*CSV_PLAN, "--x", "n", "--x", "tokens", "--y", "loss", "--budget", "1e12"), "tokens", LAW_FILES),
    case("plan-one-x", (*CSV_PLAN, "--x", "n", "--y", "loss", "--budget", "1e12"), "--x", LAW_FILES),
    case("plan-csv-without-x", (*CSV_PLAN, "--y", "loss", "--budget", "1e12"), ("runs.csv", "--x"), LAW_FILES),
    case("plan-study-unknown-metric", ("plan", "tiny", *STUDY_ARGS, "--y", "accuracy", "--budget", "1e12"), "accuracy"),
    # report
    case("report--form=bogus", (*R, "--form", "bogus"), "bogus", LAW_FILES),
    case("report-o-into-missing-folder", ("report", "{tmp}/runs.csv", "--x", "n", "--y", "loss", "-o", "{tmp}/nowhere/r.html"),
         ("nowhere", "does not exist"), LAW_FILES),
    case("report-o-onto-a-folder", ("report", "{tmp}/runs.csv", "--x", "n", "--y", "loss", "-o", "{tmp}/out"), ("out", "is a folder"),
         {**LAW_FILES, "out/.keep": ""}),
    case("report-study-o-onto-a-folder", ("report", "tiny", *STUDY_ARGS, "-o", "{tmp}/out"), "is a folder", {"out/.keep": ""}),
    case("report--x-missing-column", ("report", "{tmp}/runs.csv", "--x", "size", "--y", "loss", "-o", "{tmp}/r.html"), "size", LAW_FILES),
    case("report--y-missing-column", ("report", "{tmp}/runs.csv", "--x", "n", "--y", "accuracy", "-o", "{tmp}/r.html"), "accuracy", LAW_FILES),
    case("report--group-missing-column", (*R, "--group", "family"), "family", LAW_FILES),
    case("report-study--y-missing-column", ("report", "tiny", *STUDY_ARGS, "--y", "accuracy", "-o", "{tmp}/r.html"), "accuracy"),
    # transfer
    case("transfer--format=csv", (*LAW_ARGS["transfer"], "--format", "csv"), ("--format", "csv")),
    case("transfer-study-without-init-from", LAW_ARGS["transfer"], "tiny"),
    case("transfer-unknown-study", ("transfer", "no-such-study", *STUDY_ARGS), "no-such-study"),
    case("transfer-csv", ("transfer", "{tmp}/runs.csv", *STUDY_ARGS), "runs.csv", LAW_FILES),
]


# -- 4. bad CSVs for the laws, through each command that reads one ----------------------------
def law_csv(rows: list[tuple], header="n,d,flops,loss,model") -> str:
    return header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)


GOOD_ROWS = [tuple(line.split(",")) for line in GOOD_CSV.splitlines()[1:]]

BAD_LAW_CSVS = {
    "empty-file": ("", "runs.csv"),
    "header-only": (law_csv([]), "runs.csv"),
    "loss-not-numeric": (law_csv([*GOOD_ROWS[:-1], (*GOOD_ROWS[-1][:3], "low", "a")]), "loss"),
    "n-not-numeric": (law_csv([*GOOD_ROWS[:-1], ("big", *GOOD_ROWS[-1][1:])]), "n"),
    "n-zero": (law_csv([*GOOD_ROWS[:-1], ("0", *GOOD_ROWS[-1][1:])]), "n"),
    "n-negative": (law_csv([*GOOD_ROWS[:-1], ("-1000", *GOOD_ROWS[-1][1:])]), "n"),
    "one-n-value": (law_csv([("1000", *r[1:]) for r in GOOD_ROWS]), "distinct"),
    "loss-nan": (law_csv([*GOOD_ROWS[:-1], (*GOOD_ROWS[-1][:3], "nan", "a")]), "loss"),
    "n-inf": (law_csv([*GOOD_ROWS[:-1], ("inf", *GOOD_ROWS[-1][1:])]), "n"),
    "duplicate-column": (GOOD_CSV.replace("n,d,flops,loss,model", "n,d,n,loss,model", 1), "'n'"),
    "binary-garbage": (bytes(range(256)) * 4, "runs.csv"),
}
LAW_CSV_COMMANDS = {
    "fit": ("fit", "{tmp}/runs.csv", "--x", "n", "--y", "loss", "--bootstrap", "20"),
    "backtest": ("backtest", "{tmp}/runs.csv", "--x", "n", "--y", "loss", "--bootstrap", "20"),
    "plan": ("plan", "{tmp}/runs.csv", "--x", "n", "--x", "d", "--y", "loss", "--flops", "flops", "--budget", "1e12", "--bootstrap", "20"),
    "report": ("report", "{tmp}/runs.csv", "--x", "n", "--y", "loss", "-o", "{tmp}/r.html", "--bootstrap", "20"),
}


def law_csv_cases() -> list[Case]:
    cases = []
    for command, argv in LAW_CSV_COMMANDS.items():
        cases.append(case(f"{command}-csv-missing-file", argv, "runs.csv"))
        cases.append(case(f"{command}-csv-is-a-folder", argv, "runs.csv", {"runs.csv/.keep": ""}))
        for kind, (text, needle) in BAD_LAW_CSVS.items():
            cases.append(case(f"{command}-csv-{kind}", argv, needle, {"runs.csv": text}))
    return cases


# -- 5. stores that cannot be used --------------------------------------------------------------
STORE_COMMANDS = {
    "status": ("status", "--store", "{store}"),
    "status-study": ("status", "tiny", "--store", "{store}"),
    "runs": ("runs", "tiny", "--store", "{store}"),
    "fit": ("fit", "tiny", "--store", "{store}", "--bootstrap", "20"),
    "backtest": ("backtest", "tiny", "--store", "{store}", "--bootstrap", "20"),
    "plan": ("plan", "tiny", "--store", "{store}", "--budget", "1e12", "--bootstrap", "20"),
    "report": ("report", "tiny", "--store", "{store}", "-o", "{tmp}/r.html", "--bootstrap", "20"),
    "transfer": ("transfer", "tiny", "--store", "{store}", "--bootstrap", "20"),
    "run": ("run", "{study}", "--store", "{store}", "--quiet"),
}
STORE_KINDS = ["absent", "folder", "text", "foreign", "garbage", "truncated", "empty"]


def store_cases() -> list[Case]:
    cases = []
    for command, argv in STORE_COMMANDS.items():
        files = {"bad.toml": TINY} if command == "run" else {}
        for kind in STORE_KINDS:
            if command == "run" and kind in ("absent", "empty"):
                continue  # a run makes its store, and an empty file becomes one
            cases.append(case(f"{command}-store-{kind}", argv, "runs.db", files, store=kind))
        if command != "run":
            cases.append(case(f"{command}-store-given-as-the-study", (argv[0], "{store}", *argv[2:]) if command != "status" else
                              ("status", "{store}", "--store", "{store}"), ("runs.db", "is a store"), files))
    return cases


ALL_CASES = [
    *field_cases(), *grid_cases(), *unknown_key_cases(), *STRUCTURE_CASES, *MISSING_STUDY_CASES,
    *DATASET_CASES, *shared_flag_cases(), *FLAG_CASES, *law_csv_cases(), *store_cases(),
]  # fmt: skip
_ids = [c.id for c in ALL_CASES]
assert len(_ids) == len(set(_ids)), sorted({i for i in _ids if _ids.count(i) > 1})
BY_ID = {c.id: c for c in ALL_CASES}


# -- running a case ------------------------------------------------------------------------------
class Prepared:
    """A case's folder, its files and store, and a record of everything in it."""

    def __init__(self, c: Case, tmp: Path, pristine: Path):
        self.case = c
        self.tmp = tmp
        for rel, content in c.files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if callable(content):
                content(path)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        folder = tmp / "stores"
        folder.mkdir()
        self.store = folder / "runs.db"
        if c.store == "existing":
            shutil.copy2(pristine, self.store)  # keeps the modification time
        elif c.store != "absent":
            STORE_MAKERS[c.store](self.store, pristine)
        self.argv = [a.format(tmp=tmp, store=self.store, study=tmp / "bad.toml") for a in c.argv]
        self.before = self.snapshot()

    def snapshot(self) -> dict:
        state = {}
        for path in sorted(self.tmp.rglob("*")):
            rel = str(path.relative_to(self.tmp))
            if path.is_dir():
                state[rel] = ("dir",)
            else:
                state[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        return state

    def check(self, code, stdout: str, stderr: str) -> None:
        described = f"`scalelab {' '.join(self.argv)}` exited {code}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        assert "Traceback" not in stderr, described
        assert code == EXIT_USAGE, described
        lines = nonempty_lines(stderr)
        assert len(lines) == 1, f"expected one line on stderr:\n{described}"
        assert stdout.strip() == "", described
        for needle in self.case.needles:
            assert needle in lines[0], f"{needle!r} not named in the error line: {lines[0]!r}"
        after = self.snapshot()
        new = sorted(set(after) - set(self.before))
        assert not new, f"a rejected command wrote {new}"
        changed = sorted(k for k in self.before if after.get(k) != self.before[k])
        assert not changed, f"a rejected command changed or removed {changed}"
        if self.case.store == "absent":
            assert not self.store.exists(), "a bad input created the store"


@pytest.fixture
def in_process(shared, tmp_path, monkeypatch, capfd):
    """Runs a case through scalelab.cli.main as the console script would, in its folder."""
    pristine, cache = shared
    monkeypatch.setenv("SCALELAB_CACHE_DIR", str(cache))
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)

    def run(c: Case) -> None:
        prepared = Prepared(c, tmp_path, pristine)
        capfd.readouterr()
        old_term = signal.getsignal(signal.SIGTERM)
        try:
            with warnings.catch_warnings():
                # Warnings go to stderr as they would in the console script, not into
                # pytest's record, so that an extra warning line fails the case.
                warnings.resetwarnings()  # the interpreter's own defaults, as a console script has them
                for action, category in (("ignore", DeprecationWarning), ("ignore", PendingDeprecationWarning),
                                         ("ignore", ImportWarning), ("ignore", ResourceWarning)):  # fmt: skip
                    warnings.simplefilter(action, category)
                warnings.showwarning = lambda m, cat, f, n, file=None, line=None: sys.stderr.write(warnings.formatwarning(m, cat, f, n, line))
                try:
                    code = main(prepared.argv)
                except SystemExit as exc:
                    code = exc.code
        finally:
            signal.signal(signal.SIGTERM, old_term)
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = capfd.readouterr()
        prepared.check(code, out, err)

    return run


def _param(c: Case):
    marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
    return pytest.param(c, id=c.id, marks=marks)


@pytest.mark.parametrize("bad", [_param(c) for c in ALL_CASES])
def test_bad_input(in_process, bad):
    in_process(bad)


# One case of each kind, as a real subprocess: the in-process path above must match it.
SUBPROCESS_SAMPLE = [
    "run-study-train.epochs=int-0",
    "run-study-grid.width=float--1.0",
    "run-study-unknown-key-data.pathh",
    "run-study-invalid-toml-unclosed-table",
    "run-data-csv-header-only",
    "run-data-npz-truncated",
    "fit--level=nan",
    "backtest--gap=inf",
    "plan--hardware=tpu9",
    "report-o-onto-a-folder",
    "status-store-foreign",
    "runs-unknown-study",
]


@pytest.mark.parametrize("case_id", SUBPROCESS_SAMPLE)
def test_in_process_matches_the_real_command(shared, tmp_path, case_id):
    pristine, cache = shared
    c = BY_ID[case_id]
    prepared = Prepared(c, tmp_path, pristine)
    cli = run_cli(*prepared.argv, env=cli_env(cache), cwd=tmp_path)
    prepared.check(cli.returncode, cli.stdout, cli.stderr)


def test_the_suite_is_large():
    assert len(ALL_CASES) >= 300, len(ALL_CASES)
