"""HTML for notebooks: a fitted law's and a study's ``_repr_html_``.

Both are fragments (no ``<html>``), styled inline so a notebook's own CSS cannot hide
them, and escaped like the report.
"""

from __future__ import annotations

import sqlite3

import numpy as np

from scalelab.errors import InputError


def law_html(law, *, level: float = 0.8) -> str:
    """A fitted law as HTML: its form, parameters with ``level`` intervals, and a plot of
    the law over its data with its prediction interval (extrapolation shaded)."""
    from scalelab.laws import FORMS
    from scalelab.report.html import render_fragment

    spans = _safe(lambda: law.param_intervals(level), {})
    params = [(k, f"{v:.4g}", *(f"{s:.3g}" for s in spans.get(k, (float("nan"), float("nan"))))) for k, v in law.params.items()]
    notes = list(getattr(law.data, "notes", []) or [])
    if law.selection:
        notes.append(law.selection_summary())
    error_rate = law.data.ceiling is not None
    figure = _safe(lambda: _law_figure(law, level=level, error_rate=error_rate), None)
    return render_fragment(
        "law.html.j2", y_name=law.data.y_name, form=law.form, x_names=", ".join(law.x_names),
        formula=FORMS[law.form].formula if law.form in FORMS else "", n_points=law.n_points,
        ceiling=None if law.data.ceiling is None else f"{law.data.ceiling:g}", level=f"{level:.0%}",
        params=params, notes=notes, figure=figure,
    )  # fmt: skip


def _law_figure(law, *, level: float, error_rate: bool):
    from matplotlib import rc_context

    from scalelab.report import figures as figs

    with rc_context(figs.STYLE):
        fig, (ax,) = figs._figure(1, panel=(4.6 if law.data.x.ndim == 2 else 4.0, 2.8))
        figs.law_axes(ax, law, law.data.x, law.data.y, level=level, error_rate=error_rate)
    return figs.render(fig, id="law", title=f"{law.form} law", caption=f"{law.form} law over its data, {level:.0%} interval")


def study_html(study) -> str:
    """A study as HTML: its grid, its cells by state and its best run so far."""
    from scalelab.report.html import render_fragment

    spec = study.spec
    grid = [(k, ", ".join(_value(v) for v in _distinct(c.params[k] for c in spec.cells))) for k in spec.grid_keys]
    counts, best, not_run = [], "", ""
    try:
        runs = study.runs()
    except (InputError, sqlite3.Error) as exc:  # no store yet, or the study never ran on it
        runs, not_run = None, f"Not run on this store yet ({exc})."
    if runs is not None:
        states = runs["state"].value_counts()
        counts = [(s, int(states.get(s, 0))) for s in ("pending", "running", "done", "failed", "diverged")] + [("total", len(runs))]
        done = runs[runs["state"] == "done"]
        metric = spec.target_metric
        if len(done) and metric in done.columns and done[metric].notna().any():
            row = done.loc[done[metric].astype(float).idxmin()]
            where = ", ".join(f"{k} {_value(row[k])}" for k in spec.grid_keys if k in row.index)
            best = f"Best {metric}: {float(row[metric]):.4g} ({where})"
    return render_fragment(
        "study.html.j2", name=spec.name, description=spec.description, source=spec.source, store=str(study.store_path),
        target=spec.target_metric, grid=grid, counts=counts, best=best, not_run=not_run,
    )  # fmt: skip


def _distinct(values):
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def _value(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def _safe(make, fallback):
    try:
        return make()
    except (InputError, ArithmeticError, ValueError, RuntimeError, np.linalg.LinAlgError):
        return fallback  # a notebook display must not raise over a plot or an interval; the table still shows
