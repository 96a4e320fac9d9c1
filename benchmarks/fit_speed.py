"""How fast scalelab fits laws, against naive baselines measured in the same run.

    python benchmarks/fit_speed.py            # everything (about a minute on 2 cores)
    python benchmarks/fit_speed.py --quick    # fewer baseline replicates and groups

Prints four tables, absolute seconds and ratios, no assertions:

1. The Chinchilla joint fit on Epoch's 240 points, then 1000 bootstrap replicates
   (``param_intervals``, which runs the bootstrap), next to Epoch's published fit and
   95% intervals.
2. A naive bootstrap: scipy's L-BFGS-B with numeric gradients, one replicate at a time,
   started at the same optimum, for a sample of replicates, extrapolated to 1000.
3. Per-form cost of one fit and of 1000 bootstrap replicates on one 30-point curve.
4. ``fit --group``: 1000 groups of 8 points, form auto and a fixed form, without
   predictions, in one process (``scalelab.fitting.fit_groups``), and the same CSV through
   the real command line (``python -m scalelab fit ... --group``).
5. The same 1000 groups with predictions at three sizes (``predict=["1e5", "1e6", "1e7"]``),
   so every group's bootstrap runs: seconds in all and per group.

    python benchmarks/fit_speed.py --part groups   # parts 4 and 5 only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from scalelab import laws
from scalelab.fitting import fit_groups

REPO = Path(__file__).resolve().parents[1]
CHINCHILLA_PATHS = (REPO.parent / "shared" / "data" / "chinchilla_svg_extracted.csv",)
EPOCH = {"E": 1.817, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
EPOCH_95 = {"E": (1.769, 1.871), "A": (285.2, 743.6), "B": (1042.4, 5810.3), "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}
HUBER_DELTA = 1e-3
N_BOOT = 1000
PREDICT = ["1e5", "1e6", "1e7"]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def best_of(repeat: int, make):
    """(result, seconds) of the fastest of ``repeat`` runs of ``make()``: robust to a busy machine."""
    runs = [timed(make) for _ in range(repeat)]
    return min(runs, key=lambda r: r[1])


def rule(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 86 - len(title)))


def chinchilla_points() -> tuple[np.ndarray, np.ndarray]:
    """(N, D) and loss: D = C / (6N), the 5 highest losses dropped, as Epoch did (n = 240)."""
    path = next((p for p in CHINCHILLA_PATHS if p.is_file()), None)
    if path is None:
        sys.exit(f"no Chinchilla data at {' or '.join(map(str, CHINCHILLA_PATHS))}")
    raw = pd.read_csv(path)
    kept = raw.drop(raw["loss"].nlargest(5).index)
    N = kept["Model Size"].to_numpy(float)
    D = kept["Training FLOP"].to_numpy(float) / (6 * N)
    return np.column_stack([N, D]), kept["loss"].to_numpy(float)


# -- the naive baseline: one scipy minimize per replicate, numeric gradients ------------------
def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def naive_objective(v: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Huber on log residuals, summed with weights; v = (E, log A, log B, alpha, beta)."""
    E, logA, logB, alpha, beta = v
    pred = E + np.exp(logA - alpha * np.log(x[:, 0])) + np.exp(logB - beta * np.log(x[:, 1]))
    if np.any(pred <= 0) or not np.all(np.isfinite(pred)):
        return 1e6
    return float(np.sum(w * huber(np.log(pred) - np.log(y))))


