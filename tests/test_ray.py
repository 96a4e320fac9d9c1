"""``scalelab run --executor ray``: real Ray, real processes, real signals, real SQLite.

* a grid on a private local Ray instance ends ``done`` with the metrics the local pool
  records for the same cells and seeds;
* on a running cluster (``ray start --head`` on 127.0.0.1, joined with ``--address``):
  a Ray worker killed with SIGKILL mid-cell has its cell retried, and nothing else is lost
  or repeated; a driver killed with ``kill -9`` mid-grid is resumed by rerunning;
* without Ray installed, the executor is a one-line usage error that says how to install it.

Nothing is timed: timeouts are only safety nets.
"""

from __future__ import annotations

import json
import os
import signal
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import (
    CLIProcess,
    assert_one_line_error,
    cell_rows,
    cell_states,
    cli_env,
    cpu_digits_mlp_study,
    expected_cell_ids,
    kill_group,
    read_store,
    run_cli,
    runs_json,
    wait_until,
    write_study,
)

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process checks read /proc (Linux)"),
]

# Timing fields differ run to run; everything else a cell records must not.
VARYING = {"wall_s", "train_s", "samples_per_s", "flops_per_s", "mfu", "inference_samples_per_s", "threads", "executor"}


def digits_study(name: str, *, epochs: int, grid: str) -> str:
    return cpu_digits_mlp_study(name, train=f"epochs = {epochs}\nbatch_size = 32", grid=grid)


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path / "cache")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real Ray head node on 127.0.0.1 with 2 CPUs, in its own process group, with token
    authentication (Ray's default for clusters it starts): its address and the environment
    a driver needs to join it."""
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, **auth},
    )  # fmt: skip
    address = f"127.0.0.1:{port}"

    def accepting():
        if head.poll() is not None:
            raise AssertionError(f"ray start exited {head.returncode}: {head.stderr.read()}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    wait_until(accepting, what="the Ray head node to accept connections")
    yield address, auth
    kill_group(head.pid)
    head.wait(timeout=30)


def _on_cluster(tmp_path, env, cluster, name: str, *, epochs: int, grid: str):
    """A digits study run on the shared cluster: its file, store, cell ids, the arguments of
    ``scalelab run`` and the environment that can join the cluster."""
    address, auth = cluster
    study = write_study(tmp_path / f"{name}.toml", digits_study(name, epochs=epochs, grid=grid))
    store = tmp_path / "store.db"
    args = ("run", study, "--store", store, "--executor", "ray", "--address", address, "--quiet")
    return study, store, expected_cell_ids(study), args, {**env, **auth}


def _actor_pids(title: str = "ray::CellActor.run_group") -> list[int]:
    """Ray workers whose process title says they are running a cell right now."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if cmdline.startswith(title.encode()):
            found.append(int(name))
    return found


def _comparable(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in VARYING}


def test_a_grid_on_a_local_ray_instance_records_what_the_local_pool_records(tmp_path, env):
    grid = "width = [0.5, 1]\nseed = [0, 1]"
    on_ray = write_study(tmp_path / "ray.toml", digits_study("grid", epochs=2, grid=grid))
    store_ray, store_local = tmp_path / "ray.db", tmp_path / "local.db"
    ran = run_cli("run", on_ray, "--store", store_ray, "--executor", "ray", "--quiet", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.describe()
    assert ran.stderr.strip() == "", ran.describe()  # Ray's own logging stays quiet
    local = run_cli("run", on_ray, "--store", store_local, "--workers", "2", "--quiet", env=env, cwd=tmp_path)
    assert local.returncode == 0, local.describe()

    ray_rows = {row["cell_id"]: row for row in runs_json(on_ray, store=store_ray, env=env, cwd=tmp_path)}
    local_rows = {row["cell_id"]: row for row in runs_json(on_ray, store=store_local, env=env, cwd=tmp_path)}
    assert set(ray_rows) == set(local_rows) == expected_cell_ids(on_ray)
    for cell_id, row in ray_rows.items():
        assert row["state"] == "done"
        assert _comparable(row) == _comparable(local_rows[cell_id])


def test_a_ray_worker_killed_mid_cell_is_retried_and_nothing_is_lost_or_repeated(tmp_path, env, cluster):
    study, store, grid_ids, args, env = _on_cluster(tmp_path, env, cluster, "killed", epochs=100, grid="width = [0.5, 1]\nseed = [0, 1, 2]")
    with CLIProcess(args, env=env, cwd=tmp_path) as runner:
        victim = wait_until(lambda: _actor_pids()[:1], what="a Ray worker training a cell")[0]
        os.kill(victim, signal.SIGKILL)
        assert runner.communicate() == 0, runner.describe()

    rows = cell_rows(store, "killed")
    assert set(rows) == grid_ids
    assert {row["state"] for row in rows.values()} == {"done"}
    attempts = sorted(row["attempts"] for row in rows.values())
    assert attempts == [1] * (len(grid_ids) - 1) + [2], attempts  # exactly the killed cell ran twice


def test_kill_9_of_the_driver_then_rerun_finishes_with_one_row_per_cell(tmp_path, env, cluster):
    study, store, grid_ids, args, env = _on_cluster(tmp_path, env, cluster, "driver", epochs=30, grid="width = [0.5, 1]\nseed = [0, 1, 2, 3]")
    with CLIProcess(args, env=env, cwd=tmp_path) as driver:

        def some_done_some_running():
            states = list(cell_states(store, "driver").values())
            return "done" in states and "running" in states

        wait_until(some_done_some_running, what="a done cell and a running cell")
        os.kill(driver.pid, signal.SIGKILL)
        driver.proc.wait(timeout=60)
    done_before = {cid for cid, row in cell_rows(store, "driver").items() if row["state"] == "done"}

    rerun = run_cli(*args, env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.describe()
    rows = cell_rows(store, "driver")
    assert set(rows) == grid_ids  # one row per cell: the store is keyed by cell id
    assert {row["state"] for row in rows.values()} == {"done"}
    for cell_id in done_before:
        assert rows[cell_id]["attempts"] == 1  # finished before the kill, not trained again
    ids = [row["cell_id"] for row in runs_json(study, store=store, env=env, cwd=tmp_path)]
    assert sorted(ids) == sorted(grid_ids)


def test_resources_ask_more_than_the_cluster_has_is_a_usage_error(tmp_path, env, cluster):
    address, auth = cluster
    env = {**env, **auth}
    study = write_study(
        tmp_path / "big.toml", digits_study("big", epochs=1, grid="seed = [0]") + "[resources]\ncpus = 64\n"
    )
    cli = run_cli("run", study, "--store", tmp_path / "s.db", "--executor", "ray", "--address", address, env=env, cwd=tmp_path)
    assert_one_line_error(cli, "[resources] asks 64 CPUs", "the Ray cluster has 2 CPUs")


def test_without_ray_the_ray_executor_is_a_usage_error_that_says_how_to_install_it(tmp_path, env):
    hidden = tmp_path / "no-ray"
    (hidden / "ray").mkdir(parents=True)
    (hidden / "ray" / "__init__.py").write_text('raise ImportError("No module named \'ray\'")\n')
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(hidden), env.get("PYTHONPATH")]))}
    study = write_study(tmp_path / "s.toml", digits_study("s", epochs=1, grid="seed = [0]"))
    cli = run_cli("run", study, "--store", tmp_path / "s.db", "--executor", "ray", env=env, cwd=tmp_path)
    assert_one_line_error(cli, "--executor ray needs Ray", "pip install -e '.[ray]'")
    assert not (tmp_path / "s.db").exists()


