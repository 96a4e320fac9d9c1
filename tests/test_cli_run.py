"""``scalelab run`` end to end: real grids, real worker processes, real signals, real SQLite.

These read like DESIGN.md's contracts for the run store and the command line:

* a ``kill -9`` of the runner loses nothing recorded as done, its workers exit on their
  own, and rerunning the same command finishes the rest without repeating a cell;
* Ctrl-C stops cleanly (exit 130) and leaves no cell ``running``;
* ``scalelab runs`` shows every recorded field, and the measured FLOPs and parameter
  count of the source document's CNN;
* divergence is an outcome, not a failure; failures keep their traceback and
  ``--retry-failed`` reruns them;
* reruns and grid edits repeat nothing; two runners on one store run no cell twice.

Nothing is mocked and nothing is timed: timeouts are only safety nets.
"""

from __future__ import annotations

import html
import os
import re
import signal
import time
from pathlib import Path

import pytest

from cli_helpers import (
        CLIProcess,
        cell_rows,
        cell_states,
        children_of,
        cli_env,
        expected_cell_ids,
        group_members,
        kill_group,
        pid_alive,
        run_cli,
        runs_csv,
        runs_json,
        status_json,
        wait_for_group_to_empty,
        wait_until,
        write_study,
    )

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process checks read /proc (Linux)"),
]

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130

# The fields DESIGN.md and the issue promise for every run, besides one column per grid key.
REQUIRED_FIELDS = (
    "cell_id",
    "state",
    "train_loss",
    "test_loss",
    "test_error",
    "n_params",
    "n_train",
    "epochs",
    "steps",
    "flops",
    "wall_s",
    "samples_per_s",
    "device",
    "dtype",
    "seed",
    "torch_version",
)


def digits_mlp_study(name: str, *, grid: str, train: str = "epochs = 1\nbatch_size = 64") -> str:
    return f'name = "{name}"\n\n[data]\nname = "digits"\n\n[model]\nfamily = "mlp"\n\n[train]\n{train}\n\n[grid]\n{grid}\n'


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path / "cache")


