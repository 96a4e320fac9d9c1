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
    cell_rows,
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
from scalelab.spec import cell_id_of, parse_spec
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


def test_the_timeout_is_no_part_of_a_cells_id():
    """How long ranks wait for each other changes no result, so stored runs stay valid."""
    default, longer = (cell(data_parallel=2, **extra) for extra in ({}, {"data_parallel_timeout": 30}))
    assert "data_parallel_timeout" not in default["train"] and longer["train"]["data_parallel_timeout"] == 30
    assert cell_id_of(default) == cell_id_of(longer)


@pytest.mark.parametrize("value", [0, -1, "soon"])
def test_the_timeout_must_be_a_positive_number_of_seconds(value):
    with pytest.raises(InputError) as caught:
        cell(data_parallel=2, data_parallel_timeout=value)
    assert "train.data_parallel_timeout" in str(caught.value)


# A model whose second rank stops for good in its first forward pass, as a rank stuck on a
# dead file system or a wedged GPU would: rank 0 waits for it in the gradient all-reduce.
STALLING_MODEL = """
import os, time
import torch

def make_model(input_shape, n_classes):
    return Stalls(int(torch.tensor(input_shape).prod()), n_classes)

class Stalls(torch.nn.Module):
    def __init__(self, inputs, n_classes):
        super().__init__()
        self.linear = torch.nn.Linear(inputs, n_classes)

    def forward(self, x):
        if os.environ.get("RANK") == "1":
            time.sleep(3600)
        return self.linear(x.flatten(1))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process checks read /proc (Linux)")
def test_a_rank_that_hangs_fails_the_cell_after_the_timeout_and_leaves_no_process(tmp_path):
    (tmp_path / "stall.py").write_text(STALLING_MODEL)
    study = write_study(
        tmp_path / "stall.toml",
        'name = "stall"\n[data]\nname = "digits"\ndata_fraction = 0.2\n[model]\nfamily = "python:stall:make_model"\n'
        '[train]\nepochs = 1\ndevice = "cpu"\ndata_parallel = 2\ndata_parallel_timeout = 3\n',
    )
    env = cli_env(tmp_path / "cache")
    store = tmp_path / "s.db"
    ran = run_cli("run", study, "--store", store, "--workers", "1", "--quiet", env=env, cwd=tmp_path)
    assert ran.returncode != 0, ran.describe()
    (row,) = cell_rows(store, "stall").values()
    assert row["state"] == "failed", row
    assert "rank 0: timed out after 3 s waiting for another rank" in row["reason"], row["reason"]
    assert "train.data_parallel_timeout" in row["reason"]


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


@pytest.mark.slow
def test_torchrun_trains_a_cell_of_a_study_and_rank_0_writes_its_outcome(tmp_path, digits):
    """The multi-host path: ``torchrun`` starts the ranks, each joins from the environment."""
    import json
    import subprocess
    import sys

    study = ddp_study(tmp_path, "ddp", epochs=2)
    (only,) = parse_spec({"name": "ddp", "data": {"name": "digits"}, "model": {"family": "mlp", "width": 0.5},
                          "train": {"epochs": 2, "device": "cpu", "data_parallel": 2}}).cells  # fmt: skip
    env = cli_env(tmp_path / "cache")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "scalelab.train.data_parallel"]
    out = tmp_path / "metrics.json"
    ran = subprocess.run([*torchrun, str(study), only.cell_id, "--out", str(out)], check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    written = json.loads(out.read_text())
    alone = run_cell({**only.config, "train": {**only.config["train"], "data_parallel": 1}}, digits)
    assert written["cell_id"] == only.cell_id and written["state"] == "done"
    assert written["metrics"]["world_size"] == 2 and written["metrics"]["steps"] == alone.metrics["steps"]
    assert written["metrics"]["train_loss"] == pytest.approx(alone.metrics["train_loss"], rel=LOSS_RTOL)

    wrong = subprocess.run([*torchrun, str(study), "nope", "--out", str(out)], check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert wrong.returncode != 0 and "no cell 'nope'" in wrong.stderr
