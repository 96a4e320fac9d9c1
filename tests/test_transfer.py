"""Transfer studies: the ``[pretrain]`` stage, fine-tuned beside from-scratch cells, and the
effective data transferred (D_T = D_E − D_F).

End-to-end tests run ``scalelab`` in subprocesses on a real SQLite store; the analysis is
checked on synthetic runs whose true D_T is known.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_helpers import assert_one_line_error, cli_env, read_store, run_cli, runs_json, write_study
from scalelab.errors import InputError
from scalelab.spec import load_spec, parse_spec, pretrain_id, pretraining_cells
from scalelab.transfer import transfer_analysis

STUDY = """\
name = "{name}"

[data]
name = "digits"
test_size = 0.25
classes = [5, 6, 7, 8, 9]

[model]
family = "mlp"

[train]
epochs = 2
device = "cpu"

[pretrain.data]
name = "digits"
classes = [0, 1, 2, 3, 4]

[pretrain.train]
epochs = {pretrain_epochs}
lr = {pretrain_lr}
device = "cpu"

[grid]
init_from = ["none", "pretrain"]
data_fraction = {fractions}
width = [0.25, 0.5]
seed = [0, 1]
"""


def study_text(*, name="tl", fractions="[0.5, 1.0]", pretrain_epochs=2, pretrain_lr="1e-3") -> str:
    return STUDY.format(name=name, fractions=fractions, pretrain_epochs=pretrain_epochs, pretrain_lr=pretrain_lr)


def raw_study(**changes) -> dict:
    raw = {
        "name": "t",
        "data": {"name": "digits", "classes": [5, 6, 7, 8, 9]},
        "model": {"family": "mlp"},
        "train": {"epochs": 1},
        "pretrain": {"data": {"name": "digits", "classes": [0, 1, 2, 3, 4]}, "train": {"epochs": 2}},
        "grid": {"init_from": ["none", "pretrain"], "data_fraction": [0.5, 1.0], "width": [0.5, 1], "seed": [0, 1]},
    }
    raw.update(changes)
    return raw


# -- the study file ----------------------------------------------------------------------
def test_one_pretraining_run_per_model_size_and_seed_shared_by_every_fraction():
    spec = parse_spec(raw_study())
    tuned = [c for c in spec.cells if c.params["init_from"] == "pretrain"]
    ids = {pretrain_id(c.config) for c in tuned}
    assert len(tuned) == 8 and len(ids) == 4
    for cell in tuned:
        same = {pretrain_id(c.config) for c in tuned if (c.params["width"], c.params["seed"]) == (cell.params["width"], cell.params["seed"])}
        assert same == {pretrain_id(cell.config)}
    assert {c.cell_id for c in pretraining_cells(spec)} == {f"pretrain:{i}" for i in ids}
    # The pretraining run uses the cell's own seed and model, and the [pretrain] data.
    source = next(c for c in pretraining_cells(spec) if c.params["seed"] == 1)
    assert source.config["train"]["seed"] == 1 and source.config["data"]["classes"] == [0, 1, 2, 3, 4]


def test_scratch_cells_read_none_and_keep_the_id_of_a_study_without_transfer():
    spec = parse_spec(raw_study())
    plain = parse_spec(raw_study(pretrain=None, grid={"data_fraction": [0.5, 1.0], "width": [0.5, 1], "seed": [0, 1]}))
    scratch = [c for c in spec.cells if c.params["init_from"] == "none"]
    assert {c.cell_id for c in scratch} == {c.cell_id for c in plain.cells}
    assert all("pretrain" not in c.config and "init_from" not in c.config["train"] for c in scratch)


def test_changing_the_pretraining_changes_the_fine_tuned_cells_ids_only():
    base = parse_spec(raw_study())
    longer = parse_spec(raw_study(pretrain={"data": {"name": "digits", "classes": [0, 1, 2, 3, 4]}, "train": {"epochs": 3}}))
    ids = lambda spec, start: {c.cell_id for c in spec.cells if c.params["init_from"] == start}  # noqa: E731
    assert ids(base, "none") == ids(longer, "none")
    assert ids(base, "pretrain").isdisjoint(ids(longer, "pretrain"))


@pytest.mark.parametrize(
    "changes, message",
    [
        pytest.param({"pretrain": None}, 'train.init_from = "pretrain" needs a [pretrain] section', id="no-pretrain-section"),
        pytest.param({"grid": {"seed": [0, 1]}}, "[pretrain] is set but no cell uses it", id="pretrain-unused"),
        pytest.param({"pretrain": {"data": {"name": "digits"}, "train": {"seed": 3}}}, "pretrain.train.seed: not settable", id="seed"),
        pytest.param({"pretrain": {"data": {"name": "digits"}, "train": {"prune": 0.5}}}, "pretrain.train.prune: not settable", id="prune"),
        pytest.param({"pretrain": {"data": {"name": "digits"}, "train": {"init_from": "x.pt"}}}, "pretrain.train.init_from", id="init-from"),
        pytest.param({"pretrain": {"data": {}, "train": {}}}, "pretrain.data.name: required key is missing", id="no-dataset"),
        pytest.param({"pretrain": {"data": {"name": "digits", "colour": 1}}}, "pretrain.data.colour: unknown key", id="unknown-data-key"),
        pytest.param({"pretrain": {"data": {"name": "digits"}, "train": {"lr": -1}}}, "pretrain.train.lr = -1", id="bad-lr"),
        pytest.param({"pretrain": {"data": {"name": "digits"}, "epochs": 2}}, "pretrain.epochs: unknown key", id="unknown-section-key"),
        pytest.param({"model": {"family": "tree"}}, "the scikit-learn family 'tree' ignores [train] settings other than seed", id="sklearn"),
    ],
)
def test_bad_pretraining_settings_are_clear_errors(changes, message):
    raw = raw_study(**changes)
    if raw["pretrain"] is None:
        del raw["pretrain"]
    if raw["model"]["family"] == "tree":
        raw["grid"] = {"init_from": ["none", "pretrain"], "max_leaf_nodes": [8]}
    with pytest.raises(InputError) as caught:
        parse_spec(raw, source="tl.toml")
    assert message in str(caught.value) and str(caught.value).startswith("tl.toml: ")


# -- running a transfer study ------------------------------------------------------------
@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory):
    """A transfer study run once: 2 widths x 2 seeds x 2 fractions, from scratch and fine-tuned."""
    folder = tmp_path_factory.mktemp("transfer")
    env = cli_env(folder / "cache")
    study = write_study(folder / "tl.toml", study_text())
    first = run_cli("run", study, "--store", "runs.db", "--workers", "2", "--quiet", env=env, cwd=folder)
    return folder, env, study, first


def test_each_checkpoint_is_pretrained_once_and_every_cell_that_needs_it_uses_it(transfer_run):
    folder, env, study, first = transfer_run
    assert first.returncode == 0, first.stderr
    assert "trained 16 cells and 4 pretrained checkpoints" in first.stdout
    checkpoints = read_store(folder / "runs.db", "SELECT checkpoint_id, sha256, weights FROM checkpoints")
    assert len(checkpoints) == 4  # 2 widths x 2 seeds, not one per fine-tuned cell (8)
    for _, sha256, weights in checkpoints:
        assert hashlib.sha256(weights).hexdigest() == sha256  # stored with its content hash
    held = {checkpoint_id: sha256 for checkpoint_id, sha256, _ in checkpoints}
    spec_cells = {c.cell_id: c for c in load_spec(study).cells}
    rows = runs_json("tl", store="runs.db", env=env, cwd=folder)
    assert all(r["state"] == "done" for r in rows)
    tuned = [r for r in rows if r["init_from"] == "pretrain"]
    assert len(tuned) == 8
    for row in tuned:
        expected = pretrain_id(spec_cells[row["cell_id"]].config)
        assert row["pretrain_id"] == expected and row["init_from_sha256"] == held[expected]
        assert row["pretrain_flops"] > 0 and 0 <= row["pretrain_test_error"] <= 1
        assert row["fresh_weights"] == []  # 5 classes on both sides: the whole model, head included, was loaded
    scratch = [r for r in rows if r["init_from"] == "none"]
    assert len(scratch) == 8 and all(r.get("pretrain_id") is None for r in scratch)


def test_a_grown_grid_reuses_the_stored_checkpoints(transfer_run):
    folder, env, _, first = transfer_run
    assert first.returncode == 0, first.stderr
    # Another study name, the same cells: results and checkpoints are the store's, by content.
    grown = write_study(folder / "tl-grown.toml", study_text(name="tl-grown", fractions="[0.25, 0.5, 1.0]"))
    again = run_cli("run", grown, "--store", "runs.db", "--workers", "2", "--quiet", env=env, cwd=folder)
    assert again.returncode == 0, again.stderr
    assert "trained 8 cells in" in again.stdout and "pretrained" not in again.stdout
    assert len(read_store(folder / "runs.db", "SELECT checkpoint_id FROM checkpoints")) == 4


def test_scalelab_transfer_prints_d_t_with_intervals_and_a_fit(transfer_run):
    folder, env, _, first = transfer_run
    assert first.returncode == 0, first.stderr
    shown = run_cli("transfer", "tl", "--store", "runs.db", "--bootstrap", "200", env=env, cwd=folder)
    assert shown.returncode == 0, shown.stderr
    assert "D_T [interval]" in shown.stdout and "D_T = D_E − D_F" in shown.stdout
    as_json = run_cli("transfer", "tl", "--store", "runs.db", "--bootstrap", "200", "--format", "json", env=env, cwd=folder)
    result = json.loads(as_json.stdout)
    assert result["metric"] == "test_loss" and result["level"] == 0.8
    assert len(result["points"]) == 4  # 2 widths x 2 fractions
    for point in result["points"]:
        assert point["d_f"] > 0 and point["n_seeds"] == 2
        if isinstance(point["d_t"], float) and isinstance(point["d_t_hi"], float):
            assert point["d_t_lo"] <= point["d_t_hi"]
            assert math.isclose(point["d_t"], point["d_e"] - point["d_f"])


def test_a_failed_pretraining_fails_only_the_cells_that_needed_it(tmp_path):
    env = cli_env(tmp_path / "cache")
    study = write_study(tmp_path / "tl.toml", study_text(name="diverges", fractions="[1.0]", pretrain_lr="1e12"))
    cli = run_cli("run", study, "--store", "runs.db", "--workers", "2", "--quiet", env=env, cwd=tmp_path)
    assert cli.returncode == 1, cli.stderr
    rows = runs_json("diverges", store="runs.db", env=env, cwd=tmp_path)
    assert {r["state"] for r in rows if r["init_from"] == "none"} == {"done"}
    tuned = [r for r in rows if r["init_from"] == "pretrain"]
    assert {r["state"] for r in tuned} == {"failed"}
    assert all("pretraining run" in r["reason"] and "diverged" in r["reason"] for r in tuned)
    assert read_store(tmp_path / "runs.db", "SELECT COUNT(*) FROM checkpoints") == [(0,)]


def test_the_dry_run_counts_the_pretraining_stage_and_trains_nothing(tmp_path):
    env = cli_env(tmp_path / "cache")
    study = write_study(tmp_path / "tl.toml", study_text())
    cli = run_cli("run", study, "--store", "runs.db", "--dry-run", env=env, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert "[pretrain] stage: 4 checkpoints (one per model and seed)" in " ".join(cli.stdout.split())
    assert not (tmp_path / "runs.db").exists()


def test_pretraining_data_whose_inputs_do_not_fit_the_model_is_a_usage_error(tmp_path):
    env = cli_env(tmp_path / "cache")
    text = study_text().replace('[pretrain.data]\nname = "digits"\nclasses = [0, 1, 2, 3, 4]', '[pretrain.data]\nname = "synthetic"\nn_features = 20')
    study = write_study(tmp_path / "tl.toml", text)
    cli = run_cli("run", study, "--store", "runs.db", env=env, cwd=tmp_path)
    assert_one_line_error(cli, "tl.toml", "[pretrain] data of shape (20,)", "do not fit the cells' model on data of shape (1, 8, 8)")
    assert not (tmp_path / "runs.db").exists()


# -- the analysis: D_E read off the from-scratch law -------------------------------------
E, B, BETA = 0.05, 3.0, 0.5


def scratch_curve(d):
    return E + B * np.asarray(d, dtype=float) ** -BETA


def synthetic_runs(d_t_of, *, sizes=(1000.0,), fractions=(100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0), noise=0.0, seed=0):
    """From-scratch runs on the curve above; fine-tuned runs at D_F doing as well as
    from-scratch at D_F + D_T (so the true D_T is ``d_t_of(d_f, n)``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for d in fractions:
            for s in range(3):
                jitter = float(np.exp(noise * rng.standard_normal()))
                rows.append({"state": "done", "init_from": "none", "width": n, "n_params": n, "n_train": d, "seed": s,
                             "test_loss": float(scratch_curve(d)) * jitter})  # fmt: skip
                tuned_y = float(scratch_curve(d + d_t_of(d, n))) * float(np.exp(noise * rng.standard_normal()))
                rows.append({"state": "done", "init_from": "pretrain", "width": n, "n_params": n, "n_train": d, "seed": s,
                             "test_loss": tuned_y})  # fmt: skip
    return pd.DataFrame(rows)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.floats(5.0, 500.0), alpha=st.floats(0.2, 0.9))
