"""The report's figures: one function per figure, each returning a :class:`Figure` or None.

matplotlib's object API on the Agg canvas (no pyplot, so no global state changes in a
notebook). Conventions, so every figure reads the same way at a glance:

* log axes for scales (samples, parameters, FLOPs) and for the target, with plain tick
  labels (``2k``, ``5%``) rather than powers of ten over a narrow range;
* model size is a colour scale (viridis, dark = small) with a colour bar;
* the seed spread is a band (min to max over seeds) around the mean;
* a law is solid over its data and dashed, on a shaded background, where it extrapolates;
* legends sit outside the axes, so they never cover data.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps, rc_context
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, LogNorm, Normalize
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from scalelab.report.data import QUALITY_LABELS, ReportData

DPI = 110
STYLE = {
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.labelsize": 9.5,
    "axes.grid": True,
    "axes.grid.which": "both",
    "grid.alpha": 0.25,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "figure.facecolor": "white",
}
# The top of viridis is a pale yellow that vanishes on white: stop at 85%.
SIZE_CMAP = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.85, 256)), name="viridis85")
FORM_MARKERS = {"power": "o", "saturating": "s", "m3": "^", "m4": "D", "bnsl": "v", "chinchilla": "P", "auto": "*"}
LABELS = {
    "n_train": "training samples",
    "n_params": "parameters",
    "samples": "training samples processed",
    "flops": "training FLOPs (measured)",
    "compute": "training compute",
    "test_error": "test error",
    "test_loss": "test loss",
    "val_error": "validation error",
    "val_loss": "validation loss",
    "train_loss": "training loss",
    "worst_class_error": "worst-class error",
    "best_class_error": "best-class error",
    "class_error_gap": "class error gap",
    "worst_group_error": "worst-group error",
    "group_error_gap": "group error gap",
    "model_bytes": "model size (bytes, serialised)",
    "inference_samples_per_s": "inference samples/s",
    "nonzero_params": "non-zero parameters",
}
# Class-imbalance levels by line style and marker (colour is taken by model size); the
# mildest level gets the solid line, so the balanced runs read as the reference.
LEVEL_LINES = ("-", "--", ":", "-.")
LEVEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass
class Figure:
    """A rendered figure: its anchor id, title, caption and PNG bytes (base64)."""

    id: str
    title: str
    caption: str
    png_base64: str
    width: int
    height: int


def label_of(column: str) -> str:
    return LABELS.get(column, column)


def plain(text) -> str:
    """User text for a matplotlib label: ``$`` would start mathtext."""
    return str(text).replace("$", r"\$")


# -- rendering helpers -------------------------------------------------------------------
def render(fig: MplFigure, *, id: str, title: str, caption: str) -> Figure:
    buffer = io.BytesIO()
    # No metadata: the PNG carries nothing but pixels (no software name, no URL).
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.08)
    data = buffer.getvalue()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return Figure(id, title, caption, base64.b64encode(data).decode("ascii"), width, height)


def _figure(n_panels: int, *, ncols: int = 3, panel=(3.6, 2.9), extra_width: float = 0.0):
    ncols = max(1, min(n_panels, ncols))
    nrows = math.ceil(n_panels / ncols)
    fig = MplFigure(figsize=(panel[0] * ncols + extra_width, panel[1] * nrows + 0.3), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _si(value: float) -> str:
    """2000 → 2k, 3.5e6 → 3.5M, 0.05 → 0.05."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    for factor, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _log_axis(ax, which: str, values, *, percent: bool = False, points: bool = False, dense: bool | None = None) -> None:
    """Log scale with readable ticks: 1-2-5 or 1-3 steps over narrow ranges, decades over wide ones.

    Over a narrow range 1-2-5 steps alone can leave a third of the target's axis bare (an
    error rate from 3% to 22% gets only 5%, 10%, 20%), so a y axis (or any, with ``dense``)
    gets a few steps more there. ``points`` formats a difference of two rates as percentage
    points (no ``%`` sign).
    """
    values = np.asarray([v for v in np.ravel(values) if v is not None and np.isfinite(v) and v > 0], dtype=float)
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    decades = math.log10(values.max() / values.min()) if len(values) else 3
    subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades < 0.9 else (1.0, 2.0, 5.0) if decades < 1.6 else (1.0, 3.0) if decades < 3.2 else (1.0,)
    if which == "y" if dense is None else dense:
        subs = tuple(sorted({*subs, *_denser_steps(decades)}))
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(_tick_format(percent=percent, points=points)))
    axis.set_minor_formatter(NullFormatter())


def _tick_format(*, percent: bool, points: bool):
    if points:
        return lambda v, _: f"{100 * v:.3g}"
    return (lambda v, _: f"{100 * v:.3g}%") if percent else (lambda v, _: _si(v))


def _denser_steps(decades: float) -> tuple[float, ...]:
    """Steps added on a narrow axis: every integer within half a decade, 3 between 1-2-5 steps."""
    if decades < 0.5:
        return (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
    if 0.9 <= decades < 1.6:
        return (3.0,)
    return ()


def _y_axis(ax, data_y, y_col: str, *, error_rate: bool, limits=None, points: bool = False) -> None:
    """The target's axis: log when every value is positive, percentages for error rates
    (percentage points, with ``points``, for a gap between two rates).

    ``limits`` (lo, hi) fixes the range, so a wide interval band cannot squash the data.
    """
    values = np.asarray([v for v in np.ravel(data_y) if v is not None and np.isfinite(v)], dtype=float)
    log = len(values) and np.all(values > 0)
    unit = " (pts)" if points else " (%)" if error_rate and not log else ""
    ax.set_ylabel(label_of(y_col) + unit)
    if log:
        _log_axis(ax, "y", values if limits is None else limits, percent=error_rate, points=points)
    elif error_rate or points:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.3g}"))
    if limits is not None:
        ax.set_ylim(*limits)


def _band(ax, xs, lo, hi, *, limits, **style) -> None:
    """Fill an interval band, its edges clipped to the axis' ``limits`` (lo, hi).

    The limits come from the data and the curve: an interval that reaches 0 (an error
    rate's lower edge, far out) neither drags a log axis down to 1e-5 nor, at a
    non-positive edge, leaves a notch where the log scale drops the point.
    """
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    if limits is not None:
        lo = np.clip(np.nan_to_num(lo, nan=limits[0]), *limits)
        hi = np.clip(np.nan_to_num(hi, nan=limits[1], posinf=limits[1]), *limits)
    ax.fill_between(xs, lo, hi, lw=0, **style)


def _size_norm(values) -> Normalize:
    values = np.asarray([v for v in values if np.isfinite(v) and v > 0], dtype=float)
    if len(values) == 0:
        return Normalize(0, 1)
    lo, hi = values.min(), values.max()
    return LogNorm(lo, hi if hi > lo else lo * 10)


