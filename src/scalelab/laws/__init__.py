"""Scaling laws: forms, robust fits, bootstrap intervals, backtests and automatic form choice.

:func:`fit` takes arrays (one :class:`FittedLaw`) or a DataFrame and column names (a
:class:`LawSet`, one law per group).

Examples
--------
>>> import numpy as np, pandas as pd
>>> from scalelab import laws
>>> n = np.geomspace(100, 1e4, 6)
>>> law = laws.fit(n, 0.05 + 2.0 * n ** -0.5, form="saturating", n_boot=50)
>>> round(float(law.predict([1e5])[0]), 4)
0.0563
>>> df = pd.DataFrame({"width": [1] * 6 + [2] * 6, "n_train": np.r_[n, n],
...                    "test_error": np.r_[0.05 + 2.0 * n ** -0.5, 0.03 + 2.0 * n ** -0.6]})
>>> fitted = laws.fit(df, x="n_train", y="test_error", by="width", form="saturating", n_boot=50)
>>> fitted.to_frame()[["width", "form", "n_points", "error"]]
   width        form  n_points error
0      1  saturating         6
1      2  saturating         6
"""

from scalelab.laws.forms import FORMS, Form
from scalelab.laws.law import FittedLaw
from scalelab.laws.lawset import LawSet, fit, fit_frame

__all__ = ["FORMS", "FittedLaw", "Form", "LawDisplay", "LawSet", "fit", "fit_frame"]


def __getattr__(name: str):
    # The display pulls in matplotlib: imported on first use, not with every fit.
    if name == "LawDisplay":
        from scalelab.display import LawDisplay

        return LawDisplay
    raise AttributeError(f"module 'scalelab.laws' has no attribute {name!r}")
