"""Are scalelab's intervals honest, and does auto beat the fixed forms when extrapolating?

    python benchmarks/law_calibration.py                  # real curves at 2x and 8x (about 5 min on 2 cores)
    python benchmarks/law_calibration.py --part all       # and the two parts below
    python benchmarks/law_calibration.py --part coverage  # or --part backtest
    python benchmarks/law_calibration.py --curves DIR     # learning-curve CSVs elsewhere

Prints tables, no assertions.

0. **Real curves at 2x and 8x** (the default, :func:`run_real`): auto's 80% interval
   coverage and every method's median relative error on the curves of
   ``benchmarks/curves`` and ``../shared/data/curves`` (pretraining, nanoGPT widths,
   double descent), fitting on sizes up to 1/2 or 1/8 of the largest.

1. **Interval coverage on synthetic curves.** Curves drawn from power, saturating, M3,
   M4 (an error rate, chance level 1) and BNSL with random parameters, 3 seeds per size,
   at two noise levels. Sizes run 128..131072 (a factor 2 apart); each law is fitted on
   sizes up to 1/8 of the largest and predicts the largest. A held-out truth is a fresh
   run there (the law's value times new noise), the thing a prediction interval is for.
   Reports the fraction inside the 50%, 80% and 95% intervals, for the true form and for
   auto, and the median |log error| of the point prediction.

2. **A backtest table on real learning curves.** Every CSV in ``benchmarks/curves/``
   (``scalelab runs STUDY --format csv``). A curve is one combination of the study's grid
   keys other than ``data_fraction`` and ``seed`` (so one (study, family, width)), with
   x = ``n_train`` and y = ``test_error``, every seed a point. Protocol
   (:func:`extrapolation_backtest`): fit on n_train <= largest / 8, predict the largest.
   Methods: the last observed value (the mean over seeds at the largest fitted size),
   power (M1), saturating (M2), m3, m4, bnsl and auto.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from scalelab import laws
from scalelab.errors import InputError

CURVES_DIR = Path(__file__).resolve().parent / "curves"
LAW_METHODS = ("power", "saturating", "m3", "m4", "bnsl", "auto")
METHODS = ("last", *LAW_METHODS)
LEVELS = (0.5, 0.8, 0.95)
N_BOOT = 1000


# -- the protocol, reusable ------------------------------------------------------------------
def extrapolation_backtest(x, y, *, methods=METHODS, ratio: float = 8.0, level: float = 0.8, error_rate: bool = True, n_boot: int = N_BOOT) -> dict:
    """Fit on x <= max(x) / ``ratio``, predict at max(x); one result per method.

    ``x`` and ``y`` hold every run (seeds are repeated x values). The truth is the mean of
    ``y`` over the runs at the largest x; coverage counts those runs inside the ``level``
    prediction interval (a prediction interval is for a new run). Method ``"last"`` predicts
    the mean over seeds at the largest fitted x. Returns ``{method: {"pred", "abs_error",
    "rel_error", "covered", "chosen", "error"}}`` plus ``"_truth"``, ``"_n_fit"``, ``"_x"``.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    x_max = x.max()
    # Sizes made from fractions round per class (1/8 of 1347 may be 170): 2% slack.
    fit_mask = x <= x_max / ratio * 1.02
    held = y[x == x_max]
    truth = float(held.mean())
    out = {"_truth": truth, "_n_fit": int(fit_mask.sum()), "_x": float(x_max)}
    for method in methods:
        row = {"pred": math.nan, "abs_error": math.nan, "rel_error": math.nan, "covered": math.nan, "chosen": None, "error": None}
        try:
            if method == "last":
                last_x = x[fit_mask].max()
                pred = float(y[fit_mask & (x == last_x)].mean())
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    law = laws.fit(x[fit_mask], y[fit_mask], form=method, error_rate=error_rate, n_boot=n_boot)
                    pred = float(law.predict([x_max])[0])
                    lo, hi = law.interval([x_max], level)
                row["covered"] = float(np.mean((lo[0] <= held) & (held <= hi[0])))
                row["chosen"] = law.form if method == "auto" else None
        except InputError as exc:
            row["error"] = str(exc)
            out[method] = row
            continue
        row.update(pred=pred, abs_error=abs(pred - truth), rel_error=abs(pred - truth) / truth if truth else math.nan)
        out[method] = row
    return out


