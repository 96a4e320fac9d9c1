"""Seed batching (``[train] batch_seeds = true``): seeds trained side by side as one
vmapped model give each seed what a separate run of it gives, and the run store treats a
seed group as one task without changing what it records per cell.

The trainer-level tests compare a batched group with separate runs of the same cells on
real data; the command-line tests run real grids in real worker processes, one of them
killed with SIGKILL in the middle of a group.
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest

from cli_helpers import (
    CLIProcess,
    assert_one_line_error,
    cell_rows,
    cell_states,
    children_of,
    cli_env,
    cpu_digits_mlp_study,
    expected_cell_ids,
    run_cli,
    runs_json,
    wait_until,
    write_study,
)
from scalelab.data import load_dataset
from scalelab.errors import InputError
from scalelab.spec import parse_spec, seed_group_key
from scalelab.store import RunStore
from scalelab.train.cell import run_cell, run_seed_group

# Batched matrix products may add in another order than separate ones: equal within this.
LOSS_RTOL = 1e-4
# bf16 keeps 8 bits of mantissa (relative rounding 2**-9), so a changed order shows more:
# losses within 0.5%, test error within one point (the bar bf16 itself meets against fp32).
BF16_LOSS_RTOL, BF16_ERROR_TOL = 5e-3, 0.01
SAME = ("n_params", "n_train", "n_test", "epochs", "steps", "flops", "eval_flops", "seed", "precision", "dtype", "device")


def study(*, train=None, data=None, model=None, grid=None) -> dict:
    return {
        "name": "batched",
        "data": data or {"name": "digits", "data_fraction": 0.5},
        "model": model or {"family": "mlp", "width": 0.5},
        "train": {"epochs": 3, "device": "cpu", "batch_seeds": True, **(train or {})},
        "grid": grid or {"seed": [0, 1, 2, 3]},
    }


def configs_of(raw: dict) -> list[dict]:
    return [cell.config for cell in parse_spec(raw, source="batched.toml").cells]


@pytest.fixture(scope="module")
def digits():
    return load_dataset(configs_of(study())[0]["data"])


def assert_same_as_separate_runs(configs: list[dict], dataset, *, rtol: float = LOSS_RTOL, error_tol: float | None = None) -> list:
    batched = run_seed_group(configs, dataset)
    assert len(batched) == len(configs)
    for config, together in zip(configs, batched):
        alone = run_cell(config, dataset)
        assert together.state == alone.state, (together.reason, alone.reason)
        assert together.reason == alone.reason
        for name in SAME:
            assert together.metrics[name] == alone.metrics[name], name
        for name in ("train_loss", "test_loss"):
            assert together.metrics[name] == pytest.approx(alone.metrics[name], rel=rtol, nan_ok=True), name
        # An error rate moves in steps of 1/n_test; in fp32 a near-tie may flip one prediction.
        tolerance = error_tol if error_tol is not None else 1 / alone.metrics["n_test"]
        assert abs(together.metrics["test_error"] - alone.metrics["test_error"]) <= tolerance + 1e-12
        assert together.metrics["seeds_batched"] == len(configs)
        assert together.metrics["n_classes"] == alone.metrics["n_classes"]
    return batched


def test_each_seed_of_an_mlp_group_matches_its_separate_run(digits):
    batched = assert_same_as_separate_runs(configs_of(study()), digits)
    # The seeds really are different models.
    assert len({round(o.metrics["train_loss"], 6) for o in batched}) == len(batched)


def test_each_seed_of_a_seed_cnn_group_matches_its_separate_run(digits):
    configs = configs_of(study(model={"family": "seed_cnn", "width": 0.25}, grid={"seed": [5, 6]}))
    assert_same_as_separate_runs(configs, digits)


def test_seeds_sharing_one_subset_with_validation_and_sgd_match_separate_runs(digits):
    # A fixed subsample_seed: every seed trains on the same rows, held once in memory.
    raw = study(
        data={"name": "digits", "data_fraction": 0.5, "subsample_seed": 7, "validation_split": 0.2},
        train={"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 50},
        grid={"seed": [0, 1, 2]},
    )
    batched = assert_same_as_separate_runs(configs_of(raw), digits)
    assert all("val_error" in o.metrics for o in batched)


def test_bf16_groups_match_separate_bf16_runs(digits):
    configs = configs_of(study(train={"precision": "bf16"}, grid={"seed": [0, 1]}))
    batched = assert_same_as_separate_runs(configs, digits, rtol=BF16_LOSS_RTOL, error_tol=BF16_ERROR_TOL)
    assert {o.metrics["precision"] for o in batched} == {"bf16"}


def test_diverging_seeds_record_the_step_a_separate_run_records(digits):
    configs = configs_of(study(train={"optimizer": "sgd", "lr": 1e6, "momentum": 0.0}, grid={"seed": [0, 1, 2]}))
    batched = assert_same_as_separate_runs(configs, digits)
    assert {o.state for o in batched} == {"diverged"}
    assert all(o.metrics["diverged_step"] >= 1 for o in batched)


@pytest.mark.parametrize(
    "train",
    [
        pytest.param({}, id="all-finish"),
        # Seeds 1 and 2 of this group diverge at different steps; 0 and 3 train to the end.
        pytest.param({"optimizer": "sgd", "lr": 3e4, "momentum": 0.9}, id="some-diverge-early"),
    ],
)
def test_a_group_shares_its_time_by_the_samples_each_seed_trained_on(digits, train):
    batched = run_seed_group(configs_of(study(train=train, grid={"seed": [0, 1, 2, 3]})), digits)
    if train:
        assert len({o.metrics["steps"] for o in batched}) > 1, "the seeds must stop at different steps for this case to mean anything"
    group_s = {o.metrics["group_train_s"] for o in batched}
    assert len(group_s) == 1
    (group_s,) = group_s
    assert sum(o.metrics["train_s"] for o in batched) == pytest.approx(group_s)
    # Every seed reports the group's rate of useful samples, however early it stopped.
    rates = [o.metrics["samples_per_s"] for o in batched]
    assert all(math.isfinite(r) and r > 0 for r in rates)
    assert max(rates) == pytest.approx(min(rates), rel=1e-6)


# -- the study file --------------------------------------------------------------------
def test_seed_siblings_share_a_group_and_other_cells_do_not():
    cells = parse_spec(study(model={"family": "mlp"}, grid={"seed": [0, 1], "width": [0.5, 1.0]})).cells
    keys = {(c.params["seed"], c.params["width"]): seed_group_key(c.config) for c in cells}
    assert keys[(0, 0.5)] == keys[(1, 0.5)]
    assert keys[(0, 1.0)] == keys[(1, 1.0)]
    assert keys[(0, 0.5)] != keys[(0, 1.0)]


def test_cells_without_batch_seeds_have_no_group_and_keep_their_ids():
    raw = study()
    raw["train"].pop("batch_seeds")
    plain = parse_spec(raw).cells
    assert all(seed_group_key(c.config) is None for c in plain)
    assert all("batch_seeds" not in c.config["train"] for c in plain)
    raw["train"]["batch_seeds"] = False
    assert [c.cell_id for c in parse_spec(raw).cells] == [c.cell_id for c in plain]


@pytest.mark.parametrize(
    ("model", "train", "message"),
    [
        pytest.param({"family": "resnet"}, {}, "model family 'resnet' cannot batch its seeds (families that can: mlp, seed_cnn)", id="resnet"),
        pytest.param({"family": "tree"}, {}, "model family 'tree' cannot batch its seeds", id="tree"),
        pytest.param({"family": "mlp"}, {"compile": True}, "train.batch_seeds = true and train.compile = true cannot be combined", id="compile"),
    ],
)
def test_batch_seeds_where_it_cannot_apply_is_a_clear_error(model, train, message):
    with pytest.raises(InputError) as caught:
        parse_spec(study(model=model, train=train), source="batched.toml")
    assert str(caught.value).startswith("batched.toml: train.batch_seeds = true")
    assert message in str(caught.value)


# -- the store -------------------------------------------------------------------------
def test_claim_takes_whole_seed_groups_and_counts_groups_against_the_limit(tmp_path):
    spec = parse_spec(study(model={"family": "mlp"}, grid={"seed": [0, 1, 2], "width": [0.5, 1.0, 2.0]}))
    group_of = {c.cell_id: seed_group_key(c.config) for c in spec.cells}
    with RunStore.open(tmp_path / "store.db") as store:
        store.register_study(spec)
        first = store.claim(spec.name, "a", limit=2, group_of=group_of)
        assert len(first) == 6
        assert len({group_of[c.cell_id] for c in first}) == 2
        rest = store.claim(spec.name, "b", limit=5, group_of=group_of)
        assert len(rest) == 3 and len({group_of[c.cell_id] for c in rest}) == 1
        assert {c.cell_id for c in first} | {c.cell_id for c in rest} == set(group_of)
        assert store.claim(spec.name, "c", limit=5, group_of=group_of) == []


# -- end to end ------------------------------------------------------------------------
def digits_study(name: str, *, train: str, grid: str) -> str:
    return cpu_digits_mlp_study(name, model="width = 0.5", train=train, grid=grid)


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path / "cache")


@pytest.mark.slow
def test_a_batched_study_records_what_the_same_study_unbatched_records(tmp_path, env):
    grid = "seed = [0, 1, 2]\ndata_fraction = [0.5, 1.0]"
    batched_file = write_study(tmp_path / "batched.toml", digits_study("batched", train="epochs = 2\nbatch_seeds = true", grid=grid))
    plain_file = write_study(tmp_path / "plain.toml", digits_study("plain", train="epochs = 2", grid=grid))
    store = tmp_path / "store.db"
    for study_file in (batched_file, plain_file):
        ran = run_cli("run", study_file, "--store", store, "--workers", "2", "--quiet", env=env, cwd=tmp_path)
        assert ran.returncode == 0, ran.describe()
    batched = {(r["seed"], r["data_fraction"]): r for r in runs_json(batched_file, store=store, env=env, cwd=tmp_path)}
    plain = {(r["seed"], r["data_fraction"]): r for r in runs_json(plain_file, store=store, env=env, cwd=tmp_path)}
    assert set(batched) == set(plain) and len(batched) == 6
    for key, row in batched.items():
        assert row["state"] == plain[key]["state"] == "done"
        assert row["seeds_batched"] == 3
        assert row["steps"] == plain[key]["steps"] and row["flops"] == plain[key]["flops"]
        assert row["test_loss"] == pytest.approx(plain[key]["test_loss"], rel=LOSS_RTOL)


def _worker_pids(runner_pid: int) -> list[int]:
    """The runner's pool workers (its spawned children, not multiprocessing's resource tracker)."""
    pids = []
    for pid in children_of(runner_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            pids.append(pid)
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process checks read /proc (Linux)")
def test_a_worker_killed_mid_group_has_the_whole_group_retried_and_nothing_else(tmp_path, env):
    study_file = write_study(
        tmp_path / "killed.toml",
        digits_study("killed", train="epochs = 30\nbatch_size = 32\nbatch_seeds = true", grid="seed = [0, 1]\ndepth = [1, 2]"),
    )
    store = tmp_path / "store.db"
    grid_ids = expected_cell_ids(study_file)
    with CLIProcess(("run", study_file, "--store", store, "--workers", "1", "--quiet"), env=env, cwd=tmp_path) as runner:

        def first_group_running():
            running = [cid for cid, state in cell_states(store, "killed").items() if state == "running"]
            workers = _worker_pids(runner.pid)
            return (running, workers) if len(running) == 2 and workers else None

        running, (worker, *_) = wait_until(first_group_running, what="a seed group running on the one worker")
        os.kill(worker, signal.SIGKILL)
        assert runner.communicate() == 0, runner.describe()

    rows = cell_rows(store, "killed")
    assert set(rows) == grid_ids
    assert {row["state"] for row in rows.values()} == {"done"}
    for cell_id, row in rows.items():
        assert row["attempts"] == (2 if cell_id in running else 1), (cell_id, row)
        assert json.loads(row["metrics_json"])["seeds_batched"] == 2


def test_batch_seeds_on_a_family_that_cannot_is_a_usage_error(tmp_path):
    study_file = write_study(
        tmp_path / "resnet.toml",
        'name = "r"\n[data]\nname = "digits"\n[model]\nfamily = "resnet"\n[train]\nbatch_seeds = true\n[grid]\nseed = [0, 1]\n',
    )
    cli = run_cli("run", study_file, "--store", tmp_path / "s.db", env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert_one_line_error(cli, "train.batch_seeds = true: model family 'resnet' cannot batch its seeds")
