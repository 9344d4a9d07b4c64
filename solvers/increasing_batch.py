"""Power iteration with a batch that grows in stages: cheap mini-batch warm starts, then full data.

Stage i runs ``steps[i]`` power steps x <- B_S x / ||B_S x|| on fresh batches of
``batches[i]`` samples (None, or N or more: full data), each stage starting from the previous
stage's iterate. The last stage (default full data) runs until the stopping rule of
:mod:`hessbench.solvers.power`, |theta_k - theta_{k-1}| <= tol |theta_k| for the Rayleigh quotients
theta_k = x_k^T H_S x_k of consecutive steps, or ``max_steps`` (when ``steps[-1]`` is None).
The test is applied in the last stage only; if that stage is a mini-batch one, the test is on
noisy Rayleigh quotients. Default schedule: batches (64, 1000, N), steps (20, 20, until the
test passes).

B = H for lambda_max, restarted on H - theta I if theta < 0 (the dominant end was lambda_min);
B = c I - H for lambda_min with c the lambda_max estimate of this solver (the whole schedule,
run first; see :mod:`hessbench.solvers._shifted`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hessbench.solvers._shifted import Shifted, batch_or_none, check_positive, draw, solve_ends
from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import dot, norm


class IncreasingBatchPower(Solver):
    """Staged power iteration. Options: ``tol``, ``batches`` ((64, 1000, None); None = all N
    samples), ``steps`` ((20, 20, None); None, allowed last only, = until the stopping rule),
    ``max_steps`` (1000: cap of a last stage with ``steps`` None)."""

    name = "increasing-batch-power"

    def __init__(self, tol: float = 1e-3, batches: Sequence[int | None] = (64, 1000, None),
                 steps: Sequence[int | None] = (20, 20, None), max_steps: int = 1000) -> None:
        super().__init__(tol)
        batches, steps = tuple(batches), tuple(steps)
        if not batches or len(batches) != len(steps):
            raise ValueError(f"batches and steps must be non-empty and of equal length, got "
                             f"{len(batches)} and {len(steps)}")
        if any(k is None for k in steps[:-1]):
            raise ValueError("only the last stage may have steps None (run until converged)")
        check_positive(max_steps=max_steps,
                       **{f"batches[{i}]": b for i, b in enumerate(batches)},
                       **{f"steps[{i}]": k for i, k in enumerate(steps)})
        self.batches, self.steps, self.max_steps = batches, steps, max_steps

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        N = run.op.num_samples
        stages = [(batch_or_none(N, b), self.max_steps if k is None else k)
                  for b, k in zip(self.batches, self.steps)]

        def one_end(end: str, op: Shifted) -> tuple[float, bool]:
            x = run.op.random_vector(rng)
            x = x / norm(x)
            for stage, (batch, limit) in enumerate(stages):
                last = stage == len(stages) - 1
                previous = None
                for _ in range(limit):
                    bx = op.apply(run, x, draw(run, batch, rng))
                    theta_b = dot(x, bx)
                    theta = op.to_h(theta_b)
                    residual = norm(bx - theta_b * x) if batch is None else None
                    run.estimate(end, theta, x, residual=residual)
                    run.record()
                    if last and previous is not None and \
                            abs(theta - previous) <= self.tol * abs(theta):
                        return theta, True
                    previous = theta
                    x = bx / norm(bx)
            return theta, False

        return solve_ends(run, which, one_end, restart_negative=True)
