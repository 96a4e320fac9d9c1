"""Fits and intervals that hold up: seed replicates, uneven replicates, bounds, pickling,
batched bootstraps, and the Chinchilla check against Epoch's published fit.

These read like DESIGN.md's "Scaling laws" section: a fit on seed replicates is unique,
one duplicated run does not collapse an interval, a parameter held by a bound says so,
and the joint fit on Epoch's data lands inside their 95% intervals.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalelab import laws
from scalelab.laws.backtest import backtest_forms
from scalelab.laws.bootstrap import resample_weights
from scalelab.laws.core import bounds_that_matter, fit_form, prepare
from scalelab.laws.forms import FORMS
from scalelab.laws.law import compute_bootstraps

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CHINCHILLA_CSV = SHARED / "chinchilla_svg_extracted.csv"
EPOCH_95 = {"E": (1.769, 1.871), "A": (285.2, 743.6), "B": (1042.4, 5810.3), "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}


def two_seed_study(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Eight sizes a factor 2 apart, two seeds each, 3% noise around a saturating law."""
    x = np.repeat(100.0 * 2.0 ** np.arange(8), 2)
    y = (0.1 + 3.0 * x**-0.5) * np.exp(np.random.default_rng(seed).normal(0, 0.03, len(x)))
    return x, y


# -- seed replicates: a unique fit --------------------------------------------------------------
def shifted_starts(form, factor):
    """The form with every start's exponent scaled by ``factor``: another grid of starts."""
    original = form._starts

    def starts(x, y, ceiling):
        grid = original(x, y, ceiling)
        return {k: (v * factor if k in ("beta", "gamma", "c0") else v) for k, v in grid.items()}

    return dataclasses.replace(form, _starts=starts)


@pytest.mark.parametrize("name", ["power", "saturating", "m3"])
def test_a_two_seed_study_has_a_unique_fit_that_is_not_a_start_value(name):
    x, y = two_seed_study()
    data = prepare(x, y)
    form = FORMS[name]
    grids = {factor: shifted_starts(form, factor) for factor in (1.0, 0.7, 1.6)}
    fits = {factor: form.to_natural(fit_form(data, g)[0]) for factor, g in grids.items()}
    for factor, theta in fits.items():
        np.testing.assert_allclose(theta, fits[1.0], rtol=1e-4, err_msg=f"{name}: start grid x{factor} found another optimum")
    # Not parked at any of the starting points it was given.
    for g in grids.values():
        starts = g.starts(np.unique(x), np.exp(np.log(y).reshape(-1, 2).mean(axis=1)), None)
        exponent = form.params.index("beta")
        assert np.min(np.abs(starts[:, exponent] - fits[1.0][exponent])) > 1e-4, (name, fits[1.0])


def test_backtests_of_different_forms_on_a_two_seed_study_differ():
    x, y = two_seed_study(seed=1)
    rows = backtest_forms(prepare(x, y), ["power", "saturating", "m4"], holdout=2)
    errors = [row.abs_error for row in rows]
    assert all(np.isfinite(errors)), rows
    assert len({round(e, 10) for e in errors}) == 3, errors


@settings(max_examples=20, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), sigma=st.floats(0.005, 0.08))
def test_seed_pairs_fit_like_their_means(seed, sigma):
    """Two seeds at each x and their geometric mean at each x give the same law."""
    x = np.repeat(np.geomspace(100, 1e5, 8), 2)
    y = (0.05 + 2.0 * x**-0.4) * np.exp(np.random.default_rng(seed).normal(0, sigma, len(x)))
    means = np.exp(np.log(y).reshape(-1, 2).mean(axis=1))
    pairs = laws.fit(x, y, form="saturating")
    pooled = laws.fit(x[::2], means, form="saturating")
    for name in pairs.params:
        assert pairs.params[name] == pytest.approx(pooled.params[name], rel=1e-5, abs=1e-9), (name, pairs.params, pooled.params)


# -- uneven replicates: the two-stage bootstrap ------------------------------------------------
def test_one_duplicated_run_changes_no_parameter_interval_width_by_more_than_a_quarter():
    x = np.geomspace(100, 1e5, 6)
    y = (0.05 + 3.0 * x**-0.5) * np.exp(np.random.default_rng(3).normal(0, 0.03, len(x)))
    before = laws.fit(x, y, form="saturating", n_boot=1000).param_intervals(0.8)
    after = laws.fit(np.r_[x, x[-1]], np.r_[y, y[-1]], form="saturating", n_boot=1000).param_intervals(0.8)
    for name, (lo, hi) in before.items():
        ratio = (after[name][1] - after[name][0]) / (hi - lo)
        assert 0.75 <= ratio <= 1.25, (name, before[name], after[name])


