"""Chebyshev-filtered subspace iteration (Zhou & Saad 2007) for the extreme eigenvalues.

Bounds: ``lanczos_steps`` steps of Lanczos (:func:`hessbench.solvers.kernels.lanczos_steps`, one
HVP each, counted) give Ritz values theta_1 <= ... <= theta_k and the residual norm ||f|| = beta_k.
For lambda_min the filter works on A = H with the upper bound b_up = theta_k + ||f|| (Zhou & Li
2011: a safe bound on lambda_max in practice; it is raised if a Ritz value ever exceeds it).
lambda_max is found by the same filter mirrored, on A = -H with b_up = -theta_1 + ||f|| (the result
is negated back, so it is the largest algebraic eigenvalue). The starting block of b vectors is the
Lanczos Ritz vectors of the b smallest Ritz values of A, the first cut the largest of them.

Each cycle applies the scaled degree-m Chebyshev filter p_m(A) (three-term recurrence, Zhou &
Saad's Algorithm 3.2), which maps [cut, b_up] into [-1, 1] and grows fast below cut, normalised
to p_m(a0) = 1 at a0 (the smallest Ritz value), to the block X: m ``matmat`` calls of b vectors.
The filtered block is orthonormalised (Gram-Schmidt twice) and a Rayleigh-Ritz step (one more
``matmat``) gives the new block, its Ritz values mu_1 <= ... <= mu_b, and the new cut = mu_b and
a0 = mu_1. Cost per cycle: (m + 1) b HVPs.

Stopping rule per asked end: the residual of the extreme Ritz pair, ||H x - theta x|| <=
tol |theta|. A Lanczos Ritz pair that already passes it ends that end in the bound phase.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace

from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import (KrylovBasis, append_orthonormal, as_like, column_norms,
                                       ends, lanczos_steps, small)


def chebyshev_filter(run: Run, sign: float, X: Any, degree: int, cut: float, upper: float,
                     a0: float) -> Any:
    """p(A) X for A = sign H: the degree-m Chebyshev filter damping [cut, upper], p(a0) = 1."""
    e, c = (upper - cut) / 2, (upper + cut) / 2
    sigma = e / (a0 - c)
    tau = 2 / sigma
    Y = (sign * run.matmat(X) - c * X) * (sigma / e)
    for _ in range(degree - 1):
        sigma_new = 1 / (tau - sigma)
        Y, X = (sign * run.matmat(Y) - c * Y) * (2 * sigma_new / e) - (sigma * sigma_new) * X, Y
        sigma = sigma_new
    return Y


class ChebyshevFilter(Solver):
    """Chebyshev-filtered subspace iteration (Zhou & Saad 2007) on full-data block HVPs.

    Options: ``tol``; ``degree`` (m, default 20); ``block_size`` (b >= 2, default 3);
    ``lanczos_steps`` (bound phase, default 20, > 2 b); ``max_steps`` (filter cycles per end,
    default 200).
    """

    name = "chebyshev"

    def __init__(self, tol: float = 1e-3, degree: int = 20, block_size: int = 3,
                 lanczos_steps: int = 20, max_steps: int = 200) -> None:
        super().__init__(tol)
        if degree < 1:
            raise ValueError(f"degree must be positive, got {degree}")
        if block_size < 2:
            raise ValueError(f"block_size must be at least 2 (the cut is the largest Ritz value "
                             f"of the block), got {block_size}")
        if lanczos_steps <= 2 * block_size:
            raise ValueError(f"lanczos_steps must exceed 2 * block_size = {2 * block_size}, "
                             f"got {lanczos_steps}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        self.degree, self.block_size = degree, block_size
        self.lanczos_steps, self.max_steps = lanczos_steps, max_steps

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        bounds = self._lanczos_bounds(run, ends(which), rng)
        if isinstance(bounds, str):
            return "converged", bounds
        basis, theta, Z, fnorm, todo = bounds
        failed = []
        for end in todo:
            sign = -1.0 if end == "max" else 1.0
            order = np.argsort(sign * theta)
            mu = sign * theta[order]
            X = array_namespace(basis.Q).stack(
                [basis.combine(Z[:, i]) for i in order[: self.block_size]], axis=1)
            if not self._filter_end(run, end, sign, X, mu[self.block_size - 1], mu[-1] + fnorm,
                                    mu[0], rng):
                failed.append(f"{end}: no convergence in max_steps={self.max_steps} cycles")
        if failed:
            return "max_steps", "; ".join(failed)
        return "converged", f"residual below tol={self.tol} * |theta| at every asked end"

    def _lanczos_bounds(self, run: Run, asked: tuple[str, ...], rng: np.random.Generator
                        ) -> str | tuple[KrylovBasis, np.ndarray, np.ndarray, float, list[str]]:
        """Lanczos bound phase: (basis, Ritz values, T's eigenvectors, ||f||, ends left to do),
        or a message if it already converged (residual test, or an invariant Krylov space)."""
        for state in lanczos_steps(run, run.op.random_vector(rng), self.lanczos_steps,
                                   publish=asked, capacity=self.lanczos_steps):
            if state.breakdown:
                return "invariant Krylov subspace in the Lanczos phase: Ritz values are exact"
            todo = [e for e in ("max", "min") if e in asked and
                    state.ritz[e].residual > self.tol * abs(state.ritz[e].value)]
            if not todo:
                return f"residual below tol={self.tol} * |theta| in the Lanczos phase"
        return state.basis, state.theta, state.S, state.beta, todo

    def _filter_end(self, run: Run, end: str, sign: float, X: Any, cut: float, upper: float,
                    a0: float, rng: np.random.Generator) -> bool:
        """Filtered subspace iteration for the smallest eigenvalue of A = sign H."""
        op = run.op
        b = X.shape[1]
        for _ in range(self.max_steps):
            Y = chebyshev_filter(run, sign, X, self.degree, cut, upper, a0)
            ortho = KrylovBasis(Y[:, 0], capacity=b)
            append_orthonormal(ortho, Y, lambda: op.random_vector(rng))
            Q = ortho.rows().T
            AQ = sign * run.matmat(Q)
            M = small(Q.T @ AQ)
            mu, C = np.linalg.eigh((M + M.T) / 2)
            X, AX = Q @ as_like(C, Q), AQ @ as_like(C, Q)
            res = column_norms(AX - X * as_like(mu[None, :], X))
            run.estimate(end, sign * mu[0], X[:, 0], residual=res[0])
            run.record()
            if res[0] <= self.tol * abs(mu[0]):
                return True
            upper = max(upper, mu[-1] + res[-1])
            cut, a0 = mu[-1], mu[0]
        return False
