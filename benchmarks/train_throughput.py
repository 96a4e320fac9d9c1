"""Training throughput: scalelab's trainer against a naive PyTorch loop, side by side.

    python benchmarks/train_throughput.py              # about 3 min on 2 cores
    python benchmarks/train_throughput.py --quick      # fewer samples and repeats
    python benchmarks/train_throughput.py --device cuda --batch-size 512

Prints, no assertions:

1. **Throughput** of the seed CNN (122,570 parameters at width 1) on CIFAR-shaped data
   (3×32×32, 10 classes, scalelab's ``synthetic`` dataset), one epoch per measurement:
   - the naive loop: a ``DataLoader`` over a ``TensorDataset``, batch 64, fp32, default
     memory format, ``loss.item()`` every step, ``zero_grad()``;
   - scalelab's trainer (``train_cell``) in fp32 and in bf16 (both channels_last).
   The three are interleaved in one process, ``--repeats`` times each (default 3), and the
   median is reported: samples/s, the ratio to the naive loop, achieved GFLOP/s (the
   FLOPs scalelab measures per sample × samples/s), and that as a share of this
   machine's matmul peak measured in the same run (fp32 and bf16 GEMM, 2048²).
2. **Accuracy parity** on digits (seed CNN, equal epochs, three seeds): the mean final
   test error of the naive loop, scalelab fp32 and scalelab bf16.
3. With ``--profile``: where a training step's time goes, from ``torch.profiler`` over
   one epoch of scalelab's trainer in fp32 and in bf16, grouped by kind of operator
   (convolutions forward and backward, pooling, ReLU, the optimizer, the rest), with the
   convolutions' share of the matmul peak. This is what bounds the bf16 speed-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from scalelab.data import load_dataset, training_view
from scalelab.models import build_model
from scalelab.spec import parse_spec
from scalelab.train.torch_trainer import TRAINING_LOOP_RANGE, cpu_has_native_bf16, resolve_device, train_cell


def cell_config(data: dict, *, precision: str, batch_size: int, epochs: int, seed: int, device: str) -> dict:
    raw = {
        "name": "bench",
        "data": data,
        "model": {"family": "seed_cnn"},
        "train": {"epochs": epochs, "batch_size": batch_size, "precision": precision, "seed": seed, "device": device, "lr": 1e-3},
    }
    (cell,) = parse_spec(raw, source="benchmark").cells
    return cell.config


def naive_loop(config: dict, dataset, device: torch.device) -> tuple[float, float]:
    """The loop most tutorials write. Returns (samples/s over the training epochs, test error)."""
    view = training_view(dataset, config["data"])
    train = TensorDataset(torch.from_numpy(view.X_train), torch.from_numpy(view.y_train))
    loader = DataLoader(train, batch_size=config["train"]["batch_size"], shuffle=True)
    model = build_model(config["model"], view.input_shape, view.n_classes, seed=config["train"]["seed"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["train"]["lr"])
    model.train()
    seen = 0
    start = time.perf_counter()
    for _ in range(config["train"]["epochs"]):
        running = 0.0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            running += loss.item()
            seen += len(yb)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        X_test = torch.from_numpy(view.X_test).to(device)
        wrong = sum(int((model(X_test[i : i + 1024]).argmax(1) != torch.from_numpy(view.y_test[i : i + 1024]).to(device)).sum())
                    for i in range(0, len(view.y_test), 1024))  # fmt: skip
    return seen / elapsed, wrong / len(view.y_test)


def gemm_peak(dtype: torch.dtype, device: torch.device, seconds: float = 1.0) -> float:
    """FLOP/s of a 2048² matrix product in ``dtype`` on ``device``."""
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    b = torch.randn(2048, 2048, device=device, dtype=dtype)
    a @ b
    flops, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        flops += 2 * 2048**3
    if device.type == "cuda":
        torch.cuda.synchronize()
    return flops / (time.perf_counter() - start)


# Operator kinds, matched on aten names; the first match wins.
OP_KINDS = (
    ("convolution", ("convolution", "conv2d")),
    ("matmul (dense layers)", ("aten::mm", "aten::addmm", "aten::bmm")),
    ("pooling", ("max_pool",)),
    ("relu", ("clamp_min", "threshold", "relu")),
    ("zero-fill", ("aten::fill_", "aten::zero_")),
    ("optimizer", ("lerp_", "addcdiv_", "sqrt", "aten::mul_", "aten::add_", "aten::div", "foreach")),
    ("dtype casts", ("_to_copy", "aten::copy_")),
)


def convolution_flops_share(config: dict, dataset, device: torch.device) -> float:
    """The share of a training step's counted FLOPs that are convolutions (forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    view = training_view(dataset, config["data"])
    model = build_model(config["model"], view.input_shape, view.n_classes, seed=0).to(device)
    X = torch.from_numpy(view.X_train[:64]).to(device)
    y = torch.from_numpy(view.y_train[:64]).to(device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(X), y).backward()
    counts = counter.get_flop_counts()["Global"]
    conv = sum(n for op, n in counts.items() if "convolution" in str(op))
    return conv / sum(counts.values())