def test_a_known_d_t_is_recovered_from_noiseless_runs(k, alpha):
    runs = synthetic_runs(lambda d, n: k * d**alpha)
    result = transfer_analysis(runs, y_col="test_loss", group_keys=["width"], n_boot=100)
    for point in result.points:
        truth = k * point.d_f**alpha
        assert point.d_t == pytest.approx(truth, rel=0.03, abs=2.0)
    assert result.fit is not None and result.fit.beta is None  # one model size: D_T = k·D_F^α
    assert result.fit.alpha == pytest.approx(alpha, abs=0.05)


def test_the_fit_recovers_the_exponents_of_data_and_model_size():
    runs = synthetic_runs(lambda d, n: 0.5 * d**0.4 * n**0.3, sizes=(1e3, 1e4, 1e5))
    result = transfer_analysis(runs, y_col="test_loss", group_keys=["width"], n_boot=100)
    assert result.fit.alpha == pytest.approx(0.4, abs=0.05)
    assert result.fit.beta == pytest.approx(0.3, abs=0.05)
    assert result.fit.k == pytest.approx(0.5, rel=0.3)


def test_the_interval_covers_the_truth_on_noisy_runs():
    covered = 0
    for seed in range(10):
        runs = synthetic_runs(lambda d, n: 300.0 + 0 * d, noise=0.03, seed=seed)
        result = transfer_analysis(runs, y_col="test_loss", group_keys=["width"], level=0.95, n_boot=400, seed=seed)
        point = result.points[2]  # D_F = 400, inside the data
        covered += point.d_t_lo <= 300.0 <= point.d_t_hi
    assert covered >= 7  # a 95% interval misses rarely; 3 misses of 10 would say it is far too narrow


