"""Assemble a report: load the runs, fit, draw, and lay out the page.

>>> report = build_report("demo-quick", store="scalelab-demo/scalelab.db")  # doctest: +SKIP
>>> report.write("report.html")                                             # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalelab.errors import InputError
from scalelab.formatting import format_hours, format_metric, format_seconds
from scalelab.report import figures as figs
from scalelab.report.analysis import (
    EXTRAPOLATE,
    Analysis,
    GapTrend,
    analyse,
    size_extremes,
    transfer_model,
)
from scalelab.report.data import ReportData, csv_data, study_data

STATES = ("pending", "running", "done", "failed", "diverged")
REASON_LINES = 14  # the tail of a traceback: where the error is


@dataclass
class Report:
    """A built report: the page, and what it holds (for tests and callers)."""

    html: str
    data: ReportData
    analysis: Analysis
    figures: list = field(default_factory=list)
    sections: list = field(default_factory=list)

    @property
    def figure_ids(self) -> list[str]:
        return [f.id for f in self.figures]

    def write(self, path: str | Path) -> Path:
        """Write the page to ``path`` atomically (a half-written report never appears)."""
        return write_html(self.html, path)


def build_report(source, *, store: str | Path = "scalelab.db", x=None, y=None, group=None, form: str = "auto",
                 level: float = 0.8, chance: float | None = None, n_boot: int = 1000, progress=None) -> Report:  # fmt: skip
    """A report on a study (a :class:`~scalelab.study.Study`, its file or its name in
    ``store``) or on a CSV file of runs, with the fit options of ``scalelab fit``.

    Raises :class:`InputError` for a source, column or form that does not exist. A
    section the data cannot support (too few scales to backtest, say) becomes a note.
    ``progress``, when given, is called with each stage's name as it starts.
    """
    if not 0 < level < 1:
        raise InputError(f"--level {level}: must be between 0 and 1")
    if hasattr(source, "spec") and hasattr(source, "runs"):
        data = study_data(source, x=x, y=y, group=group)
    elif Path(str(source)).suffix.lower() == ".csv":
        data = csv_data(Path(str(source)).expanduser(), x=x, y=y, group=group)
    else:
        from scalelab.study import load_study

        data = study_data(load_study(source, store=store), x=x, y=y, group=group)
    analysis = analyse(data, form=form, level=level, chance=chance, n_boot=n_boot, progress=progress)
    if progress is not None:
        progress("drawing the figures")
    made = figs.all_figures(data, analysis)
    sections = layout(data, analysis, {f.id: f for f in made})
    from scalelab import __version__
    from scalelab.report.html import render_page

    html = render_page(
        title=data.title, description=data.description, sections=sections, version=__version__,
        generated=time.strftime("%Y-%m-%d %H:%M %Z"), source=data.source,
    )  # fmt: skip
    return Report(html=html, data=data, analysis=analysis, figures=made, sections=sections)


def write_html(html: str, path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.parent.is_dir():
        raise InputError(f"{path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name such as {path / 'report.html'}")
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(html)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# -- layout ------------------------------------------------------------------------------
def section(id: str, title: str, **parts) -> dict:
    base = {"id": id, "title": title, "paragraphs": [], "pairs": [], "notes": [], "figures": [], "tables": [], "empty": ""}
    base.update(parts)
    return base


PROSE = ("notes", "reason", "why")  # columns of sentences


def table(columns, rows, *, numeric=None, nowrap=(), caption="", title="", id="", notes=()) -> dict:
    """A table for the template: ``numeric`` columns are right-aligned, ``nowrap`` ones never wrap;
    ``notes`` are footnotes printed once under it.

    A cell is a string, a list of lines, or ``{"pre": text}`` for preformatted text.
    """
    numeric = list(numeric) if numeric is not None else [False] * len(columns)
    # A column of sentences gets a reading width: beside columns that never wrap, the
    # browser would squeeze it to a word per line.
    classes = [" ".join(c for c, on in (("num", numeric[i]), ("nowrap", columns[i] in nowrap), ("prose", columns[i] in PROSE)) if on)
               for i in range(len(columns))]  # fmt: skip
    return {"columns": list(columns), "rows": rows, "numeric": numeric, "classes": classes, "caption": caption, "title": title,
            "id": id, "notes": list(notes)}  # fmt: skip


def footnoted(cells: list[list[str]]) -> tuple[list[list[str]], list[str]]:
    """Each row's notes, with any note that more than one row shares moved to a footnote:
    the rows cite it as ``[n]`` and the footnote says it once, so a long paragraph is not
    repeated down the column."""
    counts = Counter(n for row in cells for n in dict.fromkeys(row))
    shared = [n for n in dict.fromkeys(n for row in cells for n in row) if counts[n] > 1]
    mark = {n: f"[{i}]" for i, n in enumerate(shared, 1)}
    return [_cite(list(dict.fromkeys(row)), mark) for row in cells], [f"{mark[n]} {n}" for n in shared]


def _cite(row: list[str], mark: dict[str, str]) -> list[str]:
    """A row's own notes, the last one followed by the marks of the shared ones it cites."""
    own = [n for n in row if n not in mark]
    refs = " ".join(mark[n] for n in row if n in mark)
    if own and refs:
        own[-1] = f"{own[-1]} {refs}"
    return own or ([refs] if refs else [])


