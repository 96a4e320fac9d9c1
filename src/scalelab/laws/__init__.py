"""Scaling laws: forms, robust fits, bootstrap intervals, backtests and automatic form choice.

>>> from scalelab import laws
>>> law = laws.fit(n_train, test_error, form="auto", error_rate=True)   # doctest: +SKIP
>>> law.predict([1e6]), law.interval([1e6], level=0.8)                  # doctest: +SKIP
"""

from scalelab.laws.forms import FORMS, Form
from scalelab.laws.law import FittedLaw, fit

__all__ = ["FORMS", "FittedLaw", "Form", "fit"]
