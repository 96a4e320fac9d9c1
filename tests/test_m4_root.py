"""M4's value is the root of g(y) = (y - E) - B x^-β (y0 - y)^α in (E, y0).

The law solves it by a safeguarded Newton pass and re-solves, with SciPy's bracketing
``find_root`` (SciPy >= 1.15), the points the Newton pass leaves off the curve. These
tests hold the two solvers to each other and to the equation:

* where the Newton pass converged, it agrees with ``find_root`` to 2e-12 of y0 - E;
* every prediction is within 1e-12 of y0 - E of the root (or at y0 where no root lies below it);
* predictions fall as x grows, and a point's value does not depend on its batch;
* with SciPy older than 1.15 the Newton pass alone is used.

Parameters are drawn at random, with the edges mixed in: α at or near 0, y near the
floor E (large x, steep β) and near the ceiling y0 (small x, large B), x from 1e-3 to 1e12.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy

from scalelab.laws import forms
from scalelab.laws.forms import FORMS

try:
    from scipy.optimize import elementwise
except ImportError:  # SciPy < 1.15, which the project allows: only the Newton pass to test
    elementwise = None

M4 = FORMS["m4"]
needs_find_root = pytest.mark.skipif(elementwise is None, reason="scipy.optimize.elementwise.find_root is SciPy >= 1.15")


def random_theta(k: int, seed: int) -> np.ndarray:
    """k parameter sets (E, B, alpha, beta, y0), a quarter of them on an edge."""
    rng = np.random.default_rng(seed)
    E = rng.uniform(0.0, 0.5, k)
    y0 = E + np.exp(rng.uniform(np.log(1e-3), np.log(2.0), k))
    B = np.exp(rng.uniform(np.log(1e-6), np.log(1e6), k))
    alpha = rng.uniform(0.0, 3.0, k)
    beta = rng.uniform(0.0, 2.0, k)
    edge = rng.integers(0, 8, k)
    alpha = np.where(edge == 0, rng.choice([0.0, 1e-12, 1e-8, 1e-4, 1e-2], k), alpha)
    B = np.where(edge == 1, 1e12, B)  # y pressed against y0
    beta = np.where(edge == 2, 3.0, beta)  # y pressed against E at large x
    return np.column_stack([E, B, alpha, beta, y0])


X = np.geomspace(1e-3, 1e12, 61)
# E, B, alpha, beta, y0 where the Newton pass alone stops at y0, well above the root, at x ≈ 695.
STUCK_AT_THE_CEILING = np.array([[0.0651856, 6.10361563, 0.05542, 0.30119775, 0.9]])


def flat(theta, x):
    """The solvers' flat inputs: E, alpha, y0 and rhs at every (row, x)."""
    E, B, alpha, beta, y0 = (theta[:, [i]] for i in range(5))
    with np.errstate(over="ignore", divide="ignore"):
        rhs = B * x[None] ** -beta
    return tuple(np.broadcast_to(v, rhs.shape).ravel().copy() for v in (E, alpha, y0)) + (rhs.ravel(),)


def root_within(y, E, alpha, y0, rhs, tolerance=1e-12):
    """Whether g changes sign across y ± tolerance·(y0 - E) (clipped to [E, y0]).

    A sign test, not |g| small: beside y0 the slope of g is unbounded, so even the float
    nearest the root can leave |g| large.
    """
    hair = np.maximum(tolerance * (y0 - E), 4 * np.finfo(float).eps * np.abs(y))
    with np.errstate(all="ignore"):
        below = forms._m4_misfit(np.maximum(y - hair, E), E, rhs, y0, alpha)
        above = forms._m4_misfit(np.minimum(y + hair, y0), E, rhs, y0, alpha)
    return (below <= 0) & (above >= 0)


@needs_find_root
def test_newton_agrees_with_find_root_wherever_it_converged():
    theta = random_theta(2000, seed=1)
    E, alpha, y0, rhs = flat(theta, X)
    with np.errstate(all="ignore"):
        newton = forms._m4_solve_newton(E, alpha, y0, rhs)
        found = elementwise.find_root(forms._m4_misfit, (E, y0), args=(E, rhs, y0, alpha))
    converged = root_within(newton, E, alpha, y0, rhs)
    both = converged & found.success
    assert both.mean() > 0.98, both.mean()
    assert np.max(np.abs(newton[both] - found.x[both]) / (y0 - E)[both]) < 2e-12  # the test's hair and find_root's