def layout(data: ReportData, analysis: Analysis, figures: dict) -> list[dict]:
    """The page's sections in reading order; figure sections appear only with their figure."""
    y = Fmt(data)
    out = [summary_section(data, analysis, y), states_section(data)]
    for fid, sid, title in (
        ("fig-learning-curves", "learning-curves", "Learning curves"),
        ("fig-training-curves", "training-curves", "Training curves"),
        ("fig-model-size", "model-size", "Model size"),
        ("fig-compute", "compute", "Compute frontier"),
        ("fig-data-quality", "data-quality", "Data quality"),
    ):
        if fid in figures:
            s = section(sid, title, figures=[figures[fid]])
            if fid == "fig-data-quality":
                s["tables"] = [quality_table(data, y)]
            out.append(s)
    fairness = fairness_section(data, analysis, figures.get("fig-fairness"))
    if fairness is not None:
        out.append(fairness)
    compression = compression_section(data, analysis, figures.get("fig-compression"))
    if compression is not None:
        out.append(compression)
    transfer = transfer_section(data, analysis, figures.get("fig-transfer"))
    if transfer is not None:
        out.append(transfer)
    if data.winners is not None and len(data.winners):
        out.append(winners_section(data))
    out.append(laws_section(data, analysis, figures.get("fig-laws"), y))
    out.append(backtest_section(data, analysis, figures.get("fig-backtest"), y))
    plan = plan_section(data, analysis, [figures[f] for f in ("fig-plan", "fig-isoflop") if f in figures], y)
    if plan is not None:
        out.append(plan)
    if analysis.isoflops:
        out.append(isoflop_section(analysis, figures.get("fig-isoflop-measured"), y))
    from scalelab.report.tuning import sections as settings_sections

    out.extend(settings_sections(analysis, figures))
    from scalelab.report.federated import federated_section

    federated = federated_section(analysis, figures)
    if federated is not None:
        out.append(federated)
    out.append(failures_section(data))
    return out


class Fmt:
    """How the target and scales are written: error rates as percentages, counts with k/M."""

    def __init__(self, data: ReportData):
        self.percent = data.is_error_rate

    def y(self, v) -> str:
        return format_metric(v, percent=self.percent)  # as the terminal writes it

    def y_interval(self, v, lo, hi) -> str:
        return f"{self.y(v)} [{self.y(lo)}, {self.y(hi)}]"

    def abs_error(self, v) -> str:
        if v is None or not np.isfinite(v):
            return "—"
        return f"{100 * v:.2g} pts" if self.percent else f"{v:.3g}"


def num(v) -> str:
    """A plain number: 1,234 for whole counts, 3 significant digits otherwise."""
    if v is None:
        return "—"
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15):
        return f"{int(v):,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "—"
        return f"{v:.3g}"
    return str(v)


def summary_section(data: ReportData, analysis: Analysis, y: Fmt) -> dict:
    pairs = []
    if data.kind == "study":
        pairs.append(("study", data.title))
        pairs.append(("study file", data.source))
        pairs.append(("store", data.store or ""))
        if data.dataset:
            pairs.append(("dataset", data.dataset))
        for key, values in data.grid.items():
            pairs.append((f"grid: {key}", ", ".join(figs_value(v) for v in values)))
    else:
        pairs.append(("runs file", data.source))
        pairs.append(("columns", ", ".join(map(str, data.runs.columns))))
    pairs.append(("target", f"{data.y_col} ({figs.label_of(data.y_col)})"))
    pairs.append(("laws", f"{data.y_col} against {' and '.join(data.x_cols)}" + (f", one per {data.group}" if data.group else "")))
    pairs.append(("cells" if data.kind == "study" else "rows", f"{len(data.runs):,} ({_count_text(data)})"))
    done = data.runs[data.runs["state"] == "done"] if "state" in data.runs.columns else data.runs
    for col, label, fmt in (("flops", "training FLOPs, all runs", lambda v: f"{v:.3g}"),
                            ("wall_s", "wall time, all runs", format_seconds)):  # fmt: skip
        if col in done.columns:
            total = pd.to_numeric(done[col], errors="coerce").sum()
            if total > 0:
                pairs.append((label, fmt(float(total))))
    for col in ("device", "torch_version"):
        if col in done.columns and done[col].notna().any():
            pairs.append((col.replace("_", " "), ", ".join(sorted(map(str, done[col].dropna().unique())))))
    if len(data.done) and data.y_col in data.done.columns:
        best = data.done.loc[pd.to_numeric(data.done[data.y_col]).idxmin()]
        where = ", ".join(f"{k} {figs_value(best[k])}" for k in [*data.size_keys, "data_fraction", "n_train"] if k in best.index)
        pairs.append((f"best {figs.label_of(data.y_col)}", f"{y.y(float(best[data.y_col]))}" + (f" ({where})" if where else "")))
    return section("summary", "Summary", pairs=pairs, notes=[*data.notes, *analysis.notes])


def _count_text(data: ReportData) -> str:
    if "state" not in data.runs.columns:
        return "no states recorded"
    counts = data.runs["state"].value_counts()
    return ", ".join(f"{counts.get(s, 0)} {s}" for s in STATES if counts.get(s, 0))


