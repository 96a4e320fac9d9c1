"""Figures of fitted laws, in the shape of scikit-learn's displays.

A display is made by a ``from_*`` class method, which computes everything it draws
(the law on a dense log grid, its prediction interval, the observed points), and drawn
by :meth:`plot`, which returns the display with the matplotlib objects it made
(``ax_``, ``figure_``, ``lines_``). Computing apart from drawing lets a test or a
notebook read the numbers without a figure, and redraw on another axis without refitting.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalelab.errors import InputError
from scalelab.laws.bands import smooth_band
from scalelab.laws.law import FittedLaw
from scalelab.laws.lawset import LawSet

DEFAULT_GRID = 200  # points of the dense grid: enough that a band on a log axis looks smooth
DEFAULT_REACH = 4.0  # how far past the largest observed x the law is drawn, as a factor


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax


@dataclass
class LawDisplay:
    """One fitted law on log axes: its curve, its prediction interval as a band, and the
    points it was fitted to.

    Use :meth:`from_law` (or :meth:`from_lawset`) to make one, then :meth:`plot`.

    Attributes
    ----------
    grid, prediction, lo, hi : ndarray
        The dense log grid of x and the law's value and ``level`` interval on it (the
        interval's edges smoothed along the grid, :func:`smooth_band`).
    x_observed, y_observed : ndarray or None
        The points to draw with the law.
    ax_, figure_ : matplotlib Axes and Figure
        Set by :meth:`plot`.
    lines_ : list of Line2D
        The law's line (and the points', when drawn), set by :meth:`plot`.
    band_ : PolyCollection or None
        The interval's band, set by :meth:`plot`.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from scalelab import laws
    >>> from scalelab.display import LawDisplay
    >>> n = np.geomspace(100, 1e4, 6)
    >>> law = laws.fit(n, 0.05 + 2.0 * n ** -0.5, form="saturating", n_boot=50)
    >>> display = LawDisplay.from_law(law, n_grid=50).plot()
    >>> len(display.grid), len(display.lines_)
    (50, 2)
    """

    grid: np.ndarray
    prediction: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    level: float
    x_name: str = "x"
    y_name: str = "y"
    name: str | None = None
    x_observed: np.ndarray | None = None
    y_observed: np.ndarray | None = None
    ax_: object = field(default=None, repr=False)
    figure_: object = field(default=None, repr=False)
    lines_: list = field(default_factory=list, repr=False)
    band_: object = field(default=None, repr=False)

    @classmethod
    def from_law(
        cls,
        law: FittedLaw,
        *,
        x_observed: Sequence[float] | None = None,
        y_observed: Sequence[float] | None = None,
        level: float = 0.8,
        x_range: tuple[float, float] | None = None,
        n_grid: int = DEFAULT_GRID,
        name: str | None = None,
    ) -> LawDisplay:
        """The display of a one-x ``law``.

        Parameters
        ----------
        law : FittedLaw
            A law of one x (a joint law of (N, D) has no single curve to draw).
        x_observed, y_observed : array-like, optional
            Points to draw; by default the points the law was fitted to.
        level : float
            Level of the prediction interval drawn as a band.
        x_range : (float, float), optional
            The grid's ends; by default from the smallest observed x to
            :data:`DEFAULT_REACH` times the largest.
        n_grid : int
            Points of the log grid the curve and band are computed on.
        name : str, optional
            The legend's label of the law.

        Returns
        -------
        LawDisplay
        """
        if law.data.x.ndim != 1:
            raise InputError(f"LawDisplay draws a law of one x; this one takes ({', '.join(law.x_names)}) pairs")
        if n_grid < 2:
            raise InputError(f"n_grid {n_grid}: needs at least 2 points")
        if (x_observed is None) != (y_observed is None):
            raise InputError("give both x_observed and y_observed, or neither")
        if x_observed is None:
            x_observed, y_observed = law.data.x, law.data.y
        x_observed = np.asarray(x_observed, dtype=float)
        y_observed = np.asarray(y_observed, dtype=float)
        low, high = x_range if x_range is not None else (float(x_observed.min()), DEFAULT_REACH * float(x_observed.max()))
        if not 0 < low < high:
            raise InputError(f"x_range ({low:g}, {high:g}): needs 0 < low < high")
        grid = np.geomspace(low, high, n_grid)
        prediction = law.predict(grid)
        lo, hi = smooth_band(prediction, *law.interval(grid, level))
        return cls(grid=grid, prediction=prediction, lo=lo, hi=hi, level=level, x_name=law.x_names[0],
                   y_name=law.data.y_name, name=name or law.form, x_observed=x_observed, y_observed=y_observed)  # fmt: skip

    @classmethod
    def from_lawset(cls, lawset: LawSet, key: Hashable, **options: Any) -> LawDisplay:
        """The display of the law of group ``key`` of ``lawset``, labelled by the key;
        ``options`` are those of :meth:`from_law`."""
        options.setdefault("name", ", ".join(map(str, key)) if isinstance(key, tuple) else str(key))
        return cls.from_law(lawset[key], **options)

    def plot(self, ax: Any = None, *, color: Any = None, show_points: bool = True, band: bool = True, line_kw: dict | None = None,
             band_kw: dict | None = None, point_kw: dict | None = None) -> LawDisplay:  # fmt: skip
        """Draw on ``ax`` (a new figure's axes when None), log-log; returns ``self``.

        ``line_kw``, ``band_kw`` and ``point_kw`` are passed to matplotlib's ``plot``,
        ``fill_between`` and ``plot`` (the points) respectively.
        """
        ax = _axes(ax)
        line = ax.plot(self.grid, self.prediction, color=color, label=self.name, **(line_kw or {}))[0]
        color = line.get_color()  # the band and points take the line's colour from the axis's cycle
        self.lines_ = [line]
        self.band_ = None
        if band:
            self.band_ = ax.fill_between(self.grid, self.lo, self.hi, color=color, alpha=0.2, linewidth=0,
                                         label=f"{self.level:.0%} interval", **(band_kw or {}))  # fmt: skip
        if show_points and self.x_observed is not None:
            self.lines_ += ax.plot(self.x_observed, self.y_observed, "o", color=color, markersize=4, **(point_kw or {}))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(self.x_name)
        ax.set_ylabel(self.y_name)
        self.ax_, self.figure_ = ax, ax.figure
        return self


@dataclass
class LearningCurveDisplay:
    """Observed points by group and each group's fitted law, on one log-log axis.

    Use :meth:`from_frame` or :meth:`from_study` to make one, then :meth:`plot`.

    Attributes
    ----------
    lawset : LawSet
        The laws drawn.
    displays : dict
        One :class:`LawDisplay` per fitted group.
    ax_, figure_, lines_
        Set by :meth:`plot` (``lines_``: every line and point series drawn).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, pandas as pd
    >>> from scalelab.display import LearningCurveDisplay
    >>> n = np.geomspace(100, 1e4, 6)
    >>> df = pd.concat([pd.DataFrame({"width": w, "n_train": n, "loss": 3.0 * n ** -b})
    ...                 for w, b in [(1, 0.3), (2, 0.5)]])
    >>> display = LearningCurveDisplay.from_frame(df, x="n_train", y="loss", by="width",
    ...                                           form="power", n_boot=50).plot()
    >>> sorted(display.displays), len(display.lines_)
    ([1, 2], 4)
    """

    lawset: LawSet
    displays: dict
    ax_: object = field(default=None, repr=False)
    figure_: object = field(default=None, repr=False)
    lines_: list = field(default_factory=list, repr=False)

    @classmethod
    def from_lawset(cls, lawset: LawSet, *, level: float = 0.8, n_grid: int = DEFAULT_GRID,
                    x_range: tuple[float, float] | None = None) -> LearningCurveDisplay:  # fmt: skip
        """Every fitted law of ``lawset`` with the points it was fitted to."""
        return cls(lawset, {key: LawDisplay.from_lawset(lawset, key, level=level, n_grid=n_grid, x_range=x_range) for key in lawset})

    @classmethod
    def from_frame(cls, df: Any, *, x: str, y: str, by: str | Sequence[str] | None = None, form: str = "auto", level: float = 0.8,
                   n_boot: int = 1000, n_grid: int = DEFAULT_GRID, x_range: tuple[float, float] | None = None) -> LearningCurveDisplay:  # fmt: skip
        """Fit one law of ``y`` against ``x`` per group of ``by``
        (:func:`scalelab.laws.fit`) and display them."""
        from scalelab.laws.lawset import fit_frame

        lawset = fit_frame(df, x=x, y=y, by=by, form=form, n_boot=n_boot)
        return cls.from_lawset(lawset, level=level, n_grid=n_grid, x_range=x_range)

    @classmethod
    def from_study(cls, study: Any, *, x: Sequence[str] = ("n_train",), y: str | None = None, group: Any = None, form: str = "auto",
                   level: float = 0.8, n_boot: int = 1000, n_grid: int = DEFAULT_GRID,
                   x_range: tuple[float, float] | None = None) -> LearningCurveDisplay:  # fmt: skip
        """A study's curves and their laws, as :meth:`Study.fit <scalelab.Study.fit>` fits them."""
        lawset = study.fit(x=x, y=y, group=group, form=form, level=level, n_boot=n_boot)
        return cls.from_lawset(lawset, level=level, n_grid=n_grid, x_range=x_range)

    def plot(self, ax: Any = None, *, band: bool = True, legend: bool = True) -> LearningCurveDisplay:
        """Draw every group on ``ax`` (a new figure's when None), one colour each; returns ``self``."""
        ax = _axes(ax)
        self.lines_ = []
        for display in self.displays.values():
            self.lines_ += display.plot(ax, band=band).lines_
        if legend and self.displays:
            ax.legend(handles=[d.lines_[0] for d in self.displays.values()], title=", ".join(self.lawset.by) or None)
        self.ax_, self.figure_ = ax, ax.figure
        return self
