"""Datasets made by the user's own function: ``name = "python:pkg.module:function"``.

The function is called with the ``[data]`` options the study gives it as keyword
arguments, in every process that needs the data (so it should be deterministic). It
returns one of:

* ``(X, y)``, split by ``test_size`` and ``split_seed``;
* ``(X_train, y_train, X_test, y_test)``;
* a mapping (a scikit-learn ``Bunch``, a dict) with ``X`` and ``y`` or ``data`` and
  ``target``, and optionally ``X_test`` and ``y_test``.

Arrays may be anything ``numpy.asarray`` accepts (lists, DataFrames, tensors on the CPU).
"""

from __future__ import annotations

from collections.abc import Mapping

from scalelab.data.dataset import Dataset, dataset_from_arrays
from scalelab.errors import DatasetError
from scalelab.user_code import import_reference

EXPECTED = "(X, y), (X_train, y_train, X_test, y_test), or a mapping with X and y (or data and target)"


def load_python_dataset(reference: str, options: dict, *, test_size: float, split_seed: int) -> Dataset:
    """Call the user's dataset function and check what it returns."""
    function = import_reference(reference, error=DatasetError)
    if not callable(function):
        raise DatasetError(f"{reference}: not a function (found {type(function).__name__} {function!r:.40})")
    try:
        result = function(**options)
    except Exception as exc:  # the user's code failed: bad input, reported in one line
        raise DatasetError(f"{reference} raised {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    X, y, X_test, y_test = _unpack(reference, result)
    return dataset_from_arrays(reference, X, y, X_test, y_test, n_classes=None, test_size=test_size, split_seed=split_seed)


def _unpack(reference: str, result):
    if isinstance(result, tuple) and len(result) in (2, 4):
        return (*result, None, None) if len(result) == 2 else result
    if isinstance(result, Mapping):
        for features, labels in (("X", "y"), ("data", "target")):
            if features in result and labels in result:
                return result[features], result[labels], result.get("X_test"), result.get("y_test")
    raise DatasetError(f"{reference} returned {_describe(result)}; expected {EXPECTED}")


def _describe(value) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    if isinstance(value, Mapping):
        return f"a mapping with keys {sorted(map(str, value))[:8]}"
    return f"a {type(value).__name__}"
