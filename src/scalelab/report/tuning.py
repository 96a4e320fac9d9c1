"""The report's sections on what a big run needs besides N and D: the learning rate and
batch size across scale (when the grid sweeps them), repeated data (when runs repeat
their tokens), and the relation between the loss and the error (when runs record both).

Each answer is the one the command line gives: :func:`scalelab.tuning.study_hparams`
(``scalelab hparams``), :func:`scalelab.repetition.unique_plan`'s law (``plan
--unique-tokens``) and :func:`scalelab.laws.link.fit_link` (``fit --via``'s second step).
A study that cannot support one gets a note, and the rest of the report stands.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.ticker import PercentFormatter

from scalelab.errors import InputError
from scalelab.report.data import ReportData


def analyse_settings(data: ReportData, *, level: float, notes: list[str]) -> dict:
    """``{"hparams": ..., "repetition": ..., "link": ...}``, each None where it does not apply."""
    out = {"hparams": None, "repetition": None, "link": None}
    if data.kind != "study":
        return out
    from scalelab.tuning import study_hparams, swept_hparams

    if swept_hparams(data.spec):
        try:
            out["hparams"] = study_hparams(data.spec, data.runs, y_col=data.y_col, level=level)
        except InputError as exc:
            notes.append(f"No learning-rate or batch-size laws: {exc}")
    out["repetition"] = _repetition(data, level=level, notes=notes)
    out["link"] = _link(data, notes=notes)
    return out


def _repetition(data: ReportData, *, level: float, notes: list[str]) -> dict | None:
    """The data-constrained law per family, when the grid sweeps ``unique_tokens``."""
    if not any(k.split(".")[-1] == "unique_tokens" for k in data.spec.grid_keys) or data.y_col.endswith("error"):
        return None
    from scalelab.curves import planning_x
    from scalelab.fitting import Source
    from scalelab.repetition import repetition_rows

    x_cols = list(planning_x(data.spec))
    rows = repetition_rows(Source(data.done, data.title, data.y_col, None, spec=data.spec, runs=data.runs), x_cols=x_cols, y_col=data.y_col)
    from scalelab.laws.data_constrained import fit_data_constrained

    try:
        N, D, U, y = (pd.to_numeric(rows[c]).to_numpy(float) for c in (x_cols[0], x_cols[1], "unique_tokens", data.y_col))
        law = fit_data_constrained(N, D, np.minimum(U, D), y, level=level)
    except (InputError, KeyError) as exc:
        notes.append(f"No data-constrained law: {exc}")
        return None
    return {"law": law, "rows": rows.assign(_N=N, _D=D, _U=np.minimum(U, D), _y=y), "x_cols": x_cols}


LINKED = {"test_error": "test_loss", "val_error": "val_loss"}


def _link(data: ReportData, *, notes: list[str]) -> dict | None:
    """The link from the loss to the error over the curves' runs, when they record both."""
    if data.y_col in LINKED:
        metric, loss = data.y_col, LINKED[data.y_col]
    else:
        metric = next((m for m, l in LINKED.items() if l == data.y_col), None)
        loss = data.y_col
    rows = data.done
    if metric is None or metric not in rows.columns or loss not in rows.columns:
        return None
    from scalelab.laws.link import fit_link

    both = rows[[loss, metric]].apply(pd.to_numeric, errors="coerce").dropna()
    try:
        link = fit_link(both[loss].to_numpy(float), both[metric].to_numpy(float), error_rate=True, metric_name=metric)
    except InputError as exc:
        notes.append(f"No link from {loss} to {metric}: {exc}")
        return None
    return {"link": link, "loss": loss, "metric": metric, "points": both}