def summarise(results: list[dict], methods=METHODS) -> pd.DataFrame:
    """Median and mean absolute error, median relative error and coverage, per method."""
    rows = []
    auto_abs = np.array([r["auto"]["abs_error"] for r in results]) if "auto" in methods else None
    for m in methods:
        abs_err = np.array([r[m]["abs_error"] for r in results], float)
        rel_err = np.array([r[m]["rel_error"] for r in results], float)
        cov = np.array([r[m]["covered"] for r in results], float)
        ok = np.isfinite(abs_err)
        row = {
            "method": m,
            "curves": int(ok.sum()),
            "median abs": np.median(abs_err[ok]) if ok.any() else math.nan,
            "mean abs": np.mean(abs_err[ok]) if ok.any() else math.nan,
            "median rel": np.median(rel_err[ok]) if ok.any() else math.nan,
            "80% coverage": np.nanmean(cov) if np.isfinite(cov).any() else math.nan,
        }
        if auto_abs is not None and m != "auto":
            both = ok & np.isfinite(auto_abs)
            row["auto better"] = f"{int(np.sum(auto_abs[both] < abs_err[both]))}/{int(both.sum())}"
        rows.append(row)
    return pd.DataFrame(rows)


def print_table(frame: pd.DataFrame) -> None:
    fmt = {
        "median abs": "{:.4f}".format, "mean abs": "{:.4f}".format, "median rel": "{:.1%}".format,
        "80% coverage": lambda v: "" if not np.isfinite(v) else f"{v:.0%}",
    }  # fmt: skip
    print(frame.to_string(index=False, formatters=fmt, na_rep=""))


# -- part 1: coverage on synthetic curves -------------------------------------------------------
SIZES = 128.0 * 2.0 ** np.arange(11)  # 128 .. 131072: fit on 128 .. 16384 (8 sizes)
SEEDS_PER_SIZE = 3
FORMS_DRAWN = ("power", "saturating", "m3", "m4", "bnsl")


def _m4_value(x, E, B, alpha, beta, y0=1.0):
    lo, hi = np.full_like(x, E), np.full_like(x, y0)
    rhs = B * x**-beta
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        above = (mid - E) - rhs * (y0 - mid) ** alpha > 0
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return 0.5 * (lo + hi)


def draw_curve(form: str, rng: np.random.Generator):
    """A random law of ``form``: returns f(x). Values at the smallest size lie in a sensible range."""
    x0 = SIZES[0]
    while True:
        if form == "power":
            beta = rng.uniform(0.1, 0.7)
            B = rng.uniform(0.3, 2.0) * x0**beta
            f = lambda x, B=B, beta=beta: B * x**-beta
        elif form == "saturating":
            E, beta = rng.uniform(0.02, 0.3), rng.uniform(0.2, 0.8)
            B = rng.uniform(0.3, 2.0) * x0**beta
            f = lambda x, E=E, B=B, beta=beta: E + B * x**-beta
        elif form == "m3":
            beta, knee = rng.uniform(0.2, 0.8), 10 ** rng.uniform(3.0, 5.5)
            gamma = 1.0 / knee
            B = rng.uniform(0.3, 2.0) / (1 / x0 + gamma) ** beta
            f = lambda x, B=B, g=gamma, beta=beta: B * (1 / x + g) ** beta
        elif form == "m4":
            E, alpha, beta = rng.uniform(0.01, 0.1), rng.uniform(0.0, 1.5), rng.uniform(0.3, 0.8)
            B = 10 ** rng.uniform(-1, 2) * x0**beta / 100
            f = lambda x, E=E, B=B, a=alpha, b=beta: _m4_value(np.asarray(x, float), E, B, a, b)
        elif form == "bnsl":
            E, c0, c1 = rng.uniform(0.02, 0.2), rng.uniform(0.0, 0.3), rng.uniform(0.2, 0.8)
            d1, f1 = 10 ** rng.uniform(2.5, 4.0), 10 ** rng.uniform(-1, 0.3)  # the break inside the fitted sizes
            shape = lambda x, c0=c0, c1=c1, d1=d1, f1=f1: x**-c0 * (1 + (x / d1) ** (1 / f1)) ** (-c1 * f1)
            b = rng.uniform(0.5, 2.0) / shape(x0)
            f = lambda x, E=E, b=b, s=shape: E + b * s(x)
        else:
            raise ValueError(form)
        top = float(f(np.array([x0]))[0])
        if form != "m4" or 0.2 <= top <= 0.85:  # an error rate with room below chance
            return f


