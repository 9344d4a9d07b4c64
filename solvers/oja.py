"""Oja's algorithm for the top eigenvector of E[B_S], B_S a mini-batch operator.

B = H for lambda_max and B = c I - H for lambda_min, c the lambda_max estimate of this solver
(obtained first, its cost counted). Oja's analysis is for a PSD operator; B is indefinite in
general (H, or c I - H_S under mini-batch noise), so Oja runs on the shifted operator

    A_S = B_S + L I,   L = estimate of the spectral radius of B_S,

which is PSD when L >= rho(B_S) and has the same top eigenvector as B: the algebraic top, so
a negative dominant end of H is not found as lambda_max (no restart is needed). L is max_k ||B_S x_k|| over
``warmup_steps`` mini-batch power steps on B from a random start (cost counted); Oja itself
starts from a fresh random vector. With lambda_max(A) <= 2 L, the step-size schedule is

    w <- normalize(w + eta_t A_{S_t} w),   eta_t = eta0 / (2 L (1 + t / t0)),

with a fresh batch S_t per step; eta0 = 1, t0 = 100 steps by default, so eta_t lambda_max(A)
<= 1 on every problem (the schedule is scale-free).

Eigenvalue estimate: mean of the mini-batch Rayleigh quotients w_t^T H_{S_t} w_t over the last
``window`` steps. Stopping rule: its relative change between disjoint windows is at most tol
(:class:`hessbench.solvers._shifted.WindowedMean`). As eta_t decays, the change per window shrinks whether
or not w has converged, so the test can pass early on slow ends: the method's known failure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hessbench.solvers._shifted import (Shifted, batch_or_none, check_positive, draw, solve_ends,
                                        spectral_scale, windowed_iteration)
from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import norm


class Oja(Solver):
    """Oja's algorithm. Options: ``tol``, ``batch_size`` (128), ``eta0`` (1.0), ``t0`` (100),
    ``window`` (10), ``warmup_steps`` (10), ``max_steps`` (5000 Oja steps per end)."""

    name = "oja"

    def __init__(self, tol: float = 1e-3, batch_size: int = 128, eta0: float = 1.0,
                 t0: float = 100.0, window: int = 10, warmup_steps: int = 10,
                 max_steps: int = 5000) -> None:
        super().__init__(tol)
        check_positive(batch_size=batch_size, eta0=eta0, t0=t0, window=window,
                       warmup_steps=warmup_steps, max_steps=max_steps)
        if eta0 > 1:
            raise ValueError(f"eta0 must be in (0, 1] (eta_t lambda_max(A) <= 1), got {eta0}")
        self.batch_size, self.eta0, self.t0 = int(batch_size), float(eta0), float(t0)
        self.window, self.warmup_steps, self.max_steps = window, warmup_steps, max_steps

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        batch = batch_or_none(run.op.num_samples, self.batch_size)

        def one_end(end: str, op: Shifted) -> tuple[float, bool]:
            x = run.op.random_vector(rng)
            scale = spectral_scale(run, end, op, x / norm(x), self.warmup_steps,
                                   lambda: draw(run, batch, rng))
            w = run.op.random_vector(rng)

            def step(t: int, w: Any, bw: Any) -> Any:
                eta = self.eta0 / (2 * scale * (1 + t / self.t0))
                y = w + eta * (bw + scale * w)
                return y / norm(y)

            return windowed_iteration(run, end, op, w / norm(w), lambda: draw(run, batch, rng),
                                      self.window, self.tol, self.max_steps, step)

        return solve_ends(run, which, one_end, restart_negative=False)
