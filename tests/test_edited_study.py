"""Read commands given a study *file* use that file's grid, as it reads now.

Run a study, edit its grid, then ask ``status``, ``runs`` and ``fit`` about the file:
they count and show the file's cells (a cell already done under the new grid is done, a
new one pending), leave out the cells the file no longer has, and say how the file
differs from the grid the store last ran. Real subprocesses and a real store.
"""

from __future__ import annotations

import json

import pytest

from cli_helpers import cli_env, cpu_digits_mlp_study, run_cli, write_study

pytestmark = pytest.mark.slow


def test_status_runs_and_fit_on_an_edited_study_file_use_its_grid(tmp_path):
    env = cli_env(tmp_path / "cache")
    path = tmp_path / "grown.toml"
    write_study(path, cpu_digits_mlp_study("grown", grid="width = [0.5, 1]\ndata_fraction = [0.25, 0.5, 1.0]", train="epochs = 1"))
    store = tmp_path / "g.db"
    assert run_cli("run", path, "--store", store, "--quiet", env=env, cwd=tmp_path).returncode == 0
    write_study(path, cpu_digits_mlp_study("grown", grid="width = [1, 2]\ndata_fraction = [0.25, 0.5, 1.0]", train="epochs = 1"))

    status = run_cli("status", path, "--store", store, "--format", "json", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.describe()
    (entry,) = json.loads(status.stdout)["studies"]
    assert (entry["done"], entry["pending"], entry["total"]) == (3, 3, 6), entry
    assert entry["changes"] == {"new": 3, "dropped": 3, "dropped_done": 3}
    table = run_cli("status", path, "--store", store, env=env, cwd=tmp_path)
    assert "3 cells of the file not run yet" in table.stdout and "3 cells of the store's grid no longer in the file" in table.stdout

    runs = run_cli("runs", path, "--store", store, "--format", "json", env=env, cwd=tmp_path)
    assert runs.returncode == 0, runs.describe()
    rows = json.loads(runs.stdout)
    assert sorted({r["width"] for r in rows}) == [1.0, 2.0]
    assert {r["width"]: r["state"] for r in rows if r["data_fraction"] == 1.0} == {1.0: "done", 2.0: "pending"}
    assert "differs from the grid the store last ran" in runs.stderr

    # The store's own record of the study (by name) is still the grid it last ran.
    by_name = json.loads(run_cli("runs", "grown", "--store", store, "--format", "json", env=env, cwd=tmp_path).stdout)
    assert sorted({r["width"] for r in by_name}) == [0.5, 1.0]

    fit = run_cli("fit", path, "--store", store, "--format", "json", "--bootstrap", "50", env=env, cwd=tmp_path)
    assert fit.returncode == 0, fit.describe()
    out = json.loads(fit.stdout)
    assert [g["curve"] for g in out["groups"]] == [{"width": 1.0}]  # width 2 has no run yet; 0.5 is no longer in the file
    assert "differs from the grid the store last ran" in out["changes"]
    assert sum("pending" in r["reason"] for r in out["curves"]["left_out"]) == 3