def coverage_case(args) -> dict:
    """One synthetic curve: fit the true form and auto; coverage at each level of a new run at the top."""
    form, sigma, seed = args
    rng = np.random.default_rng([FORMS_DRAWN.index(form), int(round(sigma * 1e4)), seed])
    f = draw_curve(form, rng)
    x = np.repeat(SIZES, SEEDS_PER_SIZE)
    y = f(x) * np.exp(rng.normal(0, sigma, len(x)))
    y_new = float(f(np.array([SIZES[-1]]))[0] * np.exp(rng.normal(0, sigma)))
    law_value = float(f(np.array([SIZES[-1]]))[0])
    error_rate = form == "m4"
    if error_rate:
        y = np.minimum(y, 1.0)
    fit = x <= SIZES[-1] / 8
    out = {"form": form, "sigma": sigma, "seed": seed}
    for method in (form, "auto"):
        key = "true form" if method == form else "auto"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                law = laws.fit(x[fit], y[fit], form=method, error_rate=error_rate, n_boot=N_BOOT)
                pred = float(law.predict([SIZES[-1]])[0])
                for level in LEVELS:
                    lo, hi = law.interval([SIZES[-1]], level)
                    out[f"{key} {level:.0%}"] = float(lo[0] <= y_new <= hi[0])
                    if level == 0.8:
                        out[f"{key} 80% law"] = float(lo[0] <= law_value <= hi[0])
            out[f"{key} log err"] = abs(math.log(pred / law_value))
            if method == "auto":
                out["auto chose"] = law.form
        except InputError as exc:
            out[f"{key} error"] = str(exc)
    return out


def run_coverage(curves_per_cell: int, jobs: int) -> None:
    forms = FORMS_DRAWN
    sigmas = (0.02, 0.05)
    cases = [(f, s, k) for f in forms for s in sigmas for k in range(curves_per_cell)]
    print(f"\n== 1. interval coverage: {len(cases)} held-out extrapolations (fit on sizes <= 1/8 of the largest, predict the largest) ==")
    print(f"   {len(forms)} forms x {len(sigmas)} noise levels x {curves_per_cell} random curves; sizes {SIZES[0]:.0f}..{SIZES[-1]:.0f}, "
          f"{SEEDS_PER_SIZE} seeds per size, {N_BOOT} bootstrap replicates; the truth is a new run at the largest size")  # fmt: skip
    begin = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(coverage_case, cases, chunksize=2))
    frame = pd.DataFrame(rows)
    elapsed = time.perf_counter() - begin
    cols = [f"{k} {lv:.0%}" for k in ("true form", "auto") for lv in LEVELS] + ["true form 80% law", "auto 80% law", "true form log err", "auto log err"]
    how = {c: ("median" if "log err" in c else "mean") for c in cols}
    table = frame.groupby(["form", "sigma"])[cols].agg(how)
    overall = frame[cols].agg(how).to_frame("all").T
    overall.index = pd.MultiIndex.from_tuples([("all", "")], names=["form", "sigma"])
    table = pd.concat([table, overall])
    table["n"] = [*frame.groupby(["form", "sigma"]).size().tolist(), len(frame)]
    pct = lambda v: f"{v:.0%}"
    fmt = {c: pct for c in cols if "log err" not in c}
    fmt.update({"true form log err": "{:.3f}".format, "auto log err": "{:.3f}".format})
    renamed = {
        **{f"{k} {lv:.0%}": f"{'true' if k == 'true form' else 'auto'} {lv:.0%}" for k in ("true form", "auto") for lv in LEVELS},
        "true form 80% law": "true 80% (law)", "auto 80% law": "auto 80% (law)",
        "true form log err": "true |log err|", "auto log err": "auto |log err|",
    }  # fmt: skip
    print("   fraction of held-out new runs inside the 50/80/95% prediction intervals; '(law)': of the noiseless law value;")
    print("   |log err|: median over curves of |log(predicted / law value)| at the largest size")
    print(table.rename(columns=renamed).to_string(formatters={renamed.get(k, k): v for k, v in fmt.items()}))
    errors = [c for c in frame.columns if c.endswith(" error")]
    if errors:
        print("   fits that raised InputError: " + ", ".join(f"{c}: {int(frame[c].notna().sum())}" for c in errors))
    print("   auto chose: " + ", ".join(f"{k} {v}" for k, v in frame["auto chose"].value_counts().items()))
    print(f"   ({elapsed:.0f} s on {jobs} processes)")


