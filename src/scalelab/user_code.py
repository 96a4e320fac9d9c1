"""References to the user's own Python code: ``python:pkg.module:name``.

A study may name a dataset function or a model factory this way. The reference is
checked for its shape when the study file is validated, and imported when the study
is checked before training (so an import error is an input error, not a failed cell).
"""

from __future__ import annotations

import importlib
import os
import re
import sys

from scalelab.errors import InputError

PREFIX = "python:"
_REFERENCE = re.compile(r"^python:([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)$")


def is_python_reference(name: str) -> bool:
    """True when ``name`` has the form ``python:pkg.module:attribute``."""
    return bool(_REFERENCE.match(name))


def import_reference(name: str, *, error: type[InputError] = InputError):
    """Import the object a ``python:pkg.module:attribute`` reference names.

    Modules are looked up on the Python path and then in the current directory, so a
    module next to the study works whether scalelab was started as ``scalelab`` or as
    ``python -m scalelab``. Failures raise ``error`` with one line naming the module or
    the attribute.
    """
    match = _REFERENCE.match(name)
    if match is None:
        raise error(f"{name!r} is not a reference of the form python:pkg.module:name")
    module_name, attribute = match.groups()
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        # Appended, not prepended: a file in the current directory must never shadow an
        # installed module of the same name.
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any failure while importing the user's module is bad input
        raise error(f"{name}: cannot import module {module_name!r} ({type(exc).__name__}: {_one_line(exc)})") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise error(f"{name}: module {module_name!r} has no attribute {attribute!r}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
