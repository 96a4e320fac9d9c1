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