# -- part 2: a backtest table on real learning curves -------------------------------------------
def curves_from_csv(path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, n_train, test_error) per curve of one ``scalelab runs --format csv`` file."""
    table = pd.read_csv(path)
    if "state" in table.columns:
        table = table[table["state"] == "done"]
    table = table.dropna(subset=["n_train", "test_error"])
    columns = list(table.columns)
    if "state" in columns and "train_loss" in columns:
        keys = columns[columns.index("state") + 1 : columns.index("train_loss")]
    else:
        keys = [c for c in ("family", "width", "depth") if c in columns]
    keys = [k for k in keys if k not in ("data_fraction", "seed")]
    curves = []
    for value, rows in (table.groupby(keys, sort=True) if keys else [((), table)]):
        value = value if isinstance(value, tuple) else (value,)
        name = f"{path.stem}" + "".join(f" {k}={v}" for k, v in zip(keys, value))
        curves.append((name, rows["n_train"].to_numpy(float), rows["test_error"].to_numpy(float)))
    return curves


def backtest_case(args):
    name, x, y = args
    return name, extrapolation_backtest(x, y)


def run_backtest(curves_dir: Path, jobs: int, per_curve: bool) -> None:
    files = sorted(curves_dir.glob("*.csv"))
    print(f"\n== 2. backtest on real learning curves in {curves_dir} ==")
    if not files:
        print("   no CSV files there yet. Make them with, for each study file benchmarks/curves/<name>.toml:")
        print("     scalelab run benchmarks/curves/<name>.toml --store benchmarks/curves/curves.db")
        print("     scalelab runs <study> --store benchmarks/curves/curves.db --format csv > benchmarks/curves/<study>.csv")
        print("   then run this script again.")
        return
    curves, seen = [], set()
    for f in files:
        for name, x, y in curves_from_csv(f):
            key = tuple(sorted(zip(x.tolist(), y.tolist())))
            if key not in seen:  # studies that share cells repeat a curve: count it once
                seen.add(key)
                curves.append((name, x, y))
    usable = [c for c in curves if len(np.unique(c[1][c[1] <= c[1].max() / 8 * 1.02])) >= 2]
    print(f"   {len(files)} files, {len(curves)} distinct curves ({len(curves) - len(usable)} with fewer than 2 sizes at <= 1/8 of the largest left out); "
          "x = n_train, y = test_error, every seed a point")  # fmt: skip
    print("   protocol: fit on n_train <= largest / 8, predict the largest; truth = mean over seeds there; "
          "coverage: seeds there inside the 80% interval")  # fmt: skip
    begin = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        done = list(pool.map(backtest_case, usable))
    collections = {
        "scalelab studies (neural nets, trees and boosting on digits and MNIST-1D, label noise)": [r for n, r in done if not n.startswith("curves-classic")],
        "classic scikit-learn classifiers (curves-classic.csv, sizes a factor sqrt(2) apart)": [r for n, r in done if n.startswith("curves-classic")],
        "all": [r for _, r in done],
    }  # fmt: skip
    for title, results in collections.items():
        if not results:
            continue
        print(f"\n   -- {title}: {len(results)} curves")
        print_table(summarise(results))
        chosen = pd.Series([r["auto"]["chosen"] for r in results]).value_counts()
        print("   auto's heaviest form: " + ", ".join(f"{k} {v}" for k, v in chosen.items()))
        failures = {m: sum(r[m]["error"] is not None for r in results) for m in METHODS}
        if any(failures.values()):
            print("   fits that raised InputError: " + ", ".join(f"{m} {n}" for m, n in failures.items() if n))
    if per_curve:
        print()
        print(f"{'curve':<56}{'n fit':>6}{'truth':>8}" + "".join(f"{m:>11}" for m in METHODS) + "  auto chose")
        for name, r in done:
            cells = "".join(f"{r[m]['pred']:>11.4f}" if np.isfinite(r[m]["pred"]) else f"{'—':>11}" for m in METHODS)
            print(f"{name[:55]:<56}{r['_n_fit']:>6}{r['_truth']:>8.4f}{cells}  {r['auto']['chosen']}")
    print(f"   ({time.perf_counter() - begin:.0f} s on {jobs} processes)")


# -- part 3: calibration and accuracy on real curves at 2x and 8x ------------------------------
SHARED_CURVES = Path(__file__).resolve().parents[2] / "shared" / "data" / "curves"
RATIOS = (2.0, 8.0)
FORM_METHODS = ("power", "saturating", "m3", "m4", "bnsl")
REAL_METHODS = ("last", *FORM_METHODS, "auto")
THIN_STEP = 2 ** 0.25  # dense training curves keep one point per quarter octave of tokens


def thin_log_spaced(x: np.ndarray, y: np.ndarray, step: float = THIN_STEP) -> tuple[np.ndarray, np.ndarray]:
    """One point (the nearest, in log x) per node of a geometric grid of ratio ``step``:
    a dense curve of a training run, as a scaling study would sample it."""
    order = np.argsort(x)
    x, y = x[order], y[order]
    grid = np.exp(np.arange(np.log(x[0]), np.log(x[-1]) + 1e-9, np.log(step)))
    keep = np.unique(np.abs(np.log(x)[None, :] - np.log(grid)[:, None]).argmin(axis=1))
    keep = np.union1d(keep, [len(x) - 1])  # the largest point is what 2x and 8x predict
    return x[keep], y[keep]


def real_curves(curves_dir: Path, shared_dir: Path) -> list[tuple[str, str, np.ndarray, np.ndarray, bool]]:
    """(collection, name, x, y, error_rate) for every real curve: scalelab's own studies and
    classic classifiers (``benchmarks/curves``), and the language-model pretraining,
    nanoGPT width and double-descent curves of ``../shared/data/curves`` when present."""
    out, seen = [], set()
    for f in sorted(curves_dir.glob("*.csv")):
        for name, x, y in curves_from_csv(f):
            key = tuple(sorted(zip(x.tolist(), y.tolist())))
            if key in seen:
                continue
            seen.add(key)
            out.append(("classic classifiers" if name.startswith("curves-classic") else "scalelab studies", name, x, y, True))
    if not shared_dir.is_dir():
        print(f"   ({shared_dir} not found: only the curves in {curves_dir})")
        return out
    runs = np.load(shared_dir / "colpret.npz", allow_pickle=False)
    for key in sorted(runs.files):
        x, y = runs[key][0].astype(float), runs[key][1].astype(float)
        ok = (x > 0) & np.isfinite(y) & (y > 0)
        if ok.sum() >= 4:
            x, y = thin_log_spaced(x[ok], y[ok])
            out.append(("LM pretraining (colpret)", f"colpret {key}", x, y, False))
    widths = np.array([6, 12, 24, 48, 96, 192, 384], float)
    for which in ("min", "final"):
        table = np.load(shared_dir / f"{which}_val_loss_over_n_embd.npy", allow_pickle=False)
        for i, row in enumerate(table):
            out.append(("nanoGPT widths", f"nanoGPT {which} setting {i}", widths, row.astype(float), False))
    dd = pd.read_csv(shared_dir / "nlp-model-dd.csv")
    out.append(("double descent", "nlp-model-dd", dd["n"].to_numpy(float), dd["test_error"].to_numpy(float) / 100, True))
    return out


def ratio_case(args) -> dict | None:
    """One curve at one extrapolation ratio: fit on x <= largest / ratio, predict the largest.

    Every method's relative error of the point prediction against the mean of the runs
    there, and the share of those runs inside auto's 80% interval. None when fewer than
    three sizes remain to fit.
    """
    collection, name, x, y, error_rate, ratio = args
    x_max = x.max()
    fit_mask = x <= x_max / ratio * 1.02  # fractions round per class: 2% slack
    if len(np.unique(x[fit_mask])) < 3:
        return None
    held = y[x == x_max]
    truth = float(held.mean())
    out = {"collection": collection, "name": name, "ratio": ratio, "n_fit": int(fit_mask.sum())}
    for method in REAL_METHODS:
        try:
            if method == "last":
                pred = float(y[fit_mask & (x == x[fit_mask].max())].mean())
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    law = laws.fit(x[fit_mask], y[fit_mask], form=method, error_rate=error_rate, n_boot=N_BOOT)
                    pred = float(law.predict([x_max])[0])
                    if method == "auto":
                        lo, hi = law.interval([x_max], 0.8)
                        out["covered"] = float(np.mean((lo[0] <= held) & (held <= hi[0])))
                        out["chosen"] = law.form
        except InputError:
            pred = math.nan
        out[method] = abs(pred - truth) / truth
    return out


def run_real(curves_dir: Path, shared_dir: Path, jobs: int, subsample: int) -> None:
    curves = real_curves(curves_dir, shared_dir)
    if subsample > 1:  # every k-th curve of each collection, for a quick look
        curves = [c for i, c in enumerate(curves) if i % subsample == 0]
    cases = [(*c, r) for c in curves for r in RATIOS]
    print(f"\n== 3. real curves: 80% interval coverage and point error at {' and '.join(f'{r:g}x' for r in RATIOS)} extrapolation ==")
    print(f"   {len(curves)} curves; fit on x <= largest / ratio (at least 3 sizes), predict the largest; "
          "coverage: runs there inside auto's 80% interval; error: |predicted - truth| / truth, truth the mean of those runs")  # fmt: skip
    begin = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        rows = [r for r in pool.map(ratio_case, cases, chunksize=1) if r is not None]
    frame = pd.DataFrame(rows)
    for ratio in RATIOS:
        at = frame[frame["ratio"] == ratio]
        print(f"\n   -- {ratio:g}x: {len(at)} curves")
        table = at.groupby("collection").agg(curves=("name", "size"), coverage=("covered", "mean"),
                                              **{m: (m, "median") for m in REAL_METHODS})  # fmt: skip
        overall = pd.DataFrame({"curves": [len(at)], "coverage": [at["covered"].mean()],
                                **{m: [at[m].median()] for m in REAL_METHODS}}, index=["all"])  # fmt: skip
        table = pd.concat([table, overall])
        fmt = {"coverage": "{:.0%}".format, **{m: "{:.2%}".format for m in REAL_METHODS}}
        print("   auto's 80% coverage, and each method's median relative error:")
        print(table.rename(columns={"coverage": "auto 80% cov"}).to_string(formatters={("auto 80% cov" if k == "coverage" else k): v for k, v in fmt.items()}))
        print("   auto against each method on the curves both could fit: median relative error (auto / method), and curves where auto is closer")
        for m in REAL_METHODS:
            if m == "auto":
                continue
            both = at[[m, "auto"]].dropna()
            verdict = "auto better" if both["auto"].median() < both[m].median() else "METHOD BETTER"
            print(f"     {m:<11} {len(both):>4} curves   auto {both['auto'].median():.2%} / {m} {both[m].median():.2%}   "
                  f"closer on {int((both['auto'] < both[m]).sum())}   {verdict}")
        print("   auto's heaviest form: " + ", ".join(f"{k} {v}" for k, v in at["chosen"].value_counts().items()))
    print(f"\n   ({time.perf_counter() - begin:.0f} s on {jobs} processes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["real", "coverage", "backtest", "all"], default="real",
                        help="real (default): coverage at 2x and 8x and auto against each form on real curves")
    parser.add_argument("--shared", type=Path, default=SHARED_CURVES, help=f"the shared real curves (default {SHARED_CURVES})")
    parser.add_argument("--subsample", type=int, default=1, help="use every k-th real curve (a quick look)")
    parser.add_argument("--curves", type=Path, default=CURVES_DIR, help=f"folder of runs CSVs (default {CURVES_DIR})")
    parser.add_argument("--per-form", type=int, default=24, help="random curves per (form, noise level) for coverage (default 24: 240 in all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: one per CPU)")
    parser.add_argument("--per-curve", action="store_true", help="also print every curve's predictions")
    args = parser.parse_args()
    print(f"scalelab law calibration — {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (a busy machine slows every timing; ratios are measured side by side)")
    if args.part in ("real", "all"):
        run_real(args.curves, args.shared, args.jobs, args.subsample)
    if args.part in ("coverage", "all"):
        run_coverage(args.per_form, args.jobs)
    if args.part in ("backtest", "all"):
        run_backtest(args.curves, args.jobs, args.per_curve)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