def _colour(norm, value) -> tuple:
    return SIZE_CMAP(float(np.clip(norm(value), 0, 1)))


MAX_BAR_TICKS = 8  # a colour bar labels each size up to this many, else 1-2-5 steps


def _colourbar(fig, axes, norm, label: str, *, ticks=None) -> None:
    """A colour bar for ``norm``; on a log scale, a plain label at each value in ``ticks``
    (the sizes drawn), since a decade's single label cannot say which colour is which size."""
    mappable = ScalarMappable(norm=norm, cmap=SIZE_CMAP)
    mappable.set_array([])
    bar = fig.colorbar(mappable, ax=axes, label=label, shrink=0.9, aspect=30, pad=0.02)
    if isinstance(norm, LogNorm):
        axis = bar.ax.yaxis
        shown = sorted({float(t) for t in (ticks if ticks is not None else []) if np.isfinite(t) and t > 0})
        if 1 < len(shown) <= MAX_BAR_TICKS:
            bar.set_ticks(shown)
            axis.set_minor_locator(LogLocator(subs=()))
        else:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_minor_formatter(NullFormatter())
        axis.set_major_formatter(FuncFormatter(lambda v, _: _si(v)))


def _spread(rows: pd.DataFrame, by: list[str], x: str, y: str) -> pd.DataFrame:
    """Mean, min and max of ``y`` over seeds at each (line, x)."""
    return rows.groupby([*by, x], dropna=False, sort=True)[y].agg(["mean", "min", "max", "count"]).reset_index()


def _panels_by_family(rows: pd.DataFrame):
    if "family" in rows.columns and rows["family"].nunique() > 1:
        return [(str(f), r) for f, r in rows.groupby("family", sort=True)]
    return [(None, rows)]


def _legend_below(fig, axes, handles, labels, *, title=None) -> None:
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), title=title)


# -- figures of the runs -----------------------------------------------------------------
def learning_curves(data: ReportData) -> Figure | None:
    """The target against training samples, one line per model size, seed spread as a band."""
    rows = data.done
    if data.kind != "study" or not len(rows) or "n_train" not in rows.columns or rows["n_train"].nunique() < 2:
        return None
    line = data.size_keys or []
    panels = _panels_by_family(rows)
    sizes = rows.groupby(line)["n_params"].mean() if line and "n_params" in rows.columns else None
    norm = _size_norm(sizes.to_numpy(float) if sizes is not None else [1.0])
    with rc_context(STYLE):
        fig, axes = _figure(len(panels), extra_width=1.0)
        for ax, (family, panel_rows) in zip(axes, panels):
            stats = _spread(panel_rows, line, "n_train", data.y_col)
            for key, s in (stats.groupby(line, sort=True) if line else [(None, stats)]):
                colour = _colour(norm, sizes.loc[key]) if sizes is not None else "C0"
                ax.plot(s["n_train"], s["mean"], "-o", color=colour, ms=3.5, lw=1.6)
                if (s["count"] > 1).any():
                    ax.fill_between(s["n_train"], s["min"], s["max"], color=colour, alpha=0.18, lw=0)
            _log_axis(ax, "x", panel_rows["n_train"])
            _y_axis(ax, panel_rows[data.y_col], data.y_col, error_rate=data.is_error_rate)
            ax.set_xlabel(label_of("n_train"))
            if family:
                ax.set_title(plain(family))
        if sizes is not None:
            _colourbar(fig, axes, norm, "model parameters", ticks=sizes.tolist())
    return render(fig, id="fig-learning-curves", title="Learning curves",
                  caption=f"{label_of(data.y_col).capitalize()} against training samples, one line per model size "
                          "(colour: parameters). Bands: min to max over seeds.")  # fmt: skip


def training_curves(data: ReportData) -> Figure | None:
    """Each run's loss during training against the compute spent, one line per run
    (colour: parameters): the validation loss where the runs have it, else the training loss."""
    rows = data.done[data.done["cell_id"].isin(data.training_curves)] if len(data.done) and "cell_id" in data.done.columns else data.done
    if data.kind != "study" or not len(rows) or not data.training_curves:
        return None
    points = [p for cell_id in rows["cell_id"] for p in data.training_curves[cell_id]]
    metric = "val_loss" if any(p.get("val_loss") is not None for p in points) else "train_loss"
    panels = _panels_by_family(rows)
    norm = _size_norm(rows["n_params"].to_numpy(float) if "n_params" in rows.columns else [1.0])
    with rc_context(STYLE):
        fig, axes = _figure(len(panels), extra_width=1.0)
        for ax, (family, panel_rows) in zip(axes, panels):
            xs, ys = [], []
            for _, run in panel_rows.iterrows():
                curve = [p for p in data.training_curves[run["cell_id"]] if p.get(metric) is not None and p.get("flops")]
                if not curve:
                    continue
                x, y = [p["flops"] for p in curve], [p[metric] for p in curve]
                colour = _colour(norm, run["n_params"]) if "n_params" in run else "C0"
                ax.plot(x, y, "-", color=colour, lw=1.2, alpha=0.85)
                xs += x
                ys += y
            if xs:
                _log_axis(ax, "x", xs)
                _y_axis(ax, pd.Series(ys), metric, error_rate=False)
            ax.set_xlabel("training FLOPs so far")
            if family:
                ax.set_title(plain(family))
        _colourbar(fig, axes, norm, "model parameters", ticks=rows["n_params"].tolist() if "n_params" in rows.columns else None)
    return render(fig, id="fig-training-curves", title="Training curves",
                  caption=f"{label_of(metric).capitalize()} at log-spaced steps during each run, against the training "
                          "compute spent so far; one line per run (colour: parameters).")  # fmt: skip


def size_curves(data: ReportData) -> Figure | None:
    """The target against parameters, one line per data fraction."""
    rows = data.done
    if data.kind != "study" or not len(rows) or "n_params" not in rows.columns or rows["n_params"].nunique() < 2:
        return None
    fraction = "data_fraction" if "data_fraction" in rows.columns else "n_train"
    panels = _panels_by_family(rows)
    norm = _size_norm(rows[fraction].to_numpy(float))
    with rc_context(STYLE):
        fig, axes = _figure(len(panels), extra_width=1.0)
        for ax, (family, panel_rows) in zip(axes, panels):
            lines = [*(k for k in data.size_keys if k != "family"), fraction] if data.size_keys else [fraction]
            means = panel_rows.groupby(lines, dropna=False)[["n_params", data.y_col]].agg(["mean", "min", "max"]).reset_index()
            for value, s in means.groupby(fraction, sort=True):
                s = s.sort_values(("n_params", "mean"))
                colour = _colour(norm, value)
                ax.plot(s[("n_params", "mean")], s[(data.y_col, "mean")], "-o", color=colour, ms=3.5, lw=1.6)
                ax.fill_between(s[("n_params", "mean")], s[(data.y_col, "min")], s[(data.y_col, "max")], color=colour, alpha=0.15, lw=0)
            _log_axis(ax, "x", panel_rows["n_params"])
            _y_axis(ax, panel_rows[data.y_col], data.y_col, error_rate=data.is_error_rate)
            ax.set_xlabel(label_of("n_params"))
            if family:
                ax.set_title(plain(family))
        _colourbar(fig, axes, norm, "share of training data" if fraction == "data_fraction" else label_of(fraction),
                   ticks=rows[fraction].astype(float).tolist())  # fmt: skip
    return render(fig, id="fig-model-size", title="Model size",
                  caption=f"{label_of(data.y_col).capitalize()} against parameters, one line per data fraction "
                          "(colour). Bands: min to max over seeds.")  # fmt: skip


