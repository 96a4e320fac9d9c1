"""Robust fitting of one form: Huber loss on log residuals, summed.

The objective for parameters θ is  Σ_i w_i · huber_δ(log f(x_i; θ) − log y_i),  summed
rather than averaged (averaging shrinks the gradients and stops L-BFGS early). Scales
are optimised in log space. Fitting is:

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

from scalelab.laws.forms import Form

BAD_RESIDUAL = 30.0  # log-residual charged for a non-finite or non-positive prediction
FD_STEP = 1e-6


@dataclass
class Problem:
    """One form and one dataset, in the optimiser's coordinates."""

    form: Form
    x: np.ndarray
    y: np.ndarray
    ceiling: float | None
    delta: float

    def __post_init__(self) -> None:
        self.log_y = np.log(self.y)
        lower, upper = self.form.bounds(self.x, self.y, self.ceiling)
        self.lower = self.form.to_internal(lower)
        self.upper = self.form.to_internal(upper)
        # A zero lower bound of a log parameter maps to -inf; keep the box finite.
        self.lower = np.where(np.isfinite(self.lower), self.lower, -700.0)

    def residuals(self, U: np.ndarray) -> np.ndarray:
        """Log residuals for each row of internal parameters ``U``: shape (R, n)."""
        pred = self.form.predict(self.form.to_natural(U), self.x, self.ceiling)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.log(pred) - self.log_y[None, :]
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
    U = problem.clip(np.array(U, dtype=float, copy=True))
    R, p = U.shape
    w = np.ones((R, len(problem.y))) if weights is None else weights
    r = problem.residuals(U)
    F = problem.loss(r, w)
    damping = np.full(R, 1e-3)
    active = np.ones(R, dtype=bool)
    eye = np.eye(p)
    for _ in range(iterations):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        Ua, ra, wa = U[idx], r[idx], w[idx]
        # Forward-difference Jacobian of the residuals, all rows and parameters in one call.
        shifted = Ua[:, None, :] + FD_STEP * eye[None, :, :]
        r_shift = problem.residuals(shifted.reshape(-1, p)).reshape(len(idx), p, -1)
        J = np.transpose((r_shift - ra[:, None, :]) / FD_STEP, (0, 2, 1))  # (Ra, n, p)
        omega = wa * np.minimum(1.0, problem.delta / np.maximum(np.abs(ra), 1e-300))
        JtW = np.transpose(J, (0, 2, 1)) * omega[:, None, :]
        A = JtW @ J
        g = (JtW @ ra[:, :, None])[:, :, 0]
        diag = np.einsum("kii->ki", A)
        system = A + (damping[idx, None] * (diag + 1e-9))[:, :, None] * eye[None, :, :]
        try:
            step = -np.linalg.solve(system, g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = -np.linalg.lstsq(system[0], g[0], rcond=None)[0][None, :] if len(idx) == 1 else -g * 1e-3
        U_new = problem.clip(Ua + step)
        r_new = problem.residuals(U_new)
        F_new = problem.loss(r_new, wa)
        better = F_new < F[idx]
        gain = np.where(better, (F[idx] - F_new) / np.maximum(F[idx], 1e-300), 0.0)
        U[idx[better]], r[idx[better]], F[idx[better]] = U_new[better], r_new[better], F_new[better]
        damping[idx] = np.where(better, damping[idx] * 0.3, damping[idx] * 10.0)
        # A row is done when a step barely helps, or when no damping makes progress.
        done = (better & (gain < tolerance)) | (damping[idx] > 1e7)
        active[idx[done]] = False
    return U, F


def polish(problem: Problem, u: np.ndarray) -> tuple[np.ndarray, float]:
    """L-BFGS-B from ``u`` on the unweighted objective, with batched central differences."""
    p = len(u)
    eye = np.eye(p)

    def value_and_grad(v):
        rows = np.vstack([v[None, :], v[None, :] + FD_STEP * eye, v[None, :] - FD_STEP * eye])
        losses = problem.loss(problem.residuals(rows))
        grad = (losses[1 : p + 1] - losses[p + 1 :]) / (2 * FD_STEP)
        return float(losses[0]), grad

    bounds = list(zip(problem.lower, problem.upper))
    result = minimize(value_and_grad, problem.clip(u), jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-9})
    return problem.clip(result.x), float(result.fun)


def fit_problem(problem: Problem, *, n_refine: int = 8, polished: bool = True) -> tuple[np.ndarray, float]:
    """Best internal parameters for a problem: grid of starts, batched LM, L-BFGS-B polish.

    ``polished=False`` skips the polish: the LM optimum is within a hair of it, which is
    plenty for scoring forms in inner backtests.
    """
    starts = problem.clip(problem.form.to_internal(problem.form.starts(problem.x, problem.y, problem.ceiling)))
    start_losses = problem.loss(problem.residuals(starts))
    # Unpolished fits only score forms in inner backtests: fewer starts are plenty there.
    best = starts[np.argsort(start_losses, kind="stable")[: n_refine if polished else max(1, n_refine // 3)]]
    # Scoring forms needs the optimum to a few digits; the polished fit wants more.
    refined, losses = refine(problem, best, tolerance=1e-7 if polished else 1e-4)
    order = np.argsort(losses, kind="stable")
    if not polished:
        return refined[order[0]], float(losses[order[0]])
    u, loss = polish(problem, refined[order[0]])
    if loss > losses[order[0]]:  # polishing never makes things worse
        u, loss = refined[order[0]], float(losses[order[0]])
    return u, loss
