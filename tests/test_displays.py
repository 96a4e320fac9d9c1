"""Displays of fitted laws, and Study.fit as a LawSet on a real tiny study.

A display draws on the axis it is given: the law's line, its interval as a band
computed on a dense log grid (no gaps, one value per grid point, the band around the
line), and the points; a learning-curve display does so for every group.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from scalelab import InputError, LawDisplay, LawSet, LearningCurveDisplay, laws

N = np.geomspace(100, 1e4, 6)


@pytest.fixture
def ax():
    figure, axis = plt.subplots()
    yield axis
    plt.close(figure)


@pytest.fixture(scope="module")
def law():
    rng = np.random.default_rng(0)
    x = np.r_[N, N]
    return laws.fit(x, (0.05 + 2.0 * x**-0.5) * np.exp(rng.normal(0, 0.02, len(x))), form="saturating", n_boot=50)


def test_a_law_display_draws_line_band_and_points_on_the_given_axis(law, ax):
    display = LawDisplay.from_law(law, n_grid=80).plot(ax)
    assert display.ax_ is ax and display.figure_ is ax.figure
    assert len(display.lines_) == 2  # the law and the points
    assert ax.collections and display.band_ in ax.collections
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    line, points = display.lines_
    assert len(line.get_xdata()) == 80 and len(points.get_xdata()) == 12


def test_the_band_is_smooth_on_the_dense_grid(law):
    display = LawDisplay.from_law(law, n_grid=120)
    assert len(display.grid) == len(display.lo) == len(display.hi) == 120
    assert np.all(np.diff(display.grid) > 0) and display.grid[-1] == pytest.approx(4 * N.max())
    for values in (display.prediction, display.lo, display.hi):
        assert np.all(np.isfinite(values))
    assert np.all((display.lo <= display.prediction) & (display.prediction <= display.hi))
    # A falling law: its line falls, and the band widens beyond the data, never narrows.
    assert np.all(np.diff(display.prediction) < 0)
    width = np.log(display.hi / display.lo)
    beyond = display.grid > N.max()
    assert np.all(np.diff(width[beyond]) >= -1e-3)
    # Smooth: the per-point intervals' Monte Carlo fringe is gone from the band's edges.
    raw_lo, raw_hi = law.interval(display.grid, display.level)
    assert np.abs(np.diff(width)).max() < 0.5 * np.abs(np.diff(np.log(raw_hi / raw_lo))).max()


def test_observed_points_and_range_can_be_given(law, ax):
    display = LawDisplay.from_law(law, x_observed=[1e3], y_observed=[0.1], x_range=(10, 1e6), n_grid=30).plot(ax, band=False)
    assert display.band_ is None and not ax.collections
    assert display.grid[0] == pytest.approx(10) and display.grid[-1] == pytest.approx(1e6)
    with pytest.raises(InputError, match="both"):
        LawDisplay.from_law(law, x_observed=[1e3])


def test_a_joint_law_is_refused():
    rng = np.random.default_rng(1)
    n_params, tokens = rng.uniform(1e6, 1e8, 30), rng.uniform(1e8, 1e10, 30)
    joint = laws.fit(np.column_stack([n_params, tokens]), 1.7 + 400 * n_params**-0.34 + 410 * tokens**-0.28, form="chinchilla")
    with pytest.raises(InputError, match="one x"):
        LawDisplay.from_law(joint)


def test_a_learning_curve_display_draws_every_group(ax):
    df = pd.concat([pd.DataFrame({"width": w, "n_train": N, "loss": 3.0 * N**-b}) for w, b in [(1, 0.3), (2, 0.5), (4, 0.6)]])
    display = LearningCurveDisplay.from_frame(df, x="n_train", y="loss", by="width", form="power", n_boot=50, n_grid=40).plot(ax)
    assert isinstance(display.lawset, LawSet) and sorted(display.displays) == [1, 2, 4]
    assert len(display.lines_) == 6 and len(ax.collections) == 3
    assert ax.get_legend() is not None and ax.get_legend().get_title().get_text() == "width"
    one = LawDisplay.from_lawset(display.lawset, 2, n_grid=40)
    assert one.name == "2" and np.allclose(one.prediction, display.displays[2].prediction)


# -- a real tiny study --------------------------------------------------------------------
TINY = """
name = "tiny-trees"

[data]
name = "digits"
test_size = 0.25

[model]
family = "tree"
max_leaf_nodes = 16

[grid]
data_fraction = [0.125, 0.25, 0.5, 1.0]
seed = [0, 1]

[target]
metric = "test_error"
"""


@pytest.mark.slow
def test_study_fit_gives_a_lawset_that_displays(tmp_path, ax):
    from cli_helpers import cli_env, run_cli, write_study

    from scalelab import load_study

    env = cli_env(tmp_path / "cache")
    study_file = write_study(tmp_path / "tiny.toml", TINY)
    store = tmp_path / "scalelab.db"
    cli = run_cli("run", study_file, "--store", store, "--workers", "1", "--quiet", env=env, cwd=tmp_path, timeout=300)
    assert cli.returncode == 0, cli.describe()
    study = load_study(study_file, store=store)
    fitted = study.fit(form="saturating", n_boot=50, predict=[2000])
    assert isinstance(fitted, LawSet) and len(fitted) == 1 and fitted.by == ("curve",)
    (result,) = fitted.results
    (key,) = fitted.keys()
    assert result["group"] == key and result["law"] is fitted[key] and result["predictions"][0]["x"] == 2000
    assert fitted[key].data.ceiling == pytest.approx(0.9)  # digits: ten classes
    band = fitted.interval([2000])
    assert band.prediction.iloc[0] == pytest.approx(result["predictions"][0]["y"])
    display = LearningCurveDisplay.from_study(study, form="saturating", n_boot=50, n_grid=30).plot(ax)
    assert len(display.lines_) == 2 and len(display.displays[key].grid) == 30