def compute_frontier(data: ReportData) -> Figure | None:
    """The target against measured training compute for every run, with the Pareto frontier."""
    rows = data.done
    if data.kind != "study" or not len(rows) or "compute" not in rows.columns:
        return None
    rows = rows[pd.to_numeric(rows["compute"], errors="coerce") > 0]
    units = sorted(set(rows.get("compute_unit", pd.Series(["flops"] * len(rows))).dropna()))
    unit = "flops" if "flops" in units else (units[0] if units else None)
    if unit is None:
        return None
    rows = rows[rows["compute_unit"] == unit] if "compute_unit" in rows.columns else rows
    if len(rows) < 2:
        return None
    x = pd.to_numeric(rows["compute"]).to_numpy(float)
    y = pd.to_numeric(rows[data.y_col]).to_numpy(float)
    families = rows["family"].astype(str).to_numpy() if "family" in rows.columns else np.array([""] * len(rows))
    with rc_context(STYLE):
        fig, (ax,) = _figure(1, panel=(6.4, 3.6))
        handles, labels = [], []
        for i, family in enumerate(sorted(set(families))):
            pick = families == family
            handles.append(ax.scatter(x[pick], y[pick], s=16, color=f"C{i}", alpha=0.7, edgecolor="none"))
            labels.append(plain(family) or "runs")
        order = np.argsort(x, kind="stable")
        best = np.minimum.accumulate(y[order])
        keep = np.r_[True, best[1:] < best[:-1]]  # the runs that set a new best
        fx, fy = x[order][keep], best[keep]
        (frontier,) = ax.step(np.r_[fx, x.max()], np.r_[fy, fy[-1]], where="post", color="black", lw=1.4)
        ax.plot(fx, fy, "o", mfc="none", mec="black", ms=6)
        handles.append(frontier)
        labels.append("Pareto frontier")
        _log_axis(ax, "x", x)
        _y_axis(ax, y, data.y_col, error_rate=data.is_error_rate)
        ax.set_xlabel(label_of("flops") if unit == "flops" else f"training compute ({unit})")
        ax.legend(handles, labels, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return render(fig, id="fig-compute", title="Compute frontier",
                  caption=f"Every done run's {label_of(data.y_col)} against its measured training compute; the "
                          "frontier joins the runs that beat every cheaper run.")  # fmt: skip


def data_quality(data: ReportData) -> Figure | None:
    """One curve per level of each data-quality axis (label noise, ...), at each family's largest model."""
    if not data.quality_keys or data.quality_runs is None or not len(data.quality_runs):
        return None
    rows = data.quality_runs
    panels = []
    for key in data.quality_keys:
        for family, fam_rows in _panels_by_family(rows):
            if "n_params" in fam_rows.columns:
                fam_rows = fam_rows[fam_rows["n_params"] == fam_rows["n_params"].max()]
            panels.append((key, family, fam_rows))
    with rc_context(STYLE):
        fig, axes = _figure(len(panels), extra_width=1.0)
        for ax, (key, family, panel_rows) in zip(axes, panels):
            levels = sorted(panel_rows[key].unique())
            cmap = colormaps["plasma"]
            for i, level in enumerate(levels):
                s = _spread(panel_rows[panel_rows[key] == level], [], "n_train", data.y_col)
                colour = cmap(0.8 * i / max(1, len(levels) - 1))
                ax.plot(s["n_train"], s["mean"], "-o", color=colour, ms=3.5, lw=1.6, label=f"{level:g}")
                if (s["count"] > 1).any():
                    ax.fill_between(s["n_train"], s["min"], s["max"], color=colour, alpha=0.15, lw=0)
            _log_axis(ax, "x", panel_rows["n_train"])
            _y_axis(ax, panel_rows[data.y_col], data.y_col, error_rate=data.is_error_rate)
            ax.set_xlabel(label_of("n_train"))
            title = f"{plain(family)}, largest model" if family else "largest model"
            ax.set_title(title)
            ax.legend(title=plain(key), loc="center left", bbox_to_anchor=(1.01, 0.5))
    keys = ", ".join(f"{k} ({QUALITY_LABELS.get(k, k)})" for k in data.quality_keys)
    return render(fig, id="fig-data-quality", title="Data quality",
                  caption=f"{label_of(data.y_col).capitalize()} against training samples, one curve per level of {keys}.")  # fmt: skip


def fairness(data: ReportData) -> Figure | None:
    """Worst-class error and class error gap against training samples, one line per model
    size; with a class-imbalance axis, one line style per imbalance level."""
    rows = data.fairness_runs
    if rows is None or "n_train" not in rows.columns or rows["n_train"].nunique() < 2:
        return None
    metrics = [m for m in ("worst_class_error", "class_error_gap") if m in rows.columns and rows[m].notna().any()]
    key = data.imbalance_key
    levels = sorted(rows[key].unique()) if key else [None]
    sizes = pd.to_numeric(rows["n_params"], errors="coerce").groupby(rows["model"]).mean() if "n_params" in rows.columns else None
    norm = _size_norm(sizes.to_numpy(float) if sizes is not None else [1.0])
    panels = [(family, panel_rows, metric) for family, panel_rows in _panels_by_family(rows) for metric in metrics]
    with rc_context(STYLE):
        fig, axes = _figure(len(panels), ncols=len(metrics), extra_width=1.0)
        for ax, (family, panel_rows, metric) in zip(axes, panels):
            for i, level in enumerate(levels):
                level_rows = panel_rows if key is None else panel_rows[panel_rows[key] == level]
                _fairness_lines(ax, level_rows, metric, sizes=sizes, norm=norm, style=_level_style(i),
                                bands=len(levels) == 1)  # fmt: skip
            _log_axis(ax, "x", panel_rows["n_train"])
            # The gap is a difference of two error rates: percentage points, not a percentage.
            _y_axis(ax, panel_rows[metric].dropna(), metric, error_rate=True, points=metric.endswith("_gap"))
            ax.set_xlabel(label_of("n_train"))
            if family:
                ax.set_title(plain(family))
        if sizes is not None:
            _colourbar(fig, axes, norm, "model parameters", ticks=sizes.dropna().tolist())
        if key:
            # Grey samples of each style: the colours already stand for model size.
            handles = [Line2D([], [], color="0.3", ls=ls, marker=mk, ms=3.5, lw=1.4) for ls, mk in map(_level_style, range(len(levels)))]
            _legend_below(fig, axes, handles, [f"{v:g}" for v in levels], title=plain(key))
    styles = f" Line style: {key} level ({QUALITY_LABELS.get(key.split('.')[-1], key)})." if key else " Bands: min to max over seeds."
    return render(fig, id="fig-fairness", title="Fairness across classes",
                  caption="The error on the class each model serves worst, and the gap between its worst and best class "
                          "(percentage points), against training samples; one line per model size (colour: parameters), "
                          f"the mean over seeds.{styles}")  # fmt: skip


def _fairness_lines(ax, rows: pd.DataFrame, metric: str, *, sizes, norm, style, bands: bool) -> None:
    """One line per model: ``metric``'s mean over seeds at each training-set size."""
    ls, marker = style
    stats = _spread(rows[rows[metric].notna()], ["model"], "n_train", metric)
    for model, s in stats.groupby("model", sort=True):
        colour = _colour(norm, sizes.loc[model]) if sizes is not None and np.isfinite(sizes.loc[model]) else "C0"
        ax.plot(s["n_train"], s["mean"], ls=ls, marker=marker, color=colour, ms=3.5, lw=1.6)
        if bands and (s["count"] > 1).any():
            ax.fill_between(s["n_train"], s["min"], s["max"], color=colour, alpha=0.18, lw=0)


def _level_style(i: int) -> tuple[str, str]:
    """Line style and marker of the ``i``-th imbalance level: styles repeat past four, markers do not."""
    return LEVEL_LINES[i % len(LEVEL_LINES)], LEVEL_MARKERS[i % len(LEVEL_MARKERS)]


def compression(data: ReportData, points: pd.DataFrame | None) -> Figure | None:
    """The target against model bytes and against inference samples/s, one point per model
    size and compression setting (means over seeds), with each panel's Pareto frontier;
    colour: prune ratio (and fine-tune), marker: quantisation."""
    from scalelab.fitting import is_error_rate

    if points is None or not len(points):
        return None
    y = data.compression_y
    finite = np.isfinite(points[y].astype(float))
    panels = [(c, more) for c, more in (("model_bytes", False), ("inference_samples_per_s", True))
              if c in points.columns and ((points[c] > 0) & finite).any()]  # fmt: skip
    if not panels:
        return None
    prunes = sorted(set(zip(points["prune"], points["prune_finetune_epochs"])))
    quants = sorted(set(points["quantize"]), key=lambda q: (q != "none", q))
    cmap = colormaps["plasma"]
    colours = {p: cmap(0.8 * i / max(1, len(prunes) - 1)) for i, p in enumerate(prunes)}
    markers = {q: LEVEL_MARKERS[i % len(LEVEL_MARKERS)] for i, q in enumerate(quants)}
    with rc_context(STYLE):
        fig, axes = _figure(len(panels), ncols=2, panel=(4.2, 3.2))
        for ax, (col, more) in zip(axes, panels):
            pick = points[(points[col] > 0) & finite]
            for _, p in pick.iterrows():
                ax.plot(p[col], p[y], markers[p["quantize"]], color=colours[(p["prune"], p["prune_finetune_epochs"])],
                        ms=6, mec="white", mew=0.5, zorder=3)  # fmt: skip
            # The frontier from its best end: the smallest model, or the fastest.
            front = pick[pick["on_speed_frontier" if more else "on_bytes_frontier"]].sort_values(col, ascending=not more)
            fx, fy = front[col].to_numpy(float), front[y].to_numpy(float)
            if len(fx):
                end = pick[col].min() if more else pick[col].max()
                ax.step(np.r_[fx, end], np.r_[fy, fy[-1]], where="post", color="black", lw=1.3, zorder=2)
                ax.plot(fx, fy, "o", mfc="none", mec="black", ms=10, mew=1.0, zorder=4)
            _log_axis(ax, "x", pick[col])
            _y_axis(ax, pick[y], y, error_rate=is_error_rate(y))
            ax.set_xlabel(label_of(col))
        handles = [Line2D([], [], ls="", marker="o", color=colours[p], ms=6) for p in prunes]
        labels = [f"prune {r:g}" + (f", fine-tuned {e} ep." if e else "") for r, e in prunes]
        handles += [Line2D([], [], ls="", marker=markers[q], color="0.3", ms=6) for q in quants]
        labels += [f"quantize {plain(q)}" for q in quants]
        handles.append(Line2D([], [], color="black", lw=1.3, marker="o", mfc="none", ms=8))
        labels.append("Pareto frontier")
        _legend_below(fig, axes, handles, labels)
    return render(fig, id="fig-compression", title="Compression",
                  caption=f"{label_of(y).capitalize()} after compression against the model's serialised size and its "
                          "inference throughput: one point per model size and compression setting, the mean over seeds "
                          "(colour: prune ratio; marker: quantisation). The line joins the Pareto frontier (ringed): the "
                          "points no smaller, or faster, point beats.")  # fmt: skip


TRANSFER_REACH = 10.0  # the from-scratch law is drawn out to D_E, at most this many times its largest run


def transfer_figure(data: ReportData, result) -> Figure | None:
    """Fine-tuning against training from scratch. Left: the target against target training
    samples, per model size (colour) its from-scratch runs (dots), their law and its band,
    and the fine-tuned means (dashed, hollow markers). Right: D_T against D_F with intervals,
    and the fitted D_T = k·D_F^α·N^β. Points with D_T ≤ 0 or infinite are left off the
    right panel (a log axis), and the caption says how many."""
    from scalelab.report.analysis import transfer_model

    rows = data.transfer_runs
    if result is None or rows is None or not result.points:
        return None
    scratch = rows[rows["init_from"] == "none"]
    scratch = scratch[scratch["model"].isin(list(result.laws))]
    models = list(result.laws)
    sizes = {}
    for model in models:
        values = pd.to_numeric(scratch.loc[scratch["model"] == model, "n_params"], errors="coerce") if "n_params" in scratch.columns else pd.Series(dtype=float)
        sizes[model] = float(values.mean()) if values.notna().any() else math.nan
    norm = _size_norm(list(sizes.values()))
    colour = {m: _colour(norm, v) if np.isfinite(v) else f"C{i}" for i, (m, v) in enumerate(sizes.items())}
    by_line: dict[tuple[str, str], list] = {}
    for p in result.points:
        by_line.setdefault(transfer_model(p, result.laws), []).append(p)
    settings = list(dict.fromkeys(setting for _, setting in by_line))
    marker = {s: LEVEL_MARKERS[(i + 1) % len(LEVEL_MARKERS)] for i, s in enumerate(settings)}
    y = data.y_col
    level = result.level
    drawn = [p for p in result.points if np.isfinite(p.d_t) and p.d_t > 0]
    left_out = len(result.points) - len(drawn)
    with rc_context(STYLE):
        fig, (left, right) = _figure(2, ncols=2, panel=(4.4, 3.4), extra_width=1.0)
        # Left: the from-scratch runs and law, and the fine-tuned means at each fraction.
        y_values = [*scratch[y].astype(float), *(p.y_finetuned for p in result.points)]
        x_values = [*scratch["n_train"].astype(float)]
        y_limits = _limits(y_values, ceiling=1.0 if data.is_error_rate else None)
        for model in models:
            model_rows = scratch[scratch["model"] == model]
            if not len(model_rows):
                continue
            law = result.laws[model]
            d = model_rows["n_train"].astype(float)
            lo_x, hi_x = float(d.min()), float(d.max())
            reach = [p.d_e for p in result.points if transfer_model(p, result.laws)[0] == model and np.isfinite(p.d_e)]
            far = min(max([hi_x, *reach]), hi_x * TRANSFER_REACH)
            with np.errstate(over="ignore", invalid="ignore"):
                # One grid from the smallest run to D_E: the band has no seam at the largest run.
                xs = np.geomspace(lo_x, max(far, hi_x * 1.01), LAW_GRID)
                curve = law.predict(xs)
                _band(left, xs, *_smooth_interval(law, xs, curve, level), limits=y_limits, color=colour[model], alpha=0.18)
                inside = xs <= hi_x
                left.plot(xs[inside], curve[inside], "-", color=colour[model], lw=1.5)
                if far > hi_x * 1.01:
                    left.plot(xs[~inside], curve[~inside], ":", color=colour[model], lw=1.5)
                x_values.append(float(xs[-1]))
            left.plot(d, model_rows[y].astype(float), "o", color=colour[model], ms=3.2, mec="black", mew=0.3, alpha=0.8, zorder=3)
        for (model, setting), points in by_line.items():
            points = sorted(points, key=lambda p: p.d_f)
            left.plot([p.d_f for p in points], [p.y_finetuned for p in points], ls="--", marker=marker[setting], mfc="white",
                      color=colour.get(model, "C0"), ms=4.5, lw=1.5, zorder=4)  # fmt: skip
        _log_axis(left, "x", x_values)
        _y_axis(left, y_values, y, error_rate=data.is_error_rate, limits=y_limits)
        left.set_xlabel("target training samples")
        left.set_title("fine-tuned and from scratch")
        # Right: D_T against D_F, each point's interval clipped at the panel's edges.
        if drawn:
            spans = [v for p in drawn for v in (p.d_t, p.d_t_lo, p.d_t_hi) if np.isfinite(v) and v > 0]
            bottom, top = min(spans) / 1.6, max(spans) * 1.6
            for (model, setting), points in by_line.items():
                points = sorted((p for p in points if np.isfinite(p.d_t) and p.d_t > 0), key=lambda p: p.d_f)
                if not points:
                    continue
                d_f = np.array([p.d_f for p in points])
                d_t = np.array([p.d_t for p in points])
                lo = np.array([p.d_t_lo if np.isfinite(p.d_t_lo) and p.d_t_lo > 0 else bottom for p in points])
                hi = np.array([min(p.d_t_hi, top) if not np.isnan(p.d_t_hi) else p.d_t for p in points])
                right.errorbar(d_f, d_t, yerr=np.vstack([d_t - lo, hi - d_t]).clip(min=0), fmt=marker[setting], mfc="white",
                               color=colour.get(model, "C0"), ms=4.5, lw=0.9, capsize=2, zorder=3)  # fmt: skip
            fit = result.fit
            xs = np.geomspace(min(p.d_f for p in drawn) / 1.2, max(p.d_f for p in drawn) * 1.2, 40)
            if fit is not None:
                for model in dict.fromkeys(m for m, _ in by_line):
                    n = sizes.get(model, math.nan)
                    if fit.beta is not None and not np.isfinite(n):
                        continue
                    line = fit.k * xs**fit.alpha * (n**fit.beta if fit.beta is not None else 1.0)
                    right.plot(xs, line, "-", color=colour.get(model, "0.3") if fit.beta is not None else "0.3", lw=1.3, alpha=0.8)
                    if fit.beta is None:
                        break
            _log_axis(right, "x", xs)
            _log_axis(right, "y", [bottom, top])
            right.set_ylim(bottom, top)
        else:
            right.text(0.5, 0.5, "no point with a finite,\npositive D_T", transform=right.transAxes, ha="center", va="center", color="0.35")
        right.set_xlabel("target training samples D_F")
        right.set_ylabel("data transferred D_T")
        right.set_title("D_T = D_E − D_F")
        if any(np.isfinite(v) for v in sizes.values()):
            _colourbar(fig, [left, right], norm, "model parameters", ticks=[v for v in sizes.values() if np.isfinite(v)])
        handles = [Line2D([], [], ls="", marker="o", color="0.4", mec="black", mew=0.3, ms=4),
                   Line2D([], [], ls="-", color="0.4", lw=1.5)]  # fmt: skip
        labels = ["from scratch: runs", "from scratch: law"]
        for setting in settings:
            handles.append(Line2D([], [], ls="--", marker=marker[setting], mfc="white", color="0.4", ms=4.5, lw=1.5))
            labels.append("fine-tuned" + (f": {plain(setting)}" if setting else "") + " (mean)")
        if drawn and result.fit is not None:
            handles.append(Line2D([], [], ls="-", color="0.3", lw=1.3))
            labels.append("fit: " + plain(result.fit.formula()))
        _legend_below(fig, [left, right], handles, labels)
    omitted = (f" {left_out} of {len(result.points)} points have D_T ≤ 0 (the checkpoint did not help) or an infinite D_T "
               "(the from-scratch law never gets as good) and cannot go on the log axis: they are left off the right "
               "panel; the table lists them.") if left_out else ""  # fmt: skip
    return render(fig, id="fig-transfer", title="Transfer learning",
                  caption=f"Left: {label_of(y)} against target training samples, one colour per model size (parameters): "
                          f"the runs from scratch (dots) with their law and its {level:.0%} interval (band; dotted beyond "
                          "the largest run, out to where D_E is read off), and the fine-tuned runs' mean at each target "
                          "fraction (dashed, hollow markers). Right: the data the checkpoint was worth, D_T = D_E − D_F, "
                          f"against the target samples D_F, with its {level:.0%} interval (bars clipped at the panel's "
                          "edges where it reaches 0 or infinity)" + (" and the fitted D_T = k·D_F^α·N^β (lines)"
                                                                     if drawn and result.fit is not None else "")
                          + "." + omitted)  # fmt: skip


# -- figures of the laws -----------------------------------------------------------------
def law_axes(ax, law, x, y, *, level: float, error_rate: bool, colour="C0", title: str | None = None) -> None:
    """One law over its data on ``ax``: solid inside, dashed beyond, with its interval band."""
    with np.errstate(over="ignore", invalid="ignore"):  # far out, some bootstrap curves overflow: they leave the band
        _law_axes(ax, law, x, y, level=level, error_rate=error_rate, colour=colour, title=title)


LAW_GRID = 200  # points of the one dense grid a law and its band are drawn on


def _law_axes(ax, law, x, y, *, level, error_rate, colour, title) -> None:
    from scalelab.report.analysis import EXTRAPOLATE

    ceiling = law.data.ceiling if law.data.ceiling is not None else (1.0 if error_rate else None)
    if np.ndim(x) == 2:
        _joint_law_axes(ax, law, x, y, level=level, error_rate=error_rate, ceiling=ceiling)
    else:
        lo_x, hi_x = float(np.min(x)), float(np.max(x))
        xs = np.geomspace(lo_x, hi_x * EXTRAPOLATE, LAW_GRID)
        curve = law.predict(xs)
        limits = _limits([*np.ravel(y), *curve], ceiling=ceiling)
        ax.axvspan(hi_x, hi_x * EXTRAPOLATE, color="0.93", lw=0, zorder=0)
        _band(ax, xs, *_smooth_interval(law, xs, curve, level), limits=limits, color=colour, alpha=0.22)
        _law_line(ax, xs, curve, split=hi_x, color=colour, lw=1.7)
        ax.plot(x, y, "o", color="black", ms=3, alpha=0.75, zorder=3)
        ax.text(hi_x * math.sqrt(EXTRAPOLATE), 0.97, "extrapolated", transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=8, color="0.35")  # fmt: skip
        _log_axis(ax, "x", [lo_x, hi_x * EXTRAPOLATE])
        ax.set_xlim(lo_x / 1.15, hi_x * EXTRAPOLATE)
        _y_axis(ax, y, law.data.y_name, error_rate=error_rate, limits=limits)
    ax.set_xlabel(label_of(law.x_names[-1]))
    if title:
        ax.set_title(title)


def _smooth_interval(law, points, curve, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The law's interval on one grid, its edges smoothed (:func:`scalelab.laws.bands.smooth_band`).

    One grid over the whole drawn range, so the band has no seam where extrapolation starts;
    the smoothing takes off the fringe of bootstrap quantiles. Points where a bootstrap curve
    overflowed, or an edge is not positive, are filled from their neighbours first, since
    one bad point would otherwise spread along the kernel.
    """
    from scalelab.laws.bands import smooth_band

    lo, hi = law.interval(points, level)
    good = np.isfinite(lo) & np.isfinite(hi) & (lo > 0) & (hi > 0) & np.isfinite(curve) & (curve > 0)
    if good.sum() < 2:
        return lo, hi
    at = np.arange(len(curve))
    below = np.interp(at, at[good], np.log(curve[good] / np.minimum(lo[good], curve[good])))
    above = np.interp(at, at[good], np.log(np.maximum(hi[good], curve[good]) / curve[good]))
    centre = np.where(good, curve, np.exp(np.interp(at, at[good], np.log(curve[good]))))
    return smooth_band(centre, centre * np.exp(-below), centre * np.exp(above))


def _law_line(ax, xs, curve, *, split: float, label=None, **style) -> None:
    """The law's line on the grid: solid up to ``split`` (the largest observed x), dashed beyond."""
    inside = xs <= split
    first_beyond = int(np.argmax(~inside)) if (~inside).any() else len(xs)
    ax.plot(xs[inside], curve[inside], "-", label=label, **style)
    if first_beyond < len(xs):
        start = max(first_beyond - 1, 0)  # share a point, so the two pieces meet
        ax.plot(xs[start:], curve[start:], "--", **style)


def _limits(values, *, ceiling: float | None = None) -> tuple[float, float] | None:
    """A log range around positive values with some room: bands may run off it, data may not."""
    values = np.asarray([v for v in values if np.isfinite(v) and v > 0], dtype=float)
    if not len(values):
        return None
    lo, hi = values.min() / 1.6, values.max() * 1.6
    if ceiling:
        hi = max(min(hi, ceiling * 1.02), values.max() * 1.05)
    return lo, hi


def _joint_law_axes(ax, law, x, y, *, level, error_rate, ceiling) -> None:
    """L(N, D) against D, one line per N (at most five), extrapolated to 10x the largest D."""
    from scalelab.report.analysis import EXTRAPOLATE

    Ns = np.unique(x[:, 0])
    if len(Ns) > 5:
        Ns = Ns[np.unique(np.linspace(0, len(Ns) - 1, 5).round().astype(int))]
    norm = _size_norm(Ns)
    lo_d, hi_d = float(x[:, 1].min()), float(x[:, 1].max())
    ds = np.geomspace(lo_d, hi_d * EXTRAPOLATE, LAW_GRID)
    grids = [np.column_stack([np.full_like(ds, n), ds]) for n in Ns]
    curves = [law.predict(pts) for pts in grids]
    limits = _limits([*np.ravel(y), *np.concatenate(curves)], ceiling=ceiling)
    ax.axvspan(hi_d, hi_d * EXTRAPOLATE, color="0.93", lw=0, zorder=0)
    for n, pts, curve in zip(Ns, grids, curves):
        colour = _colour(norm, n)
        _band(ax, ds, *_smooth_interval(law, pts, curve, level), limits=limits, color=colour, alpha=0.16)
        _law_line(ax, ds, curve, split=hi_d, label=f"N = {_si(n)}", color=colour, lw=1.5)
        pick = x[:, 0] == n
        ax.plot(x[pick, 1], np.asarray(y)[pick], "o", color=colour, ms=3, mec="black", mew=0.4, zorder=3)
    _log_axis(ax, "x", [lo_d, hi_d * EXTRAPOLATE])
    ax.set_xlim(lo_d / 1.15, hi_d * EXTRAPOLATE)
    _y_axis(ax, y, law.data.y_name, error_rate=error_rate, limits=limits)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))