# -- figures -------------------------------------------------------------------------------
def hparam_figure(data: ReportData, result: dict | None):
    """Per model size, the chosen-on loss against lr at its largest data, one line per batch size, and the optimum."""
    if not result:
        return None
    from scalelab.report.figures import (
        STYLE,
        _figure,
        _log_axis,
        label_of,
        plain,
        render,
    )
    from scalelab.tuning import hparam_runs

    table, _ = hparam_runs(data.spec, data.runs, y_col=data.y_col)
    laws = result["laws"]
    sizes = sorted(table["n_params"].unique())
    with rc_context(STYLE):
        fig, axes = _figure(len(sizes), ncols=3, panel=(3.6, 2.9))
        batches = sorted(table["batch_size"].unique())
        for ax, n in zip(axes, sizes):
            at = table[table["n_params"] == n]
            d = at["data"].max()
            at = at[at["data"] == d]
            for i, bs in enumerate(batches):
                line = at[at["batch_size"] == bs].groupby("lr")["score"].mean()
                if len(line):
                    ax.plot(line.index, line.to_numpy(), "o-", color=f"C{i}", ms=3.5, lw=1.2, label=f"batch {bs:g}")
            optimum = next((o for o in laws.optima if o.n_params == n and o.tokens == d), None)
            if optimum is not None:
                ax.plot([optimum.lr], [optimum.loss], "*", color="black", ms=11, label="fitted optimum")
                ax.axvspan(*optimum.lr_range, color="grey", alpha=0.15, lw=0)
            _log_axis(ax, "x", at["lr"])
            ax.set_xlabel("learning rate")
            ax.set_ylabel(label_of(result["score"]))
            ax.set_title(plain(f"N = {n:.3g}, D = {d:.3g}"))
        axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    return render(fig, id="fig-hparams", title="Learning rate and batch size",
                  caption=f"At each model size's largest data: {label_of(result['score'])} against the learning rate, one line per "
                          f"batch size (means over seeds); the star is the optimum of the quadratic fit and the grey band its "
                          f"{laws.level:.0%} interval over the runs.")  # fmt: skip


def repetition_figure(data: ReportData, result: dict | None):
    """The loss against epochs over the unique data at each size, and the law through it."""
    if not result:
        return None
    from scalelab.report.figures import (
        STYLE,
        _colour,
        _figure,
        _log_axis,
        _size_norm,
        label_of,
        render,
    )

    rows, law = result["rows"], result["law"]
    repeated = rows[rows["_D"] > 1.05 * rows["_U"]]
    if not len(repeated):
        return None
    d = float(repeated["_D"].max())
    shown = rows[np.isclose(rows["_D"], d, rtol=0.02)]
    with rc_context(STYLE):
        fig, (ax,) = _figure(1, panel=(4.6, 3.2))
        norm = _size_norm(shown["_N"])
        for n, part in shown.groupby("_N"):
            colour = _colour(norm, n)
            epochs = part["_D"] / part["_U"]
            ax.plot(epochs, part["_y"], "o", color=colour, ms=5, mec="black", mew=0.4, label=f"N = {n:.3g}")
            grid = np.geomspace(max(epochs.min(), 1e-3), epochs.max() * 1.5, 60)
            ax.plot(grid, law.predict(np.full_like(grid, n), np.full_like(grid, d), d / np.maximum(grid, 1.0)), color=colour, lw=1.3)
        _log_axis(ax, "x", shown["_D"] / shown["_U"])
        ax.set_xlabel(f"epochs over the unique data (D = {d:.3g} {result['x_cols'][1]})")
        ax.set_ylabel(label_of(data.y_col))
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    return render(fig, id="fig-repetition", title="Repeated data",
                  caption="Runs of the same length on fewer unique tokens, repeated more often (dots), and the data-constrained "
                          "law fitted on every run (lines): where the lines rise, repetition costs loss.")  # fmt: skip


def link_figure(data: ReportData, result: dict | None):
    """The runs' error against their loss, and the fitted link with its band."""
    if not result:
        return None
    from scalelab.report.figures import STYLE, _figure, label_of, render

    link, points = result["link"], result["points"]
    with rc_context(STYLE):
        fig, (ax,) = _figure(1, panel=(4.4, 3.2))
        ax.plot(points[result["loss"]], points[result["metric"]], "o", color="C0", ms=4, alpha=0.7, label="runs")
        span = np.ptp(points[result["loss"]].to_numpy(float))
        grid = np.linspace(points[result["loss"]].min() - 0.15 * span, points[result["loss"]].max() + 0.15 * span, 80)
        lo, hi = link.band(grid)
        ax.fill_between(grid, lo, hi, color="C0", alpha=0.2, lw=0)
        ax.plot(grid, link(grid), color="C0", lw=1.5, label="link")
        ax.set_xlabel(label_of(result["loss"]))
        ax.set_ylabel(label_of(result["metric"]))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.legend(fontsize="small")
    return render(fig, id="fig-link", title=f"{label_of(result['metric']).capitalize()} from the loss",
                  caption=f"Each run's {label_of(result['metric'])} against its {label_of(result['loss'])}, and the bounded "
                          "sigmoid fitted through them with the 80% band of its bootstrap: the second step of "
                          f"scalelab fit --y {result['metric']} --via {result['loss']}.")  # fmt: skip


