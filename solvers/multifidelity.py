"""Multi-fidelity Lanczos: a cheap fixed-subsample Krylov run gives the start vector of a
full-data Lanczos run, whose answer is certified with full-data residuals.

Targets lambda_max and lambda_min, the largest and smallest *algebraic* eigenvalues of the
full-data Hessian H = (1/N) sum_i H_i.

Stage 1 (cheap, ``sub_steps`` x |S|/N data passes; 16 x 1/16 = 1 pass by default):
``sub_steps`` Lanczos steps on the mini-batch Hessian H_S of a random subsample S
(|S| = ``sample_fraction`` N) held fixed, so the three-term recurrence is exact for H_S. Its top
Ritz vector u approximates the top eigenvector of H (the outliers are well sampled). Optionally
(``bottom_ritz`` = p > 0) the bottom p Ritz vectors x_i are mixed in as well; off by default,
because the bottom of H_S is dominated by sampling noise: measured on digits-cnn, the error
H_S - H has hundreds of eigenvalues above |lambda_min(H)| even for |S| = N/2, and the bottom
eigenvectors of H_S have *positive* full-data Rayleigh quotients. The start vector is
q_0 = u + sum_i x_i / sqrt(p) + g, g a random unit vector: the random part keeps every
eigendirection of H in the Krylov space (a warm start alone can lie in a small invariant
subspace, e.g. when the subsample Hessian equals H, and Lanczos would stop there).

Stage 2 (exact, one data pass per step): Lanczos with full reorthogonalisation on the full-data
H from q_0. Its Ritz values are Rayleigh quotients of the full H, so the estimates never pass
lambda_max from above or lambda_min from below. The first published lambda_max comes from H_S
(biased upwards, E lambda_max(H_S) >= lambda_max) and is replaced at the first full-data step.

Stopping rule, certified on the full H: when the rule of ``lanczos``, r <= tol |theta|
(:func:`hessbench.solvers.kernels.converged`), holds with the recurrence residual for every asked
end, each Ritz vector x is multiplied by the full H (one data pass per end) and the end is
accepted only if the rule also holds with the true residual r = ||H x - theta x|| and the
Rayleigh quotient theta = x^T H x. Otherwise Lanczos goes on and checks again after as many
steps again.

Cost and what to expect: lambda_min near 0 in a dense bulk needs ~40-60 exact steps, the same as
``lanczos``; the subsample saves a few steps on lambda_max at best. The cost to reach lambda_min
is within seed-to-seed noise of ``lanczos`` plus the stage-1 pass.
"""

from __future__ import annotations

import numpy as np

from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import (KrylovBasis, RitzEnd, converged, dot, ends, lanczos_steps,
                                       norm)


class MultifidelityLanczos(Solver):
    """Subsample-Lanczos warm start, then full-data Lanczos with a certified stopping test.

    Options: ``tol``; ``sample_fraction`` (|S|/N, default 1/16), ``sub_steps`` (stage-1
    Lanczos steps, 16), ``bottom_ritz`` (bottom Ritz vectors mixed into the start, 0),
    ``max_steps`` (full-data steps, 500).
    """

    name = "multifidelity-lanczos"

    def __init__(self, tol: float = 1e-3, sample_fraction: float = 1 / 16, sub_steps: int = 16,
                 bottom_ritz: int = 0, max_steps: int = 500) -> None:
        super().__init__(tol)
        if not 0 < sample_fraction <= 1:
            raise ValueError(f"sample_fraction must be in (0, 1], got {sample_fraction}")
        if sub_steps < 1 or bottom_ritz < 0 or max_steps < 1:
            raise ValueError("need sub_steps >= 1, bottom_ritz >= 0 and max_steps >= 1")
        self.sample_fraction, self.sub_steps = sample_fraction, sub_steps
        self.bottom_ritz, self.max_steps = bottom_ritz, max_steps

    def _warm_start(self, run: Run, rng: np.random.Generator):
        """Stage 1: the start vector from Lanczos on a fixed subsample (publishes only its
        lambda_max estimate: the subsample's bottom is biased by sampling noise)."""
        op = run.op
        indices = op.sample_indices(max(1, round(self.sample_fraction * op.num_samples)), rng)
        for state in lanczos_steps(run, op.random_vector(rng), self.sub_steps, indices,
                                   publish=("max",)):
            pass
        S = state.S
        p = min(self.bottom_ritz, S.shape[1] - 1)
        coeffs = S[:, -1] + (S[:, :p].sum(axis=1) / np.sqrt(p) if p else 0.0)
        g = op.random_vector(rng)
        return state.basis.combine(coeffs) + g / norm(g)

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        asked = ends(which)
        next_check = 1
        for state in lanczos_steps(run, self._warm_start(run, rng), self.max_steps):
            if (state.steps >= next_check or state.breakdown) and \
                    all(state.ritz[e].converged(self.tol) for e in asked):
                next_check = 2 * state.steps
                if all([self._certify(run, state.ritz[e], e, state.basis) for e in asked]):
                    return "converged", (f"full-data residual below tol={self.tol} x |Ritz "
                                         f"value| after {state.steps} full-data Lanczos steps")
            if state.breakdown:
                break
        return "max_steps", f"no certified convergence in {state.steps} full-data steps"

    def _certify(self, run: Run, pair: RitzEnd, end: str, basis: KrylovBasis) -> bool:
        """Accept ``end`` if r <= tol |theta| (:func:`converged`) for the true full-data residual
        r and Rayleigh quotient theta of its Ritz vector (one full-data product)."""
        x = basis.combine(pair.coeffs)
        x = x / norm(x)
        hx = run.matvec(x)
        theta = dot(x, hx)
        r = norm(hx - theta * x)
        run.estimate(end, theta, x, residual=r)
        run.record()
        return converged(theta, r, self.tol)
