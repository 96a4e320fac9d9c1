"""Planning from fitted laws: compute-optimal allocation, what a target needs, the
marginal value of data against compute, and time on a given accelerator.

The joint law L(N, D) = E + A/N^α + B/D^β (N parameters, D training samples processed)
and the study's own measured cost, C = k·N·D FLOPs with k the median measured training
FLOPs per parameter per sample (about 6 for dense transformers, quite different for
convolutional nets, which reuse each weight at many positions), give:

* for a budget C: N* = G·(C/k)^a, D* = C/(k·N*), with a = β/(α+β) and
  G = (αA / (βB))^(1/(α+β));
* for a target value: the least compute on that frontier that reaches it, or "not
  reachable" when the fitted asymptote E is at or above it.

Intervals come from the law's bootstrap replicates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from scalelab.errors import InputError

# Peak dense throughput (FLOP/s) of common accelerators, bf16 tensor cores, from vendor
# data sheets (SXM parts, no sparsity). "cpu" is measured on this machine when asked.
HARDWARE_PEAK = {
    "a100": 312e12,
    "h100": 989e12,
    "h200": 989e12,
}


def measured_cpu_peak(seconds: float = 0.5) -> float:
    """FLOP/s of a large float32 matmul on this machine, with torch's current threads."""
    import torch

    a = torch.randn(1024, 1024)
    b = torch.randn(1024, 1024)
    a @ b  # warm up
    flops, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        flops += 2 * 1024**3
    return flops / (time.perf_counter() - start)


def hardware_peak(name: str) -> float:
    """Peak FLOP/s of a named accelerator (``cpu`` is measured now)."""
    key = name.lower()
    if key == "cpu":
        return measured_cpu_peak()
    if key not in HARDWARE_PEAK:
        raise InputError(f"--hardware {name!r}: unknown; known: cpu, {', '.join(HARDWARE_PEAK)}")
    return HARDWARE_PEAK[key]


@dataclass
class Allocation:
    """A point (N, D) with its compute and the law's prediction there."""

    n_params: float
    samples: float
    flops: float
    predicted: float
    lo: float
    hi: float
    n_params_range: tuple[float, float] | None = None
    samples_range: tuple[float, float] | None = None
    extras: dict = field(default_factory=dict)


