"""Power iteration on full-data HVPs, for the largest and the smallest algebraic eigenvalue.

Power iteration on a matrix B converges to the eigenvalue of largest *magnitude*. Here
B = s (H - c I) with a sign s and shift c chosen so that the wanted end dominates:

- lambda_max: B = H. If the converged Rayleigh quotient is negative, the dominant end was
  lambda_min, so the iteration restarts on B = H - theta I, whose dominant eigenvalue is
  lambda_max - theta >= 0. A negative value is never returned as lambda_max.
- lambda_min: B = c I - H with c the lambda_max estimate (computed first, its cost counted),
  so the dominant eigenvalue of B is c - lambda_min. The rate is (c - lambda_2)/(c - lambda_min),
  close to 1 when lambda_min is small next to lambda_max: thousands of HVPs.

The estimate of H's eigenvalue is the Rayleigh quotient theta = x^T H x of the unit iterate x.
Stopping rule (as in PyHessian): |theta_k - theta_{k-1}| <= tol * |theta_k|. It can stop early
on slow convergence; the benchmark measures how often it does.
"""

from __future__ import annotations

import numpy as np

from solvers.base import Run, Solver
from solvers.krylov import dot, norm


class PowerIteration(Solver):
    """Shifted power iteration (lambda_min via c I - H). Options: ``tol``, ``max_steps``."""

    name = "power"

    def __init__(self, tol: float = 1e-3, max_steps: int = 1000) -> None:
        super().__init__(tol)
        if max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        self.max_steps = max_steps

    def _power(self, run: Run, end: str, sign: float, shift: float,
               rng: np.random.Generator) -> tuple[float, bool]:
        """Power iteration on sign * (H - shift I); returns (theta, converged)."""
        x = run.op.random_vector(rng)
        x = x / norm(x)
        previous = None
        for _ in range(self.max_steps):
            hx = run.matvec(x)
            theta = dot(x, hx)
            r = hx - theta * x
            run.estimate(end, theta, x, residual=norm(r))
            run.record()
            if previous is not None and abs(theta - previous) <= self.tol * abs(theta):
                return theta, True
            previous = theta
            y = sign * (hx - shift * x)
            x = y / norm(y)
        return theta, False

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        lam_max, ok = self._power(run, "max", 1.0, 0.0, rng)
        if ok and lam_max < 0:
            lam_max, ok = self._power(run, "max", 1.0, lam_max, rng)
        if not ok:
            return "max_steps", f"lambda_max: no convergence in max_steps={self.max_steps}"
        if which == "max":
            return "converged", "relative change of lambda_max below tol"
        if which == "min":
            run.lam["max"] = None  # only asked for lambda_min; lambda_max served as the shift
        _, ok = self._power(run, "min", -1.0, lam_max, rng)
        if not ok:
            return "max_steps", f"lambda_min: no convergence in max_steps={self.max_steps}"
        return "converged", "relative change of the estimates below tol"
