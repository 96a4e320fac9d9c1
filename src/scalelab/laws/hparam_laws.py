"""Learning-rate and batch-size laws: the best setting at each scale, and how it moves.

From a grid that sweeps ``lr`` and ``batch_size`` at several model sizes N and amounts
of data D, each (N, D) point's optimum is located by a quadratic fit of the loss over
(log lr, log batch) around its best settings, not only read off the best grid point: the
loss surface is close to convex in the logs near its minimum (Li et al. 2025, "Step
Law"), and a fit between grid points beats a grid spaced a factor of two apart. Through
the optima go the power laws

* η*(N, D) = c·N^a·D^b and B*(D) = c·D^b (Step Law's forms), and
* η*(C) = c·C^a and B*(C) = c·C^b against compute (DeepSeek LLM's).

Intervals come from a bootstrap that resamples the runs within each point (so the
optimum moves as its runs' noise allows) and the points themselves (so a law through
few points is as uncertain as their scatter around it). A recommendation beyond the
largest point says how far it extrapolates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from scalelab.errors import InputError
from scalelab.laws.isoflop import quantile_range

DEFAULT_BOOT = 300
MIN_SETTINGS = 3  # distinct settings a point needs for any optimum but its best run
QUADRATIC_2D = 6  # settings a quadratic in two logs with a cross term needs


@dataclass
class HparamOptimum:
    """One (N, D) point's best setting: ``lr`` and ``batch_size`` (natural units), the
    ``loss`` there, how it was found (``method``: "quadratic" in both logs, "quadratic per
    axis" along the slices through the best setting, or "best run"), and
    ``at_edge`` ({axis: "low" | "high"}) where the optimum lies at the edge of the values
    swept: the grid should be widened there, and the value is a bound, not an optimum."""

    n_params: float
    tokens: float
    flops: float
    lr: float
    batch_size: float
    loss: float
    n_runs: int
    method: str
    at_edge: dict[str, str] = field(default_factory=dict)
    lr_range: tuple[float, float] = (math.nan, math.nan)
    batch_range: tuple[float, float] = (math.nan, math.nan)

    def to_dict(self) -> dict:
        return {"n_params": self.n_params, "tokens": self.tokens, "flops": self.flops, "lr": self.lr, "lr_range": list(self.lr_range),
                "batch_size": self.batch_size, "batch_range": list(self.batch_range), "loss": self.loss, "n_runs": self.n_runs,
                "method": self.method, "at_edge": dict(self.at_edge)}  # fmt: skip


@dataclass
class PowerLaw:
    """``y = coef · Π x_i^e_i`` fitted through the optima, with bootstrap replicates of
    (log coef, exponents...) in ``replicates`` for intervals."""

    target: str
    x_names: tuple[str, ...]
    coef: float
    exponents: dict[str, float]
    replicates: np.ndarray = field(repr=False)
    level: float = 0.8
    fitted_max: dict[str, float] = field(default_factory=dict)  # the largest value of each x fitted on

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        tail = (1 - self.level) / 2
        return {name: quantile_range(self.replicates[:, 1 + i], tail) for i, name in enumerate(self.x_names)}

    def predict(self, **x: float) -> float:
        logs = sum(self.exponents[name] * math.log(x[name]) for name in self.x_names)
        return float(self.coef * math.exp(logs))

    def interval(self, level: float | None = None, **x: float) -> tuple[float, float]:
        """The ``level`` range of the replicates' predictions at ``x``."""
        tail = (1 - (self.level if level is None else level)) / 2
        logs = np.column_stack([np.ones(1), *[np.log([x[name]]) for name in self.x_names]])[0]
        return quantile_range(np.exp(self.replicates @ logs), tail)

    def formula(self) -> str:
        """``lr* = 0.031 · N^-0.25 · D^0.12``."""
        return f"{self.target}* = {self.coef:.3g}" + "".join(f" · {name}^{self.exponents[name]:.3g}" for name in self.x_names)

    def to_dict(self) -> dict:
        return {"target": self.target, "x": list(self.x_names), "coef": self.coef, "exponents": dict(self.exponents),
                "intervals": {k: list(v) for k, v in self.intervals.items()}, "level": self.level, "formula": self.formula()}  # fmt: skip


@dataclass
class HparamLaws:
    """The optimum of every point and the laws through them; a law the grid cannot support
    (one batch size swept, one amount of data) is None, with why in ``notes``."""

    optima: list[HparamOptimum]
    lr_nd: PowerLaw | None
    batch_d: PowerLaw | None
    lr_c: PowerLaw | None
    batch_c: PowerLaw | None
    level: float
    notes: list[str] = field(default_factory=list)

    def laws(self) -> dict[str, PowerLaw]:
        named = {"lr_nd": self.lr_nd, "batch_d": self.batch_d, "lr_c": self.lr_c, "batch_c": self.batch_c}
        return {k: v for k, v in named.items() if v is not None}

    def recommend(self, *, n_params: float | None = None, tokens: float | None = None, flops: float | None = None,
                  level: float | None = None) -> dict:  # fmt: skip
        """The recommended ``lr`` and ``batch_size`` with ``level`` intervals: at (N, D) by
        η*(N, D) and B*(D), or at a FLOP budget alone by η*(C) and B*(C). ``extrapolation``
        gives, per input, how many e-folds it lies beyond the largest point fitted (0 inside)."""
        level = self.level if level is None else level
        if flops is None and (n_params is None or tokens is None):
            raise InputError("a recommendation needs N and D (--at N,D) or a FLOP budget (--budget)")
        for name, value in (("N", n_params), ("D", tokens), ("budget", flops)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise InputError(f"{name} = {value:g}: must be positive and finite")
        by_nd = n_params is not None and tokens is not None
        x = {"N": n_params, "D": tokens} if by_nd else {"C": flops}
        out: dict = {"at": {k: v for k, v in x.items()}, "level": level, "laws": {}, "extrapolation": {}}
        for target, law in (("lr", self.lr_nd if by_nd else self.lr_c), ("batch_size", self.batch_d if by_nd else self.batch_c)):
            if law is None:
                out[target] = None
                continue
            lo, hi = law.interval(level, **{k: x[k] for k in law.x_names})
            out[target], out[f"{target}_range"] = law.predict(**{k: x[k] for k in law.x_names}), [lo, hi]
            out["laws"][target] = law.formula()
            for name in law.x_names:
                out["extrapolation"][name] = max(0.0, math.log(x[name] / law.fitted_max[name]))
        return out

    def to_dict(self) -> dict:
        return {"optima": [o.to_dict() for o in self.optima], "laws": {k: v.to_dict() for k, v in self.laws().items()},
                "level": self.level, "notes": list(self.notes)}  # fmt: skip


def find_optimum(lr, batch_size, loss) -> tuple[float, float, float, str, dict[str, str]]:
    """(lr*, batch*, loss*, method, at_edge) of one point's runs (:class:`HparamOptimum`).

    Seeds of one setting are averaged. The quadratic is fitted to the best settings (the
    best half, at least enough to fit it), so far-off settings where the surface is no
    longer quadratic (a diverging lr) do not bend it; its minimum is kept when the fit is
    convex, clipped to the range swept; otherwise the best setting stands.
    """
    logs = np.column_stack([np.log(lr), np.log(batch_size)])
    settings, inverse = np.unique(logs, axis=0, return_inverse=True)
    mean = np.bincount(inverse.ravel(), weights=loss) / np.bincount(inverse.ravel())
    varies = [len(np.unique(settings[:, i])) > 1 for i in range(2)]
    best = int(np.argmin(mean))
    point, method = settings[best].copy(), "best run"
    axes = [i for i in range(2) if varies[i]]
    needed = QUADRATIC_2D if len(axes) == 2 else MIN_SETTINGS
    if axes and len(settings) >= needed:
        keep = np.argsort(mean)[: max(needed, (len(settings) + 1) // 2)]
        found = _quadratic_minimum(settings[keep][:, axes], mean[keep])
        if found is not None:
            point[axes] = found
            method = "quadratic"
    if method == "best run" and len(axes) == 2:
        # No convex surface through the best settings, typically because the loss still
        # falls at one edge (the smallest batch best everywhere): each axis is then fitted
        # on its own, along the slice through the best setting.
        for axis in axes:
            other = 1 - axis
            line = np.isclose(settings[:, other], settings[best, other])
            if line.sum() >= MIN_SETTINGS:
                found = _quadratic_minimum(settings[line][:, [axis]], mean[line])
                if found is not None:
                    point[axis] = found[0]
                    method = "quadratic per axis"
    at_edge = {}
    for i, name in enumerate(("lr", "batch_size")):
        if not varies[i]:
            continue
        low, high = settings[:, i].min(), settings[:, i].max()
        step = np.min(np.diff(np.unique(settings[:, i])))
        # Within a tenth of a grid step of the edge counts as at it: the fit cannot see past it.
        if point[i] <= low + 0.1 * step:
            at_edge[name] = "low"
        elif point[i] >= high - 0.1 * step:
            at_edge[name] = "high"
        point[i] = min(max(point[i], low), high)
    loss_at = float(min(mean[best], _predicted(settings, mean, point, axes))) if method == "quadratic" else float(mean[best])
    return float(math.exp(point[0])), float(math.exp(point[1])), loss_at, method, at_edge


def _quadratic_minimum(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """The stationary point of the least-squares quadratic in the columns of ``x``, when
    it is a minimum (a positive-definite Hessian); None otherwise."""
    k = x.shape[1]
    centre = x.mean(axis=0)
    z = x - centre
    columns = [np.ones(len(z)), *[z[:, i] for i in range(k)]]
    pairs = [(i, j) for i in range(k) for j in range(i, k)]
    columns += [z[:, i] * z[:, j] for i, j in pairs]
    A = np.column_stack(columns)
    if np.linalg.matrix_rank(A) < A.shape[1]:
        return None
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    g = coef[1 : 1 + k]
    H = np.zeros((k, k))
    for (i, j), c in zip(pairs, coef[1 + k :]):
        H[i, j] += c if i != j else 2 * c
        if i != j:
            H[j, i] += c
    if np.any(np.linalg.eigvalsh(H) <= 0):
        return None
    return centre + np.linalg.solve(H, -g)


def _predicted(settings: np.ndarray, mean: np.ndarray, point: np.ndarray, axes: list[int]) -> float:
    """The loss the quadratic through the best settings predicts at ``point`` (for the
    optimum's loss; never below what the fit's own minimum gives)."""
    keep = np.argsort(mean)[: max(QUADRATIC_2D if len(axes) == 2 else MIN_SETTINGS, (len(settings) + 1) // 2)]
    x, y = settings[keep][:, axes], mean[keep]
    z = x - x.mean(axis=0)
    k = len(axes)
    pairs = [(i, j) for i in range(k) for j in range(i, k)]
    A = np.column_stack([np.ones(len(z)), *[z[:, i] for i in range(k)], *[z[:, i] * z[:, j] for i, j in pairs]])
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    p = point[axes] - x.mean(axis=0)
    row = np.concatenate([[1.0], p, [p[i] * p[j] for i, j in pairs]])
    return float(row @ coef)


def _holding(bounds: tuple[float, float], estimate: float) -> tuple[float, float]:
    """``bounds`` widened to hold ``estimate``. Near an edge of the grid the optimum jumps:
    the runs together may put it on the edge while most resamples place it inside, and a
    range that left out the value reported beside it would be no honest range for it."""
    return min(bounds[0], estimate), max(bounds[1], estimate)


def fit_hparam_laws(n_params, tokens, lr, batch_size, loss, *, flops=None, level: float = 0.8, n_boot: int = DEFAULT_BOOT,
                    seed: int = 0) -> HparamLaws:  # fmt: skip
    """The optimum of every (N, D) point and the power laws through them (module docstring).

    Parameters
    ----------
    n_params, tokens, lr, batch_size, loss : array-like (n,)
        One row per run. Runs with equal (N, D) form one point; several runs of one setting
        (seeds) are averaged.
    flops : array-like (n,), optional
        Each run's training FLOPs; a point's compute is their median. Default 6·N·D.
    level : float
        Interval level.
    n_boot : int
        Bootstrap replicates (runs within points, and points).
    """
    columns = {"N": n_params, "D": tokens, "lr": lr, "batch_size": batch_size, "loss": loss}
    arrays = {name: np.asarray(values, dtype=float).ravel() for name, values in columns.items()}
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) != 1:
        raise InputError("the runs' N, D, lr, batch_size and loss have different lengths: " + ", ".join(f"{k} {len(v)}" for k, v in arrays.items()))
    for name, values in arrays.items():
        bad = ~np.isfinite(values) | ((values <= 0) if name != "loss" else False)
        if np.any(bad):
            raise InputError(f"{name} must be {'finite' if name == 'loss' else 'positive and finite'}; run {int(np.argmax(bad)) + 1} holds {values[bad][0]:g}")
    if not 0 < level < 1:
        raise InputError(f"level {level} must be between 0 and 1")
    C = 6.0 * arrays["N"] * arrays["D"] if flops is None else np.asarray(flops, dtype=float).ravel()
    keys = np.column_stack([arrays["N"], arrays["D"]])
    points, owner = np.unique(keys, axis=0, return_inverse=True)
    owner = owner.ravel()
    if len(points) < 2:
        raise InputError(f"the laws need optima at two model sizes or amounts of data at least; the runs hold one point (N = {points[0][0]:g}, D = {points[0][1]:g})")
    members = [np.flatnonzero(owner == p) for p in range(len(points))]
    for p, rows in enumerate(members):
        distinct = len(np.unique(np.column_stack([arrays["lr"][rows], arrays["batch_size"][rows]]), axis=0))
        if distinct < MIN_SETTINGS:
            raise InputError(f"the point N = {points[p][0]:g}, D = {points[p][1]:g} has {distinct} distinct settings of lr and batch_size; "
                             f"an optimum needs {MIN_SETTINGS} at least")  # fmt: skip

    def optimum_of(rows) -> tuple[float, float, float, str, dict]:
        return find_optimum(arrays["lr"][rows], arrays["batch_size"][rows], arrays["loss"][rows])

    found = [optimum_of(rows) for rows in members]
    rng = np.random.default_rng(seed)
    boot_lr = np.empty((n_boot, len(points)))
    boot_bs = np.empty((n_boot, len(points)))
    for b in range(n_boot):
        for p, rows in enumerate(members):
            drawn = rng.choice(rows, size=len(rows), replace=True)
            if len(np.unique(np.column_stack([arrays["lr"][drawn], arrays["batch_size"][drawn]]), axis=0)) < MIN_SETTINGS:
                drawn = rows  # too few settings left to place an optimum: this point keeps its runs
            boot_lr[b, p], boot_bs[b, p], *_ = optimum_of(drawn)
    tail = (1 - level) / 2
    optima = []
    for p, (lr_opt, bs_opt, loss_opt, method, edge) in enumerate(found):
        compute = float(np.median(C[members[p]]))
        optima.append(HparamOptimum(n_params=float(points[p][0]), tokens=float(points[p][1]), flops=compute, lr=lr_opt,
                                    batch_size=bs_opt, loss=loss_opt, n_runs=len(members[p]), method=method, at_edge=edge,
                                    lr_range=_holding(quantile_range(boot_lr[:, p], tail), lr_opt),
                                    batch_range=_holding(quantile_range(boot_bs[:, p], tail), bs_opt)))  # fmt: skip
    N = np.array([o.n_params for o in optima])
    D = np.array([o.tokens for o in optima])
    Cp = np.array([o.flops for o in optima])
    point_lr = np.array([o.lr for o in optima])
    point_bs = np.array([o.batch_size for o in optima])
    draws = rng.integers(0, len(points), size=(n_boot, len(points)))  # the points each replicate's law is fitted through
    notes: list[str] = []

    def law(target, values, boots, xs: dict[str, np.ndarray]) -> PowerLaw | None:
        usable = {name: x for name, x in xs.items() if len(np.unique(x)) > 1}
        for name in xs.keys() - usable.keys():
            notes.append(f"{target}*: every point has the same {name}, so the law leaves {name} out")
        if len(np.unique(values)) < 2 and len(np.unique(boots)) < 2:
            notes.append(f"{target}*: the same value at every point; there is nothing to fit")
            return None
        if not usable:
            return None
        names = tuple(usable)
        design = np.column_stack([np.ones(len(values)), *[np.log(usable[n]) for n in names]])
        if len(values) <= design.shape[1]:
            notes.append(f"{target}*({', '.join(names)}): {len(values)} points cannot fit {design.shape[1]} coefficients and show their scatter")
            if len(values) < design.shape[1]:
                return None
        # Points are weighted by how well their runs place the optimum: on a shallow axis one
        # point's optimum can wander across the grid while the others sit still, and equal
        # weights would let it pull the exponent. The median variance is added to every
        # point's so that no single tight point takes the whole fit.
        spread = np.var(np.log(boots), axis=0)
        sqrt_w = 1.0 / np.sqrt(spread + max(float(np.median(spread)), 1e-12))
        theta = np.linalg.lstsq(design * sqrt_w[:, None], np.log(values) * sqrt_w, rcond=None)[0]
        replicates = np.full((n_boot, design.shape[1]), np.nan)
        for b in range(n_boot):
            rows = draws[b]
            if np.linalg.matrix_rank(design[rows]) < design.shape[1]:
                rows = np.arange(len(values))  # a resample that cannot pin the law keeps every point
            w = sqrt_w[rows][:, None]
            replicates[b] = np.linalg.lstsq(design[rows] * w, np.log(boots[b, rows]) * w[:, 0], rcond=None)[0]
        return PowerLaw(target=target, x_names=names, coef=float(math.exp(theta[0])),
                        exponents={n: float(theta[1 + i]) for i, n in enumerate(names)}, replicates=replicates, level=level,
                        fitted_max={n: float(usable[n].max()) for n in names})  # fmt: skip

    lr_swept = len(np.unique(arrays["lr"])) > 1
    bs_swept = len(np.unique(arrays["batch_size"])) > 1
    lr_nd = law("lr", point_lr, boot_lr, {"N": N, "D": D}) if lr_swept else None
    lr_c = law("lr", point_lr, boot_lr, {"C": Cp}) if lr_swept else None
    batch_d = law("batch_size", point_bs, boot_bs, {"D": D}) if bs_swept else None
    batch_c = law("batch_size", point_bs, boot_bs, {"C": Cp}) if bs_swept else None
    for name, swept in (("lr", lr_swept), ("batch_size", bs_swept)):
        if not swept:
            notes.append(f"the grid sweeps one {name}; there is no {name} law")
    edges = {(axis, side): sum(o.at_edge.get(axis) == side for o in optima) for axis in ("lr", "batch_size") for side in ("low", "high")}
    said = [f"{axis} at the {side} edge at {count} of {len(optima)} points" for (axis, side), count in edges.items() if count]
    if said:
        notes.append("the best " + "; ".join(said) + ": there the value swept bounds the optimum rather than locates it, and the "
                     "laws through it lean toward the grid; widen the grid on that side")  # fmt: skip
    return HparamLaws(optima=optima, lr_nd=lr_nd, batch_d=batch_d, lr_c=lr_c, batch_c=batch_c, level=level, notes=notes)
