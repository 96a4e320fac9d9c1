"""The report's "Federated learning" section, for studies with a ``[federated]`` section.

It answers two questions from the runs:

- **Does more clients' data beat more rounds?** Over the runs without privacy of each
  client count and skew that vary both the rounds and the data the clients hold,
  ``log error = c + a·log rounds + b·log n_train`` is fitted by least squares, with a
  bootstrap over runs for the exponents; doubling the rounds multiplies the error by
  2^a and doubling the data by 2^b, and the section says which buys more.
- **What does privacy cost?** Each private run's test error beside the run without
  privacy at the same clients, skew, data and rounds, with its ε at δ.

The figure shows the error against rounds and against the bytes communicated, one line
per client count and skew, and the privacy-utility curve (ε against error).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.ticker import PercentFormatter

from scalelab.report.data import ReportData

SERIES = ("clients", "alpha", "classes_per_client", "participation", "local_epochs", "aggregation", "mu", "partition")
N_BOOT = 300


def analyse_federated(data: ReportData, *, level: float) -> dict | None:
    """The runs, the rounds-versus-data law per series, and the privacy comparison; None
    when the study has no federated runs."""
    if data.kind != "study":
        return None
    # Every done run: the curves hold private runs out, and this section compares them.
    runs = data.runs[data.runs["state"] == "done"]
    if "clients" not in runs.columns or pd.to_numeric(runs["clients"], errors="coerce").isna().all():
        return None
    runs = runs[pd.to_numeric(runs["clients"], errors="coerce").notna()].copy()
    private = runs["epsilon"].notna() if "epsilon" in runs.columns else pd.Series(False, index=runs.index)
    series = [c for c in SERIES if c in runs.columns and runs[c].notna().any()]
    plain = runs[~private]
    laws = []
    for key, rows in plain.groupby(series, dropna=False, sort=True):
        if rows["rounds"].nunique() > 1 and rows["n_train"].nunique() > 1:
            laws.append({"series": dict(zip(series, key if isinstance(key, tuple) else (key,))), **_rounds_vs_data(rows, level=level)})
    privacy = []
    match = [*series, "n_train", "rounds"]
    for _, row in runs[private].iterrows():
        same = plain
        for c in match:
            same = same[same[c] == row[c]]
        privacy.append({"epsilon": float(row["epsilon"]), "delta": float(row["delta"]), "noise_multiplier": float(row["noise_multiplier"]),
                        "clip_norm": float(row["clip_norm"]), "error": float(row["test_error"]),
                        "baseline": float(same["test_error"].mean()) if len(same) else None,
                        "series": {c: row[c] for c in match}})  # fmt: skip
    return {"runs": runs, "private": private, "series": series, "laws": laws, "privacy": sorted(privacy, key=lambda p: p["epsilon"])}


def _rounds_vs_data(rows: pd.DataFrame, *, level: float) -> dict:
    x = np.column_stack([np.ones(len(rows)), np.log(rows["rounds"].astype(float)), np.log(rows["n_train"].astype(float))])
    y = np.log(np.clip(rows["test_error"].astype(float).to_numpy(), 1e-4, None))
    theta = np.linalg.lstsq(x, y, rcond=None)[0]
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(N_BOOT):
        pick = rng.integers(0, len(rows), len(rows))
        if np.linalg.matrix_rank(x[pick]) == 3:
            draws.append(np.linalg.lstsq(x[pick], y[pick], rcond=None)[0])
    tail = (1 - level) / 2
    lo, hi = (np.quantile(np.array(draws), [tail, 1 - tail], axis=0) if draws else np.full((2, 3), np.nan))
    return {"a": float(theta[1]), "b": float(theta[2]), "a_range": (float(lo[1]), float(hi[1])), "b_range": (float(lo[2]), float(hi[2])),
            "n_runs": len(rows)}  # fmt: skip


def _label(series: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in series.items() if pd.notna(v))


def federated_figure(data: ReportData, result: dict | None):
    """Error against rounds and against bytes communicated per series; ε against error."""
    if not result:
        return None
    from scalelab.report.figures import STYLE, _figure, _log_axis, render

    runs, private, series = result["runs"], result["private"], result["series"]
    plain = runs[~private]
    full = plain[plain["n_train"] == plain["n_train"].max()]
    with rc_context(STYLE):
        fig, axes = _figure(3 if result["privacy"] else 2, ncols=3, panel=(3.6, 2.9))
        for i, (key, rows) in enumerate(full.groupby(series, dropna=False, sort=True)):
            means = rows.assign(_bytes=rows["bytes_up"] + rows["bytes_down"]).groupby("rounds")[["test_error", "_bytes"]].mean()
            label = _label(dict(zip(series, key if isinstance(key, tuple) else (key,))))
            style = {"color": f"C{i % 10}", "marker": "o", "ms": 3.5, "lw": 1.2, "ls": ("-", "--", ":", "-.")[i // 10 % 4]}
            axes[0].plot(means.index, means["test_error"], label=label, **style)
            axes[1].plot(means["_bytes"], means["test_error"], **style)
        _log_axis(axes[0], "x", full["rounds"])
        axes[0].set_xlabel("rounds")
        axes[1].set_xscale("log")
        axes[1].set_xlabel("bytes communicated (up + down)")
        for ax in axes[:2]:
            ax.set_ylabel("test error")
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        if result["privacy"]:
            eps = [p["epsilon"] for p in result["privacy"]]
            axes[2].plot(eps, [p["error"] for p in result["privacy"]], "o-", color="C3", ms=4, label="private")
            base = [p["baseline"] for p in result["privacy"] if p["baseline"] is not None]
            if base:
                axes[2].axhline(float(np.mean(base)), color="black", ls="--", lw=1, label="no privacy")
            axes[2].set_xscale("log")
            axes[2].set_xlabel("ε (client level)")
            axes[2].set_ylabel("test error")
            axes[2].yaxis.set_major_formatter(PercentFormatter(1.0))
            axes[2].legend(fontsize="small")
        axes[0].legend(fontsize="x-small", loc="upper right")
    return render(fig, id="fig-federated", title="Federated learning",
                  caption="Test error of the global model against rounds and against the bytes sent to and from clients, "
                          "one line per client setting, on all of the clients' data and without privacy (means over seeds)"
                          + ("; right: the privacy-utility curve, ε at δ against the error, and the same setting without privacy "
                             "(dashed)." if result["privacy"] else "."))  # fmt: skip


def federated_section(analysis, figures: dict) -> dict | None:
    """The section, or None for a study without federated runs."""
    from scalelab.report.build import num, section, table

    result = getattr(analysis, "federated", None)
    if not result:
        return None
    lvl = f"{analysis.level:.0%}"
    s = section("federated", "Federated learning", figures=[f for f in [figures.get("fig-federated")] if f])
    runs = result["runs"]
    s["paragraphs"].append(f"{len(runs)} federated runs: {', '.join(f'{c} {sorted(runs[c].dropna().unique().tolist())}' for c in result['series'])}; "
                           f"rounds {sorted(runs['rounds'].unique().tolist())}.")  # fmt: skip
    if result["laws"]:
        rows = []
        for law in result["laws"]:
            rounds_gain, data_gain = 1 - 2 ** law["a"], 1 - 2 ** law["b"]
            winner = "more rounds" if rounds_gain > data_gain else "more client data"
            rows.append([_label(law["series"]), str(law["n_runs"]), f"{law['a']:.2f} [{law['a_range'][0]:.2f}, {law['a_range'][1]:.2f}]",
                         f"{law['b']:.2f} [{law['b_range'][0]:.2f}, {law['b_range'][1]:.2f}]",
                         f"{100 * rounds_gain:.0f}%", f"{100 * data_gain:.0f}%", winner])  # fmt: skip
        s["paragraphs"].append("Does more clients' data beat more rounds? Fitted over each setting's runs without privacy: "
                               "error ∝ rounds^a · n_train^b; doubling the rounds cuts the error by 1 − 2^a, doubling the data "
                               f"the clients hold by 1 − 2^b ({lvl} intervals, bootstrap over runs).")  # fmt: skip
        s["tables"].append(table(["setting", "runs", "a (rounds)", "b (data)", "2× rounds", "2× data", "buys more"], rows,
                                 numeric=[False, True, True, True, True, True, False], id="federated-law-table"))  # fmt: skip
    else:
        s["notes"].append("No setting varies both the rounds and the clients' data (data_fraction), so rounds and data are not compared.")
    if result["privacy"]:
        rows = [[f"{p['epsilon']:.3g}", f"{p['delta']:.0e}", f"{p['noise_multiplier']:g}", f"{p['clip_norm']:g}", f"{100 * p['error']:.1f}%",
                 "—" if p["baseline"] is None else f"{100 * p['baseline']:.1f}%",
                 "—" if p["baseline"] is None else f"{100 * (p['error'] - p['baseline']):+.1f}"] for p in result["privacy"]]  # fmt: skip
        s["paragraphs"].append("What does privacy cost at this scale? Each private run beside the run without privacy at the same "
                               "clients, skew, data and rounds; the cost is in percentage points of test error.")  # fmt: skip
        s["tables"].append(table(["ε", "δ", "noise multiplier", "clip norm", "test error", "without privacy", "cost (points)"], rows,
                                 numeric=[True] * 7, id="federated-privacy-table"))  # fmt: skip
    worst = runs.loc[pd.to_numeric(runs["client_error_gap"], errors="coerce").idxmax()]
    s["notes"].append(f"The widest gap between clients: {100 * worst['client_error_gap']:.1f} points (worst client "
                      f"{100 * worst['worst_client_error']:.1f}% against a mean of {100 * worst['test_error']:.1f}%) at "
                      f"{_label({c: worst[c] for c in result['series']})}, {num(int(worst['rounds']))} rounds.")  # fmt: skip
    return s
