"""The data-constrained law (Muennighoff et al. 2023) through its public API.

* the published constants reproduce the worked example of the authors' README: two
  losses, which of the two allocations is better, and the optimal allocation of the
  compute of (8.67e9 parameters, 178e9 tokens) with 25e9 unique tokens;
* the allocation: without a binding limit it is Chinchilla's optimum; a tight limit
  takes more epochs, fewer parameters, more tokens per parameter and a higher loss;
* fits recover the parameters of synthetic runs drawn from known ones (1% noise), and
  the bootstrap interval of rd_star covers the truth in most datasets;
* bad inputs raise InputError with a message naming the value at fault.

Synthetic data use fixed seeds and hypothesis runs derandomised, so every test is deterministic.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalelab.errors import InputError
from scalelab.laws.data_constrained import (
    PUBLISHED,
    DataConstrainedParams,
    fit_data_constrained,
    optimal_allocation,
    unconstrained_allocation,
)

# The README's example: a budget of 8.67e9 parameters times 178e9 tokens, 25e9 unique tokens.
N_EX, D_EX, U_EX = 8.67e9, 178e9, 25e9
FLOPS_EX = 6 * N_EX * D_EX


def within(value: float, target: float, rel: float) -> bool:
    return abs(value - target) <= rel * abs(target)


# -- the published constants ---------------------------------------------------------------


def test_published_losses_match_the_readme():
    got = (float(PUBLISHED.loss(6.34e9, 242e9, 25e9)), float(PUBLISHED.loss(8.67e9, 178e9, 25e9)))
    published = (2.2256440889984477, 2.2269634075087867)
    for value, target in zip(got, published):
        assert within(value, target, 0.01)  # the acceptance criterion
        assert value == pytest.approx(target, rel=1e-9)  # the same formula and constants


def test_more_data_and_fewer_parameters_win_at_the_readme_budget():
    # The README's point: with 25B unique tokens, 6.34B parameters on 242B tokens beat
    # 8.67B on 178B at (about) the same compute.
    assert PUBLISHED.loss(6.34e9, 242e9, 25e9) < PUBLISHED.loss(8.67e9, 178e9, 25e9)


def test_optimal_allocation_matches_the_readme():
    best = optimal_allocation(PUBLISHED, FLOPS_EX, U_EX)
    # "227B tokens, 9.1 epochs, 6.8B parameters" (rounded by the README).
    assert within(best.tokens, 227e9, 0.01)
    assert within(best.epochs, 9.1, 0.01)
    assert within(best.n_params, 6.8e9, 0.01)
    assert best.n_params * best.tokens == pytest.approx(N_EX * D_EX, rel=1e-12)
    # Their answer came from a grid (D times i, N divided by i, i in linspace(1.0001, 3,
    # 500), both ways, U = min(U, D)); the continuous optimum is at least as good and
    # agrees with it to the grid's spacing.
    grid_best = (float(PUBLISHED.loss(N_EX, D_EX, U_EX)), N_EX, D_EX)
    for i in np.linspace(1.0001, 3, 500):
        for n, d in ((N_EX / i, D_EX * i), (N_EX * i, D_EX / i)):
            loss = float(PUBLISHED.loss(n, d, min(U_EX, d)))
            grid_best = min(grid_best, (loss, n, d))
    assert best.loss <= grid_best[0] + 1e-12
    assert within(best.n_params, grid_best[1], 0.005) and within(best.tokens, grid_best[2], 0.005)


def test_effective_data_and_parameters():
    # No repetition: D' = D; repeated data are worth less, and never more than U·(1 + R*_D).
    assert PUBLISHED.effective_data(1e10, 1e10) == pytest.approx(1e10)
    d = np.array([2e10, 4e10, 1e11, 1e13])
    worth = PUBLISHED.effective_data(d, 1e10)
    assert np.all(worth < d) and np.all(np.diff(worth) > 0)
    assert worth[-1] <= 1e10 * (1 + PUBLISHED.rd_star)
    assert worth[-1] == pytest.approx(1e10 * (1 + PUBLISHED.rd_star), rel=1e-6)
    # Parameters up to the compute-optimal size for U count in full; beyond it, less.
    n_opt = float(PUBLISHED.compute_optimal_params(1e10))
    assert PUBLISHED.effective_params(0.5 * n_opt, 1e10) == pytest.approx(0.5 * n_opt)
    assert n_opt < PUBLISHED.effective_params(10 * n_opt, 1e10) < 10 * n_opt


def test_loss_broadcasts_and_keeps_shapes():
    assert np.shape(PUBLISHED.loss(1e9, 2e10, 1e10)) == ()
    grid = PUBLISHED.loss(np.array([[1e8], [1e9]]), np.array([1e10, 4e10]), 1e10)
    assert grid.shape == (2, 2)
    assert grid[1, 0] < grid[0, 0] and grid[0, 1] < grid[0, 0]  # more parameters, more data: lower loss
    assert PUBLISHED.to_dict()["rd_star"] == 15.387756


# -- allocation -------------------------------------------------------------------------------


def test_unconstrained_allocation_is_the_chinchilla_optimum():
    free = unconstrained_allocation(PUBLISHED, FLOPS_EX)
    # The closed form minimises the fresh-data law along the budget.
    n = free.n_params * np.exp(np.linspace(-0.2, 0.2, 401))
    fresh = PUBLISHED.loss(n, N_EX * D_EX / n, N_EX * D_EX / n)
    assert free.loss <= fresh.min() + 1e-12
    assert n[np.argmin(fresh)] == pytest.approx(free.n_params, rel=2e-3)
    assert optimal_allocation(PUBLISHED, FLOPS_EX) == free
    assert free.epochs is None and free.excess_loss == 0.0


@settings(max_examples=20, deadline=None, derandomize=True)
@given(log10_flops=st.floats(18, 25), margin=st.floats(1.0, 100.0))
def test_a_generous_limit_changes_nothing(log10_flops, margin):
    flops = 10**log10_flops
    free = unconstrained_allocation(PUBLISHED, flops)
    limited = optimal_allocation(PUBLISHED, flops, margin * free.tokens)
    assert (limited.n_params, limited.tokens, limited.loss) == (free.n_params, free.tokens, free.loss)
    assert limited.excess_loss == 0.0
    # Just under the unconstrained tokens, the search lands next to it (no jump at the kink).
    close = optimal_allocation(PUBLISHED, flops, 0.999 * free.tokens)
    assert within(close.n_params, free.n_params, 0.01) and close.loss == pytest.approx(free.loss, rel=1e-5)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(log10_flops=st.floats(18, 25), log10_share=st.floats(-3, -0.3))
def test_a_tight_limit_repeats_data_rather_than_growing_the_model(log10_flops, log10_share):
    flops = 10**log10_flops
    free = unconstrained_allocation(PUBLISHED, flops)
    unique = 10**log10_share * free.tokens
    best = optimal_allocation(PUBLISHED, flops, unique)
    assert best.unconstrained == free
    assert best.epochs > free.tokens / unique  # more epochs than the unconstrained tokens would take
    assert best.n_params < free.n_params
    # Excess parameters lose value faster than repeated data (R*_N < R*_D), so the
    # optimum shifts towards data: more tokens per parameter, not fewer.
    assert best.tokens_per_param > free.tokens_per_param
    assert best.loss >= free.loss and best.excess_loss > 0
    # It is a minimum along the budget.
    for factor in (0.97, 1.03):
        n = best.n_params * factor
        d = best.n_params * best.tokens / n
        assert best.loss <= PUBLISHED.loss(n, d, min(unique, d)) + 1e-12


# -- fitting ----------------------------------------------------------------------------------


def synthetic_params(alpha: float, beta: float, rd_star: float, rn_star: float) -> DataConstrainedParams:
    """Published A and E with the given exponents, and B chosen so that the compute-optimal
    model for 1e9 tokens has 1e9 / 20 parameters (Chinchilla's 20 tokens per parameter), so
    the grid's single-epoch runs have no excess parameters whatever the exponents."""
    tokens, ratio = 1e9, 20.0
    g = ((tokens / ratio) / tokens ** (beta / alpha)) ** (alpha / (alpha + beta))
    B = alpha * PUBLISHED.A / (beta * g ** (alpha + beta))
    return DataConstrainedParams(A=PUBLISHED.A, B=B, E=PUBLISHED.E, alpha=alpha, beta=beta, rd_star=rd_star, rn_star=rn_star)


def synthetic_runs(params: DataConstrainedParams, noise: float, seed: int):
    """A study's runs: 8 sizes x 4 token budgets of one epoch (25 to 400 tokens per
    parameter), and 3 sizes x 5 repetitions (2 to 40 epochs) at two unique-token limits."""
    rows = [(n, n * r, n * r) for n in np.geomspace(1e6, 1e10, 8) for r in (25, 60, 150, 400)]
    rows += [(n, u * epochs, u) for u in (3e8, 3e9) for n in (1e7, 5e7, 2e8) for epochs in (2, 4, 8, 16, 40)]
    n, d, u = np.array(rows).T
    loss = params.loss(n, d, u) * np.exp(noise * np.random.default_rng(seed).standard_normal(len(n)))
    return n, d, u, loss


def test_noise_free_runs_give_back_the_parameters():
    truth = synthetic_params(0.35, 0.32, 10.0, 5.0)
    fit = fit_data_constrained(*synthetic_runs(truth, 0.0, 0), n_boot=0)
    for name, value in truth.to_dict().items():
        assert getattr(fit.params, name) == pytest.approx(value, rel=1e-4), name
    assert fit.at_bound == {} and fit.notes == []


@settings(max_examples=12, deadline=None, derandomize=True)
@given(alpha=st.floats(0.3, 0.4), beta=st.floats(0.3, 0.4), rd_star=st.floats(4.0, 16.0), rn_star=st.floats(3.0, 10.0),
       seed=st.integers(0, 10_000))  # fmt: skip
def test_fits_recover_the_exponents_and_rd_star(alpha, beta, rd_star, rn_star, seed):
    truth = synthetic_params(alpha, beta, rd_star, rn_star)
    fit = fit_data_constrained(*synthetic_runs(truth, 0.01, seed), n_boot=20, seed=seed)
    # With 1% noise over 47 runs (tolerances about 1.5x the worst of 60 random draws).
    assert abs(fit.params.alpha - alpha) < 0.08
    assert abs(fit.params.beta - beta) < 0.08
    assert abs(math.log(fit.params.rd_star / rd_star)) < math.log(2.0)


def test_the_rd_star_interval_covers_the_truth_in_most_datasets():
    rng = np.random.default_rng(7)
    covered = 0
    for seed in range(12):
        truth = synthetic_params(*rng.uniform([0.3, 0.3, 4.0, 3.0], [0.4, 0.4, 16.0, 10.0]))
        lo, hi = fit_data_constrained(*synthetic_runs(truth, 0.01, seed), n_boot=100, seed=seed).param_intervals(0.8)["rd_star"]
        covered += lo <= truth.rd_star <= hi
    assert covered >= 8  # 80% intervals: about 10 of 12 expected


@pytest.fixture(scope="module")
def fitted():
    truth = synthetic_params(0.35, 0.33, 12.0, 5.0)
    return truth, fit_data_constrained(*synthetic_runs(truth, 0.01, 3), n_boot=200, seed=3)


def test_predictions_intervals_and_json(fitted):
    truth, fit = fitted
    n, d, u = np.array([3e9, 3e9]), np.array([1e11, 3e11]), np.array([1e10, 1e10])
    predicted = fit.predict(n, d, u)
    np.testing.assert_allclose(predicted, truth.loss(n, d, u), rtol=0.03)
    lo, hi = fit.interval(n, d, u)
    wide_lo, wide_hi = fit.interval(n, d, u, level=0.95)
    assert np.all(lo < predicted) and np.all(predicted < hi)
    assert np.all(wide_lo <= lo) and np.all(hi <= wide_hi)
    out = json.loads(json.dumps(fit.to_dict()))
    assert out["n_points"] == 62 and set(out["params"]) == set(out["param_intervals"]) == set(truth.to_dict())
    assert out["at_bound"] == fit.at_bound and out["n_repeated"] == 30


def test_fitted_allocation_carries_ranges(fitted):
    truth, fit = fitted
    flops, unique = 1e20, 1e9
    plan = fit.allocation(flops, unique)
    assert plan["epochs"] == pytest.approx(plan["tokens"] / unique)
    for key in ("n_params", "tokens", "epochs", "loss"):
        lo, hi = plan[f"{key}_range"]
        assert lo <= plan[key] <= hi, key
    assert plan["loss"] >= plan["unconstrained"]["loss"] and plan["excess_loss_range"][1] > 0
    exact = optimal_allocation(truth, flops, unique)
    assert within(plan["n_params"], exact.n_params, 0.5) and within(plan["tokens"], exact.tokens, 0.5)
    assert json.loads(json.dumps(plan))["unique_tokens"] == unique


def test_a_parameter_at_its_bound_is_reported():
    # Repeated data as good as fresh: the fit wants rd_star beyond any bound.
    truth = synthetic_params(0.35, 0.35, 1e9, 5.0)
    fit = fit_data_constrained(*synthetic_runs(truth, 0.0, 0), n_boot=0)
    assert fit.at_bound.get("rd_star") == "upper"
    assert fit.to_dict()["at_bound"]["rd_star"] == "upper"


def test_rn_star_without_excess_parameters_is_held_and_said():
    truth = synthetic_params(0.35, 0.35, 10.0, 5.0)
    n, d, u, loss = synthetic_runs(truth, 0.005, 1)
    small = n <= 1e7  # the repeated runs of the 1e7 model: 3e8 tokens need more than 1e7 parameters
    keep = (d <= u) | small
    fit = fit_data_constrained(n[keep], d[keep], u[keep], loss[keep], n_boot=10)
    assert fit.params.rn_star == PUBLISHED.rn_star
    assert any("rn_star is not measured" in note for note in fit.notes)


# -- bad inputs ---------------------------------------------------------------------------------


def test_more_unique_tokens_than_tokens_is_refused():
    with pytest.raises(InputError, match=r"U = 3e\+10 exceed the tokens trained on D = 2e\+10"):
        PUBLISHED.loss(1e9, 2e10, 3e10)
    n, d, u, loss = synthetic_runs(synthetic_params(0.35, 0.35, 10.0, 5.0), 0.0, 0)
    u[4] = 2 * d[4]
    with pytest.raises(InputError, match=r"exceed the tokens trained on D = .* at position 4"):
        fit_data_constrained(n, d, u, loss, n_boot=0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: PUBLISHED.loss(-1e9, 2e10, 1e10), r"N must be positive and finite, found -1e\+09"),
        (lambda: PUBLISHED.loss(1e9, [2e10, math.nan], 1e10), r"D \(tokens\) must be positive and finite, found nan \(at position 1\)"),
        (lambda: PUBLISHED.effective_data(2e10, 0.0), r"U \(unique tokens\) must be positive and finite, found 0"),
        (lambda: DataConstrainedParams(1.0, 1.0, 1.0, -0.3, 0.3, 10.0, 5.0), r"parameter alpha must be a positive finite number, got -0.3"),
        (lambda: optimal_allocation(PUBLISHED, -1e21, 1e10), r"flops must be positive and finite, found -1e\+21"),
        (lambda: optimal_allocation(PUBLISHED, 1e21, 0), r"unique_tokens must be positive and finite, found 0"),
    ],
)  # fmt: skip
def test_bad_values_are_named(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_fit_says_what_is_missing():
    n, d, u, loss = synthetic_runs(synthetic_params(0.35, 0.35, 10.0, 5.0), 0.0, 0)
    once = d <= u
    with pytest.raises(InputError, match=r"runs that repeat data \(tokens > unique_tokens\); none of the 32 runs does"):
        fit_data_constrained(n[once], d[once], u[once], loss[once])
    few = np.flatnonzero(once)[:5].tolist() + np.flatnonzero(~once).tolist()
    with pytest.raises(InputError, match=r"single-epoch runs .* at 6 or more distinct \(N, D\).*the 35 runs have 5"):
        fit_data_constrained(n[few], d[few], u[few], loss[few])
    with pytest.raises(InputError, match=r"one value per run, got 62, 62, 62 and 61"):
        fit_data_constrained(n, d, u, loss[:-1])
    with pytest.raises(InputError, match=r"loss must be positive and finite, found -2"):
        fit_data_constrained(n, d, u, np.where(np.arange(len(loss)) == 3, -2.0, loss))
    with pytest.raises(InputError, match=r"level 1.5 must be between 0 and 1"):
        fit_data_constrained(n, d, u, loss, level=1.5)
