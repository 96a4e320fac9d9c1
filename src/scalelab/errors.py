"""Exceptions that cross module boundaries.

``InputError`` is the one the command line turns into exit status 2: the user gave
something scalelab cannot use (a study file, a dataset, a CSV). Its message is one line
that names the file, field or value at fault.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: a study file, dataset, store path or argument that cannot be used."""


class DatasetError(InputError):
    """A dataset cannot be loaded or is not usable as given (missing, corrupt, invalid)."""


def closest(value, choices) -> str | None:
    """The one of ``choices`` a misspelt ``value`` most resembles, or None when none is close."""
    import difflib

    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(value, choices) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` to a misspelt ``value``
    (an unknown key, study, form or column), or ``""`` when none is close.

    >>> did_you_mean("widht", ["width", "depth"])
    " (did you mean 'width'?)"
    >>> did_you_mean("zzz", ["width", "depth"])
    ''
    """
    match = closest(value, choices)
    return f" (did you mean {match!r}?)" if match else ""