MAX_LAW_PANELS = 12


def law_fits(data: ReportData, laws, *, level: float) -> Figure | None:
    """Each fitted law over its data, with its prediction interval; extrapolation shaded."""
    fitted = [r for r in laws if r.law is not None and r.error is None][:MAX_LAW_PANELS]
    if not fitted:
        return None
    joint = len(data.x_cols) == 2
    with rc_context(STYLE):
        fig, axes = _figure(len(fitted), ncols=2 if joint else 4, panel=(4.6, 3.0) if joint else (3.2, 2.7))
        for ax, r in zip(axes, fitted):
            name = "all runs" if r.group is None else plain(r.group)
            law_axes(ax, r.law, r.x, r.y, level=level, error_rate=data.is_error_rate, title=f"{name}: {r.law.form}")
    more = f" The first {MAX_LAW_PANELS} of {len(laws)} groups are drawn." if len(laws) > MAX_LAW_PANELS else ""
    return render(fig, id="fig-laws", title="Fitted laws",
                  caption=f"Each law (line) over the runs it was fitted on (dots), with its {level:.0%} prediction "
                          f"interval (band). Dashed on grey: extrapolation beyond the largest observed "
                          f"{label_of(data.x_cols[-1])}.{more}")  # fmt: skip


def backtest_figure(data: ReportData, backtests, *, level: float) -> Figure | None:
    """Predicted against actual at the held-out scales: one panel per form, every group in
    it, each group with its own marker and colour (legend below)."""
    points: dict[str, list] = {}
    groups: list = []
    for g in backtests:
        for row in g["rows"]:
            if row.error is None:
                points.setdefault(row.form, []).extend((g["group"], p) for p in row.points)
                groups += [g["group"]] if g["group"] not in groups else []
    if not points:
        return None
    values = [v for ps in points.values() for _, p in ps for v in (p["actual"], p["predicted"]) if v > 0]
    lo, hi = _margin(min(values), max(values))
    style = {group: (LEVEL_MARKERS[i % len(LEVEL_MARKERS)], f"C{i % 10}") for i, group in enumerate(groups)}
    with rc_context(STYLE):
        fig, axes = _figure(len(points), ncols=3, panel=(3.0, 3.0))
        for ax, (form, ps) in zip(axes, points.items()):
            ax.plot([lo, hi], [lo, hi], color="0.45", lw=1, ls=":")
            for group in groups:
                mine = [p for g, p in ps if g == group]
                if mine:
                    _backtest_points(ax, mine, *style[group], limits=(lo, hi))
            rel = np.mean([p["rel_error"] for _, p in ps])
            covered = np.mean([p["covered"] for _, p in ps])
            ax.set_title(f"{form}: {rel:.0%} rel. error, {covered:.0%} covered", fontsize=9.5)
            _log_axis(ax, "x", [lo, hi], percent=data.is_error_rate, dense=True)  # the same steps on both axes
            _log_axis(ax, "y", [lo, hi], percent=data.is_error_rate)
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.set_aspect("equal", adjustable="box")
            ax.set_xlabel(f"actual {label_of(data.y_col)}")
            ax.set_ylabel(f"predicted {label_of(data.y_col)}")
        if len(groups) > 1:
            handles = [Line2D([], [], ls="", marker=m, color=c, ms=4.5) for m, c in style.values()]
            _legend_below(fig, axes, handles, [plain(g) if g is not None else "all runs" for g in groups], title=plain(data.group or ""))
    return render(fig, id="fig-backtest", title="Backtest",
                  caption=f"Each form fitted below the largest {label_of(data.x_cols[-1])} of each group, predicting "
                          f"the runs at it: prediction against the actual value, with the {level:.0%} interval (bars "
                          "clipped at the panel's edges); marker and colour: the group. On the dotted line a forecast "
                          "is exact.")  # fmt: skip