@settings(max_examples=30, deadline=None, derandomize=True)
@given(counts=st.lists(st.integers(1, 4), min_size=2, max_size=8), seed=st.integers(0, 1000))
def test_replicates_resample_cells_then_seeds_within_them(counts, seed):
    x = np.repeat(np.arange(1.0, len(counts) + 1), counts)
    weights = resample_weights(x, 200, seed=seed)
    assert weights.shape == (200, len(x)) and np.all(weights >= 0)
    for c, size in enumerate(counts):
        in_cell = weights[:, x == c + 1].sum(axis=1)
        assert np.all(in_cell % size == 0)  # whole copies of the cell
        assert in_cell.std() > 0  # every cell varies, single-run cells too
    copies = sum(weights[:, x == c + 1].sum(axis=1) / size for c, size in enumerate(counts))
    assert np.all(copies == len(counts))  # as many cell copies as cells


# -- bounds -------------------------------------------------------------------------------------
def test_a_fit_that_hits_a_bound_reports_it_in_to_dict():
    x = np.geomspace(100, 1e4, 8)
    rising = 0.1 * x**0.2  # a power law cannot rise: its exponent stops at zero
    law = laws.fit(x, rising, form="power")
    assert law.at_bound == {"beta": "lower"}
    assert law.to_dict()["at_bound"] == {"beta": "lower"}
    clean = laws.fit(x, 3.0 * x**-0.3, form="power")
    assert clean.at_bound == {} and clean.to_dict()["at_bound"] == {}


def test_auto_gives_no_weight_to_a_form_held_by_a_search_limit():
    x = np.repeat(np.geomspace(100, 1e5, 12), 2)
    rng = np.random.default_rng(0)
    curves = [
        (0.05 + 3.0 * x**-0.5) * np.exp(rng.normal(0, 0.02, len(x))),
        np.where(x < 3000, 0.6, 0.6 * (x / 3000) ** -0.8) * np.exp(rng.normal(0, 0.02, len(x))),  # a sharp break
        np.maximum(0.3, 5.0 * x**-0.4) * np.exp(rng.normal(0, 0.02, len(x))),  # flat from the middle on
    ]
    for y in curves:
        law = laws.fit(x, y, form="auto", n_boot=50)
        held = {n for n in law.weights if bounds_that_matter(law.member(n)._form, law.member(n).at_bound)}
        assert not held or held == set(law.weights), (law.weights, {n: law.member(n).at_bound for n in law.weights})


# -- pickling and batched bootstraps ------------------------------------------------------------
@pytest.mark.parametrize("name", [*FORMS, "auto"])
def test_a_fitted_law_of_every_form_pickles(name):
    if name == "chinchilla":
        N, D = np.meshgrid(np.geomspace(1e6, 1e9, 5), np.geomspace(1e8, 1e11, 5))
        x = np.column_stack([N.ravel(), D.ravel()])
        y = 1.8 + 400 * x[:, 0] ** -0.34 + 2000 * x[:, 1] ** -0.37
        at = [[1e10, 1e12]]
    else:
        x = np.geomspace(1e2, 1e6, 12) * (1e9 if name == "compute" else 1.0)
        y = 0.05 + 3.0 * (x / x[0]) ** -0.5
        at = [x.max() * 10]
    law = laws.fit(x, y, form=name, n_boot=50)
    law.interval(at)  # with its bootstrap computed
    copy = pickle.loads(pickle.dumps(law))
    assert copy.params == law.params and copy.form == law.form
    np.testing.assert_array_equal(copy.predict(at), law.predict(at))
    np.testing.assert_array_equal(copy.interval(at)[0], law.interval(at)[0])


def test_compute_bootstraps_gives_each_law_the_replicates_it_would_draw_alone():
    rng = np.random.default_rng(5)
    x = np.repeat(np.geomspace(100, 1e5, 9), 2)
    datasets = [(0.05 + B * x**-0.5) * np.exp(rng.normal(0, 0.03, len(x))) for B in (1.0, 3.0, 9.0)]
    together = [laws.fit(x, y, form="auto", n_boot=200) for y in datasets]
    compute_bootstraps(together)
    for law, y in zip(together, datasets):
        alone = laws.fit(x, y, form="auto", n_boot=200)
        for name in law.weights:
            assert law.member(name)._boot is not None
            np.testing.assert_allclose(law.member(name).bootstrap_params(), alone.member(name).bootstrap_params(), rtol=1e-8, atol=1e-12)


# -- the Chinchilla check -------------------------------------------------------------------------
@pytest.mark.skipif(not CHINCHILLA_CSV.is_file(), reason=f"Epoch's Chinchilla data not found at {CHINCHILLA_CSV}")
def test_chinchilla_fit_on_epochs_data_lands_inside_their_95_percent_intervals():
    raw = pd.read_csv(CHINCHILLA_CSV)
    kept = raw.drop(raw["loss"].nlargest(5).index)  # as Epoch did: n = 240
    N = kept["Model Size"].to_numpy(float)
    D = kept["Training FLOP"].to_numpy(float) / (6 * N)
    law = laws.fit(np.column_stack([N, D]), kept["loss"].to_numpy(float), form="chinchilla")
    outside = {k: (law.params[k], EPOCH_95[k]) for k in EPOCH_95 if not EPOCH_95[k][0] <= law.params[k] <= EPOCH_95[k][1]}
    assert not outside, outside
    assert law.at_bound == {}
