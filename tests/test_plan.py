"""The planner (issue 4, "Planner"): through the Python API and ``scalelab plan`` end to end.

Everything is fitted for real, no mocks:

* ``optimal_allocation`` spends exactly the budget (C = k·N·D), lands on the closed form
  N* = G·(C/k)^(β/(α+β)), and no other split of the same compute predicts better;
* ``compute_for_target`` inverts it: the compute it names reaches the target, a lower
  target costs more, and a target at or below the fitted asymptote is "not reachable";
* ``data_for_target`` inverts a one-variable law;
* ``marginal_value``: 2× compute spent optimally is never worse than 2× data or
  2× parameters, which cost the same;
* ``hours_on`` is FLOPs over the accelerator's peak times the utilisation;
* ``scalelab plan --format json`` on Epoch's Chinchilla points, with k = 6 assumed (and
  said) or measured from a FLOPs column, and every bad input exiting 2 with one line.

Nothing is timed: timeouts are only safety nets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import assert_one_line_error, cli_env, nonempty_lines, run_cli
from shared_data import chinchilla_csv_path

from scalelab import plan
from scalelab.hardware import GPU_PEAKS, device_class
from scalelab.errors import InputError
from scalelab.laws import fit

EXIT_OK, EXIT_USAGE = 0, 2


# The law the synthetic (N, D) grid is drawn from: close to Chinchilla's own fit.
TRUE = {"E": 1.7, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}
K = 6.0  # FLOPs per parameter per sample in the API tests
BUDGET = 1e21


def chinchilla_value(p: dict, N, D):
    return p["E"] + p["A"] * np.asarray(N, float) ** -p["alpha"] + p["B"] * np.asarray(D, float) ** -p["beta"]


def closed_form_n_opt(p: dict, flops: float, k: float) -> float:
    """N* = G·(C/k)^(β/(α+β)), G = (αA/(βB))^(1/(α+β))."""
    a, b = p["alpha"], p["beta"]
    G = (a * p["A"] / (b * p["B"])) ** (1.0 / (a + b))
    return G * (flops / k) ** (b / (a + b))


@pytest.fixture(scope="module")
def joint_law():
    """A Chinchilla law fitted to an 8×8 (N, D) grid drawn from TRUE with 0.5% noise."""
    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(1e7, 1e10, 8), np.geomspace(1e9, 1e12, 8)))
    y = chinchilla_value(TRUE, N, D) * np.exp(np.random.default_rng(0).normal(0, 0.005, N.size))
    return fit(np.column_stack([N, D]), y, form="chinchilla", n_boot=200)


@pytest.fixture(scope="module")
def saturating_law():
    """y = 0.05 + 3·x^-0.5, ten sizes × three seeds, 2% noise."""
    x = np.repeat(np.geomspace(100, 1e5, 10), 3)
    y = (0.05 + 3.0 * x**-0.5) * np.exp(np.random.default_rng(1).normal(0, 0.02, x.size))
    return fit(x, y, form="saturating", n_boot=200)


# -- optimal_allocation --------------------------------------------------------------------
def test_optimal_allocation_spends_the_budget_on_the_closed_form_split(joint_law):
    alloc = plan.optimal_allocation(joint_law, budget=BUDGET, flops_per_param_sample=K)
    assert alloc.flops == BUDGET
    assert K * alloc.n_params * alloc.samples == pytest.approx(BUDGET, rel=1e-9)
    assert alloc.n_params == pytest.approx(closed_form_n_opt(joint_law.params, BUDGET, K), rel=1e-9)
    # ... and the fit recovered the true law well enough that the plan is the true plan.
    assert alloc.n_params == pytest.approx(closed_form_n_opt(TRUE, BUDGET, K), rel=0.15)
    assert alloc.predicted == pytest.approx(float(joint_law.predict([[alloc.n_params, alloc.samples]])[0]), rel=1e-12)
    assert alloc.predicted == pytest.approx(float(chinchilla_value(TRUE, alloc.n_params, alloc.samples)), rel=0.01)


def test_no_other_split_of_the_same_compute_predicts_better(joint_law):
    alloc = plan.optimal_allocation(joint_law, budget=BUDGET, flops_per_param_sample=K)
    for f in (0.5, 2.0):
        assert alloc.predicted < float(joint_law.predict([[alloc.n_params * f, alloc.samples / f]])[0]), f
    # A dense scan of the isoFLOP curve (N·f, D/f) finds its minimum at f = 1, to the scan's step.
    factors = np.geomspace(0.1, 10, 2001)
    scan = joint_law.predict(np.column_stack([alloc.n_params * factors, alloc.samples / factors]))
    assert factors[np.argmin(scan)] == pytest.approx(1.0, abs=0.01)
    assert alloc.predicted <= scan.min() + 1e-12


def test_optimal_allocation_intervals_hold_the_point_estimates(joint_law):
    alloc = plan.optimal_allocation(joint_law, budget=BUDGET, flops_per_param_sample=K, level=0.8)
    assert alloc.lo <= alloc.predicted <= alloc.hi
    assert alloc.lo < alloc.hi
    n_lo, n_hi = alloc.n_params_range
    d_lo, d_hi = alloc.samples_range
    assert n_lo <= alloc.n_params <= n_hi and n_lo < n_hi
    assert d_lo <= alloc.samples <= d_hi and d_lo < d_hi
    # A wider level gives ranges at least as wide.
    wide = plan.optimal_allocation(joint_law, budget=BUDGET, flops_per_param_sample=K, level=0.95)
    assert wide.n_params_range[0] <= n_lo and wide.n_params_range[1] >= n_hi
    assert wide.lo <= alloc.lo and wide.hi >= alloc.hi


def test_optimal_allocation_grows_both_n_and_d_with_compute(joint_law):
    small = plan.optimal_allocation(joint_law, budget=BUDGET, flops_per_param_sample=K)
    large = plan.optimal_allocation(joint_law, budget=100 * BUDGET, flops_per_param_sample=K)
    p = joint_law.params
    a = p["beta"] / (p["alpha"] + p["beta"])
    assert large.n_params / small.n_params == pytest.approx(100**a, rel=1e-9)
    assert large.samples / small.samples == pytest.approx(100 ** (1 - a), rel=1e-9)
    assert large.predicted < small.predicted


@pytest.mark.parametrize("budget", [0.0, -1e21, float("nan"), float("inf")])
def test_optimal_allocation_rejects_a_budget_that_is_not_a_positive_number(joint_law, budget):
    with pytest.raises(InputError, match="--budget"):
        plan.optimal_allocation(joint_law, budget=budget, flops_per_param_sample=K)


def test_planning_a_budget_needs_the_joint_law(saturating_law):
    with pytest.raises(InputError, match="saturating"):
        plan.optimal_allocation(saturating_law, budget=BUDGET, flops_per_param_sample=K)
    with pytest.raises(InputError, match="saturating"):
        plan.compute_for_target(saturating_law, target=0.1, flops_per_param_sample=K)


# -- compute_for_target --------------------------------------------------------------------
def test_compute_for_target_reaches_the_target_and_inverts_the_budget_plan(joint_law):
    at_budget = plan.optimal_allocation(joint_law, budget=BUDGET, flops_per_param_sample=K)
    back = plan.compute_for_target(joint_law, target=at_budget.predicted, flops_per_param_sample=K)
    assert back is not None
    assert back.flops == pytest.approx(BUDGET, rel=1e-3)
    assert back.predicted == pytest.approx(at_budget.predicted, rel=1e-3)
    assert K * back.n_params * back.samples == pytest.approx(back.flops, rel=1e-9)

    cheaper = plan.compute_for_target(joint_law, target=2.3, flops_per_param_sample=K)
    dearer = plan.compute_for_target(joint_law, target=2.0, flops_per_param_sample=K)
    assert cheaper.predicted == pytest.approx(2.3, rel=1e-3)
    assert dearer.predicted == pytest.approx(2.0, rel=1e-3)
    assert dearer.flops > cheaper.flops
    assert dearer.n_params > cheaper.n_params and dearer.samples > cheaper.samples
    assert dearer.lo <= dearer.predicted <= dearer.hi


# The law's interval draws overflow at the 1e60+ FLOPs these targets need (scalelab.laws, not the planner).
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
def test_a_target_just_above_the_asymptote_is_reached_by_the_compute_named(joint_law):
    """However much compute it takes: the answer must predict the target, not stop short."""
    E = joint_law.params["E"]
    needed = []
    for gap in (1e-2, 1e-4, 1e-8):  # 1e-4 and closer need over 1e40 FLOPs under this law
        alloc = plan.compute_for_target(joint_law, target=E + gap, flops_per_param_sample=K)
        assert alloc is not None, gap
        assert alloc.predicted - E == pytest.approx(gap, rel=1e-3), (gap, alloc)
        assert K * alloc.n_params * alloc.samples == pytest.approx(alloc.flops, rel=1e-9)
        needed.append(alloc.flops)
    assert needed == sorted(needed) and len(set(needed)) == 3


def test_a_target_at_or_below_the_fitted_asymptote_is_not_reachable(joint_law):
    E = joint_law.params["E"]
    for target in (E, E - 0.1, 0.0, -1.0):
        assert plan.compute_for_target(joint_law, target=target, flops_per_param_sample=K) is None, target


def test_a_target_that_is_not_a_number_is_an_input_error(joint_law, saturating_law):
    with pytest.raises(InputError, match="nan"):
        plan.compute_for_target(joint_law, target=float("nan"), flops_per_param_sample=K)
    with pytest.raises(InputError, match="nan"):
        plan.data_for_target(saturating_law, target=float("nan"))


# -- data_for_target -----------------------------------------------------------------------
def test_data_for_target_inverts_a_one_variable_law(saturating_law):
    E = saturating_law.params["E"]
    inside = 0.05 + 3.0 * 3e3**-0.5  # within the data's range
    beyond = E + 0.1 * (inside - E)  # an extrapolation past the largest size (x ≈ 3e5)
    x_in = plan.data_for_target(saturating_law, target=inside)
    x_out = plan.data_for_target(saturating_law, target=beyond)
    assert float(saturating_law.predict([x_in])[0]) == pytest.approx(inside, rel=1e-3)
    assert float(saturating_law.predict([x_out])[0]) == pytest.approx(beyond, rel=1e-3)
    assert 1e3 < x_in < 1e4  # the true law reaches it at x = 3000
    assert x_out > 1e5 > x_in


def test_data_for_target_below_the_asymptote_is_none(saturating_law):
    E = saturating_law.params["E"]
    assert plan.data_for_target(saturating_law, target=E) is None
    assert plan.data_for_target(saturating_law, target=0.5 * E) is None


def test_data_for_target_needs_a_one_variable_law(joint_law):
    with pytest.raises(InputError, match="one-variable"):
        plan.data_for_target(joint_law, target=2.0)


# -- marginal_value ------------------------------------------------------------------------
def test_two_times_compute_spent_optimally_beats_two_times_data_or_parameters(joint_law):
    # Runs on both sides of the optimum: too small for their data, and too big.
    for N, D in ((1e8, 1e12), (1e10, 1e10), (3e9, 5e10)):
        out = plan.marginal_value(joint_law, n_params=N, samples=D, flops_per_param_sample=K)
        assert set(out) == {"now", "2x data", "2x parameters", "2x compute, optimal split"}
        now, data, params, best = (out[k] for k in ("now", "2x data", "2x parameters", "2x compute, optimal split"))
        assert (now["n_params"], now["samples"]) == (N, D)
        assert (data["n_params"], data["samples"]) == (N, 2 * D)
        assert (params["n_params"], params["samples"]) == (2 * N, D)
        assert K * best["n_params"] * best["samples"] == pytest.approx(2 * K * N * D, rel=1e-9)
        assert best["predicted"] <= min(data["predicted"], params["predicted"]) + 1e-12, (N, D, out)
        assert data["predicted"] < now["predicted"] and params["predicted"] < now["predicted"], (N, D, out)
        assert now["predicted"] == pytest.approx(float(joint_law.predict([[N, D]])[0]), rel=1e-12)
        for v in out.values():
            assert v["lo"] <= v["predicted"] <= v["hi"], (N, D, out)
    # Data-starved: doubling data helps more than doubling parameters, and the other way round.
    starved = plan.marginal_value(joint_law, n_params=1e10, samples=1e9, flops_per_param_sample=K)
    assert starved["2x data"]["predicted"] < starved["2x parameters"]["predicted"]
    small = plan.marginal_value(joint_law, n_params=1e7, samples=1e12, flops_per_param_sample=K)
    assert small["2x parameters"]["predicted"] < small["2x data"]["predicted"]


# -- hours_on ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a100", "h100", "H200", "l4", "rtx4090"])
def test_hours_on_a_named_accelerator(name):
    flops, util = 3.7e22, 0.35
    expected = flops / (GPU_PEAKS[name.lower()]["bf16"] * util) / 3600.0
    assert plan.hours_on(flops, hardware=name, utilisation=util) == pytest.approx(expected, rel=1e-12)
    assert plan.hours_on(2 * flops, hardware=name, utilisation=util) == pytest.approx(2 * expected, rel=1e-12)
    fp32 = flops / (GPU_PEAKS[name.lower()]["fp32"] * util) / 3600.0
    assert plan.hours_on(flops, hardware=name, utilisation=util, precision="fp32") == pytest.approx(fp32, rel=1e-12)


def test_the_accelerator_table_holds_the_issues_parts_at_their_data_sheet_peaks():
    assert {"a100", "h100", "h200", "l4", "rtx4090"} <= set(GPU_PEAKS)
    for name in ("a100", "h100", "h200", "l4", "rtx4090"):
        assert {"fp32", "tf32", "bf16"} <= set(GPU_PEAKS[name]), name
        assert GPU_PEAKS[name]["fp32"] <= GPU_PEAKS[name]["tf32"] < GPU_PEAKS[name]["bf16"], name
    assert GPU_PEAKS["a100"]["bf16"] == pytest.approx(312e12)
    assert GPU_PEAKS["h100"]["bf16"] == pytest.approx(989.4e12)
    assert GPU_PEAKS["h100"]["tf32"] == pytest.approx(494.7e12)


def test_an_unknown_accelerator_is_an_input_error_naming_it():
    with pytest.raises(InputError, match="tpu-v9") as caught:
        plan.hours_on(1e21, hardware="tpu-v9", utilisation=0.4)
    assert "h100" in str(caught.value)  # and says what is known


def test_a_device_name_maps_to_its_class_in_the_peak_table():
    assert device_class("cuda:0", "NVIDIA H100 80GB HBM3") == "h100"
    assert device_class("cuda:0", "NVIDIA A100-SXM4-40GB") == "a100"
    assert device_class("cuda", "NVIDIA GeForce RTX 4090") == "rtx4090"
    assert device_class("cuda:1", "NVIDIA L4") == "l4"
    assert device_class("cuda:0", "NVIDIA L40S") is None  # not an L4, and not in the table
    assert device_class("cpu", "AMD EPYC 7763") == "cpu"


# -- scalelab plan, end to end -------------------------------------------------------------
@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path / "cache")


@pytest.fixture
def chinchilla_csv(tmp_path) -> Path:
    """N, D = C/(6N), loss, and flops = 3·N·D (a made-up measured cost); the 5 highest losses dropped."""
    raw = pd.read_csv(chinchilla_csv_path())
    kept = raw.drop(raw["loss"].nlargest(5).index)
    N = kept["Model Size"].to_numpy(float)
    D = kept["Training FLOP"].to_numpy(float) / (6 * N)
    path = tmp_path / "chinchilla.csv"
    pd.DataFrame({"N": N, "D": D, "loss": kept["loss"].to_numpy(float), "flops": 3 * N * D}).to_csv(path, index=False)
    return path


BASE = ("--x", "N", "--x", "D", "--y", "loss", "--bootstrap", "100")


def plan_json(*args, env, cwd) -> dict:
    """The one plan of an ungrouped CSV."""
    cli = run_cli("plan", *args, "--format", "json", env=env, cwd=cwd)
    assert cli.returncode == EXIT_OK, cli.describe()
    out = json.loads(cli.stdout)
    assert set(out) == {"plans", "skipped"} and out["skipped"] == [], out.keys()
    (one,) = out["plans"]
    assert one["group"] is None
    return one


def test_cli_budget_plan_assumes_six_flops_per_parameter_sample_and_says_so(chinchilla_csv, env, tmp_path):
    out = plan_json(chinchilla_csv, *BASE, "--budget", "1e21", env=env, cwd=tmp_path)
    assert out["law"]["form"] == "chinchilla" and out["law"]["n_points"] == 240
    assert out["flops_per_param_sample"] == 6.0
    assert any("6" in note and "no measured FLOPs" in note for note in out["notes"]), out["notes"]
    b = out["budget"]
    assert {"n_params", "samples", "flops", "predicted", "lo", "hi", "n_params_range", "samples_range"} <= set(b)
    assert b["flops"] == 1e21
    assert 6.0 * b["n_params"] * b["samples"] == pytest.approx(1e21, rel=1e-9)
    assert b["n_params"] == pytest.approx(closed_form_n_opt(out["law"]["params"], 1e21, 6.0), rel=1e-9)
    assert 1e9 < b["n_params"] < 1e10  # Chinchilla-optimal at 1e21 FLOPs: a few billion parameters
    assert b["lo"] <= b["predicted"] <= b["hi"]
    assert b["n_params_range"][0] <= b["n_params"] <= b["n_params_range"][1]
    assert b["samples_range"][0] <= b["samples"] <= b["samples_range"][1]
    assert b["predicted"] == pytest.approx(float(chinchilla_value(out["law"]["params"], b["n_params"], b["samples"])), rel=1e-9)
    assert {"N", "D", "loss"} <= set(out["nearest_run"])
    assert set(out["marginal"]) == {"now", "2x data", "2x parameters", "2x compute, optimal split"}
    m = out["marginal"]
    assert m["now"]["predicted"] == pytest.approx(2.129, abs=0.05)  # the best run (lowest loss) in the file
    assert m["2x compute, optimal split"]["predicted"] <= min(m["2x data"]["predicted"], m["2x parameters"]["predicted"]) + 1e-12
    assert "hardware" not in out


def test_cli_budget_plan_uses_the_measured_flops_per_parameter_sample(chinchilla_csv, env, tmp_path):
    assumed = plan_json(chinchilla_csv, *BASE, "--budget", "1e21", env=env, cwd=tmp_path)
    out = plan_json(chinchilla_csv, *BASE, "--budget", "1e21", "--flops", "flops", env=env, cwd=tmp_path)
    k = out["flops_per_param_sample"]
    assert k == pytest.approx(3.0, rel=1e-9)  # measured, not the 6·N·D rule
    assert any("flops" in note and "measured" in note for note in out["notes"]), out["notes"]
    b = out["budget"]
    assert k * b["n_params"] * b["samples"] == pytest.approx(1e21, rel=1e-9)
    # The same law, half the cost per parameter-sample: twice the (N·D) to spend, split by (β/(α+β), α/(α+β)).
    p = out["law"]["params"]
    assert p == pytest.approx(assumed["law"]["params"], rel=1e-9)
    a = p["beta"] / (p["alpha"] + p["beta"])
    assert b["n_params"] / assumed["budget"]["n_params"] == pytest.approx(2**a, rel=1e-6)
    assert b["samples"] / assumed["budget"]["samples"] == pytest.approx(2 ** (1 - a), rel=1e-6)
    assert b["predicted"] < assumed["budget"]["predicted"]


def test_cli_target_reachable_and_not(chinchilla_csv, env, tmp_path):
    out = plan_json(chinchilla_csv, *BASE, "--target", "2.0", env=env, cwd=tmp_path)
    t = out["target"]
    assert t["reachable"] is True and t["value"] == 2.0
    assert t["predicted"] == pytest.approx(2.0, rel=1e-3)
    assert 6.0 * t["n_params"] * t["samples"] == pytest.approx(t["flops"], rel=1e-9)
    assert "budget" not in out

    out = plan_json(chinchilla_csv, *BASE, "--target", "1.5", env=env, cwd=tmp_path)
    t = out["target"]
    assert t["reachable"] is False and t["value"] == 1.5
    assert "E =" in t["why"] and "1.5" in t["why"]
    assert "flops" not in t and "n_params" not in t


def test_cli_hardware_estimate_at_a_given_and_an_assumed_utilisation(chinchilla_csv, env, tmp_path):
    out = plan_json(chinchilla_csv, *BASE, "--budget", "1e21", "--hardware", "h100", "--utilisation", "0.5", env=env, cwd=tmp_path)
    h = out["hardware"]
    assert h["name"] == "h100" and h["precision"] == "bf16" and h["mfu"] == 0.5 and "--utilisation" in h["mfu_source"]
    assert h["hours"] == pytest.approx(1e21 / (989.4e12 * 0.5) / 3600, rel=1e-9)
    assert h["hours_range"] == pytest.approx([h["hours"], h["hours"]])
    # No runs on an A100 in the file: the documented default MFU, and its range carried into the hours.
    out = plan_json(chinchilla_csv, *BASE, "--budget", "1e21", "--hardware", "a100", env=env, cwd=tmp_path)
    h = out["hardware"]
    assert "assumed 40%" in h["mfu_source"] and h["mfu"] == 0.4 and h["mfu_range"] == [0.25, 0.55]
    assert h["hours"] == pytest.approx(1e21 / (312e12 * 0.4) / 3600, rel=1e-9)
    assert h["hours_range"] == pytest.approx([1e21 / (312e12 * 0.55) / 3600, 1e21 / (312e12 * 0.25) / 3600], rel=1e-9)
    fp32 = plan_json(chinchilla_csv, *BASE, "--budget", "1e21", "--hardware", "a100", "--precision", "fp32", env=env, cwd=tmp_path)
    assert fp32["hardware"]["hours"] == pytest.approx(h["hours"] * 312 / 19.5, rel=1e-9)


def test_cli_target_plan_gives_the_compute_with_an_interval(chinchilla_csv, env, tmp_path):
    t = plan_json(chinchilla_csv, *BASE, "--target", "2.0", env=env, cwd=tmp_path)["target"]
    lo, hi = t["extras"]["flops_range"]
    assert lo <= t["flops"] <= hi or hi is None
    cli = run_cli("plan", chinchilla_csv, *BASE, "--target", "2.0", env=env, cwd=tmp_path)
    assert cli.returncode == EXIT_OK, cli.describe()
    row = next(line for line in cli.stdout.splitlines() if "training compute" in line)
    assert "[" in row and "80% interval" in cli.stdout, cli.stdout


def test_cli_table_output_states_the_plan(chinchilla_csv, env, tmp_path):
    cli = run_cli("plan", chinchilla_csv, *BASE, "--budget", "1e21", env=env, cwd=tmp_path)
    assert cli.returncode == EXIT_OK, cli.describe()
    assert "Compute-optimal split of 1e+21 FLOPs" in cli.stdout and "6·N·D" in cli.stdout
    budget = plan_json(chinchilla_csv, *BASE, "--budget", "1e21", env=env, cwd=tmp_path)["budget"]
    row = next(line for line in cli.stdout.splitlines() if "parameters N" in line)
    assert f"{budget['n_params']:.3g}" in row  # the table shows the same answer as the JSON
    assert "2x compute, optimal split" in cli.stdout
    target = run_cli("plan", chinchilla_csv, *BASE, "--target", "2.0", env=env, cwd=tmp_path)
    assert target.returncode == EXIT_OK and "training compute (FLOPs)" in target.stdout, target.describe()


BAD_PLANS = {
    # name: (arguments after the CSV, texts the one stderr line must contain)
    "one-x": (["--x", "N", "--y", "loss", "--budget", "1e21"], "two x columns"),
    "negative-budget": (["--x", "N", "--x", "D", "--y", "loss", "--budget=-1e21"], ("--budget", "positive")),
    "negative-budget-spaced": (["--x", "N", "--x", "D", "--y", "loss", "--budget", "-5"], ("--budget", "positive")),
    "zero-budget": (["--x", "N", "--x", "D", "--y", "loss", "--budget", "0"], ("--budget", "positive")),
    "infinite-budget": (["--x", "N", "--x", "D", "--y", "loss", "--budget", "inf"], "--budget"),
    "budget-and-target": (["--x", "N", "--x", "D", "--y", "loss", "--budget", "1e21", "--target", "2"], ("--target", "--budget")),
    "no-question": (["--x", "N", "--x", "D", "--y", "loss"], ("--budget", "--target")),
    "nan-target": (["--x", "N", "--x", "D", "--y", "loss", "--target", "nan"], ("--target", "nan")),
    "missing-y-column": (["--x", "N", "--x", "D", "--y", "perplexity", "--budget", "1e21"], "perplexity"),
    "missing-x-column": (["--x", "N", "--x", "tokens", "--y", "loss", "--budget", "1e21"], "tokens"),
    "missing-flops-column": (["--x", "N", "--x", "D", "--y", "loss", "--flops", "train_flops", "--budget", "1e21"], "train_flops"),
    "unknown-hardware": (["--x", "N", "--x", "D", "--y", "loss", "--budget", "1e21", "--hardware", "tpu-v9"], ("tpu-v9", "h100")),
    "tf32-on-cpu": (["--x", "N", "--x", "D", "--y", "loss", "--budget", "1e21", "--hardware", "cpu", "--precision", "tf32"], "tf32"),
    "csv-without-columns": (["--budget", "1e21"], "--x"),
}


@pytest.mark.parametrize("case", list(BAD_PLANS))
def test_cli_bad_input_exits_2_with_one_line_naming_the_problem(case, chinchilla_csv, env, tmp_path):
    args, named = BAD_PLANS[case]
    cli = run_cli("plan", chinchilla_csv, *args, "--bootstrap", "50", "--format", "json", env=env, cwd=tmp_path)
    assert_one_line_error(cli, *((named,) if isinstance(named, str) else named))


def test_cli_non_positive_measured_flops_is_an_input_error(chinchilla_csv, env, tmp_path):
    table = pd.read_csv(chinchilla_csv)
    table.loc[: len(table) // 2, "flops"] = 0.0  # over half the runs: the median k would be 0
    bad = tmp_path / "zero_flops.csv"
    table.to_csv(bad, index=False)
    cli = run_cli("plan", bad, *BASE, "--flops", "flops", "--budget", "1e21", "--format", "json", env=env, cwd=tmp_path)
    assert cli.returncode == EXIT_USAGE, cli.describe()
    lines = nonempty_lines(cli.stderr)
    assert len(lines) == 1 and "flops" in lines[0] and "positive" in lines[0], cli.describe()