def _margin(lo: float, hi: float, *, share: float = 0.08) -> tuple[float, float]:
    """A log range around [lo, hi] with ``share`` of its width as room on each side (at
    least 15%): the data fill the panel, however wide the intervals are."""
    room = max(share * math.log10(hi / lo), math.log10(1.15))
    return lo / 10**room, hi * 10**room


def _backtest_points(ax, ps, marker: str, colour, *, limits) -> None:
    """One group's forecasts against the actual values, their intervals as bars clipped to ``limits``."""
    a = np.array([p["actual"] for p in ps])
    pr = np.array([p["predicted"] for p in ps])
    lo = np.clip(np.nan_to_num(np.array([p["lo"] for p in ps], dtype=float), nan=limits[0], neginf=limits[0]), *limits)
    hi = np.clip(np.nan_to_num(np.array([p["hi"] for p in ps], dtype=float), nan=limits[1], posinf=limits[1]), *limits)
    err = np.vstack([pr - lo, hi - pr]).clip(min=0)
    ax.errorbar(a, pr, yerr=err, fmt=marker, color=colour, ms=4.5, lw=0.9, capsize=2, alpha=0.85)


def isoflop(plans, *, data: ReportData) -> Figure | None:
    """The joint law's value against N at fixed compute (isoFLOP profiles), with nearby runs."""
    if not plans:
        return None
    with rc_context(STYLE):
        fig, axes = _figure(len(plans), ncols=2, panel=(4.4, 3.2), extra_width=0.8)
        for ax, p in zip(axes, plans):
            c_lo, c_hi = float(p.runs["C"].min()), float(p.runs["C"].max())
            budgets = np.geomspace(c_lo, c_hi, 4) if c_hi > c_lo * 1.5 else np.array([c_lo])
            norm = _size_norm(budgets)
            n_lo, n_hi = float(p.runs["N"].min()) / 4, float(p.runs["N"].max()) * 4
            ns = np.geomspace(n_lo, n_hi, 80)
            for c in budgets:
                colour = _colour(norm, c)
                ds = c / (p.k * ns)
                ax.plot(ns, p.law.predict(np.column_stack([ns, ds])), color=colour, lw=1.6, label=f"{_si(c)} FLOPs")
                from scalelab import plan

                best = plan.optimal_allocation(p.law, budget=float(c), flops_per_param_sample=p.k, level=0.8)
                ax.plot([best.n_params], [best.predicted], "*", color=colour, ms=10, mec="black", mew=0.5)
                near = np.abs(np.log10(p.runs["C"] / c)) < 0.5 * math.log10(max(c_hi / c_lo, 10) ** (1 / 3))
                ax.plot(p.runs["N"][near], p.runs["y"][near], "o", color=colour, ms=4, mec="black", mew=0.4)
            _log_axis(ax, "x", [n_lo, n_hi])
            _y_axis(ax, p.runs["y"], data.y_col, error_rate=data.is_error_rate,
                    limits=_limits(p.runs["y"], ceiling=1.0 if data.is_error_rate else None))  # fmt: skip
            ax.set_xlabel(label_of("n_params"))
            ax.set_title(plain(p.label))
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), title="budget")
    return render(fig, id="fig-isoflop", title="IsoFLOP profiles",
                  caption="The joint law L(N, D) along fixed compute C = k·N·D: lines are budgets, stars their "
                          "compute-optimal size, dots the runs at about that compute.")  # fmt: skip


