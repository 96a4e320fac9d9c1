"""A cell's identity holds the content of the files it reads, not only their names.

Through the command line and real SQLite stores (``scalelab.cli.main``, the console
script's entry point, in this process; cells train in real worker processes): a changed
CSV trains its cells again on the new rows; the same study in another folder with
another file gets its own cells; a moved, unchanged npz or CIFAR copy reruns nothing;
file hashes are cached in the store by path, size and mtime; studies that read no file
keep their ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, read_store, write_study
from dataset_writers import write_cifar10_python

from scalelab.spec import parse_spec

CSV_STUDY = """\
name = "{name}"

[data]
name = "csv"
path = "{path}"

[model]
family = "tree"

[grid]
data_fraction = [0.5, 1.0]
"""


def write_blobs_csv(path: Path, n: int, *, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, 4)) + 2.5 * y[:, None]
    lines = ["a,b,c,d,target"] + [",".join([*(f"{v:.6g}" for v in row), str(label)]) for row, label in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def trained(cli) -> int:
    """The N of ``trained N cells`` in a run's summary line."""
    assert cli.returncode == 0, cli.describe()
    match = re.search(r"trained (\d+) cells", cli.stdout)
    assert match, cli.describe()
    return int(match.group(1))


@pytest.fixture
def scalelab(scalelab_main, tmp_path):
    """``scalelab(*args, cwd=...)``: a command through ``scalelab.cli.main`` in this process
    (exit status and output as a ``scalelab`` process gives them), with the test's cache."""

    def call(*args, cwd: Path):
        return scalelab_main(*args, cwd=cwd, cache_dir=tmp_path / "cache")

    return call


def run(scalelab, study, store, cwd) -> int:
    return trained(scalelab("run", study, "--store", store, "--workers", "1", "--quiet", cwd=cwd))


def dry_run_ids(scalelab, study, store, cwd) -> set[str]:
    cli = scalelab("run", study, "--store", store, "--dry-run", "--workers", "1", cwd=cwd)
    assert cli.returncode == 0, cli.describe()
    return set(re.findall(r"\b[0-9a-f]{16}\b", cli.stdout))


def runs_json(scalelab, study, *, store, cwd) -> list[dict]:
    cli = scalelab("runs", study, "--store", store, "--format", "json", cwd=cwd)
    assert cli.returncode == 0, cli.describe()
    return json.loads(cli.stdout)


def status_json(scalelab, study, *, store, cwd) -> dict:
    cli = scalelab("status", study, "--store", store, "--format", "json", cwd=cwd)
    assert cli.returncode == 0, cli.describe()
    (entry,) = json.loads(cli.stdout)["studies"]
    return entry


def stored_ids(store: Path, study: str) -> set[str]:
    return {r[0] for r in read_store(store, "SELECT cell_id FROM study_cells WHERE study = ?", (study,))}


def all_cells(store: Path) -> int:
    return read_store(store, "SELECT COUNT(*) FROM cells")[0][0]


@pytest.mark.slow
def test_a_changed_csv_trains_its_cells_again_on_the_new_rows(tmp_path, scalelab):
    data = write_blobs_csv(tmp_path / "data.csv", 1000)
    study = write_study(tmp_path / "study.toml", CSV_STUDY.format(name="changing", path="data.csv"))
    store = tmp_path / "runs.db"
    assert run(scalelab, study, store, tmp_path) == 2
    old_ids = stored_ids(store, "changing")
    assert {r["n_test"] for r in runs_json(scalelab, "changing", store=store, cwd=tmp_path)} == {200}

    data.write_text("\n".join(data.read_text().splitlines()[:401]) + "\n")  # header and the first 400 rows
    assert run(scalelab, study, store, tmp_path) == 2
    new_ids = stored_ids(store, "changing")
    assert new_ids.isdisjoint(old_ids)
    runs = runs_json(scalelab, "changing", store=store, cwd=tmp_path)
    assert {r["cell_id"] for r in runs} == new_ids
    assert {r["n_test"] for r in runs} == {80}
    assert max(r["n_train"] for r in runs) == 320  # the new file's 400 rows, 20% held out
    # Every command reading the study file agrees on the ids it now has.
    assert dry_run_ids(scalelab, study, store, tmp_path) >= new_ids
    assert status_json(scalelab, study, store=store, cwd=tmp_path)["done"] == 2
    assert run(scalelab, study, store, tmp_path) == 0
    assert all_cells(store) == 4  # the old file's results stay in the store, apart from the study