def test_address_without_the_ray_executor_is_a_usage_error(tmp_path, env):
    study = write_study(tmp_path / "s.toml", digits_study("s", epochs=1, grid="seed = [0]"))
    cli = run_cli("run", study, "--store", tmp_path / "s.db", "--address", "127.0.0.1:6379", env=env, cwd=tmp_path)
    assert_one_line_error(cli, "--address is for --executor ray")


def test_the_store_records_which_executor_ran_each_cell(tmp_path, env):
    study = write_study(tmp_path / "s.toml", digits_study("s", epochs=1, grid="seed = [0]"))
    ran = run_cli("run", study, "--store", tmp_path / "s.db", "--executor", "ray", "--quiet", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.describe()
    (row,) = cell_rows(tmp_path / "s.db", "s").values()
    metrics = json.loads(row["metrics_json"])
    assert metrics["executor"] == "ray"
    assert metrics["host"] == socket.gethostname()


def test_a_transfer_study_on_the_cluster_ships_each_checkpoint_with_its_tasks(tmp_path, env, cluster):
    """The [pretrain] stage runs on the cluster's actors; its checkpoints come back to the
    store and go out again inside the fine-tuned cells' tasks (no shared files needed)."""
    grid = 'init_from = ["none", "pretrain"]\nseed = [0, 1]\n'
    pretrain = '[pretrain.data]\nname = "digits"\nlabel_noise = 0.2\n[pretrain.train]\nepochs = 1\ndevice = "cpu"\n'
    address, auth = cluster
    env = {**env, **auth}
    study = write_study(tmp_path / "transfer.toml", digits_study("transfer", epochs=1, grid=grid) + pretrain)
    store = tmp_path / "store.db"
    ran = run_cli("run", study, "--store", store, "--executor", "ray", "--address", address, "--quiet", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "trained 4 cells and 2 pretrained checkpoints" in ran.stdout
    rows = runs_json("transfer", store=store, env=env, cwd=tmp_path)
    assert {r["state"] for r in rows} == {"done"} and {r["executor"] for r in rows} == {"ray"}
    held = {r[0]: r[1] for r in read_store(store, "SELECT checkpoint_id, sha256 FROM checkpoints")}
    tuned = [r for r in rows if r["init_from"] == "pretrain"]
    assert len(held) == 2 and {r["init_from_sha256"] for r in tuned} == set(held.values())