def measured_isoflop(isoflops, *, data: ReportData) -> Figure | None:
    """The runs at each FLOP budget against their size, each profile's parabola and floor
    (with its interval), and the floors' power law N* ∝ C^a."""
    if not isoflops:
        return None
    with rc_context(STYLE):
        fig, axes = _figure(2 * len(isoflops), ncols=2, panel=(4.2, 3.2), extra_width=0.8)
        for i, result in enumerate(isoflops):
            fit = result["_law"]
            profiles, powers = axes[2 * i], axes[2 * i + 1]
            norm = _size_norm([p.flops for p in fit.profiles])
            for p in fit.profiles:
                colour = _colour(norm, p.flops)
                profiles.plot(p.n_params, p.loss, "o", color=colour, ms=5, mec="black", mew=0.4, label=f"{_si(p.flops)} FLOPs")
                if p.coefficients is not None:
                    u = np.linspace(np.log10(p.n_params.min()) - 0.15, np.log10(p.n_params.max()) + 0.15, 60)
                    profiles.plot(10**u, np.polyval(p.coefficients[::-1], u), color=colour, lw=1.4)
                if p.n_opt is not None:
                    profiles.plot([p.n_opt], [p.loss_opt], "*", color=colour, ms=11, mec="black", mew=0.5)
                    if p.n_opt_range is not None:
                        profiles.plot(p.n_opt_range, [p.loss_opt] * 2, color=colour, lw=2.5, alpha=0.6)
            _log_axis(profiles, "x", [n for p in fit.profiles for n in p.n_params])
            profiles.set_xlabel(label_of(result["x_cols"][0]))
            profiles.set_ylabel(label_of(data.y_col))
            profiles.set_title(plain(result["label"]))
            profiles.legend(fontsize="small", title="budget")
            usable = [p for p in fit.profiles if p.n_opt is not None]
            budgets = np.array([p.flops for p in usable])
            span = np.geomspace(budgets.min(), budgets.max(), 20)
            powers.plot(budgets, [p.n_opt for p in usable], "*", color="C0", ms=10, mec="black", mew=0.5)
            for p in usable:
                if p.n_opt_range is not None:
                    powers.plot([p.flops] * 2, p.n_opt_range, color="C0", lw=2.5, alpha=0.6)
            laws = fit.laws
            powers.plot(span, laws.n_opt(span), color="C0", lw=1.4,
                        label=f"N* ∝ C^{laws.a:.2f} [{laws.a_range[0]:.2f}, {laws.a_range[1]:.2f}]")  # fmt: skip
            _log_axis(powers, "x", span)
            _log_axis(powers, "y", [v for p in usable for v in (p.n_opt, *(p.n_opt_range or ()))])
            powers.set_xlabel("training budget (FLOPs)")
            powers.set_ylabel("compute-optimal " + label_of(result["x_cols"][0]))
            powers.legend(fontsize="small")
    return render(fig, id="fig-isoflop-measured", title="Measured isoFLOP profiles",
                  caption="Left: the runs at each compute budget against their size, a parabola in log N through each "
                          "budget's runs and its floor (star, with its interval). Right: the floors against the budget "
                          "and their power law, with its exponent's interval.")  # fmt: skip


