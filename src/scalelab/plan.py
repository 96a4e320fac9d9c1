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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalelab.errors import InputError

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
    # A degenerate bootstrap replicate (a zero coefficient) gives 0 or inf, which the
    # intervals then show; it is not an error to warn about.
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
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
    alloc = optimal_allocation(law, budget=math.exp(log_flops), flops_per_param_sample=k, level=level)
    alloc.extras["flops_range"] = _target_flops_range(law.bootstrap_params(), target, k, (1 - level) / 2, alloc.flops)
    return alloc


def _target_flops_range(params: np.ndarray, target: float, k: float, tail: float, point: float) -> tuple[float, float]:
    """The bootstrap range of the compute that reaches ``target``, widened to hold the point;
    a replicate whose asymptote is at or above the target never reaches it (infinite)."""
    E, A, B, alpha, beta = (params[:, i] for i in range(5))
    with np.errstate(all="ignore"):
        G = _split_constant(A, B, alpha, beta)
        K = A * G**-alpha + B * G**beta
        gamma = alpha * beta / (alpha + beta)
        log_flops = np.log(k) + (np.log(K) - np.log(target - E)) / gamma
    flops = np.where((E < target) & np.isfinite(log_flops), np.exp(np.clip(log_flops, -700, 700)), np.inf)
    lo, hi = np.quantile(flops, [tail, 1 - tail])
    return float(min(lo, point)), float(max(hi, point))


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


def best_point(N: np.ndarray, D: np.ndarray, y: np.ndarray) -> dict:
    """The grid point (N, D) with the lowest mean over its seeds: where "now" is read.

    A mean, not the single luckiest seed, which the law (a mean curve) would never match.
    """
    frame = pd.DataFrame({"N": N, "D": D, "y": y})
    # Runs of one cell share N exactly; D (samples) may differ in the last digits.
    frame["D_key"] = np.round(np.log(frame["D"]), 6)
    means = frame.groupby(["N", "D_key"], sort=False).agg(samples=("D", "mean"), y=("y", "mean"), seeds=("y", "size"), spread=("y", "std"))
    (n, _), row = next(iter(means.nsmallest(1, "y").iterrows()))
    return {"n_params": float(n), "samples": float(row["samples"]), "mean": float(row["y"]), "seeds": int(row["seeds"]),
            "std": None if not np.isfinite(row["spread"]) else float(row["spread"])}  # fmt: skip


def marginal_verdict(marginal: dict, *, y_name: str, percent: bool) -> str:
    """One sentence from :func:`marginal_value`: does 2× data or 2× parameters pay more at
    the best run, with intervals, and is the difference larger than their overlap."""

    def show(v) -> str:
        scale, unit = (100.0, "%") if percent else (1.0, "")
        return f"{scale * v['predicted']:.3g}{unit} [{scale * v['lo']:.3g}, {scale * v['hi']:.3g}]"

    data, size, now = marginal["2x data"], marginal["2x parameters"], marginal["now"]
    better, other = ("more data", "a bigger model") if data["predicted"] < size["predicted"] else ("a bigger model", "more data")
    clear = data["hi"] < size["lo"] or size["hi"] < data["lo"]
    head = f"At the best run ({y_name} {show(now)}), 2x data gives {show(data)} and 2x parameters {show(size)}: "
    if clear:
        return head + f"{better} pays more."
    return head + f"{better} looks better, but the intervals overlap, so the runs cannot tell it from {other}."


