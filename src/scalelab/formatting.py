"""Small text formatters shared by the terminal output and the report."""

from __future__ import annotations


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
