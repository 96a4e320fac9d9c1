"""``scalelab run --track mlflow`` end to end, on MLflow's real SQLite backend.

These read like the contract of :mod:`scalelab.tracking`:

* one parent run per study and one child run per cell, with the cell's configuration as
  parameters, its recorded numbers as metrics and its training curve as a metric history;
* syncing again duplicates nothing: a finished cell is left alone, and a cell logged
  pending is updated in the same run once it is done;
* ``MLFLOW_TRACKING_URI`` wins over the study's ``[tracking] mlflow``, which alone turns
  tracking on; ``[tracking]`` joins no cell's id;
* a bad ``[tracking]`` key or an unusable URI is exit 2, one line, before anything trains.

Nothing is mocked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import (
    CLIProcess,
    cell_states,
    cli_env,
    cpu_digits_mlp_study,
    kill_group,
    read_store,
    run_cli,
    wait_until,
    write_study,
)

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.slow

EXIT_OK, EXIT_USAGE = 0, 2
TRAIN = "epochs = 2\nbatch_size = 64"


@pytest.fixture
def env(tmp_path):
    env = cli_env(tmp_path / "cache")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str, experiment: str) -> tuple[object, dict]:
    """The study's parent run and its children by cell id; fails on any duplicate."""
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} at {uri}"
    runs = client.search_runs([found.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.data.tags for r in parents]
    children: dict = {}
    for run in runs:
        if "mlflow.parentRunId" in run.data.tags:
            cell_id = run.data.tags["scalelab.cell_id"]
            assert cell_id not in children, f"cell {cell_id} logged twice"
            assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
            children[cell_id] = run
    return parents[0], children


def _curve_lengths(store: Path) -> dict[str, int]:
    return dict(read_store(store, "SELECT cell_id, COUNT(*) FROM run_curves GROUP BY cell_id"))


def test_run_logs_one_child_per_cell_and_resuming_duplicates_nothing(tmp_path, env, monkeypatch):
    from scalelab.spec import load_spec
    from scalelab.store import RunStore
    from scalelab.tracking import resolve_target, sync_study

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ignored = tmp_path / "ignored.db"  # the study's URI, which the environment overrides
    study = tmp_path / "track.toml"
    write_study(study, cpu_digits_mlp_study("track", grid="data_fraction = [0.5, 1.0]", train=TRAIN)
                + f'\n[tracking]\nmlflow = "sqlite:///{ignored}"\n')  # fmt: skip
    store = tmp_path / "runs.db"
    command = ("run", study, "--store", store, "--workers", "1", "--quiet")

    first = run_cli(*command, "--track", "mlflow", env={**env, "MLFLOW_TRACKING_URI": uri}, cwd=tmp_path)
    assert first.returncode == EXIT_OK, first.describe()
    assert "MLflow: 2 runs created" in first.stdout
    assert not ignored.exists()

    parent, children = _runs(uri, "track")
    assert parent.data.tags["scalelab.study"] == "track"
    assert parent.info.status == "FINISHED"
    assert set(children) == {c.cell_id for c in load_spec(study).cells}
    curves = _curve_lengths(store)
    client = _client(uri)
    for cell_id, run in children.items():
        assert run.data.tags["scalelab.state"] == "done"
        assert run.info.status == "FINISHED"
        assert run.data.params["data_fraction"] in ("0.5", "1.0")
        assert run.data.params["model.family"] == "mlp"
        assert run.data.params["train.epochs"] == "2"
        for name in ("test_error", "test_loss", "n_params", "flops", "wall_s"):
            assert name in run.data.metrics, name
        assert 0 <= run.data.metrics["test_error"] <= 1
        history = client.get_metric_history(run.info.run_id, "curve/train_loss")
        assert len(history) == curves[cell_id] > 1
        assert [m.step for m in history] == sorted(m.step for m in history)

    # The study file now names the URI itself (and a third cell): [tracking] alone turns
    # tracking on, and changes no cell's id. The new cell, synced before it runs, is
    # logged pending; the rerun finishes it in the same child run and logs the two
    # finished cells no second time.
    write_study(study, cpu_digits_mlp_study("track", grid="data_fraction = [0.25, 0.5, 1.0]", train=TRAIN)
                + f'\n[tracking]\nmlflow = "{uri}"\n')  # fmt: skip
    spec = load_spec(study)
    (new_id,) = {c.cell_id for c in spec.cells} - set(children)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with RunStore.open_existing(store) as opened:
        counts = sync_study(spec, opened, resolve_target(spec))
    assert (counts.created, counts.updated, counts.unchanged) == (1, 0, 2)
    _, pending = _runs(uri, "track")
    assert pending[new_id].data.tags["scalelab.state"] == "pending"
    assert pending[new_id].info.status == "SCHEDULED"

    again = run_cli(*command, env=env, cwd=tmp_path)
    assert again.returncode == EXIT_OK, again.describe()
    assert "MLflow: 0 runs created, 1 updated, 2 unchanged" in again.stdout
    parent_after, after = _runs(uri, "track")
    assert parent_after.info.run_id == parent.info.run_id
    assert set(after) == set(children) | {new_id}
    assert after[new_id].info.run_id == pending[new_id].info.run_id
    assert after[new_id].data.tags["scalelab.state"] == "done"
    assert "test_error" in after[new_id].data.metrics
    for cell_id, run in children.items():
        assert after[cell_id].info.run_id == run.info.run_id
        assert len(client.get_metric_history(run.info.run_id, "curve/train_loss")) == curves[cell_id]


def _done_children(uri: str, experiment: str) -> set[str]:
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return set()
    runs = client.search_runs([found.experiment_id], filter_string="tags.`scalelab.state` = 'done'", max_results=1000)
    return {r.data.tags["scalelab.cell_id"] for r in runs}


def test_cells_are_logged_as_they_finish_and_survive_a_kill_9_of_the_run(tmp_path, env):
    """With --track-every 0 each finished cell is in MLflow while the study still runs, so
    a run killed with SIGKILL (no final sync) leaves them there; the rerun logs the rest
    and duplicates nothing."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = write_study(tmp_path / "live.toml", cpu_digits_mlp_study("live", grid="seed = [0, 1, 2, 3]", train="epochs = 40\nbatch_size = 32"))
    store = tmp_path / "runs.db"
    command = ("run", study, "--store", store, "--workers", "1", "--quiet", "--track", "mlflow")
    env = {**env, "MLFLOW_TRACKING_URI": uri}
    with CLIProcess((*command, "--track-every", "0"), env=env, cwd=tmp_path) as running:
        # MLflow is read only once the run has made its database (two processes creating
        # the tables at once would race), which it does before training.
        wait_until(lambda: "done" in cell_states(store, "live").values(), what="a finished cell in the store")
        logged = wait_until(lambda: _done_children(uri, "live") or None, what="a finished cell logged in MLflow")
        states = cell_states(store, "live")
        kill_group(running.pid)
    assert "pending" in states.values() or "running" in states.values(), f"the study had finished: {states}"
    assert logged <= {cell_id for cell_id, state in states.items() if state == "done"}

    again = run_cli(*command, env=env, cwd=tmp_path)
    assert again.returncode == EXIT_OK, again.describe()
    _, children = _runs(uri, "live")
    assert len(children) == 4 and all(run.data.tags["scalelab.state"] == "done" for run in children.values())


def test_tracking_section_names_the_experiment_and_joins_no_cell_id(tmp_path, monkeypatch):
    from scalelab.spec import load_spec
    from scalelab.tracking import Target, resolve_target

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'named.db'}"
    plain = cpu_digits_mlp_study("named", grid="seed = [0, 1]")
    tracked = load_spec(write_study(tmp_path / "tracked.toml", plain + f'\n[tracking]\nmlflow = "{uri}"\nexperiment = "scaling"\n'))
    untracked = load_spec(write_study(tmp_path / "untracked.toml", plain))
    assert [c.cell_id for c in tracked.cells] == [c.cell_id for c in untracked.cells]
    assert resolve_target(tracked) == Target(uri=uri, experiment="scaling")
    assert resolve_target(untracked) is None


def test_bad_tracking_key_is_one_line_exit_2(tmp_path, scalelab_main):
    study = write_study(tmp_path / "bad.toml", cpu_digits_mlp_study("bad", grid="seed = [0]") + '\n[tracking]\nuri = "sqlite:///x.db"\n')
    cli = scalelab_main("run", study, "--store", tmp_path / "runs.db", "--track", "mlflow", cwd=tmp_path)
    assert cli.returncode == EXIT_USAGE, cli.describe()
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and "tracking.uri" in lines[0], cli.stderr
    assert not (tmp_path / "runs.db").exists()


def test_unusable_uri_is_refused_before_training(tmp_path, scalelab_main, monkeypatch):
    study = write_study(tmp_path / "nouri.toml", cpu_digits_mlp_study("nouri", grid="seed = [0]"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    cli = scalelab_main("run", study, "--store", tmp_path / "runs.db", "--track", "mlflow", cwd=tmp_path)
    assert cli.returncode == EXIT_USAGE, cli.describe()
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuchscheme://nowhere" in lines[0], cli.stderr
    assert not (tmp_path / "runs.db").exists()