def profile_step_time(configs: dict, dataset, device: torch.device, flops_per_sample: float, peaks: dict, naive: float) -> None:
    """One profiled epoch of the trainer per precision: milliseconds per step by operator kind."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    print("\n== 3. where a training step's time goes (torch.profiler, self time per operator kind) ==")
    for name in ("scalelab fp32", "scalelab bf16"):
        config = configs[name]
        with profile(activities=activities) as prof:
            metrics = train_cell(config, dataset).metrics
        steps = metrics["steps"]
        # Only what ran inside the trainer's training loop: not the FLOP count, not evaluation.
        events = prof.events()
        (loop,) = [e for e in events if e.name == TRAINING_LOOP_RANGE]
        by_kind: dict[str, float] = {}
        for event in events:
            if event is loop or event.time_range.start < loop.time_range.start or event.time_range.end > loop.time_range.end:
                continue
            kind = next((k for k, needles in OP_KINDS if any(n in event.name for n in needles)), "other")
            self_us = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
            by_kind[kind] = by_kind.get(kind, 0.0) + self_us
        total = sum(by_kind.values())
        peak = peaks["bf16" if "bf16" in name else "fp32"]
        conv_flops_share = convolution_flops_share(config, dataset, device)
        print(f"   {name}: {total / steps / 1e3:.2f} ms of operator time per step of {metrics['n_train'] // steps} samples "
              f"({metrics['train_s'] / steps * 1e3:.2f} ms wall, under the profiler)")  # fmt: skip
        for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
            line = f"      {kind:<24}{us / steps / 1e3:>7.2f} ms {us / total:>6.1%}"
            if kind == "convolution":
                achieved = conv_flops_share * flops_per_sample * (metrics["n_train"] / steps) / (us / steps / 1e6)
                line += f"   ~{achieved / 1e9:.0f} GFLOP/s, {achieved / peak:.0%} of the {peak / 1e9:.0f} GFLOP/s matmul peak"
            print(line)
        needed = (metrics["n_train"] / steps) / (3 * naive) * 1e3
        print(f"      a 3x speed-up over the naive loop needs {needed:.2f} ms per step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats of each setup (default 3)")
    parser.add_argument("--samples", type=int, default=None, help="training samples per epoch (default 6144)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--profile", action="store_true", help="also break a training step down by operator (torch.profiler)")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 3)
    samples = args.samples or (2048 if args.quick else 6144)
    device = resolve_device(args.device)

    print(f"scalelab train throughput — device {device}, {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"python {sys.version.split()[0]}")  # fmt: skip
    print(f"bf16: {'native' if device.type == 'cuda' or cpu_has_native_bf16() else 'emulated'} on this {device.type}; "
          f"load average before: {os.getloadavg()[0]:.2f}")  # fmt: skip

    # -- 1. throughput ---------------------------------------------------------------------
    data = {"name": "synthetic", "n_samples": int(samples * 1.25), "shape": [3, 32, 32], "n_classes": 10, "test_size": 0.2}
    configs = {
        "naive loop (DataLoader, fp32)": cell_config(data, precision="fp32", batch_size=args.batch_size, epochs=1, seed=0, device=str(device)),
        "scalelab fp32": cell_config(data, precision="fp32", batch_size=args.batch_size, epochs=1, seed=0, device=str(device)),
        "scalelab bf16": cell_config(data, precision="bf16", batch_size=args.batch_size, epochs=1, seed=0, device=str(device)),
    }
    dataset = load_dataset(configs["scalelab fp32"]["data"])
    rates: dict[str, list[float]] = {name: [] for name in configs}
    flops_per_sample = None
    train_cell(configs["scalelab fp32"], dataset)  # warm-up: lazy imports, allocator, oneDNN kernels
    naive_loop(configs["naive loop (DataLoader, fp32)"], dataset, device)
    for _ in range(repeats):
        for name, config in configs.items():
            if name.startswith("naive"):
                rates[name].append(naive_loop(config, dataset, device)[0])
            else:
                metrics = train_cell(config, dataset).metrics
                rates[name].append(metrics["samples_per_s"])
                flops_per_sample = metrics["flops_per_sample"]
    peaks = {"fp32": gemm_peak(torch.float32, device), "bf16": gemm_peak(torch.bfloat16, device)}
    print(f"\n== 1. seed CNN on 3x32x32, {samples} samples per epoch, batch {args.batch_size}, median of {repeats} interleaved runs ==")
    print(f"   measured training FLOPs per sample: {flops_per_sample / 1e6:.2f} M; matmul peak here: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")  # fmt: skip
    naive = statistics.median(rates["naive loop (DataLoader, fp32)"])
    print(f"   {'setup':<32}{'samples/s':>11}{'vs naive':>10}{'GFLOP/s':>9}{'% of peak':>11}   all runs (samples/s)")
    for name, values in rates.items():
        median = statistics.median(values)
        gflops = median * flops_per_sample / 1e9
        peak = peaks["bf16" if "bf16" in name else "fp32"]
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"   {name:<32}{median:>11.0f}{median / naive:>9.2f}x{gflops:>9.1f}{gflops * 1e9 / peak:>10.1%}   {runs}")

    # -- 2. accuracy parity ----------------------------------------------------------------
    epochs = 5 if args.quick else 15
    seeds = (0, 1, 2)
    digits = {"name": "digits", "test_size": 0.25}
    errors: dict[str, list[float]] = {"naive loop (DataLoader, fp32)": [], "scalelab fp32": [], "scalelab bf16": []}
    digits_set = load_dataset(cell_config(digits, precision="fp32", batch_size=64, epochs=1, seed=0, device=str(device))["data"])
    for seed in seeds:
        for name in errors:
            precision = "bf16" if "bf16" in name else "fp32"
            config = cell_config(digits, precision=precision, batch_size=64, epochs=epochs, seed=seed, device=str(device))
            if name.startswith("naive"):
                errors[name].append(naive_loop(config, digits_set, device)[1])
            else:
                errors[name].append(train_cell(config, digits_set).metrics["test_error"])
    print(f"\n== 2. accuracy parity: seed CNN on digits, {epochs} epochs, batch 64, seeds {list(seeds)} ==")
    reference = statistics.mean(errors["naive loop (DataLoader, fp32)"])
    print(f"   {'setup':<32}{'mean test error':>16}{'vs naive':>12}   per seed")
    for name, values in errors.items():
        mean = statistics.mean(values)
        print(f"   {name:<32}{mean:>15.2%}{(mean - reference) * 100:>+10.2f} pt   " + ", ".join(f"{v:.2%}" for v in values))
    if args.profile:
        profile_step_time(configs, dataset, device, flops_per_sample, peaks, naive)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
