"""Small text formatters shared by the terminal output and the report."""

from __future__ import annotations

import math


def format_seconds(seconds: float) -> str:
    """A duration in the unit a person reads fastest: seconds, minutes or hours."""
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_hours(hours: float) -> str:
    """A planned duration given in hours, in the unit a person reads fastest (a run that
    takes milliseconds on an accelerator is not "2.6e-08 hours")."""
    seconds = hours * 3600.0
    if seconds < 1:
        return f"{seconds * 1000:.2g} ms"
    return format_seconds(seconds)


def narrow_table(title: str, columns: list[str], rows: list[list[str]], *, width: int, keep: int = 1, left=(), caption: str = ""):
    """A rich Table of ``rows`` (cells already formatted) that fits ``width`` characters.

    Columns past the first ``keep`` are dropped from the right, least important last in
    ``columns``, until the rest fit unabridged: a table cut into "1…" and "0.…" cells
    (rich's way of fitting 20 columns into 80) shows nothing at all. The caption names
    the columns left out. ``left``: columns aligned left (the rest are numbers, right).
    """
    from rich import box
    from rich.table import Table

    natural = [max([len(name), *(len(row[i]) for row in rows)]) for i, name in enumerate(columns)]
    shown = list(range(len(columns)))
    # SIMPLE_HEAD draws no vertical rules: one space of padding either side of a cell.
    while len(shown) > keep and sum(natural[i] + 2 for i in shown) > width:
        shown.pop()
    hidden = [columns[i] for i in range(len(columns)) if i not in shown]
    notes = [caption] if caption else []
    if hidden:
        notes.insert(0, f"not shown at this width: {', '.join(hidden)}")
    table = Table(title=title, caption="; ".join(notes) or None, box=box.SIMPLE_HEAD, show_edge=False,
                  title_justify="left", caption_justify="left")  # fmt: skip
    for i in shown:
        table.add_column(columns[i], justify="left" if columns[i] in left else "right", no_wrap=True, min_width=natural[i])
    for row in rows:
        table.add_row(*[row[i] for i in shown])
    return table


def format_metric(value, *, percent: bool) -> str:
    """A value of the target as every output writes it: an error rate as a percentage
    (``1.85%``), anything else with four significant digits; ``—`` when there is none.

    >>> format_metric(0.01847, percent=True), format_metric(2.2391, percent=False)
    ('1.85%', '2.239')
    """
    if value is None or not math.isfinite(value):
        return "—"
    return f"{100 * value:.3g}%" if percent else f"{value:.4g}"


def format_metric_interval(value, lo, hi, *, percent: bool) -> str:
    """``value [lo, hi]`` in :func:`format_metric`'s units."""
    return f"{format_metric(value, percent=percent)} [{format_metric(lo, percent=percent)}, {format_metric(hi, percent=percent)}]"
