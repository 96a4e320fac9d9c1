"""A downstream metric from the loss in two steps (``scalelab.laws.link``): the link's
recovery, bounds, intervals through both steps, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalelab.errors import InputError
from scalelab.laws.link import fit_chain, fit_link


def bounded(loss, lo=0.05, hi=0.85, k=4.0, l0=2.5):
    return lo + (hi - lo) / (1 + np.exp(-k * (loss - l0)))


def test_a_noiseless_bounded_link_is_recovered_exactly():
    loss = np.linspace(1.8, 3.4, 15)
    link = fit_link(loss, bounded(loss), error_rate=True, n_boot=20)
    assert link.sign == 1 and link.kind == "bounded error"
    for name, value in {"lo": 0.05, "hi": 0.85, "k": 4.0, "L0": 2.5}.items():
        assert link.params[name] == pytest.approx(value, rel=1e-3, abs=1e-4), name


def test_a_score_that_rises_as_the_loss_falls_is_recovered():
    loss = np.linspace(1.8, 3.4, 15)
    accuracy = 0.25 + 0.6 / (1 + np.exp(3.0 * (loss - 2.6)))
    link = fit_link(loss, accuracy, error_rate=False, n_boot=20)
    assert link.sign == -1
    assert np.allclose(link(loss), accuracy, atol=1e-4)


@settings(max_examples=10, deadline=None)
@given(alpha=st.floats(0.25, 0.45), beta=st.floats(0.25, 0.45), k=st.floats(2.0, 6.0), seed=st.integers(0, 10_000))
def test_the_chain_predicts_held_out_larger_scales_near_the_truth(alpha, beta, k, seed):
    rng = np.random.default_rng(seed)
    sizes, data = np.geomspace(1e5, 8e5, 4), np.geomspace(2e6, 3.2e7, 5)
    true_loss = lambda n, d: 1.8 + 0.8 * (1e5 / n) ** alpha + 0.8 * (2e6 / d) ** beta
    l0 = true_loss(sizes[-1], data[-1]) + 0.4
    rows = np.array([(n, d) for n in sizes for d in data for _ in range(2)])
    loss = true_loss(rows[:, 0], rows[:, 1]) * np.exp(rng.normal(0, 0.01, len(rows)))
    error = np.clip(bounded(loss, k=k, l0=l0) + rng.normal(0, 0.005, len(rows)), 0, 1)
    small = rows.prod(axis=1) < sizes[-1] * data[-1] * 0.999
    chain = fit_chain(rows[small], loss[small], error[small], form="chinchilla", error_rate=True, n_boot=200)
    x = np.array([[sizes[-1] * 1.5, data[-1] * 1.5]])
    truth = bounded(true_loss(x[0, 0], x[0, 1]), k=k, l0=l0)
    assert chain.predict(x)[0] == pytest.approx(truth, abs=0.05)
    lo, hi = chain.interval(x, 0.8)
    assert lo[0] <= chain.predict(x)[0] <= hi[0]


def test_error_rates_stay_between_zero_and_chance():
    rng = np.random.default_rng(0)
    n = np.geomspace(1e3, 1e5, 10).repeat(2)
    loss = (1.0 + 30 * n**-0.4) * np.exp(rng.normal(0, 0.01, len(n)))
    error = np.clip(bounded(loss, lo=0.01, hi=0.5, k=6, l0=1.6) + rng.normal(0, 0.02, len(n)), 0, 0.5)
    chain = fit_chain(n, loss, error, form="saturating", error_rate=True, ceiling=0.5, n_boot=100)
    x = np.geomspace(10, 1e8, 12)
    lo, hi = chain.interval(x, 0.95)
    assert np.all(lo >= 0) and np.all(hi <= 0.5)
    assert np.all(chain.predict(x) <= 0.5) and chain.link.params["hi"] <= 0.5


def test_to_dict_carries_both_steps():
    n = np.geomspace(1e3, 1e5, 10)
    loss = 1.0 + 30 * n**-0.4
    chain = fit_chain(n, loss, bounded(loss, l0=1.8), form="saturating", error_rate=True, n_boot=50, loss_name="test_loss")
    out = chain.to_dict(predict=[1e6], level=0.8)
    assert out["via"] == "test_loss" and out["loss_law"]["form"] == "saturating"
    (p,) = out["predictions"]
    assert p["lo"] <= p["y"] <= p["hi"] and p["loss"] == pytest.approx(chain.predict_loss([1e6])[0])


@pytest.mark.parametrize(
    ("loss", "metric", "needle"),
    [
        ([2.0, 2.1, 2.2], [0.3, 0.4, 0.5], "needs 5 runs at least, got 3"),
        ([2.0, 2.1, 2.2, 2.3, 2.4], [0.3, 0.4], "the loss has 5 values but metric has 2"),
        ([2.0, 2.1, 2.2, 2.3, 2.4], [0.3, 0.4, 1.5, 0.5, 0.6], "holds 1.5, outside [0, 1]"),
        ([2.0, 2.1, 2.2, 2.3, 2.4], [0.3, 0.3, 0.3, 0.3, 0.3], "does not change with the loss"),
        ([2.0, np.nan, 2.2, 2.3, 2.4], [0.3, 0.4, 0.5, 0.5, 0.6], "must be finite"),
    ],
)
def test_bad_links_are_refused_in_one_line(loss, metric, needle):
    with pytest.raises(InputError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        fit_link(loss, metric, error_rate=True, n_boot=5)
