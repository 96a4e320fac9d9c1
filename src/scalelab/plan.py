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
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    n_opt = G * (flops / k) ** (beta / (alpha + beta))
    return n_opt, (flops / k) / n_opt


def optimal_allocation(law, *, budget: float, flops_per_param_sample: float, level: float = 0.8) -> Allocation:
    """The compute-optimal (N, D) for ``budget`` FLOPs under a fitted joint law."""
    if law.form != "chinchilla":
        raise InputError(f"planning a budget needs the joint law in (N, D); this law is {law.form!r}")
    if not budget > 0:
        raise InputError(f"--budget {budget:g}: must be positive")
    k = flops_per_param_sample
    best = np.array([[law.params[p] for p in ("E", "A", "B", "alpha", "beta")]])
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
        n_params_range=tuple(float(v) for v in np.nanquantile(n_b, [tail, 1 - tail])),
        samples_range=tuple(float(v) for v in np.nanquantile(d_b, [tail, 1 - tail])),
    )


def compute_for_target(law, *, target: float, flops_per_param_sample: float, level: float = 0.8) -> Allocation | None:
    """The least compute on the compute-optimal frontier that reaches ``target``; None if unreachable."""
    if law.params["E"] >= target:
        return None
    lo_c, hi_c = 1.0, 1e40
    for _ in range(200):  # bisection in log compute: the frontier's value falls with compute
        mid = math.sqrt(lo_c * hi_c)
        if optimal_allocation(law, budget=mid, flops_per_param_sample=flops_per_param_sample, level=level).predicted > target:
            lo_c = mid
        else:
            hi_c = mid
        if hi_c / lo_c < 1.0001:
            break
    return optimal_allocation(law, budget=hi_c, flops_per_param_sample=flops_per_param_sample, level=level)


def data_for_target(law, *, target: float) -> float | None:
    """For a one-variable law: the x at which the law reaches ``target``; None if never."""
    if law.data.x.ndim != 1:
        raise InputError("data_for_target needs a one-variable law")
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
