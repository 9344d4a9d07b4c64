"""An example third-party hessbench solver: shifted power iteration with a residual test.

Phase 1 runs power iteration on H. It converges to the eigenvalue mu of largest magnitude,
which is lambda_max if mu >= 0 and lambda_min if mu < 0. Phase 2 (only if the other end is
asked for) runs power iteration on H - mu I, whose eigenvalue of largest magnitude is the other
end minus mu. Each step costs one full-data HVP and publishes the Rayleigh quotient
theta = x^T H x of the unit iterate x, with residual r = ||H x - theta x||. An end has converged
when r <= tol * |theta| (some eigenvalue lies within r of theta).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace

from hessbench.solvers import Solver
from hessbench.solvers.base import Run


def _norm(x: Any) -> float:
    return float(array_namespace(x).linalg.vector_norm(x))


def _dot(x: Any, y: Any) -> float:
    return float(array_namespace(x).sum(x * y))


class ExamplePower(Solver):
    """Shifted power iteration with a residual stopping rule. Options: ``tol``, ``max_steps``."""

    name = "example-power"

    def __init__(self, tol: float = 1e-3, max_steps: int = 2000) -> None:
        super().__init__(tol)  # checks 0 < tol < 1
        if max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        self.max_steps = max_steps

    def _power(self, run: Run, shift: float, rng: np.random.Generator,
               end: str | None = None) -> tuple[float, bool]:
        """Power iteration on H - shift I; returns (theta, converged).

        Estimates go to ``end``, or if None to the end the sign of theta points to (a Rayleigh
        quotient lies in [lambda_min, lambda_max], so a negative one bounds lambda_min from
        above and a positive one lambda_max from below).
        """
        x = run.op.random_vector(rng)
        x = x / _norm(x)
        theta = 0.0
        for _ in range(self.max_steps):
            hx = run.matvec(x)  # one full-data HVP (raises when the budget is spent)
            theta = _dot(x, hx)
            residual = _norm(hx - theta * x)
            run.estimate(end or ("max" if theta >= 0 else "min"), theta, x, residual=residual)
            run.record()  # one trace row per HVP, after the HVP
            if residual <= self.tol * abs(theta):
                return theta, True
            y = hx - shift * x
            x = y / _norm(y)
        return theta, False

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        mu, ok = self._power(run, 0.0, rng)  # the eigenvalue of largest magnitude
        if not ok:
            return "max_steps", f"no convergence in max_steps={self.max_steps}"
        found = "max" if mu >= 0 else "min"
        if which == found:
            return "converged", f"residual below tol={self.tol}"
        other = "min" if found == "max" else "max"
        _, ok = self._power(run, mu, rng, end=other)  # H - mu I: the other end dominates
        if not ok:
            return "max_steps", f"lambda_{other}: no convergence in max_steps={self.max_steps}"
        return "converged", f"residuals below tol={self.tol}"