BUDGET_LINES = (":", "-.", "--", (0, (1, 3)), (0, (5, 2, 1, 2, 1, 2)))  # one per family: colour alone does not tell them apart


def plan_figure(plans, *, level: float) -> Figure | None:
    """Compute-optimal parameters and training samples against budget, with intervals."""
    if not plans:
        return None
    with rc_context(STYLE):
        fig, axes = _figure(2, ncols=2, panel=(4.0, 3.2), extra_width=1.2)
        handles, labels = [], []
        for i, p in enumerate(plans):
            budgets = np.array([a.flops for a in p.frontier])
            budget_line = BUDGET_LINES[i % len(BUDGET_LINES)]
            for ax, value, span, observed in (
                (axes[0], "n_params", "n_params_range", p.runs["N"]),
                (axes[1], "samples", "samples_range", p.runs["D"]),
            ):
                mid = np.array([getattr(a, value) for a in p.frontier])
                lo = np.array([getattr(a, span)[0] for a in p.frontier])
                hi = np.array([getattr(a, span)[1] for a in p.frontier])
                _plan_band(ax, budgets, lo, hi, colour=f"C{i}")
                ax.plot(budgets, mid, color=f"C{i}", lw=1.8)
                ax.plot(p.runs["C"], observed, ".", color=f"C{i}", alpha=0.5, ms=4)
                ax.axvline(p.budget, color=f"C{i}", ls=budget_line, lw=1.3)
            handles += [Line2D([], [], color=f"C{i}", lw=1.8), Line2D([], [], color=f"C{i}", ls=budget_line, lw=1.3)]
            labels += [plain(p.label), f"{plain(p.label)}: plan budget ({_si(p.budget)} FLOPs)"]
        budgets = [a.flops for p in plans for a in p.frontier]
        for ax, name, col, span in zip(axes, ("compute-optimal parameters", "compute-optimal training samples"),
                                       ("N", "D"), ("n_params_range", "samples_range")):  # fmt: skip
            values = [v for p in plans for v in (*p.runs[col], *(getattr(a, span)[i] for a in p.frontier for i in (0, 1)))]
            _log_axis(ax, "x", budgets)
            _log_axis(ax, "y", values)
            ax.set_xlabel("training budget (FLOPs)")
            ax.set_ylabel(name)
        axes[1].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), title="family")
    return render(fig, id="fig-plan", title="Plan",
                  caption=f"Compute-optimal N and D under the fitted joint law, with {level:.0%} intervals (bands, "
                          "outlined); dots: the runs; vertical lines (one style per family): the budget in the plan "
                          "table (10× the largest run).")  # fmt: skip


