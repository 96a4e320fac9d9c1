"""``[train] data_parallel = N``: one cell trained by N real processes with
DistributedDataParallel over gloo, against the same cell in one process.

The ranks draw the same shuffled global batches and split each among themselves, so the
run must take the same steps as one process with the same global batch: the same final
training loss within float tolerance (the gradient is summed in another order).
"""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import pytest

from cli_helpers import (
    CLIProcess,
    cell_states,
    children_of,
    cli_env,
    run_cli,
    runs_json,
    wait_for_group_to_empty,
    wait_until,
    write_study,
)
from scalelab.data import load_dataset
from scalelab.errors import InputError
from scalelab.spec import parse_spec
from scalelab.train.cell import run_cell

LOSS_RTOL = 1e-4


def cell(*, data_parallel: int, model=None, **train) -> dict:
    raw = {
        "name": "ddp",
        "data": {"name": "digits", "data_fraction": 0.5},
        "model": model or {"family": "mlp", "width": 0.5},
        "train": {"epochs": 2, "device": "cpu", "data_parallel": data_parallel, **train},
    }
    (only,) = parse_spec(raw, source="ddp.toml").cells
    return only.config


def ddp_study(tmp_path, name: str, *, epochs: int, grid: str = ""):
    """A study file of a narrow MLP on digits, each cell trained by 2 gloo processes."""
    return write_study(
        tmp_path / f"{name}.toml",
        f'name = "{name}"\n[data]\nname = "digits"\n[model]\nfamily = "mlp"\nwidth = 0.5\n'
        f'[train]\nepochs = {epochs}\ndevice = "cpu"\ndata_parallel = 2\n{grid}',
    )


@pytest.fixture(scope="module")
def digits():
    return load_dataset(cell(data_parallel=1)["data"])


@pytest.mark.parametrize(
    ("world_size", "model", "train"),
    [
        pytest.param(2, None, {"batch_size": 64}, id="mlp-2-ranks"),
        # 50 does not split evenly among 3 ranks, and the last batch of an epoch is short.
        pytest.param(3, None, {"batch_size": 50, "optimizer": "sgd", "lr": 0.05}, id="mlp-3-ranks-uneven"),
        pytest.param(2, {"family": "seed_cnn", "width": 0.25}, {"batch_size": 32}, id="seed-cnn-2-ranks"),
    ],
)
def test_data_parallel_takes_the_steps_of_one_process_with_the_same_global_batch(digits, world_size, model, train):
    alone = run_cell(cell(data_parallel=1, model=model, **train), digits)
    together = run_cell(cell(data_parallel=world_size, model=model, **train), digits)
    assert alone.state == together.state == "done"
    a, t = alone.metrics, together.metrics
    for name in ("steps", "epochs", "n_train", "n_params", "flops", "seed"):
        assert t[name] == a[name], name
    for name in ("train_loss", "test_loss"):
        assert t[name] == pytest.approx(a[name], rel=LOSS_RTOL), name
    assert abs(t["test_error"] - a["test_error"]) <= 1 / a["n_test"] + 1e-12
    assert t["world_size"] == world_size and "world_size" not in a
    assert t["per_process_samples_per_s"] == pytest.approx(t["samples_per_s"] / world_size)
    assert t["single_process_samples_per_s"] > 0
    assert t["scaling_efficiency"] == pytest.approx(t["samples_per_s"] / (world_size * t["single_process_samples_per_s"]))
    assert math.isfinite(t["scaling_efficiency"]) and t["scaling_efficiency"] > 0


def test_data_parallel_one_is_the_plain_run_and_keeps_the_cell_id():
    with_default = parse_spec({"name": "d", "data": {"name": "digits"}, "model": {"family": "mlp"}}).cells[0]
    explicit = parse_spec({"name": "d", "data": {"name": "digits"}, "model": {"family": "mlp"}, "train": {"data_parallel": 1}}).cells[0]
    assert explicit.cell_id == with_default.cell_id
    assert "data_parallel" not in explicit.config["train"]


@pytest.mark.parametrize("value", [0, -2, 1.5, "two"])
def test_data_parallel_must_be_a_positive_integer(value):
    with pytest.raises(InputError) as caught:
        cell(data_parallel=value)
    assert "train.data_parallel" in str(caught.value) and str(caught.value).startswith("ddp.toml: ")


@pytest.mark.slow
def test_a_data_parallel_cell_runs_through_the_worker_pool(tmp_path):
    """Pool workers start the ranks themselves (so they may not be daemonic processes)."""
    study = ddp_study(tmp_path, "ddp", epochs=2, grid="[grid]\nseed = [0, 1]\n")
    env = cli_env(tmp_path / "cache")
    ran = run_cli("run", study, "--store", tmp_path / "s.db", "--workers", "2", "--quiet", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.describe()
    rows = runs_json(study, store=tmp_path / "s.db", env=env, cwd=tmp_path)
    assert [row["state"] for row in rows] == ["done", "done"]
    assert {row["world_size"] for row in rows} == {2}


def test_batch_norm_across_cpu_processes_fails_the_cell_with_the_reason(digits):
    with pytest.raises(RuntimeError) as caught:
        run_cell(cell(data_parallel=2, model={"family": "resnet", "width": 0.25, "depth": 1}), digits)
    assert "needs a model without batch norm" in str(caught.value)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process checks read /proc (Linux)")
def test_ctrl_c_during_a_data_parallel_cell_stops_its_ranks_too(tmp_path):
    study = ddp_study(tmp_path, "long", epochs=2000)
    env = cli_env(tmp_path / "cache")
    store = tmp_path / "s.db"
    with CLIProcess(("run", study, "--store", store, "--workers", "1", "--quiet"), env=env, cwd=tmp_path) as runner:

        def ranks_training():
            if "running" not in cell_states(store, "long").values():
                return None
            workers = children_of(runner.pid)
            ranks = [pid for worker in workers for pid in children_of(worker)]
            return ranks if len(ranks) >= 2 else None

        wait_until(ranks_training, what="the cell's two rank processes")
        os.kill(runner.pid, signal.SIGINT)
        assert runner.communicate() == 130, runner.describe()
        assert wait_for_group_to_empty(runner.pid) == [], "worker or rank processes outlived the run"
    assert set(cell_states(store, "long").values()) == {"pending"}