@needs_find_root
def test_every_prediction_solves_the_equation_or_sits_at_the_ceiling():
    theta = random_theta(2000, seed=2)
    E, alpha, y0, rhs = flat(theta, X)
    y = M4.predict(theta, X).ravel()
    no_root = (alpha == 0) & (rhs >= y0 - E)  # g(y0) = y0 - E - rhs <= 0: the law is capped at y0
    assert np.all(np.isfinite(y)) and np.all((y >= E) & (y <= y0))
    assert np.all(root_within(y, E, alpha, y0, rhs) | no_root)
    assert np.allclose(y[no_root], y0[no_root], rtol=1e-9, atol=0)


@needs_find_root
def test_the_newton_pass_alone_can_stop_at_the_ceiling_and_the_repair_finds_the_root():
    # alpha small, root well below y0: the slope near y0 is unbounded, so a Newton step
    # there barely moves while g is far from zero.
    theta, x = STUCK_AT_THE_CEILING, np.array([695.1927961775605])
    E, alpha, y0, rhs = flat(theta, x)
    with np.errstate(all="ignore"):
        newton = forms._m4_solve_newton(E, alpha, y0, rhs)
    y = M4.predict(theta, x).ravel()
    assert newton[0] > 0.8999  # the Newton pass alone: stopped at the ceiling
    assert 0.80 < y[0] < 0.82 and root_within(y, E, alpha, y0, rhs)[0]
    assert not root_within(newton, E, alpha, y0, rhs)[0]


def test_predictions_fall_as_x_grows():
    theta = random_theta(500, seed=3)
    y = M4.predict(theta, X)
    span = theta[:, [4]] - theta[:, [0]]
    assert np.all(np.diff(y, axis=1) <= 1e-12 * span)


def test_a_point_solves_the_same_alone_as_in_a_batch():
    # The batch holds points the Newton pass leaves off the root, so the repair runs too.
    theta = np.vstack([STUCK_AT_THE_CEILING, random_theta(150, seed=4)])
    E, alpha, y0, rhs = flat(theta, X)
    with np.errstate(all="ignore"):
        assert not root_within(forms._m4_solve_newton(E, alpha, y0, rhs), E, alpha, y0, rhs).all()
    together = M4.predict(theta, X)
    alone = np.vstack([M4.predict(theta[[i]], X) for i in range(len(theta))])
    assert np.array_equal(together, alone)
    one_by_one = np.array([M4.predict(theta[:5], X[[j]])[:, 0] for j in range(len(X))]).T
    assert np.array_equal(together[:5], one_by_one)


def test_bootstrap_shaped_batches_broadcast_like_shared_ones():
    # Shared x (n,) for every row, or one x per row (k, n): the same values either way.
    theta = random_theta(200, seed=5)
    shared = M4.predict(theta, X)
    per_row = M4.predict(theta, np.broadcast_to(X, (len(theta), len(X))))
    assert shared.shape == per_row.shape == (200, len(X))
    assert np.array_equal(shared, per_row)


def test_a_known_ceiling_caps_the_law_there():
    theta = random_theta(200, seed=6)
    capped = M4.predict(theta[:, :4], X, ceiling=0.95)
    assert np.all(capped <= 0.95)
    mine = theta.copy()
    mine[:, 4] = 0.95
    ok = mine[:, 0] < 0.95
    assert np.array_equal(capped[ok], M4.predict(mine[ok], X))


def test_scipy_without_find_root_falls_back_to_the_newton_pass(monkeypatch):
    theta = random_theta(300, seed=7)
    E, alpha, y0, rhs = flat(theta, X)
    monkeypatch.setattr(forms, "_find_root", None)
    with np.errstate(all="ignore"):
        newton = forms._m4_solve_newton(E, alpha, y0, rhs)
    assert np.array_equal(M4.predict(theta, X).ravel(), newton)


@pytest.mark.skipif(tuple(int(p) for p in scipy.__version__.split(".")[:2]) < (1, 15), reason="find_root is SciPy >= 1.15")
def test_the_repair_is_on_where_scipy_has_find_root():
    assert elementwise is not None and forms._find_root is elementwise.find_root
