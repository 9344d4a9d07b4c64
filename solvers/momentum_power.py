"""Power iteration with momentum (Xu, He, De Sa, Mitliagkas, Re, "Accelerated Stochastic Power
Iteration", AISTATS 2018, arXiv 1707.02670), deterministic (Algorithm 1) and mini-batch
(Algorithm 2) forms.

    y = B_S x_t - beta x_{t-1};   x_{t+1} = y / ||y||,   x_t <- x_t / ||y||

(both terms scaled by the same norm, as in the paper), x_0 a random unit vector, x_{-1} = 0,
B_S = B on full data (``batch_size=None``) or on a fresh batch of ``batch_size`` samples per
step. The paper's beta = lambda_2(B)^2 / 4 damps every eigen-component with |mu| <= lambda_2
and gives the accelerated rate ~ 1 - sqrt(2 (lambda_1 - lambda_2) / lambda_1) per step.

lambda_2 is estimated from ``lanczos_steps`` Lanczos steps at the start
(:func:`hessbench.solvers.kernels.lanczos_steps`; cost counted; on full data in the deterministic
form, on one fixed batch of ``batch_size`` samples in the mini-batch form). Lanczos is
shift-invariant, so one run serves every shifted operator: lambda_2(B) is estimated by the second
largest of the Ritz values mapped through B = s (H - c I): theta_2 (the second largest Ritz value
of H) for B = H; c - theta'_2 (theta'_2 the second smallest) for B = c I - H (lambda_min, c the
lambda_max estimate of this solver). On the exact operator Ritz values interlace, so these
underestimate lambda_2(B): beta stays below the breaking point lambda_1^2 / 4 (less acceleration,
never divergence). The warm-up publishes no estimate (its trace rows carry none): the answer is the
momentum iterate's.

Eigenvalue estimate: the Rayleigh quotient theta_t = x_t^T H_S x_t. Stopping rules:

- deterministic form: residual test ||H x_t - theta_t x_t|| <= tol |theta_t| (the residual is
  free: B x_t is computed anyway), which guarantees an eigenvalue within tol |theta_t|. The
  relative change of theta_t is no test here: the damped components oscillate (Chebyshev-like),
  so consecutive Rayleigh quotients can agree to 1e-3 while 4e-3 off.
- mini-batch form: the mini-batch residual is noise, so the test is on the mean of the last
  ``window`` Rayleigh quotients: relative change between disjoint windows <= tol
  (:class:`hessbench.solvers._shifted.WindowedMean`); it can pass early on slow ends.

The momentum iteration, like power iteration, converges to the largest-magnitude end, hence the
restart on H - theta I (:mod:`hessbench.solvers._shifted`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hessbench.solvers._shifted import (Shifted, WindowedMean, batch_or_none, check_positive, draw,
                                        solve_ends)
from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import dot, lanczos_steps, norm


class MomentumPower(Solver):
    """Momentum power iteration. Options: ``tol``, ``batch_size`` (None: full data, the
    deterministic form), ``lanczos_steps`` (20, for lambda_2), ``window`` (10, mini-batch form
    only), ``max_steps`` (1000 per end)."""

    name = "momentum-power"

    def __init__(self, tol: float = 1e-3, batch_size: int | None = None,
                 lanczos_steps: int = 20, window: int = 10,
                 max_steps: int = 1000) -> None:
        super().__init__(tol)
        check_positive(batch_size=batch_size, window=window, max_steps=max_steps)
        if lanczos_steps < 2:
            raise ValueError(f"lanczos_steps must be at least 2 (lambda_2 needs two Ritz values),"
                             f" got {lanczos_steps}")
        self.batch_size, self.lanczos_steps = batch_size, lanczos_steps
        self.window, self.max_steps = window, max_steps

    def _ritz_values(self, run: Run, batch: int | None, rng: np.random.Generator) -> np.ndarray:
        """Ritz values (ascending) of ``lanczos_steps`` Lanczos steps on H (or H_S, S fixed),
        fewer on a breakdown; one trace row per step, no estimate published."""
        indices = draw(run, batch, rng)
        steps = min(self.lanczos_steps, run.op.size)
        for state in lanczos_steps(run, run.op.random_vector(rng), steps, indices, publish=(),
                                   capacity=steps):
            pass
        return state.theta

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        batch = batch_or_none(run.op.num_samples, self.batch_size)
        ritz = self._ritz_values(run, batch, rng)

        def one_end(end: str, op: Shifted) -> tuple[float, bool]:
            mu = np.sort(op.sign * (ritz - op.shift))  # Ritz values of B
            beta = max(mu[-2], 0.0) ** 2 / 4 if len(mu) > 1 else 0.0
            x = run.op.random_vector(rng)
            x = x / norm(x)
            previous: Any = None
            estimate = WindowedMean(self.window)
            for _ in range(self.max_steps):
                bx = op.apply(run, x, draw(run, batch, rng))
                theta_b = dot(x, bx)
                theta = op.to_h(theta_b)
                if batch is None:
                    residual = norm(bx - theta_b * x)
                    run.estimate(end, theta, x, residual=residual)
                    run.record()
                    if residual <= self.tol * abs(theta):
                        return theta, True
                else:
                    estimate.push(theta)
                    run.estimate(end, estimate.mean, x)
                    run.record()
                    if estimate.converged(self.tol):
                        return estimate.mean, True
                y = bx if previous is None else bx - beta * previous
                size = norm(y)
                previous, x = x / size, y / size
            return (theta if batch is None else estimate.mean), False

        return solve_ends(run, which, one_end, restart_negative=True)