def figs_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def states_section(data: ReportData) -> dict:
    s = section("states", "Runs by state")
    if "state" not in data.runs.columns:
        s["empty"] = "This file records no run states; every row is taken as done."
        return s
    runs = data.runs
    by = "family" if "family" in runs.columns and runs["family"].nunique() > 1 else None
    columns = ["family"] if by else []
    rows = []
    for key, part in (runs.groupby(by, sort=True) if by else [(None, runs)]):
        c = part["state"].value_counts()
        rows.append(([str(key)] if by else []) + [num(int(c.get(state, 0))) for state in STATES] + [num(len(part))])
    if by:
        c = runs["state"].value_counts()
        rows.append(["all"] + [num(int(c.get(state, 0))) for state in STATES] + [num(len(runs))])
    s["tables"] = [table([*columns, *STATES, "total"], rows, numeric=[False] * len(columns) + [True] * (len(STATES) + 1))]
    return s


def quality_table(data: ReportData, y: Fmt) -> dict:
    rows_in = data.quality_runs
    # Full data by data fraction where there is one: class imbalance drops samples, changing
    # n_train, so the largest n_train alone would leave every imbalanced level out.
    scale = "data_fraction" if "data_fraction" in rows_in.columns else "n_train"
    full = rows_in[rows_in[scale] == rows_in.groupby("family")[scale].transform("max")] if "family" in rows_in.columns else rows_in[rows_in[scale] == rows_in[scale].max()]
    key = data.quality_keys[0]
    by = "family" if "family" in full.columns else None
    pivot = full.pivot_table(index=by, columns=key, values=data.y_col, aggfunc="mean") if by else full.groupby(key)[data.y_col].mean().to_frame().T
    levels = list(pivot.columns)
    rows = [[str(idx)] + [y.y(float(v)) for v in row] for idx, row in pivot.iterrows()]
    return table(
        ["family" if by else "", *[f"{key} = {figs_value(v)}" for v in levels]], rows, numeric=[False] + [True] * len(levels),
        caption=f"Mean {figs.label_of(data.y_col)} at full data over every model size and seed, by {key}.",
    )  # fmt: skip


def fairness_section(data: ReportData, analysis: Analysis, figure) -> dict | None:
    """Worst-class error and the class gap against scale, and the answer the runs give to
    "does scaling close the gap or widen it?"; None when no run recorded per-class results."""
    if data.fairness_runs is None:
        return None
    s = section("fairness", "Fairness across classes", figures=[figure] if figure else [])
    s["paragraphs"] = [("Every classification run records its error on each class. The worst-class error is the error "
                        "on the class a model serves worst; the class error gap is that minus its error on the class it "
                        "serves best, in percentage points. A low mean error can hide a class the model mostly gets wrong.")]  # fmt: skip
    if analysis.fairness:
        s["paragraphs"].append(gap_answer(analysis.fairness))
        s["paragraphs"].extend(gap_sentence(t, data) for t in analysis.fairness)
    elif data.fairness_runs["n_train"].nunique() < 2:
        s["empty"] = "No trend to read: the runs with per-class results cover a single training-set size."
    else:
        s["empty"] = "No trend to read: the runs record no class error gap at the largest model's data sizes."
    if "worst_group_error" in data.fairness_runs.columns and data.fairness_runs["worst_group_error"].notna().any():
        s["tables"] = [group_table(data)]
    return s


def gap_answer(trends: list[GapTrend]) -> str:
    """One line over every family and imbalance level: does more data close the gap?"""
    counts = Counter(t.direction for t in trends)
    lead = "Does scaling close the gap between classes? "
    if counts["narrows"] == len(trends):
        return lead + "Here, yes: with more training data, the largest model's class error gap narrows in every case below."
    if counts["widens"] == len(trends):
        return lead + "Here, no: with more training data, the largest model's class error gap widens in every case below."
    if counts["stays"] == len(trends):
        return lead + "Here, neither: with more training data, the largest model's class error gap stays level in every case below."
    parts = [f"{d} in {counts[d]}" for d in ("narrows", "widens", "stays") if counts[d]]
    said = ", ".join(parts[:-1]) + f" and {parts[-1]}"
    return lead + f"Not uniformly: with more training data, the largest model's class error gap {said} of the {len(trends)} cases below."


def gap_sentence(t: GapTrend, data: ReportData) -> str:
    """``mlp, width 2 (8,000 parameters): as training samples grow from 337 to 1,347, the
    class error gap narrows from 23.1 to 9.8 percentage points (worst-class error 41% → 18%).``"""
    who = t.model + (f" ({num(round(t.n_params))} parameters)" if t.n_params is not None else "")
    if t.imbalance is not None:
        who += f", {data.imbalance_key} = {t.imbalance:g}"
    change = f"stays at {pts(t.gap_hi)}" if t.direction == "stays" else f"{t.direction} from {pts(t.gap_lo)} to {pts(t.gap_hi)}"
    text = (f"{who}: as training samples grow from {num(t.n_lo)} to {num(t.n_hi)}, the class error gap {change} "
            f"percentage points (worst-class error {pct(t.worst_lo)} → {pct(t.worst_hi)}).")  # fmt: skip
    if t.smallest_model is not None and t.smallest_gap is not None:
        text += f" At {num(t.n_hi)} samples the smallest model ({t.smallest_model}) has a gap of {pts(t.smallest_gap)} points."
    return text


