"""Model families from the seed and beyond: resnet, tree, gbdt, and the user's own factories.

Each family has a documented size knob and records its parameter count; scikit-learn
families record wall time and a null ``flops``, with ``compute`` in seconds instead.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
import torch
from bad_input import StoreSnapshot, assert_input_error
from cli_helpers import write_study

from scalelab.data import load_dataset, training_view
from scalelab.errors import InputError
from scalelab.models import build_model, count_parameters
from scalelab.spec import parse_spec
from scalelab.train.cell import run_cell

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
SOURCE = "f.toml"


def config(model: dict, *, data=None, **train) -> dict:
    raw = {"name": "f", "data": {"name": "digits", **(data or {})}, "model": model, "train": {"epochs": 1, **train}}
    (cell,) = parse_spec(raw, source=SOURCE).cells
    return cell.config


@pytest.fixture(scope="module")
def digits():
    return load_dataset(config({"family": "mlp"})["data"])



def resnet(width: float, depth: int, shape=(3, 32, 32), n_classes: int = 10):
    return build_model({"family": "resnet", "knobs": {"width": width, "depth": depth}}, shape, n_classes, seed=0)


# ---------------------------------------------------------------------------------------------
# resnet
# ---------------------------------------------------------------------------------------------


def test_resnet_depth_3_width_1_is_resnet_20():
    assert count_parameters(resnet(1.0, 3)) == 272_474  # He et al. (2016): about 0.27M


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8), (1, 40), (2, 3, 3)])
def test_resnet_trains_end_to_end_on_images_and_signals(shape):
    model = resnet(0.5, 1, shape)
    assert any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in model.modules())
    logits = model(torch.rand(4, *shape))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    logits.sum().backward()


def test_resnet_parameters_grow_with_width_and_depth():
    by_width = [count_parameters(resnet(w, 1, (1, 8, 8))) for w in (0.25, 0.5, 1, 2)]
    by_depth = [count_parameters(resnet(1, d, (1, 8, 8))) for d in (1, 2, 3)]
    assert by_width == sorted(set(by_width)) and by_depth == sorted(set(by_depth))


def test_resnet_on_digits_learns(digits):
    m = run_cell(config({"family": "resnet", "width": 0.5, "depth": 1}, data={"data_fraction": 0.5}, epochs=3), digits).metrics
    assert m["test_error"] < 0.3 and m["n_params"] == count_parameters(resnet(0.5, 1, (1, 8, 8)))
    assert m["flops"] > 0 and m["compute_unit"] == "flops" and m["compute"] == m["flops"]


# ---------------------------------------------------------------------------------------------
# tree and gbdt
# ---------------------------------------------------------------------------------------------


def test_tree_parameter_count_is_its_node_count(digits):
    from sklearn.tree import DecisionTreeClassifier

    cell = config({"family": "tree", "max_leaf_nodes": 20}, data={"data_fraction": 0.5}, seed=3)
    m = run_cell(cell, digits).metrics
    view = training_view(digits, cell["data"])
    reference = DecisionTreeClassifier(max_leaf_nodes=20, random_state=3).fit(view.X_train.reshape(len(view.X_train), -1), view.y_train)
    assert m["n_params"] == reference.tree_.node_count == 2 * 20 - 1  # a full binary tree of 20 leaves


def test_gbdt_parameter_count_is_its_total_number_of_leaves(digits):
    m = run_cell(config({"family": "gbdt", "max_iter": 3, "max_leaf_nodes": 4}), digits).metrics
    # 3 rounds x 10 classes, at most 4 leaves each
    assert 3 * 10 * 2 <= m["n_params"] <= 3 * 10 * 4
    assert m["steps"] == 3


def test_scikit_learn_runs_record_wall_time_and_no_flops(digits):
    m = run_cell(config({"family": "gbdt", "max_iter": 5}, data={"validation_split": 0.2}), digits).metrics
    assert m["flops"] is None and m["flops_per_sample"] is None and m["flops_per_s"] is None
    assert m["compute"] == m["train_s"] > 0 and m["compute_unit"] == "seconds"
    assert m["wall_s"] >= m["train_s"]
    assert m["sklearn_version"] and m["device"] == "cpu"
    assert 0 <= m["test_error"] < 0.3 and math.isfinite(m["test_loss"])
    assert m["n_val"] > 0 and math.isfinite(m["val_loss"])


@pytest.mark.parametrize("family", ["tree", "gbdt"])
def test_scikit_learn_cells_are_deterministic(digits, family):
    cell = config({"family": family, **({"max_iter": 5} if family == "gbdt" else {})}, data={"label_noise": 0.1})
    a, b = run_cell(cell, digits).metrics, run_cell(cell, digits).metrics
    timing = ("wall_s", "train_s", "samples_per_s", "compute")
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}


def test_more_leaves_more_parameters_and_lower_error(digits):
    small = run_cell(config({"family": "tree", "max_leaf_nodes": 4}), digits).metrics
    large = run_cell(config({"family": "tree", "max_leaf_nodes": 64}), digits).metrics
    assert small["n_params"] < large["n_params"] and small["test_error"] > large["test_error"]


def test_scikit_learn_families_keep_only_the_seed_of_train():
    assert config({"family": "tree"}, lr=0.5, seed=4)["train"] == {"seed": 4}
    with pytest.raises(InputError, match="ignores \\[train\\] settings other than seed"):
        parse_spec({"name": "f", "data": {"name": "digits"}, "model": {"family": "gbdt"}, "grid": {"lr": [0.1, 0.01]}}, source=SOURCE)
    mixed = parse_spec({"name": "f", "data": {"name": "digits"}, "grid": {"family": ["mlp", "tree"], "seed": [0, 1]}}, source=SOURCE)
    assert len(mixed.cells) == 4


@pytest.mark.parametrize(
    "model, key",
    [
        ({"family": "tree", "max_leaf_nodes": 1}, "model.max_leaf_nodes"),
        ({"family": "tree", "max_leaf_nodes": 8.5}, "model.max_leaf_nodes"),
        ({"family": "gbdt", "max_iter": 0}, "model.max_iter"),
        ({"family": "gbdt", "learning_rate": -1.0}, "model.learning_rate"),
        ({"family": "tree", "width": 2}, "model.width"),
        ({"family": "resnet", "depth": 0}, "model.depth"),
        ({"family": "python:tests.fixtures:make_net", "when": __import__("datetime").date(2020, 1, 1)}, "model.when"),
        ({"family": "python:not a reference"}, "model.family"),
    ],
)
def test_bad_knobs_name_the_key(model, key):
    with pytest.raises(InputError) as info:
        config(model)
    assert key in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# The user's own factories
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory, knobs, counted",
    [
        ("make_net", {"hidden": 16}, lambda: 64 * 16 + 16 + 16 * 10 + 10),
        ("make_forest", {"n_estimators": 3, "max_depth": 4}, None),
        ("make_logistic", {"C": 0.5}, lambda: 64 * 10 + 10),
    ],
)
def test_a_user_factory_runs_as_a_family(digits, monkeypatch, factory, knobs, counted):
    monkeypatch.chdir(REPO)
    cell = config({"family": f"python:tests.fixtures:{factory}", **knobs}, data={"data_fraction": 0.5}, epochs=10, lr=3e-3)
    assert cell["model"]["knobs"] == knobs
    first, again = run_cell(cell, digits), run_cell(cell, digits)
    assert first.state == "done" and first.metrics["test_error"] < 0.5
    assert first.metrics["test_loss"] == again.metrics["test_loss"]  # seeded, even though the factory is not
    if counted:
        assert first.metrics["n_params"] == counted()
    else:
        assert 3 <= first.metrics["n_params"] <= 3 * (2**5 - 1)  # three trees of depth at most 4


def test_a_factorys_own_parameters_are_swept_as_model_keys(tmp_path):
    """In TOML, ``model.hidden = [...]`` under [grid] is a nested table; it routes to the model."""
    from scalelab.spec import load_spec

    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[data]\nname = "digits"\n[model]\nfamily = "python:tests.fixtures:make_net"\n'
                    "[grid]\nmodel.hidden = [8, 32]\nseed = [0, 1]\n")  # fmt: skip
    spec = load_spec(path)
    assert spec.grid_keys == ("model.hidden", "seed")
    assert [c.config["model"]["knobs"] for c in spec.cells] == [{"hidden": 8}, {"hidden": 8}, {"hidden": 32}, {"hidden": 32}]
    with pytest.raises(InputError, match="written model.hidden"):
        parse_spec({"name": "s", "data": {"name": "digits"}, "model": {"family": "python:tests.fixtures:make_net"},
                    "grid": {"hidden": [8, 32]}}, source=SOURCE)  # fmt: skip


FACTORY_STUDY = """\
name = "{name}"

