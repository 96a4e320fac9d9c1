"""Read commands given a study *file* use that file's grid, as it reads now.

Run a study, edit its grid, then ask ``status``, ``runs`` and ``fit`` about the file:
they count and show the file's cells (a cell already done under the new grid is done, a
new one pending), leave out the cells the file no longer has, and say how the file
differs from the grid the store last ran. A real store, trained by real workers; the
commands run through ``scalelab.cli.main``, the console script's entry point, in this
process (their exit status and output are a ``scalelab`` process's).
"""

from __future__ import annotations

import json

import pytest

from cli_helpers import cpu_digits_mlp_study, write_study

pytestmark = pytest.mark.slow


def test_status_runs_and_fit_on_an_edited_study_file_use_its_grid(tmp_path, scalelab_main):
    path = tmp_path / "grown.toml"
    write_study(path, cpu_digits_mlp_study("grown", grid="width = [0.5, 1]\ndata_fraction = [0.25, 0.5, 1.0]", train="epochs = 1"))
    store = tmp_path / "g.db"
    ran = scalelab_main("run", path, "--store", store, "--workers", "1", "--quiet", cwd=tmp_path)
    assert ran.returncode == 0, ran.describe()
    write_study(path, cpu_digits_mlp_study("grown", grid="width = [1, 2]\ndata_fraction = [0.25, 0.5, 1.0]", train="epochs = 1"))

    status = scalelab_main("status", path, "--store", store, "--format", "json", cwd=tmp_path)
    assert status.returncode == 0, status.describe()
    (entry,) = json.loads(status.stdout)["studies"]
    assert (entry["done"], entry["pending"], entry["total"]) == (3, 3, 6), entry
    assert entry["changes"] == {"new": 3, "dropped": 3, "dropped_done": 3}
    table = scalelab_main("status", path, "--store", store, cwd=tmp_path)
    assert "3 cells of the file not run yet" in table.stdout and "3 cells of the store's grid no longer in the file" in table.stdout

    runs = scalelab_main("runs", path, "--store", store, "--format", "json", cwd=tmp_path)
    assert runs.returncode == 0, runs.describe()
    rows = json.loads(runs.stdout)
    assert sorted({r["width"] for r in rows}) == [1.0, 2.0]
    assert {r["width"]: r["state"] for r in rows if r["data_fraction"] == 1.0} == {1.0: "done", 2.0: "pending"}
    assert "differs from the grid the store last ran" in runs.stderr

    # The store's own record of the study (by name) is still the grid it last ran.
    by_name = json.loads(scalelab_main("runs", "grown", "--store", store, "--format", "json", cwd=tmp_path).stdout)
    assert sorted({r["width"] for r in by_name}) == [0.5, 1.0]

    fit = scalelab_main("fit", path, "--store", store, "--format", "json", "--bootstrap", "50", cwd=tmp_path)
    assert fit.returncode == 0, fit.describe()
    out = json.loads(fit.stdout)
    assert [g["curve"] for g in out["groups"]] == [{"width": 1.0}]  # width 2 has no run yet; 0.5 is no longer in the file
    assert "differs from the grid the store last ran" in out["changes"]
    assert sum("pending" in r["reason"] for r in out["curves"]["left_out"]) == 3
