"""Robust fitting of one form: Huber loss on log residuals, summed.

The objective for parameters θ is  Σ_c n_c · huber_δ(log f(x_c; θ) − mean_c log y),  over
the distinct x values c (cells) with n_c runs each (:class:`scalelab.laws.core.Cells`),
summed rather than averaged (averaging shrinks the gradients and stops L-BFGS early).
With one run per x it is the plain sum over points. Scales are optimised in log space.
Fitting is:

1. evaluate the objective on the form's grid of starting points (one vectorised call);
2. refine the best few with a batched Levenberg–Marquardt on iteratively reweighted
   least squares, which converges to the Huber optimum and runs many problems at once
   (starts here, bootstrap replicates in :mod:`scalelab.laws.bootstrap`);
3. polish the best with L-BFGS-B.

Everything is deterministic for a given input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from scalelab.laws.forms import Form

BAD_RESIDUAL = 30.0  # log-residual charged for a non-finite or non-positive prediction
FD_STEP = 1e-6


@dataclass
class Problem:
    """One form and its data, in the optimiser's coordinates.

    Shared data: ``x`` (n,) or (n, 2) and ``y`` (n,), one dataset for every row of
    parameters (starts, bootstrap replicates). Per-row data: ``x`` (R, n) or (R, n, 2),
    ``y`` (R, n) and bounds (R, p), one dataset per row, so that many datasets (groups,
    inner-backtest splits) are fitted in one batched solve; see :meth:`batch`.
    """

    form: Form
    x: np.ndarray
    y: np.ndarray
    ceiling: float | None
    delta: float | np.ndarray  # Huber threshold: one, or one per row (R, 1) of a per-row problem

    def __post_init__(self) -> None:
        self.log_y = np.log(self.y)
        lower, upper = self.form.bounds(self.x, self.y, self.ceiling)
        self.lower = self.form.to_internal(lower)
        self.upper = self.form.to_internal(upper)
        # A zero lower bound of a log parameter maps to -inf; keep the box finite.
        self.lower = np.where(np.isfinite(self.lower), self.lower, -700.0)

    @property
    def per_row(self) -> bool:
        return self.y.ndim == 2

    @classmethod
    def batch(cls, form: Form, x: np.ndarray, y: np.ndarray, lower: np.ndarray, upper: np.ndarray, ceiling, delta) -> Problem:
        """A problem with one dataset per row: x (R, n[, 2]), y (R, n), internal bounds (R, p)."""
        problem = cls.__new__(cls)
        problem.form, problem.x, problem.y, problem.ceiling, problem.delta = form, x, y, ceiling, delta
        problem.log_y, problem.lower, problem.upper = np.log(y), lower, upper
        return problem

    def rows(self, index: np.ndarray) -> Problem:
        """The same problem restricted to some rows (itself when the data is shared)."""
        if not self.per_row:
            return self
        delta = self.delta[index] if np.ndim(self.delta) else self.delta
        return Problem.batch(self.form, self.x[index], self.y[index], self.lower[index], self.upper[index], self.ceiling, delta)

    def residuals(self, U: np.ndarray) -> np.ndarray:
        """Log residuals for each row of internal parameters ``U``: shape (R, n)."""
        pred = self.form.predict(self.form.to_natural(U), self.x, self.ceiling)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.log(pred) - (self.log_y if self.per_row else self.log_y[None, :])
        return np.where(np.isfinite(r), r, BAD_RESIDUAL)

    def loss(self, r: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        a = np.abs(r)
        h = np.where(a <= self.delta, 0.5 * r * r, self.delta * (a - 0.5 * self.delta))
        if weights is not None:
            h = h * weights
        return h.sum(axis=1)

    def clip(self, U: np.ndarray) -> np.ndarray:
        return np.clip(U, self.lower, self.upper)


def refine(
    problem: Problem, U: np.ndarray, weights: np.ndarray | None = None, *, iterations: int = 60, tolerance: float = 1e-7
) -> tuple[np.ndarray, np.ndarray]:
    """Batched Levenberg–Marquardt on IRLS weights: minimise each row's Huber objective.

    ``U`` is (R, p) internal starting points, ``weights`` (R, n) per-point weights (the
    bootstrap's resampling counts) or None. A row stops when a step improves its loss by
    less than ``tolerance`` (relative). Returns the refined (R, p) and their losses.
    """
    p = np.shape(U)[1]
    eye = np.eye(p)

    def fresh_jacobian(idx, Ua, ra):
        # Forward differences of the residuals, all rows and parameters in one call.
        shifted = Ua[:, None, :] + FD_STEP * eye[None, :, :]
        r_shift = problem.rows(np.repeat(idx, p)).residuals(shifted.reshape(-1, p)).reshape(len(idx), p, -1)
        return np.transpose((r_shift - ra[:, None, :]) / FD_STEP, (0, 2, 1))  # (Ra, n, p)

    w = np.ones((len(U), problem.y.shape[-1])) if weights is None else weights
    # A row is done when a step barely helps, or when no damping makes progress.
    return _levenberg_marquardt(problem, U, w, fresh_jacobian, iterations=iterations, tolerance=tolerance, max_damping=1e7)


def _levenberg_marquardt(problem: Problem, U, weights, jacobian_of, *, iterations: int, tolerance: float, max_damping: float):
    """The batched LM loop of :func:`refine` and :func:`refine_chord`: ``jacobian_of(idx,
    U_active, r_active)`` gives the active rows' Jacobians (R_a, n, p); a row stops when a
    step improves its loss by less than ``tolerance`` or its damping passes ``max_damping``."""
    U = problem.clip(np.array(U, dtype=float, copy=True))
    r = problem.residuals(U)
    F = problem.loss(r, weights)
    damping = np.full(len(U), 1e-3)
    active = np.ones(len(U), dtype=bool)
    for _ in range(iterations):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        sub = problem.rows(idx)
        Ua, ra, wa = U[idx], r[idx], weights[idx]
        J = jacobian_of(idx, Ua, ra)
        omega = wa * np.minimum(1.0, sub.delta / np.maximum(np.abs(ra), 1e-300))
        JtW = np.transpose(J, (0, 2, 1)) * omega[:, None, :]
        U_new = sub.clip(Ua + _lm_step(JtW @ J, (JtW @ ra[:, :, None])[:, :, 0], damping[idx]))
        r_new = sub.residuals(U_new)
        F_new = sub.loss(r_new, wa)
        better = F_new < F[idx]
        gain = np.where(better, (F[idx] - F_new) / np.maximum(F[idx], 1e-300), 0.0)
        U[idx[better]], r[idx[better]], F[idx[better]] = U_new[better], r_new[better], F_new[better]
        damping[idx] = np.where(better, damping[idx] * 0.3, damping[idx] * 10.0)
        done = (better & (gain < tolerance)) | (damping[idx] > max_damping)
        active[idx[done]] = False
    return U, F


def _lm_step(A: np.ndarray, g: np.ndarray, damping: np.ndarray) -> np.ndarray:
    """The damped Gauss–Newton step −(A + λ·diag(A) + ε)⁻¹ g of each row.

    ε, a trillionth of the row's largest curvature, keeps a row solvable when a parameter
    has no effect there (M4's y0 under a known ceiling's cap, a flat term): LAPACK
    refuses an exactly singular system, which stopped the whole batch.
    """
    p = A.shape[-1]
    diag = np.einsum("kii->ki", A)
    ridge = damping[:, None] * (diag + 1e-9) + 1e-12 * np.max(np.abs(diag), axis=1, keepdims=True) + 1e-300
    system = A + ridge[:, :, None] * np.eye(p)[None, :, :]
    try:
        return -np.linalg.solve(system, g[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:  # non-finite curvature: a pseudo-inverse, batched
        return -(np.linalg.pinv(system) @ g[:, :, None])[:, :, 0]


def jacobian(problem: Problem, U: np.ndarray) -> np.ndarray:
    """Forward-difference Jacobian of the log residuals at each row of ``U``: (R, n, p)."""
    R, p = U.shape
    r = problem.residuals(U)
    shifted = U[:, None, :] + FD_STEP * np.eye(p)[None, :, :]
    r_shift = problem.rows(np.repeat(np.arange(R), p)).residuals(shifted.reshape(-1, p)).reshape(R, p, -1)
    return np.transpose((r_shift - r[:, None, :]) / FD_STEP, (0, 2, 1))


def refine_chord(
    problem: Problem, U: np.ndarray, weights: np.ndarray, J: np.ndarray, *, iterations: int = 30, tolerance: float = 1e-7
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`refine` with a fixed Jacobian ``J`` (R, n, p) instead of a fresh one per step.

    Bootstrap replicates start at the full-data optimum and move little, so the Jacobian
    there serves every replicate of a dataset: a step then costs one evaluation of the
    law instead of p + 1. What it settles on is not quite the replicate's optimum (the
    gradient uses the start's Jacobian), so :func:`refine` finishes from it.
    """
    return _levenberg_marquardt(problem, U, weights, lambda idx, Ua, ra: J[idx], iterations=iterations, tolerance=tolerance,
                                max_damping=1e4)  # fmt: skip


def polish(problem: Problem, U: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L-BFGS-B from each row of ``U`` (one row per dataset of a per-row problem), all at once.

    The objective is the sum of the rows' weighted losses, which separates by row, so one
    L-BFGS-B run over all rows' parameters finds each row's optimum; the gradient comes
    from batched central differences (moving parameter j of every row at once is exact
    for a separable sum). Returns the polished rows and each row's loss.
    """
    R, p = U.shape
    eye = np.eye(p)
    shifted = problem.rows(np.tile(np.arange(R), 2 * p + 1))
    stacked_weights = np.tile(weights, (2 * p + 1, 1))

    def value_and_grad(flat):
        V = flat.reshape(R, p)
        rows = np.concatenate([V] + [V + FD_STEP * e for e in eye] + [V - FD_STEP * e for e in eye])
        losses = shifted.loss(shifted.residuals(rows), stacked_weights).reshape(2 * p + 1, R)
        grad = (losses[1 : p + 1] - losses[p + 1 :]).T / (2 * FD_STEP)
        return float(losses[0].sum()), grad.ravel()

    lower = np.broadcast_to(problem.lower, U.shape).ravel()
    upper = np.broadcast_to(problem.upper, U.shape).ravel()
    result = minimize(
        value_and_grad, problem.clip(U).ravel(), jac=True, method="L-BFGS-B", bounds=list(zip(lower, upper)),
        options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-9},
    )  # fmt: skip
    polished = problem.clip(result.x.reshape(R, p))
    return polished, problem.loss(problem.residuals(polished), weights)


def fit_datasets(
    form: Form, datasets: list[tuple[np.ndarray, np.ndarray, np.ndarray]], ceiling: float | None, delta, *, polished: bool = True,
    n_refine: int = 8,
) -> list[tuple[np.ndarray, float]]:
    """Fit ``form`` to each ``(x, y, w)`` dataset (w: each point's weight, a cell's run
    count); ``(internal parameters, loss)`` per dataset. ``delta``: the Huber threshold,
    one for all or one per dataset.

    Each dataset gets its own grid of starts and bounds; the best few starts of every
    dataset are then refined together in one batched Levenberg–Marquardt solve (datasets
    of unequal length are padded with zero-weight points), and each optimum is polished
    with L-BFGS-B. ``polished=False`` skips the polish and refines fewer starts to a looser
    tolerance: the optimum to a few digits is plenty for scoring forms in inner backtests.
    """
    # The solves are thousands of tiny matrix products: BLAS threads only contend.
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_datasets(form, datasets, ceiling, delta, polished=polished, n_refine=n_refine)


def _fit_datasets(form, datasets, ceiling, delta, *, polished, n_refine):
    keep = n_refine if polished else max(1, n_refine // 3)
    deltas = np.broadcast_to(np.asarray(delta, float), (len(datasets),))
    singles = [Problem(form, x, y, ceiling, float(d)) for (x, y, _), d in zip(datasets, deltas)]
    grids = [s.clip(form.to_internal(form.starts(s.x, s.y, ceiling))) for s in singles]
    width = max(len(y) for _, y, _ in datasets)
    X = np.stack([_pad(x, width) for x, _, _ in datasets])
    Y = np.stack([_pad(y, width) for _, y, _ in datasets])
    W = np.stack([_pad(np.asarray(w, float), width, fill=0.0) for _, _, w in datasets])
    lower = np.stack([s.lower for s in singles])
    upper = np.stack([s.upper for s in singles])

    def batch(owner: np.ndarray) -> Problem:
        return Problem.batch(form, X[owner], Y[owner], lower[owner], upper[owner], ceiling, deltas[owner][:, None])

    # Every dataset's grid of starts in one evaluation; the best few of each are refined.
    grid_owner = np.concatenate([np.full(len(g), d) for d, g in enumerate(grids)])
    grid = np.vstack(grids)
    grid_problem = batch(grid_owner)
    grid_loss = grid_problem.loss(grid_problem.residuals(grid), W[grid_owner])
    chosen = np.concatenate(
        [rows[np.argsort(grid_loss[rows], kind="stable")[:keep]] for rows in (np.flatnonzero(grid_owner == d) for d in range(len(grids)))]
    )
    owner = grid_owner[chosen]
    refined, losses = refine(batch(owner), grid[chosen], W[owner], tolerance=1e-10 if polished else 1e-4, iterations=200 if polished else 60)
    # The best refined start of each dataset (the first of equals: deterministic).
    best = np.array([rows[np.argmin(losses[rows])] for rows in (np.flatnonzero(owner == d) for d in range(len(datasets)))])
    U, F = refined[best], losses[best]
    if polished:
        U_polished, F_polished = polish(batch(np.arange(len(datasets))), U, W)
        better = F_polished <= F  # polishing never makes a dataset worse
        U, F = np.where(better[:, None], U_polished, U), np.where(better, F_polished, F)
    return [(u, float(f)) for u, f in zip(U, F)]


def _pad(values: np.ndarray, width: int, *, fill: float | None = None) -> np.ndarray:
    """``values`` extended along its first axis to ``width`` rows with ``fill`` (default: its first row)."""
    extra = width - len(values)
    if extra == 0:
        return values
    filler = np.repeat(values[:1], extra, axis=0) if fill is None else np.full((extra, *values.shape[1:]), fill)
    return np.concatenate([values, filler])