def group_table(data: ReportData) -> dict:
    """Per-group results of each family's largest model at each training-set size: the
    mean worst-group error and group gap over seeds, and which group was worst."""
    rows_in = data.fairness_runs
    rows_in = rows_in[rows_in["worst_group_error"].notna()]
    key = data.imbalance_key
    by_family = "family" in rows_in.columns and rows_in["family"].nunique() > 1
    rows = []
    for family, fam_rows in (rows_in.groupby("family", sort=True) if by_family else [(None, rows_in)]):
        largest, _ = size_extremes(fam_rows)
        model_rows = fam_rows[fam_rows["model"] == largest]
        for level, level_rows in (model_rows.groupby(key, sort=True) if key else [(None, model_rows)]):
            for n_train, point in level_rows.groupby("n_train", sort=True):
                gap = point["group_error_gap"].mean() if "group_error_gap" in point.columns else None
                rows.append(([str(family)] if by_family else []) + [largest] + ([figs_value(level)] if key else []) + [
                    num(n_train), pct(point["worst_group_error"].mean()), pts(gap), worst_group(point.get("group_error"))])  # fmt: skip
    columns = (["family"] if by_family else []) + ["model"] + ([key] if key else []) + [
        "training samples", "worst-group error", "group error gap (points)", "worst group"]  # fmt: skip
    numeric = [c in ("training samples", "worst-group error", "group error gap (points)") for c in columns]
    return table(columns, rows, numeric=numeric, id="group-table", title="Groups",
                 caption="The largest model of each family, means over seeds: its error on the group it serves worst, the "
                         "gap to its best group, and the group most often worst across seeds.")  # fmt: skip


def worst_group(values) -> str:
    """The group most often worst over seeds, read from each run's ``group_error`` dict."""
    names = [max(d, key=d.get) for d in (values if values is not None else []) if isinstance(d, dict) and d]
    return Counter(names).most_common(1)[0][0] if names else "—"


def compression_section(data: ReportData, analysis: Analysis, figure) -> dict | None:
    """The target after compression against model bytes and inference speed, the settings
    on each Pareto frontier, and a table of each model as trained against its compressed
    versions; None when the grid sweeps neither prune nor quantize (or no run recorded sizes)."""
    from scalelab.fitting import is_error_rate

    points = analysis.compression
    if data.compression_runs is None or points is None or not len(points):
        return None
    s = section("compression", "Compression", figures=[figure] if figure else [])
    s["paragraphs"] = [(f"The grid sweeps {', '.join(data.compression_keys)}: after training, each model was pruned (that "
                        "share of its weights with the smallest magnitude zeroed, across layers) and/or quantised (its "
                        "Linear layers converted to int8), then tested again. Pruning lowers the non-zero parameters but "
                        "not the bytes stored (the zeros are kept); int8 shrinks the bytes. Laws, curves and frontiers "
                        "elsewhere use the " + ("uncompressed runs." if (points["compression"] == "uncompressed").any()
                                                else "mildest setting swept (see the notes in the summary)."))]  # fmt: skip
    if data.setting_keys:
        s["paragraphs"][0] += (f" With {', '.join(data.setting_keys)} swept, each point has the setting with the best mean for "
                               "its model, data and compression (the envelope).")  # fmt: skip
    y = data.compression_y
    fmt = pct if is_error_rate(y) else (lambda v: f"{v:.4g}")
    for flag, col, what, unit in (("on_bytes_frontier", "model_bytes", "model bytes (nothing smaller does better)", lambda v: f"{num(round(v))} bytes"),
                                  ("on_speed_frontier", "inference_samples_per_s", "inference speed (nothing faster does better)", lambda v: f"{figs._si(v)} samples/s")):  # fmt: skip
        front = points[points[flag]] if col in points.columns else points.iloc[:0]
        if len(front):
            front = front.sort_values(col, ascending=col == "model_bytes")
            said = "; ".join(f"{m}, {c} ({unit(v)}, {fmt(e)})" for m, c, v, e in zip(front["model"], front["compression"], front[col], front[y]))
            s["paragraphs"].append(f"On the frontier of {figs.label_of(y)} against {what}: {said}.")
    devices = {d for v in points["inference_device"] for d in str(v).split(", ") if d}
    if len(devices) > 1:
        s["notes"] = [(f"Inference was timed on more than one device ({', '.join(sorted(devices))}): int8 models run on the "
                       "CPU, so their samples/s compare only with runs timed there.")]  # fmt: skip
    s["tables"] = [compression_table(points)]
    return s


def compression_table(points: pd.DataFrame) -> dict:
    """Each model as trained against each compressed setting: means over seeds of the test
    error before and after, the non-zero parameters, the bytes and the inference speed."""
    rows = []
    for _, p in points.iterrows():
        after = p.get("test_error")
        before = after if p["compression"] == "uncompressed" else p.get("test_error_before_compression")
        change = "—" if p["compression"] == "uncompressed" or after is None or before is None else pts_signed(after - before)
        rows.append([p["model"], p["compression"], pct(before), pct(after), change, count(p.get("nonzero_params")),
                     count(p.get("model_bytes")), rate(p.get("inference_samples_per_s")), num(int(p["seeds"]))])  # fmt: skip
    columns = ["model", "compression", "test error before", "test error after", "change (points)", "non-zero parameters",
               "model bytes", "inference samples/s", "seeds"]  # fmt: skip
    return table(columns, rows, numeric=[False, False, *[True] * 7], id="compression-table",
                 caption="Means over seeds at each model's largest training set. Before: the model as trained (for a "
                         "compressed run, as it recorded before compression); after: the compressed model.")  # fmt: skip


