"""The Examples of the public modules run as doctests, so they stay true."""

from __future__ import annotations

import doctest
import importlib

import matplotlib
import pytest

matplotlib.use("Agg")  # the display examples draw; no window in a test

MODULES = ["scalelab.laws", "scalelab.laws.law", "scalelab.laws.lawset", "scalelab.display", "scalelab.errors", "scalelab.formatting"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (see the output above)"