def test_negative_transfer_gives_a_negative_d_t():
    runs = synthetic_runs(lambda d, n: -0.5 * d)  # fine-tuned does as well as scratch on half the data
    result = transfer_analysis(runs, y_col="test_loss", group_keys=["width"], n_boot=100)
    assert all(p.d_t == pytest.approx(-0.5 * p.d_f, rel=0.05) for p in result.points)
    assert result.fit is None  # no positive D_T to fit a power law to


def test_a_fine_tuned_run_better_than_the_law_ever_gets_has_unbounded_d_e():
    runs = synthetic_runs(lambda d, n: 0.0)
    runs.loc[runs["init_from"] == "pretrain", "test_loss"] = E / 2  # below the from-scratch asymptote
    result = transfer_analysis(runs, y_col="test_loss", group_keys=["width"], n_boot=100)
    assert all(math.isinf(p.d_e) and math.isinf(p.d_t_hi) for p in result.points)
    assert any("did better than the from-scratch law reaches" in note for note in result.notes)


@pytest.mark.parametrize(
    "runs, message",
    [
        pytest.param(pd.DataFrame({"n_train": [1.0], "test_loss": [1.0]}), "no column 'init_from'", id="no-init-column"),
        pytest.param(pd.DataFrame({"init_from": ["none"], "n_train": [10.0], "test_loss": [1.0]}), "no done fine-tuned runs", id="no-tuned"),
        pytest.param(pd.DataFrame({"init_from": ["pretrain"], "n_train": [10.0], "test_loss": [1.0]}), "no done from-scratch runs", id="no-scratch"),
    ],
)
def test_nothing_to_compare_is_a_clear_error(runs, message):
    with pytest.raises(InputError, match=message):
        transfer_analysis(runs, y_col="test_loss", group_keys=[])


