"""Small text formatters shared by the terminal output and the report."""

from __future__ import annotations


def format_seconds(seconds: float) -> str:
    """A duration in the unit a person reads fastest: seconds, minutes or hours."""
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
