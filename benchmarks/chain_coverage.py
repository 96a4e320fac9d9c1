"""How often the two-step chain's intervals hold a new run's metric beyond the data.

Each case draws a true Chinchilla loss L(N, D) = E + A/N^α + B/D^β and a true link from
the loss to an error rate (a bounded sigmoid), runs a grid of 4 model sizes x 5 data
sizes with two seeds per point (1.5% multiplicative noise on the loss, 0.5 to 1 point of
noise on the error), fits the chain (``scalelab.laws.link.fit_chain``) on every point
but the largest, and asks whether a new run at 2x and 8x the largest N·D fitted lands
inside the chain's 80% interval.

    python benchmarks/chain_coverage.py [--cases 40] [--bootstrap 300] [--level 0.8]

Prints the coverage at each distance and overall (the bar: at least 70% for 80%
intervals), the mean interval width, and the time taken.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from scalelab.laws.link import fit_chain

SIZES = np.geomspace(1e5, 8e5, 4)
DATA = np.geomspace(2e6, 3.2e7, 5)
DISTANCES = (2.0, 8.0)


def draw_case(rng: np.random.Generator) -> dict:
    alpha, beta = rng.uniform(0.25, 0.45), rng.uniform(0.25, 0.45)
    E = rng.uniform(1.5, 2.5)
    A = rng.uniform(0.5, 2.0) * SIZES[0] ** alpha
    B = rng.uniform(0.5, 2.0) * DATA[0] ** beta
    loss = lambda n, d: E + A / n**alpha + B / d**beta
    span = loss(SIZES[0], DATA[0]) - loss(SIZES[-1], DATA[-1])
    link = {"lo": rng.uniform(0.02, 0.1), "hi": rng.uniform(0.8, 0.9), "k": rng.uniform(2.0, 6.0) / span,
            "L0": loss(SIZES[-1], DATA[-1]) + rng.uniform(0.3, 0.9) * span}  # fmt: skip
    return {"loss": loss, "link": link, "metric_noise": rng.uniform(0.005, 0.01)}


def error_of(case: dict, loss: np.ndarray) -> np.ndarray:
    p = case["link"]
    return p["lo"] + (p["hi"] - p["lo"]) / (1 + np.exp(-p["k"] * (loss - p["L0"])))


def new_run(case: dict, n: float, d: float, rng: np.random.Generator) -> float:
    loss = case["loss"](n, d) * math.exp(rng.normal(0, 0.015))
    return float(np.clip(error_of(case, loss) + rng.normal(0, case["metric_noise"]), 0, 1))


def run_case(case: dict, rng: np.random.Generator, *, n_boot: int, level: float) -> list[tuple[float, bool, float]]:
    rows = []
    for n in SIZES:
        for d in DATA:
            for _ in range(2):
                loss = case["loss"](n, d) * math.exp(rng.normal(0, 0.015))
                rows.append((n, d, loss, float(np.clip(error_of(case, loss) + rng.normal(0, case["metric_noise"]), 0, 1))))
    rows = np.array(rows)
    largest = rows[:, 0] * rows[:, 1] >= SIZES[-1] * DATA[-1] * 0.999
    fit_rows = rows[~largest]
    chain = fit_chain(fit_rows[:, :2], fit_rows[:, 2], fit_rows[:, 3], form="chinchilla", error_rate=True, n_boot=n_boot)
    top = fit_rows[:, 0].max() * fit_rows[:, 1].max()
    out = []
    for distance in DISTANCES:
        scale = math.sqrt(distance * top / (SIZES[-1] * DATA[-1]))  # grow N and D alike
        x = np.array([[SIZES[-1] * scale, DATA[-1] * scale]])
        lo, hi = chain.interval(x, level)
        truth = new_run(case, x[0, 0], x[0, 1], rng)
        out.append((distance, bool(lo[0] <= truth <= hi[0]), float(hi[0] - lo[0])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--bootstrap", type=int, default=300)
    parser.add_argument("--level", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    results = []
    for _ in range(args.cases):
        results += run_case(draw_case(rng), rng, n_boot=args.bootstrap, level=args.level)
    elapsed = time.perf_counter() - start
    print(f"two-step chain (N, D) -> loss -> error: {args.cases} cases, {args.level:.0%} intervals, {elapsed:.1f} s")
    for distance in DISTANCES:
        hits = [ok for dist, ok, _ in results if dist == distance]
        widths = [w for dist, _, w in results if dist == distance]
        print(f"  {distance:g}x beyond the largest N·D fitted: coverage {np.mean(hits):.0%} ({sum(hits)}/{len(hits)}), "
              f"mean width {np.mean(widths) * 100:.2f} points")  # fmt: skip
    print(f"  overall: {np.mean([ok for _, ok, _ in results]):.0%} (bar: at least 70%)")


if __name__ == "__main__":
    main()