# -- the shipped example -----------------------------------------------------------------
def test_the_transfer_example_runs_and_fine_tuning_beats_scratch_at_the_smallest_fraction(tmp_path):
    """examples/transfer-digits.toml as a user runs it: every cell done, D_T with intervals
    printed, and at the smallest target fraction the fine-tuned models beat training from
    scratch (mean over seeds); the report shows both curves."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "transfer-digits.toml"
    env = cli_env(tmp_path / "cache")
    ran = run_cli("run", example, "--store", "runs.db", "--workers", "2", "--quiet", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "and 6 pretrained checkpoints" in ran.stdout  # 3 widths x 2 seeds
    rows = runs_json("transfer-digits", store="runs.db", env=env, cwd=tmp_path)
    assert len(rows) == 72 and {r["state"] for r in rows} == {"done"}
    smallest = min(r["data_fraction"] for r in rows)
    for width in {r["width"] for r in rows}:
        errors = {start: np.mean([r["test_error"] for r in rows if r["width"] == width and r["data_fraction"] == smallest
                                  and r["init_from"] == start]) for start in ("none", "pretrain")}  # fmt: skip
        assert errors["pretrain"] < errors["none"], (width, errors)

    shown = run_cli("transfer", "transfer-digits", "--store", "runs.db", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    table_rows = [line for line in shown.stdout.splitlines() if line.startswith("│ width")]
    assert len(table_rows) == 18  # 3 widths x 6 fractions, each with D_E and D_T intervals
    assert all(line.count("[") == 2 for line in table_rows)
    assert "Fit over" in shown.stdout and "D_T = " in shown.stdout and "·N^" in shown.stdout

    report = run_cli("report", "transfer-digits", "--store", "runs.db", "-o", "transfer.html", "--bootstrap", "200", env=env, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "transfer.html").read_text()
    assert 'id="fig-transfer"' in html and "Transfer learning" in html


def test_a_metric_that_rises_with_data_is_refused():
    runs = synthetic_runs(lambda d, n: 100.0)
    runs["test_accuracy"] = 1 - runs["test_loss"]
    with pytest.raises(InputError, match="test_accuracy rises with more data"):
        transfer_analysis(runs, y_col="test_accuracy", group_keys=["width"], n_boot=50)


def test_one_seed_and_too_few_positive_points_are_said_not_hidden():
    runs = synthetic_runs(lambda d, n: 100.0 if d < 300 else -0.5 * d)
    runs = runs[runs["seed"] == 0]
    result = transfer_analysis(runs, y_col="test_loss", group_keys=["width"], n_boot=50)
    assert all(p.n_seeds == 1 for p in result.points)
    assert any("one fine-tuned seed" in note for note in result.notes)
    assert result.fit is None  # 2 points with D_T > 0; D_T = k·D_F^α needs 3
    assert any("No D_T = k·D_F^α fit: it needs 3 points" in note for note in result.notes)


def test_runs_from_different_checkpoints_are_separate_settings():
    runs = synthetic_runs(lambda d, n: 4.0 * d)
    other = synthetic_runs(lambda d, n: -0.5 * d)
    other = other[other["init_from"] == "pretrain"].assign(init_from="other.pt")
    result = transfer_analysis(pd.concat([runs, other]), y_col="test_loss", group_keys=["width"], n_boot=50)
    by_start = {}
    for point in result.points:
        by_start.setdefault(point.model.rsplit("init_from ", 1)[-1], []).append(point)
    assert set(by_start) == {"pretrain", "other.pt"} and all(p.n_seeds == 3 for p in result.points)
    assert all(p.d_t == pytest.approx(4.0 * p.d_f, rel=0.05) for p in by_start["pretrain"])
    assert all(p.d_t == pytest.approx(-0.5 * p.d_f, rel=0.05) for p in by_start["other.pt"])


def test_the_model_size_term_needs_positive_d_t_from_two_sizes():
    # The small model's checkpoint hurts (D_T < 0), the large one's helps: only one size is
    # left for the fit, so N^β would be arbitrary and is left out, with a note.
    runs = synthetic_runs(lambda d, n: 20.0 * d**0.5 if n > 5e3 else -0.5 * d, sizes=(1e3, 1e4))
    result = transfer_analysis(runs, y_col="test_loss", group_keys=["width"], n_boot=50)
    assert result.fit is not None and result.fit.beta is None
    assert result.fit.alpha == pytest.approx(0.5, abs=0.05) and result.fit.k == pytest.approx(20.0, rel=0.2)
    assert any("N^β is left out" in note for note in result.notes)


def test_the_command_and_the_report_read_a_head_lr_sweep_alike(tmp_path):
    from report_fixtures import fake_study

    from scalelab.report import build_report
    from scalelab.transfer import study_transfer

    pretrain = '\n[pretrain.data]\nname = "digits"\nlabel_noise = 0.1\n'
    grid = 'width = [0.5, 1]\ndata_fraction = [0.25, 0.5, 1.0]\nseed = [0, 1]\ninit_from = ["none", "pretrain"]\nhead_lr = [0.01, 0.1]'
    study = fake_study(tmp_path / "head", grid=grid, name="head", extra=pretrain)
    command = study_transfer(study, n_boot=60)
    report = build_report(study, n_boot=60)
    # One from-scratch level of head_lr (the smallest: neither is the default); each
    # fine-tuned level its own setting; the same means on both sides.
    assert {p.model for p in command.points} == {f"width {w}, head_lr {h}" for w in ("0.5", "1") for h in ("0.01", "0.1")}
    assert [(p.model, p.d_f, p.y_finetuned, p.y_scratch) for p in command.points] == [
        (p.model, p.d_f, p.y_finetuned, p.y_scratch) for p in report.analysis.transfer.points
    ]


def test_crossing_init_from_with_freeze_leaves_out_frozen_cells_trained_from_scratch():
    grid = {"init_from": ["none", "pretrain"], "freeze": ["none", "backbone"], "seed": [0, 1]}
    cells = parse_spec(raw_study(grid=grid)).cells
    assert sorted((c.params["init_from"], c.params["freeze"]) for c in cells if c.params["seed"] == 0) == [
        ("none", "none"), ("pretrain", "backbone"), ("pretrain", "none")
    ]
    # Set outside the grid, freezing without a checkpoint is still an error.
    fixed = raw_study(train={"freeze": "backbone"}, grid={"seed": [0]})
    del fixed["pretrain"]
    with pytest.raises(InputError, match='train.freeze = "backbone" needs train.init_from'):
        parse_spec(fixed)


def test_a_scikit_learn_family_beside_a_checkpoint_ignores_it_as_before(tmp_path):
    checkpoint = tmp_path / "ck.pt"
    checkpoint.write_bytes(b"any file")
    raw = {"name": "s", "data": {"name": "digits"}, "model": {}, "train": {"init_from": str(checkpoint)},
           "grid": {"family": ["mlp", "tree"]}}  # fmt: skip
    cells = {c.params["family"]: c for c in parse_spec(raw).cells}
    assert "init_from" in cells["mlp"].config["train"] and cells["tree"].config["train"] == {"seed": 0}


def test_every_data_shape_that_shares_a_checkpoint_is_checked_before_running():
    from scalelab.estimate import preflight

    def spec(widths):
        return parse_spec({
            "name": "shapes", "data": {"name": "synthetic", "n_samples": 300}, "model": {"family": "mlp"}, "train": {"epochs": 1},
            "pretrain": {"data": {"name": "synthetic", "n_samples": 300, "n_features": 20}},
            "grid": {"init_from": ["none", "pretrain"], "n_features": widths},
        }, source="shapes.toml")  # fmt: skip

    preflight(spec([20]))
    with pytest.raises(InputError, match=r"\[pretrain\] data of shape \(20,\) .* on data of shape \(30,\)"):
        preflight(spec([20, 30]))  # the first cell fits; the second does not
