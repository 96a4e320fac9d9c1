"""Peak throughput of devices and the model FLOP utilisation (MFU) of runs.

* GPUs: dense peaks from vendor data sheets (SXM parts where there are several; no
  sparsity), per precision: ``fp32`` (plain CUDA cores), ``tf32`` and ``bf16`` (tensor
  cores).
* This machine's CPU: measured once per run store (a large matmul in each precision
  the CPU runs natively) and kept in the store, so MFU and hours do not depend on how
  busy the machine was when someone asked.

A run's MFU is its measured training FLOP/s over the peak of its device in its
precision; on a CPU, over the share of the measured peak its threads had.
"""

from __future__ import annotations

import math
import re
import time

from scalelab.errors import InputError, did_you_mean

# FLOP/s, dense. A100 SXM, H100 SXM and H200 SXM, L4, GeForce RTX 4090, V100 SXM2 (no bf16).
GPU_PEAKS: dict[str, dict[str, float]] = {
    "a100": {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12},
    "h100": {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12},
    "h200": {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12},
    "l4": {"fp32": 30.3e12, "tf32": 60e12, "bf16": 121e12},
    "rtx4090": {"fp32": 82.6e12, "tf32": 82.6e12, "bf16": 165.2e12},
    "v100": {"fp32": 15.7e12},
}
# How each part names itself in torch.cuda.get_device_name (lower case), most specific first.
_NAME_PATTERNS = tuple((re.compile(rf"\b{p}\b"), cls) for p, cls in (("h200", "h200"), ("h100", "h100"), ("a100", "a100"),
                                                                      ("(rtx )?4090", "rtx4090"), ("v100", "v100"), ("l4", "l4")))  # fmt: skip
PRECISIONS = ("fp32", "tf32", "bf16")
# Where a study has no runs on the device asked about: a typical MFU of a well-tuned
# dense training run, and the range it commonly falls in, carried into the hours.
DEFAULT_MFU = 0.40
DEFAULT_MFU_RANGE = (0.25, 0.55)
CPU_PEAK_KEY = "cpu_peak"


def hardware_names() -> list[str]:
    return ["cpu", *GPU_PEAKS]


def check_hardware(name: str, precision: str | None = None) -> tuple[str, str]:
    """``(device class, precision)`` for ``--hardware NAME [--precision P]``, or an InputError.

    The precision defaults to bf16 on GPUs that have it and fp32 on the CPU.
    """
    key = name.lower().replace(" ", "").replace("-", "")
    if key not in hardware_names():
        raise InputError(f"--hardware {name!r}: unknown{did_you_mean(name, hardware_names())}; known: {', '.join(hardware_names())}")
    if precision is not None and precision not in PRECISIONS:
        raise InputError(f"--precision {precision!r}: unknown; known: {', '.join(PRECISIONS)}")
    if key == "cpu":
        precision = precision or "fp32"
        if precision == "tf32":
            raise InputError("--precision tf32: a CPU has no TF32; use fp32 or bf16")
        return key, precision
    precision = precision or ("bf16" if "bf16" in GPU_PEAKS[key] else "fp32")
    if precision not in GPU_PEAKS[key]:
        raise InputError(f"--precision {precision}: {key} has no {precision} peak; known for it: {', '.join(GPU_PEAKS[key])}")
    return key, precision


def device_class(device: str | None, device_name: str | None) -> str | None:
    """``"cpu"``, a key of :data:`GPU_PEAKS`, or None for a device not in the table."""
    if device is None or (isinstance(device, float) and math.isnan(device)):
        return None
    if str(device).startswith("cpu"):
        return "cpu"
    name = str(device_name or "").lower()
    return next((cls for pattern, cls in _NAME_PATTERNS if pattern.search(name)), None)


def run_precision(dtype: str | None) -> str:
    """The precision of a run from its recorded dtype."""
    return "bf16" if str(dtype) == "bfloat16" else "fp32"


def measure_cpu_peak(seconds: float = 0.3) -> dict:
    """This machine's matmul peak: FLOP/s of a large matmul with torch's threads, in fp32
    and (where oneDNN runs it natively) bf16, with the thread count it was measured at."""
    import torch

    from scalelab.train.torch_trainer import cpu_has_native_bf16

    def rate(dtype) -> float:
        a = torch.randn(1024, 1024, dtype=dtype)
        b = torch.randn(1024, 1024, dtype=dtype)
        a @ b  # warm up
        flops, start = 0.0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            flops += 2 * 1024**3
        return flops / (time.perf_counter() - start)

    peak = {"fp32": rate(torch.float32), "threads": torch.get_num_threads(), "measured_at": time.time()}
    peak["bf16"] = rate(torch.bfloat16) if cpu_has_native_bf16() else peak["fp32"]
    return peak


def peak_flops(device: str, precision: str, *, cpu_peak: dict | None = None, threads: int | None = None) -> float | None:
    """Peak FLOP/s of a device class in a precision; on the CPU, the share of ``cpu_peak``
    that ``threads`` threads have (None without a measured peak)."""
    if device == "cpu":
        if not cpu_peak:
            return None
        share = 1.0 if not threads else min(1.0, float(threads) / float(cpu_peak.get("threads") or threads))
        return float(cpu_peak.get(precision) or cpu_peak["fp32"]) * share
    peaks = GPU_PEAKS.get(device, {})
    return peaks.get(precision) or peaks.get("fp32")


def run_mfu(metrics: dict, *, cpu_peak: dict | None) -> float | None:
    """A run's MFU from its recorded metrics (None when its device or throughput is unknown)."""
    achieved = metrics.get("flops_per_s")
    cls = device_class(metrics.get("device"), metrics.get("device_name"))
    if cls is None or not isinstance(achieved, (int, float)) or not math.isfinite(achieved) or achieved <= 0:
        return None
    peak = peak_flops(cls, run_precision(metrics.get("dtype")), cpu_peak=cpu_peak, threads=metrics.get("threads"))
    return float(achieved / peak) if peak else None


def hours_for(flops: float, *, device: str, precision: str, mfu: float, cpu_peak: dict | None = None) -> float:
    """Wall-clock hours to spend ``flops`` on one ``device`` at ``mfu`` of its peak."""
    peak = peak_flops(device, precision, cpu_peak=cpu_peak)
    if peak is None:
        raise InputError("--hardware cpu: this store holds no measured CPU peak (it is measured on the first `scalelab run`)")
    return flops / (peak * mfu) / 3600.0
