"""A worker-death retry counts only worker deaths in the current run.

A cell that was running when its coordinator was killed (``kill -9``) has been claimed
once already; that claim was not a failed try. When its worker then dies once on the
resume, the cell is retried and finishes, instead of going straight to ``failed``.
Real subprocesses, a real SIGKILL, a real SQLite store; the worker's death is a real
``os._exit`` in the worker process (``tests.fixtures:dies_once_on_cue``).
"""

from __future__ import annotations

import os
import signal

from cli_helpers import CLIProcess, cell_rows, cell_states, cli_env, run_cli, wait_for_group_to_empty, wait_until, write_study

STUDY = """
name = "dies-once"

[data]
name = "digits"

[model]
family = "python:tests.fixtures:dies_once_on_cue"
cue_dir = "{cue}"

[train]
device = "cpu"
epochs = 40
batch_size = 32

[grid]
seed = [0]
"""


def test_a_cell_interrupted_by_kill_9_survives_one_worker_death_on_the_resume(tmp_path):
    env = cli_env(tmp_path / "cache")
    cue = tmp_path / "cue"
    cue.mkdir()
    study = write_study(tmp_path / "dies.toml", STUDY.format(cue=cue))
    store = tmp_path / "dies.db"
    args = ("run", study, "--store", store, "--workers", "1", "--quiet")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # python:tests.fixtures resolves from here

    with CLIProcess(args, env=env, cwd=repo) as runner:
        wait_until(lambda: "running" in cell_states(store, "dies-once").values(), what="the cell running")
        os.kill(runner.pid, signal.SIGKILL)
        runner.proc.wait(timeout=60)
        assert wait_for_group_to_empty(runner.pid) == []
    (row,) = cell_rows(store, "dies-once").values()
    assert row["state"] == "running" and row["attempts"] == 1

    (cue / "die").write_text("")
    resumed = run_cli(*args, env=env, cwd=repo, timeout=600)
    assert (cue / "died").exists(), "the worker never died: the test did not test anything"
    assert resumed.returncode == 0, resumed.describe()
    (row,) = cell_rows(store, "dies-once").values()
    assert row["state"] == "done", row  # one death in this run: retried, not failed
    assert row["attempts"] == 3  # claimed at the kill, at the resume, and after the death