@pytest.mark.slow
def test_the_same_study_in_another_folder_with_another_file_gets_its_own_cells(tmp_path, scalelab):
    store = tmp_path / "runs.db"
    studies = {}
    for folder, seed in (("a", 0), ("b", 1)):
        (tmp_path / folder).mkdir()
        write_blobs_csv(tmp_path / folder / "data.csv", 600, seed=seed)
        studies[folder] = write_study(tmp_path / folder / "study.toml", CSV_STUDY.format(name="elsewhere", path="data.csv"))
    assert run(scalelab, studies["a"], store, tmp_path / "a") == 2
    ids_a = stored_ids(store, "elsewhere")
    assert run(scalelab, studies["b"], store, tmp_path / "b") == 2
    assert stored_ids(store, "elsewhere").isdisjoint(ids_a) and all_cells(store) == 4
    # The same bytes in a third folder are the first folder's cells.
    (tmp_path / "c").mkdir()
    shutil.copy2(tmp_path / "a" / "data.csv", tmp_path / "c" / "data.csv")
    shutil.copy2(studies["a"], tmp_path / "c" / "study.toml")
    assert run(scalelab, tmp_path / "c" / "study.toml", store, tmp_path / "c") == 0
    assert stored_ids(store, "elsewhere") == ids_a


def _npz_copy(folder: Path) -> str:
    rng = np.random.default_rng(3)
    y = np.arange(300) % 3
    np.savez(folder / "blobs.npz", X=(rng.normal(size=(300, 4)) + 2.5 * y[:, None]).astype(np.float32), y=y)
    return "blobs.npz"


def _cifar_copy(folder: Path) -> str:
    write_cifar10_python(folder, per_batch=20, n_test=30)
    return "cifar-10-batches-py"


MOVED_STUDY = """\
name = "moved"

[data]
name = "{dataset}"
path = "{path}"

[model]
family = "{family}"
{model}

[train]
epochs = 1
batch_size = 32
device = "cpu"

[grid]
data_fraction = [0.5, 1.0]
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "dataset, family, model, make",
    [
        pytest.param("npz", "tree", "", _npz_copy, id="npz"),
        pytest.param("cifar10", "mlp", "width = 0.25", _cifar_copy, id="cifar10-python"),
    ],
)
def test_a_moved_unchanged_copy_reruns_nothing(tmp_path, scalelab, dataset, family, model, make):
    store = tmp_path / "runs.db"
    old = tmp_path / "old"
    old.mkdir()
    name = make(old)
    study = tmp_path / "study.toml"
    write_study(study, MOVED_STUDY.format(dataset=dataset, path=old / name, family=family, model=model))
    assert run(scalelab, study, store, tmp_path) == 2
    ids = stored_ids(store, "moved")
    # One cell left as an interrupted run leaves it: it must train from the new place.
    with sqlite3.connect(store) as db:
        db.execute("UPDATE cells SET state = 'pending', metrics_json = NULL WHERE cell_id = ?", (sorted(ids)[0],))
    db.close()

    shutil.move(old, tmp_path / "new")
    write_study(study, MOVED_STUDY.format(dataset=dataset, path=tmp_path / "new" / name, family=family, model=model))
    assert dry_run_ids(scalelab, study, store, tmp_path) >= ids
    assert run(scalelab, study, store, tmp_path) == 1  # only the interrupted cell, read from the new place
    assert stored_ids(store, "moved") == ids
    assert status_json(scalelab, "moved", store=store, cwd=tmp_path)["done"] == 2
    assert run(scalelab, study, store, tmp_path) == 0


@pytest.mark.slow
def test_file_hashes_are_cached_in_the_store_by_path_size_and_mtime(tmp_path, scalelab):
    data = write_blobs_csv(tmp_path / "data.csv", 600)
    study = write_study(tmp_path / "study.toml", CSV_STUDY.format(name="cached", path="data.csv"))
    store = tmp_path / "runs.db"
    assert run(scalelab, study, store, tmp_path) == 2
    ids = stored_ids(store, "cached")
    stat = data.stat()
    query = "SELECT size, mtime_ns, sha256, hashed_at FROM file_hashes WHERE path = ?"
    ((size, mtime_ns, sha256, hashed_at),) = read_store(store, query, (str(data.resolve()),))
    assert (size, mtime_ns, sha256) == (stat.st_size, stat.st_mtime_ns, hashlib.sha256(data.read_bytes()).hexdigest())
    assert run(scalelab, study, store, tmp_path) == 0
    assert read_store(store, query, (str(data.resolve()),)) == [(size, mtime_ns, sha256, hashed_at)]  # kept, not rewritten

    # The cached hash is what the commands use while the file's size and mtime match it:
    # a (deliberately wrong) cached hash gives other ids, without the file being read.
    with sqlite3.connect(store) as db:
        db.execute("UPDATE file_hashes SET sha256 = ? WHERE path = ?", ("0" * 64, str(data.resolve())))
    db.close()
    assert dry_run_ids(scalelab, study, store, tmp_path).isdisjoint(ids)
    # A new mtime (the same bytes) invalidates the entry: the file is hashed again.
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert dry_run_ids(scalelab, study, store, tmp_path) >= ids
    assert run(scalelab, study, store, tmp_path) == 0
    ((_, new_mtime, new_sha, _),) = read_store(store, query, (str(data.resolve()),))
    assert (new_mtime, new_sha) == (stat.st_mtime_ns + 1_000_000_000, sha256)


@pytest.mark.slow
def test_a_data_file_gone_after_a_run_is_one_line_and_the_store_is_untouched(tmp_path, scalelab):
    data = write_blobs_csv(tmp_path / "data.csv", 300)
    study = write_study(tmp_path / "study.toml", CSV_STUDY.format(name="gone", path="data.csv"))
    store = tmp_path / "runs.db"
    assert run(scalelab, study, store, tmp_path) == 2
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    data.unlink()
    for args in (("run",), ("run", "--dry-run")):
        cli = scalelab(*args, study, "--store", store, "--quiet", cwd=tmp_path)
        assert_one_line_error(cli, "study.toml", "data.csv", "not found")
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before
    # The store's own record still answers by name.
    assert status_json(scalelab, "gone", store=store, cwd=tmp_path)["done"] == 2


USER_MODULE = '''\
import numpy as np


def load(table):
    rows = np.loadtxt(table, delimiter=",", skiprows=1)
    return rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)
'''

USER_STUDY = """\
name = "declared"