def hardware_estimate(flops: float, *, hardware: str, precision: str | None = None, runs=None, utilisation: float | None = None,
                      store: str | None = None) -> dict:  # fmt: skip
    """Hours to spend ``flops`` on one ``hardware`` device, with the precision and MFU assumed.

    The MFU is ``utilisation`` when given; else the median MFU of ``runs`` that ran on that
    class of device in that precision (their 10–90% range carried into the hours); else
    :data:`scalelab.hardware.DEFAULT_MFU` with its documented range. On the CPU the peak is
    the one measured once and kept in ``store``.
    """
    from scalelab import hardware as hw

    device, precision = hw.check_hardware(hardware, precision)
    cpu_peak = _stored_cpu_peak(store) if device == "cpu" else None
    peak_note = ""
    if device == "cpu" and cpu_peak is None:
        cpu_peak = hw.measure_cpu_peak()
        peak_note = " (this CPU's peak measured now: the source has no stored one)"
    mfu, mfu_range, source = _assumed_mfu(runs, device, precision, utilisation, cpu_peak)
    hours = hw.hours_for(flops, device=device, precision=precision, mfu=mfu, cpu_peak=cpu_peak)
    hours_range = [hw.hours_for(flops, device=device, precision=precision, mfu=m, cpu_peak=cpu_peak) for m in mfu_range[::-1]]
    return {"name": device, "precision": precision, "peak_flops": hw.peak_flops(device, precision, cpu_peak=cpu_peak),
            "mfu": mfu, "mfu_range": list(mfu_range), "mfu_source": source + peak_note, "flops": flops,
            "hours": hours, "hours_range": hours_range}  # fmt: skip


def _assumed_mfu(runs, device: str, precision: str, utilisation, cpu_peak) -> tuple[float, tuple[float, float], str]:
    from scalelab import hardware as hw

    if utilisation is not None:
        return float(utilisation), (float(utilisation), float(utilisation)), "given with --utilisation"
    if runs is not None and len(runs) and "device" in runs.columns:
        names = runs["device_name"] if "device_name" in runs.columns else pd.Series([None] * len(runs), index=runs.index)
        on_it = [hw.device_class(d, n) == device for d, n in zip(runs["device"], names)]
        same = runs[np.array(on_it, dtype=bool)]
        if "dtype" in same.columns:
            same = same[[hw.run_precision(d) == precision for d in same["dtype"]]]
        if "mfu" in same.columns:
            mfu = pd.to_numeric(same["mfu"], errors="coerce").dropna()
        else:  # a store from before runs recorded their MFU
            mfu = pd.Series([hw.run_mfu(r, cpu_peak=cpu_peak) for r in same.to_dict("records")], dtype=float).dropna()
        mfu = mfu[mfu > 0]
        if len(mfu):
            lo, hi = np.quantile(mfu, [0.1, 0.9])
            return (float(mfu.median()), (float(lo), float(hi)),
                    f"the median MFU of {len(mfu)} runs of this study on {device} in {precision} (their 10-90% range)")  # fmt: skip
    lo, hi = hw.DEFAULT_MFU_RANGE
    return hw.DEFAULT_MFU, (lo, hi), (f"assumed {hw.DEFAULT_MFU:.0%} of peak, range {lo:.0%}-{hi:.0%} (no runs of this study "
                                      f"on {device} in {precision})")  # fmt: skip


def _stored_cpu_peak(store: str | None) -> dict | None:
    from pathlib import Path

    from scalelab.hardware import CPU_PEAK_KEY
    from scalelab.store import RunStore, is_store

    if not store or not Path(store).expanduser().is_file() or not is_store(Path(store).expanduser()):
        return None
    with RunStore.open_existing(store) as opened:
        return opened.meta(CPU_PEAK_KEY)


def hours_on(flops: float, *, hardware: str, utilisation: float, precision: str | None = None) -> float:
    """Wall-clock hours to spend ``flops`` on one ``hardware`` device (a GPU of
    :data:`scalelab.hardware.GPU_PEAKS`) at ``utilisation`` of its peak in ``precision``."""
    from scalelab import hardware as hw

    device, precision = hw.check_hardware(hardware, precision)
    if device == "cpu":
        raise InputError("hours_on: the CPU's peak is per store; use hardware_estimate(..., store=PATH)")
    return hw.hours_for(flops, device=device, precision=precision, mfu=utilisation)