def _frontier(params: np.ndarray, flops: float, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Compute-optimal N and D for each replicate row (E, A, B, alpha, beta)."""
    _, A, B, alpha, beta = (params[:, i] for i in range(5))
    G = _split_constant(A, B, alpha, beta)
    n_opt = G * (flops / k) ** (beta / (alpha + beta))
    return n_opt, (flops / k) / n_opt


def _split_constant(A, B, alpha, beta):
    """G in N* = G·(C/k)^(β/(α+β)): where A/N^α and B/D^β trade off at fixed compute."""
    return (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))


def _joint_params(law) -> np.ndarray:
    """The fitted (E, A, B, alpha, beta) as one row; an InputError for any other law."""
    if law.form != "chinchilla":
        raise InputError(f"planning a budget needs the joint law in (N, D); this law is {law.form!r}")
    best = np.array([[law.params[p] for p in ("E", "A", "B", "alpha", "beta")]])
    if not (best[0, 3] > 0 and best[0, 4] > 0):
        raise InputError("the fitted law has a zero exponent (alpha or beta): it has no compute-optimal frontier")
    return best


def _checked_k(k: float) -> float:
    if not (k > 0 and math.isfinite(k)):
        raise InputError(f"FLOPs per parameter per sample {k:g}: must be positive and finite")
    return float(k)


def optimal_allocation(law, *, budget: float, flops_per_param_sample: float, level: float = 0.8) -> Allocation:
    """The compute-optimal (N, D) for ``budget`` FLOPs under a fitted joint law."""
    best = _joint_params(law)
    if not (budget > 0 and math.isfinite(budget)):
        raise InputError(f"--budget {budget:g}: must be positive and finite")
    k = _checked_k(flops_per_param_sample)
    n_opt, d_opt = _frontier(best, budget, k)
    point = np.array([[n_opt[0], d_opt[0]]])
    boot = law.bootstrap_params()
    n_b, d_b = _frontier(boot, budget, k)
    tail = (1 - level) / 2
    lo, hi = law.interval(point, level)
    return Allocation(
        n_params=float(n_opt[0]),
        samples=float(d_opt[0]),
        flops=budget,
        predicted=float(law.predict(point)[0]),
        lo=float(lo[0]),
        hi=float(hi[0]),
        n_params_range=_range_holding(n_b, n_opt[0], tail),
        samples_range=_range_holding(d_b, d_opt[0], tail),
    )


def _range_holding(replicates: np.ndarray, point: float, tail: float) -> tuple[float, float]:
    """The bootstrap percentile range, widened to hold the point estimate.

    N* and D* are steep functions of the exponents, so their replicates can be skewed
    enough that the percentile range misses the fit's own answer; a range that excludes
    the number printed next to it would mislead.
    """
    lo, hi = np.nanquantile(replicates, [tail, 1 - tail])
    return float(min(lo, point)), float(max(hi, point))


def compute_for_target(law, *, target: float, flops_per_param_sample: float, level: float = 0.8) -> Allocation | None:
    """The least compute on the compute-optimal frontier that reaches ``target``; None if unreachable.

    On the frontier L(C) = E + K·(C/k)^-γ with γ = αβ/(α+β) and K = A·G^-α + B·G^β, so the
    compute is solved in closed form: however close the target is to E, the answer
    reaches it (a bounded search would stop short at its ceiling and still say reachable).
    """
    best = _joint_params(law)
    k = _checked_k(flops_per_param_sample)
    if not math.isfinite(target):
        raise InputError(f"--target {target:g}: must be a finite number")
    E, A, B, alpha, beta = best[0]
    if E >= target:
        return None
    G = _split_constant(A, B, alpha, beta)
    K = A * G**-alpha + B * G**beta
    gamma = alpha * beta / (alpha + beta)
    log_flops = math.log(k) + (math.log(K) - math.log(target - E)) / gamma
    if not -700.0 < log_flops < 700.0:
        raise InputError(
            f"--target {target:g}: under this law it needs about 10^{log_flops / math.log(10):.0f} FLOPs, "
            f"beyond what can be planned (the fitted asymptote is E = {E:.4g})"
        )
    return optimal_allocation(law, budget=math.exp(log_flops), flops_per_param_sample=k, level=level)


def data_for_target(law, *, target: float) -> float | None:
    """For a one-variable law: the x at which the law reaches ``target``; None if never."""
    if law.data.x.ndim != 1:
        raise InputError("data_for_target needs a one-variable law")
    if not math.isfinite(target):
        raise InputError(f"--target {target:g}: must be a finite number")
    floor = law.predict([1e30])[0]
    if floor >= target:
        return None
    lo_x, hi_x = float(np.min(law.data.x)) / 1e3, 1e30
    if law.predict([lo_x])[0] <= target:
        return lo_x
    for _ in range(200):
        mid = math.sqrt(lo_x * hi_x)
        if law.predict([mid])[0] > target:
            lo_x = mid
        else:
            hi_x = mid
        if hi_x / lo_x < 1.0001:
            break
    return hi_x


def marginal_value(law, *, n_params: float, samples: float, flops_per_param_sample: float, level: float = 0.8) -> dict:
    """From a run at (N, D): the law's value with 2× data, 2× parameters, or 2× compute spent optimally."""
    k = flops_per_param_sample
    here = np.array([[n_params, samples]])
    options = {
        "now": here,
        "2x data": np.array([[n_params, 2 * samples]]),
        "2x parameters": np.array([[2 * n_params, samples]]),
    }
    best_2c = optimal_allocation(law, budget=2 * k * n_params * samples, flops_per_param_sample=k, level=level)
    options["2x compute, optimal split"] = np.array([[best_2c.n_params, best_2c.samples]])
    out = {}
    for name, point in options.items():
        lo, hi = law.interval(point, level)
        out[name] = {
            "n_params": float(point[0, 0]),
            "samples": float(point[0, 1]),
            "predicted": float(law.predict(point)[0]),
            "lo": float(lo[0]),
            "hi": float(hi[0]),
        }
    return out


def hours_on(flops: float, *, hardware: str, utilisation: float) -> float:
    """Wall-clock hours to spend ``flops`` on ``hardware`` at the given utilisation of its peak."""
    return flops / (hardware_peak(hardware) * utilisation) / 3600.0