[data]
name = "python:user_data:load"
table = "table.csv"
files = ["table.csv"]

[model]
family = "tree"

[grid]
data_fraction = [0.5, 1.0]
"""


@pytest.mark.slow
def test_a_python_dataset_s_declared_files_join_its_cells_identity(tmp_path, scalelab, request):
    request.addfinalizer(lambda: sys.modules.pop("user_data", None))  # imported in this process
    (tmp_path / "user_data.py").write_text(USER_MODULE)
    table = write_blobs_csv(tmp_path / "table.csv", 500)
    study = write_study(tmp_path / "study.toml", USER_STUDY)
    store = tmp_path / "runs.db"
    assert run(scalelab, study, store, tmp_path) == 2
    assert run(scalelab, study, store, tmp_path) == 0
    table.write_text("\n".join(table.read_text().splitlines()[:301]) + "\n")
    assert run(scalelab, study, store, tmp_path) == 2
    assert {r["n_test"] for r in runs_json(scalelab, "declared", store=store, cwd=tmp_path)} == {60}
    table.unlink()
    cli = scalelab("run", study, "--store", store, "--quiet", cwd=tmp_path)
    assert_one_line_error(cli, "study.toml", "data.files", "table.csv", "file not found")


# -- in process: what the ids are made of ----------------------------------------------


@pytest.mark.parametrize(
    "raw, cell_id",
    [
        ({"name": "d", "data": {"name": "digits"}, "model": {"family": "mlp"}}, "5ef16963e75541d1"),
        ({"name": "m", "data": {"name": "mnist1d", "label_noise": 0.1}, "model": {"family": "seed_cnn"}}, None),
        ({"name": "s", "data": {"name": "synthetic", "n_samples": 500}, "model": {"family": "tree"}}, "0d5174655bcbbf5d"),
    ],
    ids=["digits", "mnist1d", "synthetic"],
)
def test_studies_that_read_no_file_keep_their_ids(raw, cell_id):
    (cell,) = parse_spec(raw).cells
    assert "content_sha256" not in cell.config["data"]
    if cell_id is not None:  # ids recorded before file contents joined the identity
        assert cell.cell_id == cell_id


def test_the_content_hash_is_the_files_sha256_and_the_path_leaves_the_id(tmp_path):
    first = write_blobs_csv(tmp_path / "one.csv", 200)
    second = tmp_path / "two.csv"
    shutil.copy(first, second)
    cells = [parse_spec({"name": "p", "data": {"name": "csv", "path": str(p)}, "model": {"family": "tree"}}).cells[0] for p in (first, second)]
    assert cells[0].config["data"]["content_sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert cells[0].config["data"]["options"]["path"] != cells[1].config["data"]["options"]["path"]
    assert cells[0].cell_id == cells[1].cell_id