def transfer_section(data: ReportData, analysis: Analysis, figure) -> dict | None:
    """Fine-tuned runs against runs from scratch: the figure, a one-line answer, each
    point's D_E and D_T with intervals, and the fit D_T = k·D_F^α·N^β; None when the grid
    does not sweep init_from."""
    if not data.transfer_keys:
        return None
    s = section("transfer", "Transfer learning", figures=[figure] if figure else [])
    result = analysis.transfer
    s["paragraphs"] = [(f"The grid sweeps {', '.join(data.transfer_keys)}: each model trains on fractions of the target data "
                        "from scratch and fine-tuned from a checkpoint. For fine-tuned runs on D_F target samples, D_E (the "
                        "effective data) is how many samples the same model would need from scratch to do as well, read off "
                        "its from-scratch law; D_T = D_E − D_F is the data the checkpoint was worth (negative when it "
                        "hurt). Every other section of this report uses the runs from scratch only.")]  # fmt: skip
    if result is None or not result.points:
        s["empty"] = "No transfer analysis: the runs cannot support it (see the notes in the summary)."
        return s
    s["paragraphs"].append(transfer_answer(result))
    lvl = f"{result.level:.0%}"
    if result.fit is not None:
        fit = result.fit
        names = {"k": "k", "alpha": "α", "beta": "β"}
        spans = [f"{names[k]} = {getattr(fit, k):.3g}" + (f" [{fit.intervals[k][0]:.3g}, {fit.intervals[k][1]:.3g}]" if k in fit.intervals else "")
                 for k in ("k", "alpha", "beta") if getattr(fit, k) is not None]  # fmt: skip
        s["paragraphs"].append(f"Fitted over the {fit.n_points} points with a finite, positive D_T: {fit.formula()} "
                               f"(N: parameters), with {lvl} intervals {', '.join(spans)}.")  # fmt: skip
    else:
        s["paragraphs"].append("No fit of D_T = k·D_F^α·N^β: too few points with a finite, positive D_T at two or more target sizes.")
    drawn = sum(1 for p in result.points if np.isfinite(p.d_t) and p.d_t > 0)
    s["notes"] = list(result.notes)
    if drawn < len(result.points):
        s["notes"].append(f"{len(result.points) - drawn} of {len(result.points)} points have D_T ≤ 0 or infinite: the figure's "
                          "right panel (log axes) leaves them out; the table lists them.")  # fmt: skip
    s["tables"] = [transfer_table(result, data)]
    return s


def transfer_answer(result) -> str:
    """``Fine-tuning beat training from scratch at 11 of 12 target fractions; at the
    smallest fraction (168 samples) it was worth D_T ≈ 210 extra samples.``"""
    points = result.points
    beat = sum(1 for p in points if (p.y_finetuned < p.y_scratch if p.y_scratch is not None else p.d_t > 0))
    models = {transfer_model(p, result.laws) for p in points}
    over = f" (each model and setting counted apart, {len(models)} of them)" if len(models) > 1 else ""
    smallest = min(p.d_f for p in points)
    first = [p for p in points if p.d_f == smallest]
    values = sorted(p.d_t for p in first)
    if len(values) == 1:
        worth = f"D_T ≈ {samples(values[0])} extra samples [{samples(first[0].d_t_lo)}, {samples(first[0].d_t_hi)}]"
    else:
        worth = f"D_T ≈ {samples(values[0])} to {samples(values[-1])} extra samples, by model"
    if values[-1] <= 0:
        worth += " (negative transfer: the checkpoint hurt)"
    return (f"Fine-tuning beat training from scratch at {beat} of {len(points)} target fractions{over}; at the smallest "
            f"fraction ({num(smallest)} samples) it was worth {worth}.")  # fmt: skip


def transfer_table(result, data: ReportData) -> dict:
    """One row per fine-tuned point: its model, fraction, D_F, the two means, D_E and D_T."""
    fmt = Fmt(data)
    lvl = f"{result.level:.0%}"
    order = {model: i for i, model in enumerate(result.laws)}  # the models in the order of their laws
    rows = []
    for p in sorted(result.points, key=lambda p: (order.get(transfer_model(p, result.laws)[0], len(order)), p.model, p.d_f)):
        rows.append([p.model, figs_value(p.data_fraction) if p.data_fraction is not None else "—", samples(p.d_f), fmt.y(p.y_finetuned),
                     fmt.y(p.y_scratch), f"{samples(p.d_e)} [{samples(p.d_e_lo)}, {samples(p.d_e_hi)}]",
                     f"{samples(p.d_t)} [{samples(p.d_t_lo)}, {samples(p.d_t_hi)}]", "yes" if p.extrapolated else "",
                     num(p.n_seeds)])  # fmt: skip
    columns = ["model", "data fraction", "D_F (target samples)", f"fine-tuned {data.y_col}", f"from-scratch {data.y_col}",
               f"D_E [{lvl}]", f"D_T [{lvl}]", "extrapolated", "seeds"]  # fmt: skip
    return table(columns, rows, numeric=[False, True, True, True, True, True, True, False, True], id="transfer-table",
                 nowrap=(columns[5], columns[6]),
                 caption="Means over seeds. D_E: the from-scratch samples the fine-tuned mean is worth, read off the "
                         "model's from-scratch law; D_T = D_E − D_F. Intervals: the law's bootstrap with the seeds "
                         "resampled. Extrapolated: D_E lies beyond the largest from-scratch run; ∞: the law never gets "
                         "as good.")  # fmt: skip