def naive_bootstrap(x, y, start, n_rep: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """``n_rep`` replicate fits, each a separate L-BFGS-B (no gradient given: scipy differences)."""
    rng = np.random.default_rng(seed)
    bounds = [(0.0, float(y.min())), (-70, 70), (-70, 70), (0.0, 3.0), (0.0, 3.0)]
    out = []
    begin = time.perf_counter()
    for _ in range(n_rep):
        w = rng.multinomial(len(y), np.full(len(y), 1 / len(y))).astype(float)
        res = minimize(naive_objective, start, args=(x, y, w), method="L-BFGS-B", bounds=bounds)
        E, logA, logB, alpha, beta = res.x
        out.append([E, np.exp(logA), np.exp(logB), alpha, beta])
    return np.array(out), time.perf_counter() - begin


# -- groups --------------------------------------------------------------------------------
def synthetic_groups(n_groups: int, n_points: int = 8, seed: int = 0) -> pd.DataFrame:
    """``n_groups`` saturating curves, x = 100 * 2^k, with 3% multiplicative noise."""
    rng = np.random.default_rng(seed)
    x = 100.0 * 2.0 ** np.arange(n_points)
    E = rng.uniform(0.02, 0.3, n_groups)
    beta = rng.uniform(0.2, 0.8, n_groups)
    B = rng.uniform(0.3, 2.0, n_groups) * x[0] ** beta
    y = (E[:, None] + B[:, None] * x[None, :] ** -beta[:, None]) * np.exp(rng.normal(0, 0.03, (n_groups, n_points)))
    return pd.DataFrame({"g": np.repeat(np.arange(n_groups), n_points), "n": np.tile(x, n_groups), "loss": y.ravel()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer baseline replicates and groups")
    parser.add_argument("--groups", type=int, default=None, help="groups for the --group benchmark (default 1000)")
    parser.add_argument("--part", choices=["all", "groups"], default="all", help="groups: only the fit --group timings (parts 4 and 5)")
    args = parser.parse_args()
    n_naive = 10 if args.quick else 50
    n_groups = args.groups or (200 if args.quick else 1000)
    print(f"scalelab fit speed — {os.cpu_count()} CPUs visible, numpy {np.__version__}, python {sys.version.split()[0]}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (a busy machine slows every timing; ratios are measured side by side)")
    if args.part == "groups":
        run_groups(n_groups)
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
        return

    # 1. Chinchilla ------------------------------------------------------------------------
    x, y = chinchilla_points()
    laws.fit(x[:40], y[:40], form="chinchilla", n_boot=10)  # warm caches and imports once
    law, t_fit = best_of(3, lambda: laws.fit(x, y, form="chinchilla", n_boot=N_BOOT))
    start = np.array([law.params["E"], np.log(law.params["A"]), np.log(law.params["B"]), law.params["alpha"], law.params["beta"]])
    # scalelab's bootstrap and the naive one, interleaved three times and each timed at its
    # best, so that a busy machine slows both alike. The bootstrap runs on first use and is
    # cached, so each scalelab timing starts from a fresh fit.
    boot_times, naive_runs = [], []
    for _ in range(3):
        fresh = laws.fit(x, y, form="chinchilla", n_boot=N_BOOT)
        spans, t = timed(fresh.param_intervals, 0.95)
        boot_times.append(t)
        naive_runs.append(naive_bootstrap(x, y, start, n_naive))
    t_boot = min(boot_times)
    naive, t_naive = min(naive_runs, key=lambda r: r[1])
    law = fresh
    rule(f"1. Chinchilla joint fit, n = {law.n_points}, Huber δ = {law.delta:g}, {N_BOOT} bootstrap replicates")
    print(f"{'param':<7}{'scalelab':>12}{'95% bootstrap interval':>28}{'Epoch':>12}{'Epoch 95%':>24}  inside Epoch's 95%?")
    for name in ("E", "A", "B", "alpha", "beta"):
        lo, hi = spans[name]
        elo, ehi = EPOCH_95[name]
        inside = "yes" if elo <= law.params[name] <= ehi else "NO"
        print(f"{name:<7}{law.params[name]:>12.4g}{f'[{lo:.4g}, {hi:.4g}]':>28}{EPOCH[name]:>12.4g}{f'[{elo:.4g}, {ehi:.4g}]':>24}  {inside}")
    print(f"point fit {t_fit:.3f} s;  {N_BOOT} bootstrap replicates {t_boot:.2f} s;  total {t_fit + t_boot:.2f} s  (best of 3)")

    # 2. the naive bootstrap ------------------------------------------------------------------
    per_rep = t_naive / n_naive
    rule("2. bootstrap: scalelab vs naive scipy L-BFGS-B (numeric gradients, one replicate at a time)")
    print(f"{'method':<58}{'replicates':>11}{'seconds':>10}{'per 1000':>10}")
    print(f"{'scalelab (batched, started at the optimum)':<58}{N_BOOT:>11}{t_boot:>10.2f}{t_boot / N_BOOT * 1000:>10.2f}")
    print(f"{'naive L-BFGS-B, started at the same optimum':<58}{n_naive:>11}{t_naive:>10.2f}{per_rep * 1000:>10.2f}  (extrapolated)")
    print(f"speed-up of scalelab's bootstrap: {per_rep * 1000 / t_boot:.1f}x  (each the best of 3 interleaved runs; all runs: "
          f"scalelab {', '.join(f'{t:.2f}' for t in boot_times)} s, naive {', '.join(f'{r[1]:.2f}' for r in naive_runs)} s)")
    med = np.median(naive, axis=0)
    scalelab_med = np.median(law.bootstrap_params(), axis=0)
    print("replicate medians   " + "  ".join(f"{n}: naive {a:.4g} / scalelab {b:.4g}" for n, a, b in zip(("E", "A", "B", "alpha", "beta"), med, scalelab_med)))

    # 3. per form ------------------------------------------------------------------------------
    rule(f"3. one 30-point curve (10 sizes x 3 seeds, 3% noise): fit and {N_BOOT} bootstrap replicates, per form")
    xc = np.repeat(np.geomspace(1e2, 1e5, 10), 3)
    yc = (0.05 + 3.0 * xc**-0.5) * np.exp(np.random.default_rng(0).normal(0, 0.03, len(xc)))
    print(f"{'form':<12}{'chosen':<12}{'fit s':>8}{'bootstrap s':>13}{'boot / fit':>12}")
    for form in ("power", "saturating", "m3", "m4", "bnsl", "auto"):
        fitted, t_f = timed(laws.fit, xc, yc, form=form, error_rate=True, n_boot=N_BOOT)
        _, t_b = timed(fitted.interval, [1e6], 0.8)
        print(f"{form:<12}{fitted.form:<12}{t_f:>8.3f}{t_b:>13.3f}{t_b / t_f:>12.1f}")

    run_groups(n_groups)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


def run_groups(n_groups: int) -> None:
    """Parts 4 and 5: many small groups through ``fit_groups``, without and with predictions."""
    table = synthetic_groups(n_groups)
    rule(f"4. fit with --group: {n_groups} groups x 8 points, no predictions, one process")
    print(f"{'how':<56}{'form':<12}{'seconds':>9}{'ms / group':>12}{'errors':>8}  forms chosen")
    for form in ("auto", "saturating"):
        results, t_g = timed(fit_groups, table, label="bench", x_cols=["n"], y_col="loss", group="g", form=form)
        chosen = pd.Series([r.get("form", "error") for r in results]).value_counts().to_dict()
        errors = sum("error" in r for r in results)
        print(f"{'scalelab.fitting.fit_groups (in process)':<56}{form:<12}{t_g:>9.2f}{t_g / n_groups * 1000:>12.1f}{errors:>8}  {chosen}")
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "groups.csv"
        table.to_csv(csv_path, index=False)
        for form in ("auto", "saturating"):
            cmd = [sys.executable, "-m", "scalelab", "fit", str(csv_path), "--x", "n", "--y", "loss", "--group", "g", "--form", form, "--format", "json"]
            begin = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            t_cli = time.perf_counter() - begin
            note = "" if proc.returncode == 0 else f"  exit {proc.returncode}: {proc.stderr.strip()[:80]}"
            print(f"{'python -m scalelab fit CSV --group g (whole command)':<56}{form:<12}{t_cli:>9.2f}{t_cli / n_groups * 1000:>12.1f}{'':>8}{note}")
    # With predictions every group needs its bootstrap (1000 replicates): all groups' replicates
    # are refitted together (scalelab.laws.law.compute_bootstraps), which is what this measures.
    rule(f"5. fit with --group and --predict at 3 sizes: {n_groups} groups x 8 points, {N_BOOT} bootstrap replicates each")
    for form in ("auto", "saturating"):
        results, t_p = timed(fit_groups, table, label="bench", x_cols=["n"], y_col="loss", group="g", form=form,
                             predict=PREDICT, n_boot=N_BOOT)  # fmt: skip
        errors = sum("error" in r for r in results)
        print(f"{'scalelab.fitting.fit_groups, predict ' + ' '.join(PREDICT):<56}{form:<12}{t_p:>9.2f} s{t_p / n_groups * 1000:>10.1f} ms/group"
              f"{errors:>6} errors   (bar: 1000 groups under 60 s)")  # fmt: skip


if __name__ == "__main__":
    main()
