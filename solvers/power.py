"""Power iteration on full-data HVPs, for the largest and the smallest algebraic eigenvalue.

Power iteration on a matrix B converges to the eigenvalue of largest *magnitude*. Here
B = s (H - c I) with a sign s and shift c chosen so that the wanted end dominates
(see ``hessbench.solvers._shifted.solve_ends``):

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

from hessbench.solvers._shifted import Shifted, solve_ends
from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import dot, norm


class PowerIteration(Solver):
    """Shifted power iteration (lambda_min via c I - H). Options: ``tol``, ``max_steps``."""

    name = "power"
    accepts_start = True

    def __init__(self, tol: float = 1e-3, max_steps: int = 1000) -> None:
        super().__init__(tol)
        if max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        self.max_steps = max_steps

    def _power(self, run: Run, end: str, B: Shifted, rng: np.random.Generator
               ) -> tuple[float, bool]:
        """Power iteration on B; returns (Rayleigh quotient of H, converged)."""
        x = run.start_vector(rng)
        x = x / norm(x)
        previous = None
        for _ in range(self.max_steps):
            hx = run.matvec(x)
            theta = dot(x, hx)
            run.estimate(end, theta, x, residual=norm(hx - theta * x))
            run.record()
            if previous is not None and abs(theta - previous) <= self.tol * abs(theta):
                return theta, True
            previous = theta
            y = B.sign * (hx - B.shift * x)
            x = y / norm(y)
        return theta, False

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        return solve_ends(run, which, lambda end, B: self._power(run, end, B, rng),
                          restart_negative=True)