# -- sections ------------------------------------------------------------------------------
def sections(analysis, figures: dict) -> list[dict]:
    """The sections of this module that have something to show, in reading order."""
    from scalelab.report.build import num, section, table

    settings = analysis.settings or {}
    out = []
    hp = settings.get("hparams")
    if hp:
        laws, lvl = hp["laws"], f"{analysis.level:.0%}"
        s = section("hparams", "Learning rate and batch size", figures=[f for f in [figures.get("fig-hparams")] if f])
        for law in laws.laws().values():
            spans = "; ".join(f"{name} exponent {law.exponents[name]:.3g} [{lo:.3g}, {hi:.3g}]" for name, (lo, hi) in law.intervals.items())
            s["paragraphs"].append(f"{law.formula()} ({spans}, {lvl} intervals).")
        s["paragraphs"].append(f"Each point's optimum is chosen on {hp['score']}; a law fitted through untuned points is the most "
                               "common way a scaling study misleads. scalelab hparams gives these laws and a recommendation "
                               "for any N and D or budget; scalelab plan adds them to its answer.")  # fmt: skip
        rows = [[num(round(o.n_params)), num(round(o.tokens)), str(o.n_runs), f"{o.lr:.3g} [{o.lr_range[0]:.3g}, {o.lr_range[1]:.3g}]",
                 f"{o.batch_size:.3g} [{o.batch_range[0]:.3g}, {o.batch_range[1]:.3g}]", f"{o.loss:.4g}",
                 ", ".join(f"{a} at the {side} edge" for a, side in o.at_edge.items()) or o.method] for o in laws.optima]  # fmt: skip
        s["tables"] = [table(["N", "D", "runs", f"lr* [{lvl}]", f"batch* [{lvl}]", hp["score"], "how"], rows,
                             numeric=[True, True, True, True, True, True, False], id="hparams-table")]  # fmt: skip
        s["notes"] = [*hp["notes"][1:], *laws.notes]
        out.append(s)
    rep = settings.get("repetition")
    if rep:
        law = rep["law"]
        p, spans = law.params.to_dict(), law.param_intervals()
        s = section("repetition", "Repeated data", figures=[f for f in [figures.get("fig-repetition")] if f])
        s["paragraphs"].append(
            f"The data-constrained law (Muennighoff et al. 2023) fitted on {law.n_points} runs: repeated tokens are worth less "
            f"with each epoch, decaying with R*_D = {p['rd_star']:.3g} [{spans['rd_star'][0]:.3g}, {spans['rd_star'][1]:.3g}] "
            f"(the paper found 15.4 on C4); excess parameters with R*_N = {p['rn_star']:.3g}. "
            "scalelab plan --budget C --unique-tokens U gives the optimal size, data and epochs under a data limit.")  # fmt: skip
        s["notes"] = list(law.notes) + ([f"at a bound of the fit: {', '.join(law.at_bound)}"] if law.at_bound else [])
        out.append(s)
    lk = settings.get("link")
    if lk:
        link = lk["link"]
        q = link.params
        s = section("link", "Error from the loss", figures=[f for f in [figures.get("fig-link")] if f])
        s["paragraphs"].append(
            f"{lk['metric']} = {q['lo']:.3g} + ({q['hi']:.3g} − {q['lo']:.3g})·σ({q['k']:.3g}·({lk['loss']} − {q['L0']:.3g})) over "
            f"{len(lk['points'])} runs, scatter {100 * float(np.std(link.residuals)):.2g} points. Predicting the error at scale "
            f"through the loss: scalelab fit --y {lk['metric']} --via {lk['loss']}.")  # fmt: skip
        if not math.isfinite(q["k"]):
            s["notes"].append("the link's slope is not finite")
        out.append(s)
    return out
