"""Stochastic power iteration: power steps on mini-batch HVPs with a fresh random batch each.

x_{k+1} = B_{S_k} x_k / ||B_{S_k} x_k||, S_k a fresh uniform batch of ``batch_size`` samples,
with B = H for lambda_max and B = c I - H for lambda_min, c the lambda_max estimate of this
solver obtained first (its cost counted; see :mod:`hessbench.solvers._shifted`, also for the restart on
H - theta I that keeps a negative dominant end from being returned as lambda_max).

The eigenvalue estimate is the mean of the mini-batch Rayleigh quotients x_k^T H_{S_k} x_k
(unbiased for x_k^T H x_k, since S_k is drawn after x_k) over the last ``window`` steps.
Stopping rule: that mean changed by at most tol relative to the mean of the ``window`` steps
before (disjoint windows). Mini-batch noise in the iterate biases the answer and makes the test
pass early on slowly converging ends (typically lambda_min): the method's known failure.
"""

from __future__ import annotations

import numpy as np

from hessbench.solvers._shifted import (Shifted, batch_or_none, check_positive, draw, solve_ends,
                                        windowed_iteration)
from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import norm


class StochasticPower(Solver):
    """Mini-batch power iteration. Options: ``tol``, ``batch_size`` (128; N or more means full
    data), ``window`` (10 steps averaged), ``max_steps`` (2000 per end)."""

    name = "stochastic-power"

    def __init__(self, tol: float = 1e-3, batch_size: int = 128, window: int = 10,
                 max_steps: int = 2000) -> None:
        super().__init__(tol)
        check_positive(batch_size=batch_size, window=window, max_steps=max_steps)
        self.batch_size, self.window, self.max_steps = int(batch_size), int(window), max_steps

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        batch = batch_or_none(run.op.num_samples, self.batch_size)

        def one_end(end: str, op: Shifted) -> tuple[float, bool]:
            x = run.op.random_vector(rng)
            return windowed_iteration(run, end, op, x / norm(x), lambda: draw(run, batch, rng),
                                      self.window, self.tol, self.max_steps,
                                      lambda t, x, bx: bx / norm(bx))

        return solve_ends(run, which, one_end, restart_negative=True)
