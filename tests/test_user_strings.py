"""Names and paths a user chose are printed as written, never read as terminal markup.

rich reads ``[...]`` as a style: a study named ``a[/]b`` crashed every command that
printed it, and ``ablation[v2]`` printed as ``ablation``. The commands run through
``scalelab.cli.main``, the console script's entry point, in this process (what they print
is what a ``scalelab`` process prints), on a real store trained by real workers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cli_helpers import cpu_digits_mlp_study, write_study


@pytest.mark.parametrize("name", ["a[/]b", "ablation[v2]"])
def test_a_study_name_with_brackets_trains_and_prints_as_written(tmp_path, scalelab_main, name):
    text = cpu_digits_mlp_study("NAME", grid="data_fraction = [0.5, 1.0]", train="epochs = 1").replace('"NAME"', repr(name).replace("'", '"'))
    study = write_study(tmp_path / "s.toml", text)
    store = tmp_path / "s.db"
    ran = scalelab_main("run", study, "--store", store, "--workers", "1", "--quiet", cwd=tmp_path)
    assert ran.returncode == 0, ran.describe()
    assert f"{name}: trained 2 cells" in ran.stdout, ran.stdout
    shown = scalelab_main("status", "--store", store, cwd=tmp_path)
    assert shown.returncode == 0 and name in shown.stdout, shown.describe()
    runs = scalelab_main("runs", name, "--store", store, cwd=tmp_path)
    assert runs.returncode == 0 and f"{name}: 2 runs" in runs.stdout, runs.describe()
    dry = scalelab_main("run", study, "--store", store, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and f"{name}: 2 cells" in dry.stdout, dry.describe()


def test_a_csv_path_with_brackets_is_fitted_and_named_as_written(tmp_path, scalelab_main):
    folder = tmp_path / "d["
    folder.mkdir()
    path = folder / "]r.csv"
    x = np.geomspace(100, 1e5, 8)
    pd.DataFrame({"n": x, "loss": 0.1 + 2 * x**-0.5}).to_csv(path, index=False)
    cli = scalelab_main("fit", path, "--x", "n", "--y", "loss", "--form", "saturating", cwd=tmp_path)
    assert cli.returncode == 0, cli.describe()
    assert "d[/]r.csv: loss vs n" in cli.stdout, cli.stdout
