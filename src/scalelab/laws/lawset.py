"""Laws fitted to a DataFrame, one per group: the pandas-shaped face of :mod:`scalelab.fitting`.

:func:`fit_frame` checks the columns once, splits the rows by the ``by`` columns and
fits every group in the batched solves of :func:`scalelab.fitting.fit_groups`, so a
grouped fit here gives the laws ``scalelab fit --group`` gives. A group that cannot be
fitted becomes an ``error`` row of :meth:`LawSet.to_frame` and one summary warning, not
a crash.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from scalelab.errors import InputError, closest
from scalelab.laws.law import FittedLaw, compute_bootstraps

GROUP_COLUMN = "__scalelab_group__"  # the combined key of several ``by`` columns, while fitting


class LawSet(Mapping):
    """Fitted laws, one per group, keyed by the group's value (a tuple for several ``by``).

    A mapping of the groups that could be fitted to their
    :class:`~scalelab.laws.FittedLaw`; :attr:`errors` holds why the others could not be.
    :meth:`predict`, :meth:`interval` and :meth:`to_frame` give DataFrames with the
    ``by`` columns first. :attr:`results` keeps the JSON-shaped dicts of ``scalelab fit``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from scalelab import laws
    >>> n = np.geomspace(100, 1e4, 6)
    >>> df = pd.concat([pd.DataFrame({"family": f, "n_train": n, "loss": 3.0 * n ** -b})
    ...                 for f, b in [("mlp", 0.3), ("cnn", 0.5)]])
    >>> fitted = laws.fit(df, x="n_train", y="loss", by="family", form="power", n_boot=50)
    >>> fitted
    LawSet(2 laws of loss against n_train by family: 'mlp' power, 'cnn' power)
    >>> sorted(fitted.keys())
    ['cnn', 'mlp']
    >>> round(fitted["cnn"].params["beta"], 2)
    0.5
    >>> fitted.predict(1e5)
      family    n_train  prediction
    0    mlp  100000.0    0.094...
    1    cnn  100000.0    0.009...
    """

    def __init__(self, entries: Sequence[dict], *, by: Sequence[str], x: Sequence[str], y: str, keys: Sequence[Hashable] | None = None):
        self.by = tuple(by)
        self.x = tuple(x)
        self.y = y
        self.results = list(entries)
        self._keys = list(keys) if keys is not None else [e.get("group") for e in self.results]
        self._laws: dict[Hashable, FittedLaw] = {}
        self.errors: dict[Hashable, str] = {}
        for key, entry in zip(self._keys, self.results):
            if "error" in entry:
                self.errors[key] = entry["error"]
            else:
                self._laws[key] = entry.get("_law", entry.get("law"))

    # -- mapping -------------------------------------------------------------------------
    def __getitem__(self, key: Hashable) -> FittedLaw:
        if key in self._laws:
            return self._laws[key]
        if key in self.errors:
            raise KeyError(f"group {key!r} could not be fitted: {self.errors[key]}")
        raise KeyError(f"no group {key!r}; the groups are {', '.join(map(repr, self._keys))}")

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._laws)

    def __len__(self) -> int:
        return len(self._laws)

    def __repr__(self) -> str:
        shown = [f"{k!r} {law.form}" for k, law in list(self._laws.items())[:6]]
        if len(self._laws) > 6:
            shown.append(f"... {len(self._laws) - 6} more")
        shown += [f"{k!r} error" for k in list(self.errors)[:3]]
        by = f" by {', '.join(self.by)}" if self.by else ""
        return f"LawSet({len(self._laws)} laws of {self.y} against {', '.join(self.x)}{by}: {', '.join(shown)})"

    # -- frames --------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """One row per group: the ``by`` columns, ``form``, each parameter, ``at_bound``
        (``name=lower`` or ``upper`` for parameters resting on a bound of the form),
        ``n_points``, and ``error`` (empty for a fitted group)."""
        rows = []
        for key, entry in zip(self._keys, self.results):
            row: dict[str, Any] = self._key_columns(key)
            row["form"] = entry.get("form")
            row.update(entry.get("params", {}))
            row["at_bound"] = ", ".join(f"{k}={v}" for k, v in entry.get("at_bound", {}).items())
            row["n_points"] = entry.get("n_points")
            row["error"] = entry.get("error", "")
            rows.append(row)
        frame = pd.DataFrame(rows)
        tail = ["at_bound", "n_points", "error"]
        return frame[[c for c in frame.columns if c not in tail] + tail]

    def predict(self, x: Any) -> pd.DataFrame:
        """Each law's value at ``x``: the ``by`` columns, the x column(s) and ``prediction``.

        ``x``: a number or an array of them (two x columns: (N, D) pairs), asked of every
        group; or a DataFrame with the x columns, asked of every group, or of each row's
        own group when it also holds the ``by`` columns.
        """
        return self._frame(x, level=None)

    def interval(self, x: Any, level: float = 0.8) -> pd.DataFrame:
        """:meth:`predict` with ``lo`` and ``hi``, each law's ``level`` prediction interval
        for a new run (:meth:`FittedLaw.interval <scalelab.laws.FittedLaw.interval>`)."""
        if not 0 < level < 1:
            raise InputError(f"level {level} must be between 0 and 1")
        compute_bootstraps(list(self._laws.values()))  # every group's replicates in batched solves
        return self._frame(x, level=level)

    def _frame(self, x, *, level: float | None) -> pd.DataFrame:
        parts = []
        for key, points in self._points(x):
            law = self._laws[key]
            part = pd.DataFrame(points, columns=list(self.x))
            for name, value in reversed(list(self._key_columns(key).items())):
                part.insert(0, name, [value] * len(part))
            part["prediction"] = law.predict(points)
            if level is not None:
                part["lo"], part["hi"] = law.interval(points, level)
            parts.append(part)
        columns = [*self.by, *self.x, "prediction", *(("lo", "hi") if level is not None else ())]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)

    def _points(self, x) -> Iterator[tuple[Hashable, np.ndarray]]:
        """(group, points of shape (m,) or (m, 2)) for each group ``x`` asks about."""
        if isinstance(x, pd.DataFrame):
            check_columns(x, self.x, label="prediction frame")
            if self.by and all(c in x.columns for c in self.by):
                keys = [self._key_of(row) for row in x[list(self.by)].itertuples(index=False, name=None)]
                for key in dict.fromkeys(keys):
                    if key not in self._laws:
                        self[key]  # raises, naming the group and why
                    rows = x[[k == key for k in keys]]
                    yield key, self._as_points(rows[list(self.x)].to_numpy(dtype=float))
                return
            x = x[list(self.x)].to_numpy(dtype=float)
        points = self._as_points(x)
        for key in self._laws:
            yield key, points

    def _as_points(self, x) -> np.ndarray:
        points = np.asarray(x, dtype=float)
        if len(self.x) == 2:
            points = np.atleast_2d(points)
            if points.ndim != 2 or points.shape[1] != 2:
                raise InputError(f"these laws take ({', '.join(self.x)}) pairs, got shape {points.shape}")
            return points
        return np.atleast_1d(points).ravel()

    def _key_columns(self, key: Hashable) -> dict[str, Any]:
        if not self.by:
            return {}
        values = key if len(self.by) > 1 else (key,)
        return dict(zip(self.by, values))

    def _key_of(self, values: tuple) -> Hashable:
        return values if len(self.by) > 1 else values[0]


def check_columns(df: pd.DataFrame, names: Sequence[str], *, label: str) -> None:
    """An InputError naming the first of ``names`` that ``df`` lacks, its columns, and the
    closest of them."""
    for name in names:
        if name not in df.columns:
            columns = [str(c) for c in df.columns]
            match = closest(name, columns)
            hint = f"; did you mean {match!r}?" if match else ""
            raise InputError(f"{label}: no column {name!r} (columns: {', '.join(columns)}){hint}")


def check_form(form: str) -> None:
    """An InputError for a form that is neither ``auto`` nor one of :data:`~scalelab.laws.FORMS`."""
    from scalelab.laws.forms import FORMS

    if form != "auto" and form not in FORMS:
        known = ["auto", *FORMS]
        match = closest(form, known)
        hint = f"; did you mean {match!r}?" if match else ""
        raise InputError(f"form {form!r}: unknown (known: {', '.join(known)}){hint}")


def _as_names(value, *, what: str) -> list[str]:
    if value is None:
        return []
    names = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(n, str) for n in names):
        raise InputError(f"{what} must name columns (a string or a list of strings), got {value!r}")
    return names


def fit_frame(
    df: pd.DataFrame,
    *,
    x: str | Sequence[str],
    y: str,
    by: str | Sequence[str] | None = None,
    form: str = "auto",
    chance: float | None = None,
    n_boot: int = 1000,
) -> LawSet:
    """Fit one law of ``y`` against ``x`` to each group of rows of ``df`` that share ``by``.

    Parameters
    ----------
    df : DataFrame
        One row per run (several seeds at one point are several rows).
    x : str or list of str
        The scale column, or two columns (N, D) for a joint law.
    y : str
        The target column, decreasing with scale. A name like an error rate
        (``test_error``, ``val_err``) fits a bounded law below the chance level.
    by : str or list of str, optional
        Columns whose values split the rows into groups; a group's key is its value,
        or the tuple of values for several columns. None: one law for all rows.
    form : str
        ``"auto"`` or one of :data:`scalelab.laws.FORMS`.
    chance : float, optional
        Chance level of an error rate; by default 1 − 1/K when ``df`` has an
        ``n_classes`` column (K), else 1. Giving it marks ``y`` as an error rate.
    n_boot : int
        Bootstrap replicates for intervals.

    Returns
    -------
    LawSet

    Raises
    ------
    InputError
        A column is missing or not numeric, or the form is unknown. With no ``by``, also
        when the rows cannot be fitted.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from scalelab.laws.lawset import fit_frame
    >>> df = pd.DataFrame({"n_train": np.geomspace(100, 1e4, 6)})
    >>> df["test_error"] = 0.05 + 2.0 * df["n_train"] ** -0.5
    >>> law = fit_frame(df, x="n_train", y="test_error", form="saturating", n_boot=50)[None]
    >>> round(law.params["beta"], 2)
    0.5
    """
    from scalelab.fitting import default_chance, fit_groups, numeric_column

    if not isinstance(df, pd.DataFrame):
        raise InputError(f"expected a DataFrame, got {type(df).__name__}")
    x_cols = _as_names(x, what="x")
    by_cols = _as_names(by, what="by")
    if not isinstance(y, str):
        raise InputError(f"y must name a column, got {y!r}")
    if not 1 <= len(x_cols) <= 2:
        raise InputError(f"x names {len(x_cols)} columns; a law takes one x, or two (N, D)")
    check_form(form)
    check_columns(df, [*x_cols, y, *by_cols], label="fit")
    for col in [*x_cols, y]:
        numeric_column(df, col, label="fit")
    if chance is None:
        chance = default_chance(df, y)
    if not by_cols:
        entries = fit_groups(df, label="fit", x_cols=x_cols, y_col=y, form=form, chance=chance, n_boot=n_boot)
        return LawSet(entries, by=(), x=x_cols, y=y, keys=[None])
    # Several columns are fitted as one combined group, numbered in first-seen order.
    codes = df.groupby(by_cols, sort=False, dropna=False).ngroup()
    table = df.assign(**{GROUP_COLUMN: codes.to_numpy()})
    firsts = table.drop_duplicates(GROUP_COLUMN)
    key_of = {
        code: (tuple(_plain(v) for v in values) if len(by_cols) > 1 else _plain(values[0]))
        for code, values in zip(firsts[GROUP_COLUMN], firsts[by_cols].itertuples(index=False, name=None))
    }
    entries = fit_groups(table, label="fit", x_cols=x_cols, y_col=y, group=GROUP_COLUMN, form=form, chance=chance, n_boot=n_boot)
    keys = [key_of[e["group"]] for e in entries]
    for key, entry in zip(keys, entries):
        entry["group"] = key
    laws = LawSet(entries, by=by_cols, x=x_cols, y=y, keys=keys)
    _warn_errors(laws)
    return laws


def _warn_errors(laws: LawSet) -> None:
    """One warning for all the groups that could not be fitted."""
    if laws.errors:
        first, why = next(iter(laws.errors.items()))
        warnings.warn(f"{len(laws.errors)} of {len(laws.results)} groups could not be fitted (first: {first!r}: {why}); "
                      "see LawSet.to_frame()['error']", UserWarning, stacklevel=3)  # fmt: skip


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def fit(data: Any = None, y: Any = None, form: str = "auto", *, x: Any = None, by: str | Sequence[str] | None = None,
        **options: Any) -> FittedLaw | LawSet:  # fmt: skip
    """Fit a law to arrays (:func:`scalelab.laws.law.fit`), or laws to a DataFrame's groups.

    ``fit(x, y, form=...)`` with arrays gives one :class:`~scalelab.laws.FittedLaw`;
    ``fit(df, x="n_train", y="test_error", by=[...])`` with column names gives a
    :class:`LawSet` (:func:`fit_frame`).

    Parameters
    ----------
    data : array-like or DataFrame
        The scale values (arrays), or the runs (a DataFrame, with ``x`` and ``y`` naming
        its columns).
    y : array-like or str
        The target values, or the target's column.
    form : str
        ``"auto"`` or one of :data:`scalelab.laws.FORMS`.
    x, by : str or list of str, optional
        With a DataFrame: the scale column(s) and the columns that split it into groups.
    **options
        Those of :func:`scalelab.laws.law.fit` (arrays) or :func:`fit_frame` (a DataFrame).

    Returns
    -------
    FittedLaw or LawSet

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from scalelab import laws
    >>> n = np.geomspace(100, 1e4, 6)
    >>> type(laws.fit(n, 3.0 * n ** -0.4, form="power")).__name__
    'FittedLaw'
    >>> df = pd.DataFrame({"n_train": n, "loss": 3.0 * n ** -0.4})
    >>> type(laws.fit(df, x="n_train", y="loss", form="power", n_boot=50)).__name__
    'LawSet'
    """
    from scalelab.laws.law import fit as fit_arrays

    if isinstance(data, pd.DataFrame) and isinstance(y, str):
        if x is None:
            raise InputError(f"fit on a DataFrame needs x, the scale column(s) (columns: {', '.join(map(str, data.columns))})")
        return fit_frame(data, x=x, y=y, by=by, form=form, **options)
    if by is not None:
        raise InputError("by= splits a DataFrame: pass fit(df, x='column', y='column', by=[...])")
    if data is None:
        data = x
    elif x is not None:
        raise InputError("give x once: fit(x, y) with arrays, or fit(df, x='column', y='column')")
    return fit_arrays(data, y, form, **options)