def _states_summary(states: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    return counts


def _wait_for_done_and_running(proc: CLIProcess, store: Path, study: str) -> dict[str, str]:
    """Poll the store (read-only) until some cell is done and some other is running."""

    def ready():
        if proc.proc.poll() is not None:
            proc.communicate()
            raise AssertionError(f"the run ended before it could be interrupted:\n{proc.describe()}")
        states = cell_states(store, study)
        counts = _states_summary(states)
        return states if counts.get("done", 0) >= 1 and counts.get("running", 0) >= 1 else None

    return wait_until(ready, what="a done cell and a running cell in the store")


# -- (a) kill -9 and resume ------------------------------------------------------------------
def test_kill_9_then_resume_finishes_the_grid_and_repeats_nothing(tmp_path, env):
    study = write_study(
        tmp_path / "resume.toml",
        digits_mlp_study(
            "resume",
            grid="width = [0.5, 1]\ndata_fraction = [0.5, 1.0]\nseed = [0, 1, 2, 3]",
            train="epochs = 30\nbatch_size = 32",
        ),
    )
    store = tmp_path / "resume.db"
    grid_ids = expected_cell_ids(study)
    assert len(grid_ids) == 16
    args = ("run", study, "--store", store, "--workers", "2", "--quiet")

    with CLIProcess(args, env=env, cwd=tmp_path) as runner:
        _wait_for_done_and_running(runner, store, "resume")
        workers = children_of(runner.pid)  # the worker pool (and multiprocessing's resource tracker)
        assert len(workers) >= 2, f"expected the runner's worker processes among its children, got {workers}"
        os.kill(runner.pid, signal.SIGKILL)  # the runner only, not its group
        runner.proc.wait(timeout=60)
        assert runner.returncode == -signal.SIGKILL

        # Its workers notice that the runner is gone and exit on their own.
        deadline = time.monotonic() + 30
        while any(pid_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [pid for pid in workers if pid_alive(pid)]
        if survivors:
            kill_group(runner.pid)
            pytest.fail(f"worker processes {survivors} outlived the runner killed with SIGKILL")
        assert wait_for_group_to_empty(runner.pid) == []

    after_kill = cell_rows(store, "resume")
    assert set(after_kill) == grid_ids
    done_at_kill = {cid: row for cid, row in after_kill.items() if row["state"] == "done"}
    running_at_kill = {cid for cid, row in after_kill.items() if row["state"] == "running"}
    assert done_at_kill and running_at_kill
    assert {row["state"] for row in after_kill.values()} <= {"done", "running", "pending"}

    resumed = run_cli(*args, env=env, cwd=tmp_path)
    assert resumed.returncode == EXIT_OK, resumed.describe()
    assert f"trained {len(grid_ids) - len(done_at_kill)} cells" in resumed.stdout, resumed.stdout

    status = status_json("resume", store=store, env=env, cwd=tmp_path)
    assert status["done"] == status["total"] == len(grid_ids), status
    assert status["running"] == status["pending"] == status["failed"] == status["diverged"] == 0

    header, rows = runs_csv("resume", store=store, env=env, cwd=tmp_path)
    ids = [row["cell_id"] for row in rows]
    assert len(ids) == len(set(ids)) == len(grid_ids)
    assert set(ids) == grid_ids
    for row in rows:
        assert row["state"] == "done", row
        expected_attempts = 2 if row["cell_id"] in running_at_kill else 1
        assert int(row["attempts"]) == expected_attempts, (row["cell_id"], row["attempts"], expected_attempts)

    # Cells recorded as done before the kill were neither lost nor retrained.
    after_resume = cell_rows(store, "resume")
    for cid, row in done_at_kill.items():
        assert after_resume[cid]["metrics_json"] == row["metrics_json"], f"cell {cid} was trained again"
        assert after_resume[cid]["attempts"] == 1


# -- (b) Ctrl-C ------------------------------------------------------------------------------
def test_ctrl_c_stops_cleanly_and_rerun_finishes(tmp_path, env):
    study = write_study(
        tmp_path / "interrupt.toml",
        digits_mlp_study(
            "interrupt",
            grid="width = [0.5, 1]\ndata_fraction = [0.5, 1.0]\nseed = [0, 1]",
            train="epochs = 40\nbatch_size = 32",
        ),
    )
    store = tmp_path / "interrupt.db"
    grid_ids = expected_cell_ids(study)
    args = ("run", study, "--store", store, "--workers", "2", "--quiet")

    with CLIProcess(args, env=env, cwd=tmp_path) as runner:
        _wait_for_done_and_running(runner, store, "interrupt")
        os.kill(runner.pid, signal.SIGINT)
        runner.communicate(timeout=60)
        assert runner.returncode == EXIT_INTERRUPTED, runner.describe()
        assert "Traceback" not in runner.stderr, runner.describe()
        assert "rerun" in runner.stderr.lower(), runner.describe()
        left = wait_for_group_to_empty(runner.pid)
        assert left == [], f"processes {left} outlived the interrupted runner"

    states = cell_states(store, "interrupt")
    assert set(states) == grid_ids
    assert "running" not in states.values(), states
    assert "pending" in states.values(), "nothing was left to resume; the study is too small for this test"

    rerun = run_cli(*args, env=env, cwd=tmp_path)
    assert rerun.returncode == EXIT_OK, rerun.describe()
    status = status_json("interrupt", store=store, env=env, cwd=tmp_path)
    assert status["done"] == status["total"] == len(grid_ids), status
    for row in cell_rows(store, "interrupt").values():
        assert 1 <= row["attempts"] <= 2, row


# -- (c) every recorded field; the seed CNN's parameters and FLOPs ---------------------------
def test_runs_shows_every_field_and_the_seed_cnn_measurements(tmp_path, env):
    study = write_study(
        tmp_path / "seedcnn.toml",
        'name = "seedcnn"\n\n[data]\nname = "synthetic"\nshape = [3, 32, 32]\nn_classes = 10\nn_samples = 400\n\n'
        '[model]\nfamily = "seed_cnn"\n\n[train]\nepochs = 1\nbatch_size = 64\n\n'
        "[grid]\nwidth = [1]\ndata_fraction = [1.0]\n",
    )
    store = tmp_path / "seedcnn.db"
    cli = run_cli("run", study, "--store", store, "--workers", "1", "--quiet", env=env, cwd=tmp_path)
    assert cli.returncode == EXIT_OK, cli.describe()

    (run,) = runs_json("seedcnn", store=store, env=env, cwd=tmp_path)
    for name in (*REQUIRED_FIELDS, "width", "data_fraction"):
        assert name in run, f"json lacks {name!r}: {sorted(run)}"
    assert run["state"] == "done"
    assert run["width"] == 1 and run["data_fraction"] == 1.0
    assert run["n_params"] == 122_570  # the Keras model of the source document
    assert run["n_train"] == 320  # 400 samples, test_size 0.2
    assert run["epochs"] == 1
    assert run["steps"] == 5  # ceil(320 / 64)
    per_sample_epoch = run["flops"] / (run["n_train"] * run["epochs"])
    assert per_sample_epoch == pytest.approx(25.7e6, rel=0.01)
    assert run["device"] in ("cpu", "cuda") or run["device"].startswith("cuda:")
    assert run["dtype"] == "float32"
    assert run["seed"] == 0
    assert isinstance(run["torch_version"], str) and run["torch_version"]
    for name in ("train_loss", "test_loss", "test_error", "wall_s", "samples_per_s"):
        assert isinstance(run[name], float) and run[name] >= 0, (name, run[name])

    header, rows = runs_csv("seedcnn", store=store, env=env, cwd=tmp_path)
    assert len(header) == len(set(header)), f"duplicate csv columns: {header}"
    for name in (*REQUIRED_FIELDS, "width", "data_fraction"):
        assert name in header, f"csv lacks {name!r}: {header}"
    (row,) = rows
    assert row["cell_id"] == run["cell_id"]
    assert int(row["n_params"]) == 122_570
    assert float(row["flops"]) == pytest.approx(run["flops"])
    assert set(header) == set(run), "csv and json columns differ"


# -- (d) divergence --------------------------------------------------------------------------
def test_huge_learning_rate_diverges_without_failing_the_run(tmp_path, env):
    study = write_study(
        tmp_path / "diverge.toml",
        digits_mlp_study("diverge", grid='optimizer = ["sgd", "adam"]\nseed = [0, 1]', train="lr = 1e6\nepochs = 2\nbatch_size = 64"),
    )
    store = tmp_path / "diverge.db"
    cli = run_cli("run", study, "--store", store, "--workers", "2", "--quiet", env=env, cwd=tmp_path)
    assert cli.returncode == EXIT_OK, cli.describe()

    runs = runs_json("diverge", store=store, env=env, cwd=tmp_path)
    assert len(runs) == 4
    assert {r["state"] for r in runs} <= {"done", "diverged"}, [(r["optimizer"], r["state"]) for r in runs]
    diverged = [r for r in runs if r["state"] == "diverged"]
    assert diverged, "lr = 1e6 with SGD should diverge"
    for r in diverged:
        assert isinstance(r["reason"], str) and r["reason"].strip(), r
    status = status_json("diverge", store=store, env=env, cwd=tmp_path)
    assert status["diverged"] == len(diverged)
    assert status["done"] == 4 - len(diverged)
    assert status["total"] == 4 and status["failed"] == status["running"] == status["pending"] == 0


# -- (e) reruns and grid edits -----------------------------------------------------------------
def test_rerun_trains_nothing_and_a_grid_edit_runs_only_new_cells(tmp_path, env):
    grid = "width = [0.25, 0.5]\nseed = [0, 1]"
    study = write_study(tmp_path / "edit.toml", digits_mlp_study("edit", grid=grid))
    store = tmp_path / "edit.db"
    args = ("run", study, "--store", store, "--workers", "1", "--quiet")

    first = run_cli(*args, env=env, cwd=tmp_path)
    assert first.returncode == EXIT_OK, first.describe()
    assert "trained 4 cells" in first.stdout, first.stdout
    before = cell_rows(store, "edit")
    assert len(before) == 4 and all(r["state"] == "done" and r["attempts"] == 1 for r in before.values())

    again = run_cli(*args, env=env, cwd=tmp_path)
    assert again.returncode == EXIT_OK, again.describe()
    assert "trained 0 cells" in again.stdout, again.stdout
    assert cell_rows(store, "edit") == before, "a rerun of a finished study changed its cells"

    write_study(study, digits_mlp_study("edit", grid="width = [0.25, 0.5, 1]\nseed = [0, 1]"))
    new_ids = expected_cell_ids(study) - set(before)
    assert len(new_ids) == 2
    edited = run_cli(*args, env=env, cwd=tmp_path)
    assert edited.returncode == EXIT_OK, edited.describe()
    assert "trained 2 cells" in edited.stdout, edited.stdout
    after = cell_rows(store, "edit")
    assert set(after) == set(before) | new_ids
    for cid, row in before.items():
        assert after[cid] == row, f"old cell {cid} was rerun after the grid edit"
    for cid in new_ids:
        assert after[cid]["state"] == "done" and after[cid]["attempts"] == 1

    _, rows = runs_csv("edit", store=store, env=env, cwd=tmp_path)
    assert sorted(r["cell_id"] for r in rows) == sorted(after)


# -- (f) the demo ------------------------------------------------------------------------------
def test_quick_demo_prints_the_test_error_table_and_writes_the_report(tmp_path, env):
    out = tmp_path / "demo-out"
    cli = run_cli("demo", "--quick", "--out", out, env=env, cwd=tmp_path, timeout=600)
    assert cli.returncode == EXIT_OK, cli.describe()
    assert "test error" in cli.stdout.lower(), cli.stdout
    assert (out / "scalelab.db").is_file()
    report = out / "report.html"
    assert report.is_file() and f"Report: {report}" in cli.stdout.replace("\n", ""), cli.stdout
    page = report.read_text(encoding="utf-8")
    assert 'id="fig-learning-curves"' in page
    status = status_json("demo-quick", store=out / "scalelab.db", env=env, cwd=tmp_path)
    assert status["done"] + status["diverged"] == status["total"] > 0, status
    # The demo prints the numbers of its report: one analysis feeds both.
    text = " ".join(cli.stdout.split())
    verdicts = re.findall(r"At the best run \(.*?(?:pays more\.|from (?:more data|a bigger model)\.)", text)
    assert len(verdicts) == 2, text  # one per family: does more data or a bigger model pay more
    for verdict in verdicts:
        assert html.escape(verdict, quote=False) in " ".join(page.split()), verdict
    assert text.count("On one H100 (bf16): about") == 2 and "40% MFU" in text


# -- (g) failures and --retry-failed -----------------------------------------------------------
def test_failed_cell_keeps_traceback_and_retry_failed_reruns_it(tmp_path, env):
    study = write_study(
        tmp_path / "fails.toml",
        'name = "fails"\n\n[data]\nname = "digits"\n\n[model]\nfamily = "python:tests.fixtures:fails_in_workers"\n\n'
        '[train]\ndevice = "cpu"\nepochs = 1\nbatch_size = 64\n\n[grid]\nmodel.fail = [false, true]\n',
    )
    store = tmp_path / "fails.db"
    args = ("run", study, "--store", store, "--workers", "1", "--quiet")
    env_cwd = {"env": env, "cwd": REPO}  # python:tests.fixtures resolves from the repository root

    first = run_cli(*args, **env_cwd)
    assert first.returncode == EXIT_FAILED, first.describe()
    _, rows = runs_csv("fails", store=store, **env_cwd)
    assert len(rows) == 2
    failed = [row for row in rows if row["state"] == "failed"]
    done = [row for row in rows if row["state"] == "done"]
    assert len(failed) == len(done) == 1, rows
    failed_id, done_id = failed[0]["cell_id"], done[0]["cell_id"]
    assert failed[0]["model.fail"] == "True" and done[0]["model.fail"] == "False", rows
    assert "Traceback" in failed[0]["reason"] and "on purpose" in failed[0]["reason"], failed[0]["reason"]
    assert int(failed[0]["attempts"]) == 1

    unchanged = run_cli(*args, **env_cwd)
    assert unchanged.returncode == EXIT_FAILED, unchanged.describe()
    assert "trained 0 cells" in unchanged.stdout, unchanged.stdout
    rows_now = cell_rows(store, "fails")
    assert rows_now[failed_id]["state"] == "failed" and rows_now[failed_id]["attempts"] == 1
    assert rows_now[done_id]["attempts"] == 1

    retried = run_cli(*args, "--retry-failed", **env_cwd)
    assert retried.returncode == EXIT_FAILED, retried.describe()
    assert "trained 1 cells" in retried.stdout, retried.stdout
    rows_now = cell_rows(store, "fails")
    assert rows_now[failed_id]["state"] == "failed"
    assert rows_now[failed_id]["attempts"] == 2
    assert "Traceback" in rows_now[failed_id]["reason"]
    assert rows_now[done_id]["attempts"] == 1 and rows_now[done_id]["state"] == "done"


# -- (h) two runners on one store ---------------------------------------------------------------
def test_two_concurrent_runs_share_the_grid_without_repeating_a_cell(tmp_path, env):
    study = write_study(
        tmp_path / "shared.toml",
        digits_mlp_study(
            "shared", grid="width = [0.25, 0.5]\ndata_fraction = [0.5, 1.0]\nseed = [0, 1]", train="epochs = 10\nbatch_size = 32"
        ),
    )
    store = tmp_path / "shared.db"
    grid_ids = expected_cell_ids(study)
    # Two workers each, so each worker gets one intra-op thread and the two runners do not
    # oversubscribe the cores (which only makes the test slow, not wrong).
    args = ("run", study, "--store", store, "--workers", "2", "--quiet")

    with CLIProcess(args, env=env, cwd=tmp_path) as one, CLIProcess(args, env=env, cwd=tmp_path) as two:
        one.communicate()
        two.communicate()
        assert one.returncode == EXIT_OK, one.describe()
        assert two.returncode == EXIT_OK, two.describe()
        for runner in (one, two):
            assert wait_for_group_to_empty(runner.pid) == [], group_members(runner.pid)

    header, rows = runs_csv("shared", store=store, env=env, cwd=tmp_path)
    ids = [row["cell_id"] for row in rows]
    assert sorted(ids) == sorted(grid_ids)
    for row in rows:
        assert row["state"] == "done", row
        assert int(row["attempts"]) == 1, f"cell {row['cell_id']} ran {row['attempts']} times"
    trained = [int(cli.stdout.split("trained ")[1].split()[0]) for cli in (one, two)]
    assert sum(trained) == len(grid_ids), (one.stdout, two.stdout)
    status = status_json("shared", store=store, env=env, cwd=tmp_path)
    assert status["done"] == status["total"] == len(grid_ids)
