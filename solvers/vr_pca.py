"""VR-PCA (Shamir, "A Stochastic PCA and SVD Algorithm with an Exponential Convergence Rate",
ICML 2015, arXiv 1409.2848) on mini-batch HVPs.

For the top eigenvector of B (B = H for lambda_max; B = c I - H for lambda_min, c the
lambda_max estimate of this solver, obtained first, its cost counted), each epoch takes an
anchor w~ and its full-data product u~ = B w~ (one data pass), then runs m inner steps

    w' = w + eta (B_S (w - w~) + u~),   w <- w' / ||w'||,

from w = w~ on fresh batches S of ``batch_size`` samples; B_S (w - w~) is ONE mini-batch HVP of
the difference (the HVP is linear), and the first inner step (w = w~) needs none. The last
inner iterate is the next anchor. Defaults follow the paper's recommendation eta = 1/(r sqrt(N)),
m = N for single samples (r bounds the per-sample operator norm): with batches of b samples,
m = ceil(N / b) steps (one data pass per epoch) and eta = min(1, b / sqrt(N)) / L, the paper's
step scaled linearly with the batch and capped so that I + eta B stays PSD (the algebraic top
eigenvector of B dominates, so no restart on negative values is needed). L is the spectral
radius estimate max_k ||B_S x_k|| of ``warmup_steps`` mini-batch power steps from a random start
(cost counted); the first anchor is a fresh random unit vector.

Estimate: the anchor's exact Rayleigh quotient theta = w~^T H w~. Stopping rule (checked at each
anchor, free since u~ is computed anyway): full-data residual ||H w~ - theta w~|| <= tol |theta|,
a guarantee that some eigenvalue of H lies within tol |theta| of theta. It is strict for a small
|lambda_min| and a small relative gap of c I - H, so lambda_min often ends at ``max_epochs``.
"""

from __future__ import annotations

import math

import numpy as np

from hessbench.solvers._shifted import (Shifted, batch_or_none, check_positive, draw, solve_ends,
                                        spectral_scale)
from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import dot, norm


class VRPCA(Solver):
    """Shamir's VR-PCA. Options: ``tol``, ``batch_size`` (128), ``eta`` (step times L; None:
    min(1, b / sqrt(N))), ``epoch_length`` (None: ceil(N / b)), ``warmup_steps`` (10),
    ``max_epochs`` (100 per end)."""

    name = "vr-pca"

    def __init__(self, tol: float = 1e-3, batch_size: int = 128, eta: float | None = None,
                 epoch_length: int | None = None, warmup_steps: int = 10,
                 max_epochs: int = 100) -> None:
        super().__init__(tol)
        check_positive(batch_size=batch_size, eta=eta, epoch_length=epoch_length,
                       warmup_steps=warmup_steps, max_epochs=max_epochs)
        self.batch_size, self.eta, self.epoch_length = int(batch_size), eta, epoch_length
        self.warmup_steps, self.max_epochs = warmup_steps, max_epochs

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        N = run.op.num_samples
        batch = batch_or_none(N, self.batch_size)
        b = batch or N
        m = self.epoch_length or math.ceil(N / b)
        relative_eta = self.eta if self.eta is not None else min(1.0, b / math.sqrt(N))

        def one_end(end: str, op: Shifted) -> tuple[float, bool]:
            x = run.op.random_vector(rng)
            scale = spectral_scale(run, end, op, x / norm(x), self.warmup_steps,
                                   lambda: draw(run, batch, rng))
            anchor = run.op.random_vector(rng)
            anchor = anchor / norm(anchor)
            eta = relative_eta / scale
            for _ in range(self.max_epochs):
                u = op.apply(run, anchor)
                theta_b = dot(anchor, u)
                theta = op.to_h(theta_b)
                residual = norm(u - theta_b * anchor)
                run.estimate(end, theta, anchor, residual=residual)
                run.record()
                if residual <= self.tol * abs(theta):
                    return theta, True
                w = anchor
                for t in range(m):
                    step = u if t == 0 else op.apply(run, w - anchor, draw(run, batch, rng)) + u
                    y = w + eta * step
                    w = y / norm(y)
                    run.record()
                anchor = w
            return theta, False

        return solve_ends(run, which, one_end, restart_negative=False)