[data]
name = "digits"

[model]
family = "{family}"

[train]
epochs = 2
batch_size = 64

[grid]
{grid}
"""


@pytest.fixture
def scalelab(scalelab_main, tmp_path):
    """``scalelab(*args, cwd=...)``: a command through ``scalelab.cli.main`` in this process
    (exit status and output as a ``scalelab`` process gives them), its cache in the test's
    folder whatever ``cwd`` is."""

    def run(*args, cwd: Path):
        return scalelab_main(*args, cwd=cwd, cache_dir=tmp_path / "cache")

    return run


def runs_json(scalelab, study: str, *, store: Path, cwd: Path) -> list[dict]:
    cli = scalelab("runs", study, "--store", store, "--format", "json", cwd=cwd)
    assert cli.returncode == 0, cli.describe()
    return json.loads(cli.stdout)


def runs_csv(scalelab, study: str, *, store: Path, cwd: Path) -> tuple[list[str], list[dict]]:
    """(header, rows) of ``scalelab runs --format csv``."""
    cli = scalelab("runs", study, "--store", store, "--format", "csv", cwd=cwd)
    assert cli.returncode == 0, cli.describe()
    reader = csv.DictReader(io.StringIO(cli.stdout))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


@pytest.mark.slow
def test_tree_and_gbdt_studies_run_to_done_and_export_parameter_counts(tmp_path, scalelab):
    store = tmp_path / "runs.db"
    studies = {
        "trees": ("tree", "max_leaf_nodes = [8, 64]\ndata_fraction = [0.25, 1.0]"),
        "boosting": ("gbdt", "max_iter = [3, 10]\nmax_leaf_nodes = [4, 15]\ndata_fraction = [0.5, 1.0]"),
    }
    for name, (family, grid) in studies.items():
        study = write_study(tmp_path / f"{name}.toml", FACTORY_STUDY.format(name=name, family=family, grid=grid))
        if name == "boosting":  # a dry run estimates scikit-learn cells without fitting them
            dry = scalelab("run", study, "--store", tmp_path / "dry.db", "--dry-run", cwd=tmp_path)
            assert dry.returncode == 0 and not (tmp_path / "dry.db").exists(), dry.describe()
            assert "gbdt" not in dry.stderr and dry.stdout.count("\n") > 8
        cli = scalelab("run", study, "--store", store, "--workers", "1", "--quiet", cwd=tmp_path)
        assert cli.returncode == 0, cli.describe()
        header, rows = runs_csv(scalelab, name, store=store, cwd=tmp_path)
        assert "flops" in header and "n_params" in header and "compute" in header
        assert rows and all(r["state"] == "done" for r in rows), rows
        for row in rows:
            assert int(row["n_params"]) > 0 and row["flops"] == "" and row["compute_unit"] == "seconds"
            assert 0.0 <= float(row["test_error"]) < 0.6
    trees = {(r["max_leaf_nodes"], r["data_fraction"]): r for r in runs_json(scalelab, "trees", store=store, cwd=tmp_path)}
    assert trees[(8, 1.0)]["n_params"] == 15 and trees[(64, 1.0)]["n_params"] == 127


@pytest.mark.slow
def test_python_factory_family_runs_through_the_cli(tmp_path, scalelab):
    store = tmp_path / "runs.db"
    study = write_study(
        tmp_path / "mine.toml",
        FACTORY_STUDY.format(name="mine", family="python:tests.fixtures:make_net", grid="model.hidden = [8, 32]\ndata_fraction = [0.5, 1.0]"),
    )
    cli = scalelab("run", study, "--store", store, "--workers", "1", "--quiet", cwd=REPO)
    assert cli.returncode == 0, cli.describe()
    runs = runs_json(scalelab, "mine", store=store, cwd=REPO)
    assert len(runs) == 4 and all(r["state"] == "done" for r in runs)
    for run in runs:
        hidden = run["model.hidden"]
        assert run["n_params"] == 64 * hidden + hidden + hidden * 10 + 10
        assert run["flops"] > 0


@pytest.mark.parametrize(
    "family, extra, needles",
    [
        ("python:no_such_module_xyz:make", "", ["no_such_module_xyz", "cannot import"]),
        ("python:tests.fixtures:make_nothing", "", ["tests.fixtures", "no attribute 'make_nothing'"]),
        ("python:tests.fixtures:NOT_CALLABLE", "", ["NOT_CALLABLE", "not a model factory"]),
        ("python:tests.fixtures:not_a_model", "", ["not_a_model", "returned a str"]),
        ("python:tests.fixtures:broken_factory", "", ["broken_factory", "RuntimeError", "broken on purpose"]),
        ("python:tests.fixtures:make_net", "colour = 3\n", ["make_net", "TypeError", "colour"]),
        ("python:tests.fixtures:wrong_output_net", "", ["wrong_output_net", "cannot train on a batch"]),
        ("resnet", "", ["resnet", "(C, H, W)", "(5,)"]),
    ],
)
def test_a_model_that_cannot_be_built_is_an_input_error(tmp_path, scalelab, family, extra, needles):
    snapshot = StoreSnapshot(tmp_path / "stores")
    data = 'name = "digits"' if family != "resnet" else 'name = "python:tests.fixtures:blobs"'
    study = write_study(tmp_path / "bad-model.toml", f'name = "bad"\n[data]\n{data}\n[model]\nfamily = "{family}"\n{extra}')
    cli = scalelab("run", study, "--store", snapshot.store, "--quiet", cwd=REPO)
    assert_input_error(cli, "bad-model.toml", *needles)
    snapshot.assert_untouched()
