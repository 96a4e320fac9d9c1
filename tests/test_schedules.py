"""Learning-rate schedules, training curves and early stopping, through the real command
(``scalelab run``, ``scalelab runs --curves``) and the schedule's own values."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math

import pytest
import torch
from cli_helpers import (
    assert_one_line_error,
    cli_env,
    cpu_digits_mlp_study,
    run_cli,
    runs_json,
    write_study,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from scalelab.spec import load_spec
from scalelab.train.schedule import EarlyStopping, eval_steps, lr_factor


# -- the schedule's values ---------------------------------------------------------------
def test_warmup_is_linear_then_constant():
    factors = [lr_factor(s, total_steps=100, warmup=4) for s in range(6)]
    assert factors == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_reaches_its_floor_at_the_cells_own_last_step():
    total, floor = 101, 0.1
    assert lr_factor(0, total_steps=total, schedule="cosine", min_lr_ratio=floor) == pytest.approx(1.0)
    assert lr_factor(50, total_steps=total, schedule="cosine", min_lr_ratio=floor) == pytest.approx((1 + floor) / 2)
    assert lr_factor(100, total_steps=total, schedule="cosine", min_lr_ratio=floor) == pytest.approx(floor)


def test_cosine_after_warmup_starts_at_one():
    assert lr_factor(9, total_steps=110, schedule="cosine", warmup=10) == pytest.approx(1.0)
    assert lr_factor(10, total_steps=110, schedule="cosine", warmup=10) == pytest.approx(1.0)
    assert lr_factor(109, total_steps=110, schedule="cosine", warmup=10) == pytest.approx(0.0)


def test_wsd_is_stable_then_decays_linearly_over_the_cooldown():
    total = 100  # cooldown 0.2: the last 20 steps decay, from step 79 to step 99
    stable = [lr_factor(s, total_steps=total, schedule="wsd", cooldown=0.2) for s in range(80)]
    assert stable == [1.0] * 80
    assert lr_factor(89, total_steps=total, schedule="wsd", cooldown=0.2) == pytest.approx(0.5)
    assert lr_factor(99, total_steps=total, schedule="wsd", cooldown=0.2, min_lr_ratio=0.05) == pytest.approx(0.05)


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(1, 5000), warmup=st.integers(0, 200), floor=st.floats(0, 1), cooldown=st.floats(0.01, 1),
    schedule=st.sampled_from(["constant", "cosine", "wsd"]),
)  # fmt: skip
def test_factor_stays_between_floor_and_one_and_never_rises_after_warmup(total, warmup, floor, cooldown, schedule):
    factors = [lr_factor(s, total_steps=total, schedule=schedule, warmup=warmup, min_lr_ratio=floor, cooldown=cooldown) for s in range(total)]
    after = factors[min(warmup, total) :]
    assert all(0 < f <= 1.0 + 1e-12 for f in factors[:warmup]) if warmup else True
    assert all(min(floor, 1.0) - 1e-12 <= f <= 1.0 + 1e-12 for f in after)
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(after))


def test_eval_steps_are_log_spaced_and_end_at_the_last_step():
    steps = eval_steps(1000, 10)
    assert steps[0] == 1 and steps[-1] == 1000 and len(steps) <= 10
    gaps = [b / a for a, b in itertools.pairwise(steps)]
    assert max(gaps) / min(gaps) < 2  # roughly constant ratios: log spacing
    assert eval_steps(1000, 0) == [] and eval_steps(3, 10) == [1, 2, 3]


def test_early_stopping_restores_the_best_weights():
    model = torch.nn.Linear(3, 2)
    stopper = EarlyStopping(patience=2)
    assert not stopper.should_stop(1.0, 1, model)
    with torch.no_grad():
        model.weight.add_(1.0)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    assert not stopper.should_stop(0.5, 2, model)
    with torch.no_grad():
        model.weight.add_(5.0)
    assert not stopper.should_stop(0.7, 3, model)
    assert stopper.should_stop(0.8, 4, model)
    stopper.restore(model)
    assert stopper.best_step == 2
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items())


# -- cell identity -------------------------------------------------------------------------
def _one_cell_id(tmp_path, train: str) -> str:
    study = write_study(tmp_path / "id.toml", cpu_digits_mlp_study("id", grid="seed = [0]", train=train))
    (cell,) = load_spec(study).cells
    return cell.cell_id


def test_off_values_keep_existing_cell_ids(tmp_path):
    plain = _one_cell_id(tmp_path, "")
    explicit_off = 'lr_schedule = "constant"\nwarmup = 0\ngrad_clip = 0.0\neval_points = 10'
    assert _one_cell_id(tmp_path, explicit_off) == plain
    assert _one_cell_id(tmp_path, 'lr_schedule = "cosine"') != plain
    assert _one_cell_id(tmp_path, "grad_clip = 1.0") != plain


# -- end to end ----------------------------------------------------------------------------
@pytest.fixture
def env(tmp_path, private_cache_dir):
    return cli_env(private_cache_dir)


def test_early_stopping_run_keeps_the_best_evaluation_and_exports_its_curve(tmp_path, env):
    # min_delta far above any early improvement: the second evaluation stops the run and
    # the weights of the first come back, so the recorded validation loss is the first point's.
    study = write_study(
        tmp_path / "es.toml",
        'name = "es"\n[data]\nname = "digits"\nvalidation_split = 0.2\n[model]\nfamily = "mlp"\n'
        '[train]\ndevice = "cpu"\nepochs = 3\nlr_schedule = "cosine"\nwarmup = 2\ngrad_clip = 1.0\n'
        "early_stopping = {patience = 1, min_delta = 5.0}\n[grid]\ndata_fraction = [0.5]\n",
    )
    store = tmp_path / "s.db"
    cli = run_cli("run", study, "--store", store, "--quiet", env=env, cwd=tmp_path)
    assert cli.returncode == 0, cli.describe()
    (run,) = runs_json(study, store=store, env=env, cwd=tmp_path)
    assert run["state"] == "done" and run["early_stopped"] is True
    assert run["best_step"] == 1 and run["steps"] == 2 == run["stopped_step"]
    assert run["flops"] == pytest.approx(run["flops_per_sample"] * 2 * 64)  # two steps of 64 samples were spent

    cli = run_cli("runs", study, "--store", store, "--curves", "--format", "json", env=env, cwd=tmp_path)
    assert cli.returncode == 0, cli.describe()
    points = json.loads(cli.stdout)
    assert [p["step"] for p in points] == [1, 2]
    assert run["val_loss"] == pytest.approx(points[0]["val_loss"], rel=1e-6)  # the restored weights' loss
    assert points[0]["lr"] == pytest.approx(0.5e-3)  # warmup: half the rate after the first step

    cli = run_cli("runs", study, "--store", store, "--curves", "--format", "csv", env=env, cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(cli.stdout)))
    assert [int(r["step"]) for r in rows] == [1, 2] and all(math.isfinite(float(r["train_loss"])) for r in rows)


def test_a_plain_run_records_about_ten_log_spaced_points(tmp_path, env):
    study = write_study(tmp_path / "plain.toml", cpu_digits_mlp_study("plain", grid="data_fraction = [0.5]", train="epochs = 4"))
    store = tmp_path / "s.db"
    assert run_cli("run", study, "--store", store, "--quiet", env=env, cwd=tmp_path).returncode == 0
    (run,) = runs_json(study, store=store, env=env, cwd=tmp_path)
    assert "curve" not in run  # kept in the store's curve table, not among the metrics
    cli = run_cli("runs", study, "--store", store, "--curves", "--format", "json", env=env, cwd=tmp_path)
    points = json.loads(cli.stdout)
    assert 5 <= len(points) <= 10 and points[-1]["step"] == run["steps"]
    assert all("val_loss" not in p or p["val_loss"] is None for p in points)  # no validation split


@pytest.mark.parametrize(
    ("train", "needles"),
    [
        ("min_lr_ratio = 0.1", ("train.min_lr_ratio", "lr_schedule")),
        ('lr_schedule = "cosine"\ncooldown = 0.3', ("train.cooldown", "wsd")),
        ("early_stopping = {patience = 2}", ("train.early_stopping", "validation_split")),
        ('batch_seeds = true\nlr_schedule = "wsd"', ("batch_seeds", "lr_schedule")),
        ('lr_schedule = "linear"', ("train.lr_schedule", "linear")),
        ("early_stopping = {min_delta = 0.1}", ("early_stopping", "patience")),
    ],
)
def test_bad_schedule_settings_exit_2_before_any_work(tmp_path, env, train, needles):
    study = write_study(tmp_path / "bad.toml", cpu_digits_mlp_study("bad", grid="seed = [0, 1]", train=train))
    store = tmp_path / "s.db"
    cli = run_cli("run", study, "--store", store, env=env, cwd=tmp_path)
    assert_one_line_error(cli, "bad.toml", *needles)
    assert not store.exists()
