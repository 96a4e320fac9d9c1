"""Seed batching: 8 seeds of a cell trained together (``batch_seeds = true``) against one
after another.

    python benchmarks/seed_batching.py        # about 1 min on 2 cores

Both sides use scalelab's own trainer on the same data in the same process: the
sequential side calls ``run_cell`` once per seed (what a worker does without
``batch_seeds``), the batched side calls ``run_seed_group`` once for all 8. They run
interleaved, 3 repeats each, and the median wall time is reported, with the ratio and
the largest difference between a seed's batched and separate test loss.

Workloads: a small MLP on digits (the target: at least 2x for 8 seeds), a wider MLP on
mnist1d, and the source document's CNN at a quarter width on digits.

Prints, no assertions.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scalelab.data import load_dataset
from scalelab.spec import parse_spec
from scalelab.train.cell import run_cell, run_seed_group

SEEDS = list(range(8))
WORKLOADS = {
    "mlp w=0.5 d=2, digits": ({"name": "digits"}, {"family": "mlp", "width": 0.5, "depth": 2}),
    "mlp w=2 d=3, mnist1d 4000": ({"name": "mnist1d", "n_samples": 4000}, {"family": "mlp", "width": 2, "depth": 3}),
    "seed_cnn w=0.25, digits": ({"name": "digits"}, {"family": "seed_cnn", "width": 0.25}),
}


def seed_configs(data: dict, model: dict, epochs: int) -> list[dict]:
    raw = {
        "name": "seed-batching",
        "data": data,
        "model": model,
        "train": {"epochs": epochs, "batch_size": 64, "device": "cpu", "batch_seeds": True},
        "grid": {"seed": SEEDS},
    }
    return [cell.config for cell in parse_spec(raw).cells]


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure(configs: list[dict], repeats: int) -> dict:
    dataset = load_dataset(configs[0]["data"])
    run_cell(configs[0], dataset)  # warm-up: lazy imports and allocator, for both sides
    run_seed_group(configs[:2], dataset)
    sequential_s, batched_s, gap = [], [], 0.0
    for _ in range(repeats):
        seconds, separate = timed(lambda: [run_cell(config, dataset) for config in configs])
        sequential_s.append(seconds)
        seconds, together = timed(lambda: run_seed_group(configs, dataset))
        batched_s.append(seconds)
        for a, b in zip(separate, together):
            gap = max(gap, abs(a.metrics["test_loss"] - b.metrics["test_loss"]) / a.metrics["test_loss"])
    samples = sum(o.metrics["n_train"] * o.metrics["epochs"] for o in together)
    return {
        "sequential_s": statistics.median(sequential_s),
        "batched_s": statistics.median(batched_s),
        "samples": samples,
        "n_params": together[0].metrics["n_params"],
        "gap": gap,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (a pool worker on a 2-core machine has 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"seed batching: {len(SEEDS)} seeds, {args.epochs} epochs, batch 64, CPU, {args.threads} thread(s), median of {args.repeats}")
    header = f"{'workload':<28}{'params':>9}{'sequential s':>14}{'batched s':>11}{'seq samples/s':>15}{'batched samples/s':>19}{'speed-up':>10}{'max rel Δ test loss':>21}"
    print(header)
    print("-" * len(header))
    for name, (data, model) in WORKLOADS.items():
        r = measure(seed_configs(data, model, args.epochs), args.repeats)
        print(
            f"{name:<28}{r['n_params']:>9,}{r['sequential_s']:>14.2f}{r['batched_s']:>11.2f}"
            f"{r['samples'] / r['sequential_s']:>15,.0f}{r['samples'] / r['batched_s']:>19,.0f}"
            f"{r['sequential_s'] / r['batched_s']:>9.2f}x{r['gap']:>21.1e}"
        )


if __name__ == "__main__":
    main()