def samples(v) -> str:
    """A number of samples: 1,234, −56, ∞ (D_E beyond what the law reaches), — (none)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return num(round(float(v))).replace("-", "−")


def count(v) -> str:
    """A mean of counts, rounded to a whole number: 1234.5 → 1,234 (round half to even)."""
    return "—" if v is None or not np.isfinite(v) else num(round(float(v)))


def rate(v) -> str:
    """A throughput, three significant digits: 1687477.2 → 1.69M."""
    return "—" if v is None or not np.isfinite(v) else figs._si(float(v))


def pts_signed(v) -> str:
    """A change of error rate in percentage points, signed: 0.0123 → +1.2."""
    return "—" if v is None or not np.isfinite(v) else f"{100 * v:+.1f}"


def pct(v) -> str:
    """An error rate as a percentage: 0.1234 → 12.3%."""
    return "—" if v is None or not np.isfinite(v) else f"{100 * v:.3g}%"


def pts(v) -> str:
    """A difference of error rates in percentage points, one decimal: 0.0981 → 9.8."""
    return "—" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def winners_section(data: ReportData) -> dict:
    w = data.winners
    score = w.attrs.get("score", data.y_col)
    keys = [c for c in w.columns if c not in data.setting_keys]
    rows = [[figs_value(r[c]) for c in w.columns] for _, r in w.iterrows()]
    return section(
        "settings", "Best settings",
        paragraphs=[(f"The grid sweeps {', '.join(data.setting_keys)}. At each {' × '.join(keys)}, the setting with the lowest "
                     f"mean {score} over seeds is the one curves and laws use:")],
        tables=[table(list(w.columns), rows, numeric=[c not in data.setting_keys and c != "family" for c in w.columns])],
    )  # fmt: skip


def laws_section(data: ReportData, analysis: Analysis, figure, y: Fmt) -> dict:
    from scalelab.laws import FORMS

    s = section("laws", "Fitted laws", figures=[figure] if figure else [])
    if not analysis.laws:
        s["empty"] = "No law was fitted (see the notes in the summary)."
        return s
    lvl = f"{analysis.level:.0%}"
    grouped = data.group is not None
    rows = []
    # Curves that failed for one reason shared by several (a federated grid's settings of
    # one point each, say) are one row that names them, not a row of dashes apiece.
    unfitted = Counter(r.error or "" for r in analysis.laws if r.law is None)
    for r in analysis.laws:
        head = [figs_value(r.group)] if grouped else []
        if r.law is None:
            if not (grouped and unfitted[r.error or ""] > 1):
                rows.append(head + ["—", "", "", "", r.error or ""])
            continue
        law = r.law
        spans = r.param_intervals
        params = [f"{k} = {v:.4g}" + (f" [{spans[k][0]:.3g}, {spans[k][1]:.3g}]" if k in spans else "")
                  + (f" (at its {law.at_bound[k]} bound)" if k in law.at_bound else "") for k, v in law.params.items()]  # fmt: skip
        pred = ""
        if r.prediction is not None:
            px = r.prediction["x"]
            where = f"{data.x_cols[0]} {num(float(px[0]))}, {data.x_cols[1]} {num(float(px[1]))}" if len(px) == 2 else f"{data.x_cols[0]} {num(float(px[0]))}"
            pred = [f"at {where}:", y.y_interval(r.prediction["y"], r.prediction["lo"], r.prediction["hi"])]
        note = [*selection_notes(law), *(getattr(law.data, "notes", []) or [])]
        if r.error:
            note.append(r.error)
        formula = FORMS[law.form].formula if law.form in FORMS else ""
        rows.append(head + [[law.form, formula], params, num(law.n_points), pred, note])
    for error, count in unfitted.items():
        if grouped and count > 1:
            names = "; ".join(figs_value(r.group) for r in analysis.laws if r.law is None and (r.error or "") == error)
            rows.append([f"{count} curves", "—", "", "", "", f"{error}: {names}"])
    notes, footnotes = footnoted([row[-1] if isinstance(row[-1], list) else [row[-1]] if row[-1] else [] for row in rows])
    rows = [[*row[:-1], n] for row, n in zip(rows, notes)]
    columns = (["group" if data.group != "model" else "model"] if grouped else []) + [
        "form", f"parameters [{lvl} interval]", "points", f"forecast at {EXTRAPOLATE:g}× [{lvl}]", "notes"]  # fmt: skip
    s["tables"] = [table(columns, rows, numeric=([False] if grouped else []) + [False, False, True, False, False], id="laws-table",
                         nowrap=("form", columns[-4]), notes=footnotes,
                         caption=f"{data.y_col} against {' and '.join(data.x_cols)}; intervals: bootstrap over runs; "
                                 f"the forecast is at {EXTRAPOLATE:g}× the largest {data.x_cols[-1]} fitted.")]  # fmt: skip
    return s


AUTO_AVERAGED = ("auto averaged the forms listed, weighted by their extrapolation error inside the data: the mean |log "
                 "error| of each when the largest scales are held out and forecast (lower is better). The parameters "
                 "shown are the heaviest form's.")  # fmt: skip


def selection_notes(law) -> list[str]:
    """What auto did for one law: its weights and scores (the row's own numbers) and, as a
    separate note that :func:`footnoted` turns into one footnote, what they mean."""
    if not law.selection:
        return []
    scored = sorted(((k, v) for k, v in law.selection.items() if v is not None), key=lambda kv: kv[1])
    if len(scored) < 2 or not law.weights:
        return [law.selection_summary()]
    weights = ", ".join(f"{k} {w:.0%}" for k, w in sorted(law.weights.items(), key=lambda kv: -kv[1]))
    errors = ", ".join(f"{k} {v:.3g}" for k, v in scored)
    return [f"auto: {weights}; |log error| {errors}", AUTO_AVERAGED]


def backtest_section(data: ReportData, analysis: Analysis, figure, y: Fmt) -> dict:
    """Per group (rows) and form (columns): the forecast's relative error and its interval's coverage."""
    s = section("backtest", "Backtest", figures=[figure] if figure else [])
    if not analysis.backtests:
        s["empty"] = "No backtest: it needs at least three distinct scales (see the notes in the summary)."
        return s
    lvl = f"{analysis.level:.0%}"
    forms = list(dict.fromkeys(r.form for g in analysis.backtests for r in g["rows"]))
    grouped = data.group is not None
    rows, failures, scores = [], [], {f: [] for f in forms}
    for g in analysis.backtests:
        head = [figs_value(g["group"])] if grouped else []
        if g.get("error"):
            failures.append(f"{figs_value(g['group'])}: {g['error']}")
            continue
        by_form = {r.form: r for r in g["rows"]}
        cells = []
        for form in forms:
            r = by_form.get(form)
            if r is None or r.error:
                cells.append("—")
                if r is not None:
                    failures.append(f"{form}" + (f" ({figs_value(g['group'])})" if grouped else "") + f": {r.error}")
                continue
            scores[form].append((r.rel_error, r.coverage, r.abs_error))
            cells.append(f"{r.rel_error:.1%} ({r.coverage:.0%})" + (f", {r.chosen}" if r.chosen else ""))
        scored = {f: by_form[f].rel_error for f in forms if f != "auto" and f in by_form and not by_form[f].error}
        best = min(scored, key=scored.get) if scored else ""
        fit_on = next((num(r.n_fit) for r in g["rows"] if not r.error), "")
        rows.append(head + [fit_on, *cells, best])
    if len(rows) > 1:
        mean = [f"{np.mean([v[0] for v in scores[f]]):.1%} ({np.mean([v[1] for v in scores[f]]):.0%})" if scores[f] else "—" for f in forms]
        rows.append((["mean"] if grouped else []) + ["", *mean, ""])
    columns = (["group" if data.group != "model" else "model"] if grouped else []) + ["fitted on", *forms, "best"]
    numeric = ([False] if grouped else []) + [True] + [True] * len(forms) + [False]
    s["paragraphs"] = [(f"Each form is fitted on the runs below the largest {data.x_cols[-1]} of its group and forecasts the "
                        f"runs at it. Cells: the forecast's mean relative error, and in parentheses the share of the "
                        f"held-out runs inside its {lvl} interval; auto also names the form it chose.")]  # fmt: skip
    s["tables"] = [table(columns, rows, numeric=numeric, nowrap=tuple(forms), id="backtest-table")]
    s["notes"] = failures
    return s


def plan_section(data: ReportData, analysis: Analysis, figures: list, y: Fmt) -> dict | None:
    if not analysis.plans:
        if len(data.x_cols) == 2 or data.kind == "study":
            return section("plan", "Plan", empty="No plan: a joint law needs at least two model sizes and two data sizes "
                                                "with measured FLOPs (see the notes in the summary).")  # fmt: skip
        return None
    lvl = f"{analysis.level:.0%}"
    s = section("plan", "Plan", figures=figures)
    budget_rows, tables = [], []
    for p in analysis.plans:
        a = p.allocation
        budget_rows.append([
            p.label, f"{a.flops:.3g}", f"{num(round(a.n_params))} [{num(round(a.n_params_range[0]))}, {num(round(a.n_params_range[1]))}]",
            f"{num(round(a.samples))} [{num(round(a.samples_range[0]))}, {num(round(a.samples_range[1]))}]",
            y.y_interval(a.predicted, a.lo, a.hi),
            [f"{k} = {v:.4g}" for k, v in p.law.params.items()], p.k_source,
        ])  # fmt: skip
        m_rows = [[name, num(round(v["n_params"])), num(round(v["samples"])), y.y_interval(v["predicted"], v["lo"], v["hi"])]
                  for name, v in p.marginal.items()]  # fmt: skip
        best = f" (mean of {p.best['seeds']} runs: {y.y(p.best['mean'])})" if p.best else ""
        tables.append(table(["option", "parameters N", "samples D", f"predicted {data.y_col} [{lvl}]"], m_rows,
                            numeric=[False, True, True, True], title=f"{p.label}: what doubling buys, from the best point{best}"))  # fmt: skip
    s["paragraphs"] = [(f"A joint law L(N, D) = E + A/N^α + B/D^β per family, and the compute-optimal split of a budget of "
                        f"{EXTRAPOLATE:g}× the largest run's training FLOPs.")]  # fmt: skip
    for p in analysis.plans:
        said = [f"{p.label}: {p.verdict}"] if p.verdict else []
        if p.hardware:
            h = p.hardware
            said.append(f"The planned run on one {h['name'].upper()} in {h['precision']}: about {format_hours(h['hours'])} "
                        f"[{format_hours(h['hours_range'][0])}, {format_hours(h['hours_range'][1])}] at {h['mfu']:.0%} MFU "
                        f"({h['mfu_source']}).")  # fmt: skip
        s["paragraphs"].append(" ".join(said))
    s["tables"] = [table(["family" if data.kind == "study" else "group", "budget (FLOPs)", f"parameters N [{lvl}]",
                          f"samples D [{lvl}]", f"predicted {data.y_col} [{lvl}]", "joint law", "cost model"],
                         budget_rows, numeric=[False, True, True, True, True, False, False], nowrap=("joint law",),
                         id="plan-table"), *tables]  # fmt: skip
    return s


def isoflop_section(analysis: Analysis, figure, y: Fmt) -> dict:
    """Chinchilla's approach 2 on the measured runs: each budget's floor, and the exponents."""
    lvl = f"{analysis.level:.0%}"
    s = section("isoflop", "IsoFLOP profiles (measured)", figures=[figure] if figure is not None else [])
    rows = []
    for result in analysis.isoflops:
        fit = result["isoflop"]
        s["paragraphs"].append(
            f"{result['label']}: N*(C) ∝ C^a with a = {fit['a']:.3f} [{fit['a_range'][0]:.3f}, {fit['a_range'][1]:.3f}] and "
            f"D*(C) ∝ C^b with b = {fit['b']:.3f} [{fit['b_range'][0]:.3f}, {fit['b_range'][1]:.3f}] ({lvl} intervals); "
            "Chinchilla found a ≈ b ≈ 0.5 and about 20 tokens per parameter at the optimum."
        )
        for p in fit["profiles"]:
            if p["n_params_opt"] is None:
                rows.append([result["label"], f"{p['flops']:.3g}", str(len(p["runs"])), "no floor", "", "", p["why"] or ""])
                continue
            lo, hi = p["n_params_opt_range"] or (math.nan, math.nan)
            rows.append([result["label"], f"{p['flops']:.3g}", str(len(p["runs"])), f"{num(round(p['n_params_opt']))} [{num(round(lo))}, {num(round(hi))}]",
                         num(round(p["tokens_opt"])), f"{p['tokens_opt'] / p['n_params_opt']:.3g}", y.y(p["loss_opt"]) if p["interior"] else
                         f"{y.y(p['loss_opt'])} (floor outside the sizes run)"])  # fmt: skip
    s["notes"] = [n for result in analysis.isoflops for n in result["notes"][1:]]
    s["tables"] = [table(["family", "budget (FLOPs)", "runs", f"N* [{lvl}]", "D*", "D*/N*", "at the floor"], rows,
                         numeric=[False, True, True, True, True, True, False], id="isoflop-table")]  # fmt: skip
    return s


def failures_section(data: ReportData) -> dict:
    s = section("failures", "Failed and diverged cells")
    runs = data.runs
    if "state" not in runs.columns:
        s["empty"] = "This file records no run states."
        return s
    bad = runs[runs["state"].isin(["failed", "diverged"])]
    if not len(bad):
        s["empty"] = "None: every finished cell trained cleanly."
        return s
    keys = [k for k in data.grid if k in bad.columns]
    rows = []
    for _, r in bad.iterrows():
        reason = str(r.get("reason") or "no reason recorded")
        lines = reason.rstrip().splitlines()
        shown = "\n".join((["…"] if len(lines) > REASON_LINES else []) + lines[-REASON_LINES:])
        attempts = r.get("attempts")
        rows.append([str(r["cell_id"]), str(r["state"]), [f"{k} = {figs_value(r[k])}" for k in keys],
                     num(int(attempts)) if attempts is not None and not pd.isna(attempts) else "", {"pre": shown}])  # fmt: skip
    s["paragraphs"] = [(f"{len(bad)} cells did not finish cleanly; they are left out of every figure and law. "
                        f"The full text of each reason: scalelab runs {data.title} --store {data.store} --format csv (column reason). "
                        "Rerun them with scalelab run --retry-failed.")]  # fmt: skip
    s["tables"] = [table(["cell", "state", "grid values", "attempts", "reason"], rows,
                         numeric=[False, False, False, True, False], id="failures-table")]  # fmt: skip
    return s


__all__ = ["Report", "build_report", "write_html"]
