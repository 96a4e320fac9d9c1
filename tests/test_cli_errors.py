"""Bad input on the command line: exit 2, one line on stderr naming the problem, store untouched.

DESIGN.md, "User-facing contracts" and "Reliability": every bad input gets one clear
line naming the file, field or value at fault, exit status 2, and an untouched store.
Each case runs ``python -m scalelab`` as a real subprocess, twice: once where no store
exists (it must not be created) and once against a store made by a real run (it must
stay byte-for-byte identical, with the same modification time and no new files).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest
from cli_helpers import (
    assert_one_line_error,
    cli_env,
    expected_cell_ids,
    run_cli,
    write_study,
)
from dataset_writers import write_foreign_sqlite

EXIT_USAGE = 2

VALID_STUDY = """\
name = "tiny"

[data]
name = "digits"

[model]
family = "mlp"

[train]
epochs = 1
batch_size = 64

[grid]
width = [0.25]
seed = [0, 1]
"""

HEADER = """\
name = "bad"

[data]
name = "digits"

[model]
family = "mlp"
"""


# (case id, study file text, substrings the error line must hold besides the file's name)
STUDY_CASES = [
    ("unknown-top-level-key", 'name = "bad"\nbogus = 1\n[data]\nname = "digits"\n[model]\nfamily = "mlp"\n', ["bogus"]),
    ("unknown-train-key", HEADER + "[train]\nepochz = 3\n", ["epochz"]),
    ("unknown-model-key", HEADER + "colour = 3\n", ["colour"]),
    ("wrong-type", HEADER + '[train]\nepochs = "ten"\n', ["epochs"]),
    ("data-fraction-zero", HEADER + "[grid]\ndata_fraction = [0]\n", ["data_fraction", "0"]),
    ("data-fraction-zero-in-data", HEADER.replace('name = "digits"', 'name = "digits"\ndata_fraction = 0'), ["data_fraction", "0"]),
    ("data-fraction-above-one", HEADER + "[grid]\ndata_fraction = [0.5, 1.5]\n", ["data_fraction", "1.5"]),
    ("unknown-family", HEADER.replace('family = "mlp"', 'family = "transformer"'), ["transformer"]),
    ("unknown-dataset", HEADER.replace('name = "digits"', 'name = "imagenet"'), ["imagenet"]),
    ("empty-grid-table", HEADER + "[grid]\n", ["grid"]),
    ("empty-grid-list", HEADER + "[grid]\nwidth = []\n", ["width"]),
    ("negative-width-in-grid", HEADER + "[grid]\nwidth = [1, -1]\n", ["width", "-1"]),
    ("negative-width-in-model", HEADER + "width = -1\n", ["model.width"]),
    ("unknown-grid-key", HEADER + "[grid]\nwidht = [1, 2]\n", ["widht"]),
    ("invalid-toml", HEADER + "[grid\nwidth = [1]\n", ["TOML"]),
    ("class-lost-by-subsampling", HEADER + "[grid]\ndata_fraction = [0.001]\n", ["class", "0.001"]),
    ("unknown-target-metric", HEADER + '[target]\nmetric = "test_eror"\n', ["target.metric", "test_eror", "test_error"]),
    ("target-metric-not-recorded", HEADER + '[target]\nmetric = "accuracy"\n', ["target.metric", "accuracy"]),
]


@pytest.fixture(scope="module")
def pristine_store(tmp_path_factory) -> Path:
    """A real store, made by running a tiny valid study to completion."""
    root = tmp_path_factory.mktemp("pristine")
    study = write_study(root / "tiny.toml", VALID_STUDY)
    env = cli_env(root / "cache")
    cli = run_cli("run", study, "--store", root / "store.db", "--workers", "1", "--quiet", env=env, cwd=root)
    assert cli.returncode == 0, cli.describe()
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("store.db")) == ["store.db"], "WAL not folded back on close"
    return root / "store.db"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class StoreGuard:
    """Remembers what the store looks like before a command and checks nothing changed."""

    def __init__(self, tmp_path: Path, store_kind: str, pristine: Path | None):
        self.folder = tmp_path / "stores"
        self.folder.mkdir()
        self.store = self.folder / "runs.db"
        if store_kind == "existing":
            shutil.copy2(pristine, self.store)  # keeps the modification time
            self.before = (_digest(self.store), self.store.stat().st_mtime_ns)
        else:
            self.before = None
        self.files_before = sorted(p.name for p in self.folder.iterdir())

    def assert_untouched(self) -> None:
        assert sorted(p.name for p in self.folder.iterdir()) == self.files_before, "files appeared next to the store"
        if self.before is None:
            assert not self.store.exists(), "a bad input created the store"
        else:
            data, mtime = self.before
            assert _digest(self.store) == data, "a bad input changed the store's bytes"
            assert self.store.stat().st_mtime_ns == mtime, "a bad input touched the store (mtime changed)"


@pytest.fixture(params=["absent", "existing"])
def guard(request, tmp_path):
    pristine = request.getfixturevalue("pristine_store") if request.param == "existing" else None
    return StoreGuard(tmp_path, request.param, pristine)


@pytest.mark.parametrize("text, needles", [pytest.param(t, n, id=i) for i, t, n in STUDY_CASES])
def test_bad_study_file_is_rejected_and_store_untouched(tmp_path, guard, text, needles):
    study = write_study(tmp_path / "bad-study.toml", text)
    cli = run_cli("run", study.name, "--store", guard.store, "--quiet", env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert_one_line_error(cli, "bad-study.toml", *needles)
    guard.assert_untouched()


def test_class_lost_message_says_the_class_is_lost(tmp_path):
    study = write_study(tmp_path / "tiny-fraction.toml", HEADER + "[train]\nepochs = 1\n[grid]\ndata_fraction = [0.001]\n")
    cli = run_cli("run", study, "--store", tmp_path / "runs.db", "--quiet", env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    line = assert_one_line_error(cli, "tiny-fraction.toml", "data_fraction", "0.001")
    assert re.search(r"class \d+", line), line
    assert re.search(r"no (training )?samples|lost|vanish|missing|empty", line), f"does not say the class is lost: {line!r}"
    assert not (tmp_path / "runs.db").exists()


def test_nonexistent_study_file(tmp_path, guard):
    cli = run_cli("run", "no-such-study.toml", "--store", guard.store, "--quiet", env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    line = assert_one_line_error(cli, "no-such-study.toml")
    assert "not found" in line or "no such" in line.lower()
    guard.assert_untouched()


def test_unknown_study_name_in_existing_store(tmp_path, pristine_store):
    guard = StoreGuard(tmp_path, "existing", pristine_store)
    env = cli_env(tmp_path / "cache")
    for command in ("run", "runs", "status"):
        cli = run_cli(command, "no-such-study", "--store", guard.store, env=env, cwd=tmp_path)
        assert_one_line_error(cli, "no-such-study")
    guard.assert_untouched()


def test_a_store_given_where_a_study_belongs_says_so(tmp_path, pristine_store):
    guard = StoreGuard(tmp_path, "existing", pristine_store)
    env = cli_env(tmp_path / "cache")
    for command in ("fit", "backtest", "runs", "status"):
        cli = run_cli(command, guard.store, "--store", guard.store, env=env, cwd=tmp_path)
        line = assert_one_line_error(cli, str(guard.store))
        assert "is a store, not a study" in line
    guard.assert_untouched()


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["runs", "tiny"], id="runs-by-name"),
        pytest.param(["runs", "STUDY"], id="runs-by-file"),
        pytest.param(["status"], id="status-all"),
        pytest.param(["status", "tiny"], id="status-by-name"),
        pytest.param(["status", "STUDY", "--format", "json"], id="status-by-file"),
    ],
)
def test_readers_on_a_missing_store_do_not_create_it(tmp_path, args):
    study = write_study(tmp_path / "tiny.toml", VALID_STUDY)
    args = [str(study) if a == "STUDY" else a for a in args]
    store = tmp_path / "missing" / "nothing-here.db"
    store.parent.mkdir()
    cli = run_cli(*args, "--store", store, env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert_one_line_error(cli, "nothing-here.db")
    assert list(store.parent.iterdir()) == [], "a reader created the store"


@pytest.mark.parametrize(
    "flags, needle",
    [
        pytest.param(["--workers", "0"], "--workers", id="workers-zero"),
        pytest.param(["--workers", "-3"], "--workers", id="workers-negative"),
        pytest.param(["--workers", "two"], "--workers", id="workers-not-a-number"),
        pytest.param(["--bogus-option"], "--bogus-option", id="unknown-option"),
        pytest.param(["--executor", "slurm"], "slurm", id="unknown-executor"),
    ],
)
def test_bad_flags_are_usage_errors(tmp_path, guard, flags, needle):
    study = write_study(tmp_path / "tiny.toml", VALID_STUDY)
    cli = run_cli("run", study, "--store", guard.store, *flags, env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert_one_line_error(cli, needle)
    guard.assert_untouched()


def test_unknown_command_is_a_usage_error(tmp_path):
    cli = run_cli("frobnicate", env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert_one_line_error(cli, "frobnicate")


def test_dry_run_lists_cells_with_flops_and_writes_nothing(tmp_path):
    study = write_study(
        tmp_path / "dry.toml",
        HEADER + "[train]\nepochs = 2\n[grid]\nwidth = [0.5, 1]\ndata_fraction = [0.5, 1.0]\nseed = [0, 1]\n",
    )
    store = tmp_path / "dry-run.db"
    cli = run_cli("run", study, "--store", store, "--dry-run", "--workers", "2", env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert cli.returncode == 0, cli.describe()
    ids = expected_cell_ids(study)
    assert len(ids) == 8
    for cell_id in ids:
        assert cell_id in cli.stdout, f"cell {cell_id} not listed:\n{cli.stdout}"
    assert "FLOPs" in cli.stdout
    # Each cell's row carries a FLOP count in scientific notation, e.g. 4.67e+08.
    cell_lines = [line for line in cli.stdout.splitlines() if any(cell_id in line for cell_id in ids)]
    assert len(cell_lines) == len(ids)
    for line in cell_lines:
        assert re.search(r"\d(\.\d+)?e\+\d\d", line), f"no FLOP count on: {line!r}"
    assert not store.exists(), "--dry-run created the store"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("dry-run")) == []


@pytest.mark.parametrize(
    "args, make",
    [
        pytest.param(["status"], write_foreign_sqlite, id="status-on-foreign-sqlite"),
        pytest.param(["runs", "tiny"], write_foreign_sqlite, id="runs-on-foreign-sqlite"),
        pytest.param(["status"], lambda path: path.write_bytes(b""), id="status-on-empty-file"),
    ],
)
def test_readers_never_write_to_a_file_that_is_not_a_store(tmp_path, args, make):
    folder = tmp_path / "stores"
    folder.mkdir()
    store = folder / "other.db"
    make(store)
    before = (_digest(store), store.stat().st_mtime_ns)
    cli = run_cli(*args, "--store", store, env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert [p.name for p in folder.iterdir()] == ["other.db"]
    assert (_digest(store), store.stat().st_mtime_ns) == before, "a read-only command wrote to the file"
    assert_one_line_error(cli, "other.db")


def test_run_refuses_a_store_that_is_another_programs_database(tmp_path):
    """`run --store` on someone else's SQLite file exits 2 and leaves the file as it was."""
    study = write_study(tmp_path / "tiny.toml", VALID_STUDY)
    store = tmp_path / "other.db"
    write_foreign_sqlite(store)
    before = (_digest(store), store.stat().st_mtime_ns)
    cli = run_cli("run", study, "--store", store, "--quiet", env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert (_digest(store), store.stat().st_mtime_ns) == before
    assert_one_line_error(cli, "other.db", "not a scalelab store")


def test_a_cuda_cell_on_a_machine_without_cuda_fails_before_anything_is_written(tmp_path, guard):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    study = write_study(tmp_path / "cuda.toml", HEADER + '[train]\nepochs = 1\n[grid]\ndevice = ["cpu", "cuda"]\n')
    cli = run_cli("run", study, "--store", guard.store, "--quiet", env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert_one_line_error(cli, "cuda.toml", "train.device", "CUDA is not available")
    guard.assert_untouched()


def test_a_store_in_a_missing_folder_is_refused_before_any_work(tmp_path):
    study = write_study(tmp_path / "tiny.toml", VALID_STUDY)
    cli = run_cli("run", study, "--store", tmp_path / "nowhere" / "runs.db", env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert_one_line_error(cli, "nowhere", "does not exist")
    assert not (tmp_path / "nowhere").exists()


def test_a_report_written_onto_a_folder_is_refused_before_any_work(tmp_path, pristine_store):
    cli = run_cli("report", "tiny", "--store", pristine_store, "-o", tmp_path, env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert_one_line_error(cli, "is a folder")


@pytest.mark.parametrize(("flags", "needle"), [
    (["--chance", "2"], "--chance"), (["--chance", "nan"], "--chance"), (["--chance", "0"], "--chance"),
    (["--x", "n", "--x", "n"], "twice"), (["--form", "bogus"], "bogus"),
])  # fmt: skip
def test_fit_refuses_input_that_cannot_identify_a_law(tmp_path, flags, needle):
    path = tmp_path / "runs.csv"
    path.write_text("n,loss\n" + "".join(f"{n},{0.1 + n ** -0.5}\n" for n in (100, 200, 400, 800, 1600, 3200)))
    x = [] if "--x" in flags else ["--x", "n"]
    cli = run_cli("fit", path, *x, "--y", "loss", *flags, env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert_one_line_error(cli, needle)


def test_fit_on_points_at_one_x_value_is_refused(tmp_path):
    path = tmp_path / "one-x.csv"
    path.write_text("n,loss\n100,0.5\n100,0.4\n100,0.45\n100,0.41\n")
    cli = run_cli("fit", path, "--x", "n", "--y", "loss", env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert_one_line_error(cli, "one-x.csv", "distinct")


@pytest.mark.parametrize(("flags", "needle"), [(["--form", "bogus"], "bogus"), (["--gap", "nan"], "--gap"), (["--gap", "inf"], "--gap"),
                                               (["--gap", "0.5"], "--gap")])  # fmt: skip
def test_backtest_refuses_forms_and_gaps_it_cannot_use(tmp_path, flags, needle):
    path = tmp_path / "runs.csv"
    path.write_text("n,loss\n" + "".join(f"{n},{0.1 + n ** -0.5}\n" for n in (100, 200, 400, 800, 1600, 3200, 6400)))
    cli = run_cli("backtest", path, "--x", "n", "--y", "loss", *flags, env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert_one_line_error(cli, needle)
