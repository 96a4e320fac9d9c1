"""A worker takes only the cores that are free: beside busy processes it trains on fewer
threads, with ``--threads`` it takes what it is told, and bad values exit 2.

The busy processes are real (Python loops that never sleep, one per core of this
process's CPU set), and what each run trained on is read from the store's records.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from cli_helpers import (
    assert_one_line_error,
    cli_env,
    cpu_digits_mlp_study,
    run_cli,
    runs_json,
    write_study,
)

from scalelab.execute.threads import ThreadSizer, available_cores

GRID = "width = [0.5]\ndata_fraction = [0.5, 1.0]\n"
TRAIN = "epochs = 1"


@pytest.fixture
def busy_cores():
    """One never-sleeping process per available core, stopped after the test."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(available_cores())]
    time.sleep(0.5)  # let them reach the loop (an interpreter's start is not load enough)
    yield
    for proc in spinners:
        proc.kill()
    for proc in spinners:
        proc.wait()


@pytest.fixture
def study_env(tmp_path, private_cache_dir):
    study = write_study(tmp_path / "busy.toml", cpu_digits_mlp_study("busy", grid=GRID, train=TRAIN))
    return study, tmp_path / "s.db", cli_env(private_cache_dir), tmp_path


def test_sizer_gives_one_thread_when_every_core_is_busy(busy_cores):
    sizer = ThreadSizer(share=available_cores())
    assert sizer.threads() == 1
    time.sleep(0.3)  # a new window: measured since the last check, not the first answer repeated
    assert sizer.others_busy() > available_cores() - 0.75
    assert sizer.threads() == 1


def test_sizer_fixed_threads_are_kept(busy_cores):
    assert ThreadSizer(share=1, fixed=3).threads() == 3


@pytest.mark.skipif(available_cores() < 2, reason="one core: a worker has one thread whatever the load")
def test_run_beside_busy_cores_trains_on_one_thread(study_env, busy_cores):
    study, store, env, cwd = study_env
    cli = run_cli("run", study, "--store", store, "--workers", "1", "--quiet", env=env, cwd=cwd)
    assert cli.returncode == 0, cli.describe()
    runs = runs_json(study, store=store, env=env, cwd=cwd)
    assert [r["state"] for r in runs] == ["done", "done"]
    assert {r["threads"] for r in runs} == {1}, "a worker sized for the whole machine oversubscribes busy cores"


def test_threads_option_fixes_each_workers_threads(study_env):
    study, store, env, cwd = study_env
    cli = run_cli("run", study, "--store", store, "--workers", "1", "--threads", "3", "--quiet", env=env, cwd=cwd)
    assert cli.returncode == 0, cli.describe()
    assert {r["threads"] for r in runs_json(study, store=store, env=env, cwd=cwd)} == {3}


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_threads_exit_2_before_any_work(study_env, value):
    study, store, env, cwd = study_env
    cli = run_cli("run", study, "--store", store, "--threads", value, env=env, cwd=cwd)
    assert_one_line_error(cli, "--threads", value)
    assert not store.exists()


def test_threads_with_ray_executor_exit_2(study_env):
    study, store, env, cwd = study_env
    cli = run_cli("run", study, "--store", store, "--threads", "2", "--executor", "ray", env=env, cwd=cwd)
    assert_one_line_error(cli, "--threads", "[resources]")
    assert not store.exists()


def test_no_proc_stat_falls_back_to_the_fair_share(monkeypatch, tmp_path):
    from scalelab.execute import threads

    monkeypatch.setattr(threads, "PROC_STAT", tmp_path / "missing")
    assert ThreadSizer(share=2).threads() == 2
    assert os.path.exists("/proc/stat")  # the real one is what the other tests read