def _plan_band(ax, x, lo, hi, *, colour) -> None:
    """An interval band that stays visible where it is thin: a fill, and its edges as fine lines."""
    ax.fill_between(x, lo, hi, color=colour, alpha=0.28, lw=0)
    for edge in (lo, hi):
        ax.plot(x, edge, color=colour, lw=0.8, alpha=0.7)


def settings_figures(data: ReportData, analysis) -> list[Figure | None]:
    """The figures of :mod:`scalelab.report.tuning`: lr and batch, repeated data, the link."""
    from scalelab.report.tuning import hparam_figure, link_figure, repetition_figure

    settings = analysis.settings or {}
    return [hparam_figure(data, settings.get("hparams")), repetition_figure(data, settings.get("repetition")),
            link_figure(data, settings.get("link"))]  # fmt: skip


def all_figures(data: ReportData, analysis) -> list[Figure]:
    """Every figure this data supports, in reading order."""
    from scalelab.report.federated import federated_figure

    made = [
        learning_curves(data),
        training_curves(data),
        size_curves(data),
        compute_frontier(data),
        data_quality(data),
        fairness(data),
        compression(data, analysis.compression),
        transfer_figure(data, analysis.transfer),
        law_fits(data, analysis.laws, level=analysis.level),
        backtest_figure(data, analysis.backtests, level=analysis.level),
        isoflop(analysis.plans, data=data),
        plan_figure(analysis.plans, level=analysis.level),
        measured_isoflop(analysis.isoflops, data=data),
        *settings_figures(data, analysis),
        federated_figure(data, analysis.federated),
    ]
    return [f for f in made if f is not None]
