"""Lanczos with full reorthogonalisation: both extreme eigenvalues from one Krylov space.

After j steps from a random unit q_0, T_j = Q_j^T H Q_j is tridiagonal (alphas, betas). Its
extreme eigenpairs (theta, s) give Ritz values and vectors x = Q_j s with exact residual
r = ||H x - theta x|| = beta_j |s_last|. The stopping rule for an end is

    r <= tol * |theta|

(:func:`hessbench.solvers.kernels.converged`): some eigenvalue lies within r of theta. No gap
estimate sharpens it: a Ritz gap overestimates the true gap while an eigenvalue beyond theta has
not yet emerged. A breakdown (beta ~ 0) means the Krylov space is invariant: its Ritz values
are exact eigenvalues and the solve stops, converged.

The process itself, Ritz pairs, stopping and breakdown rules are those of
:mod:`hessbench.solvers.kernels` (``lanczos_steps``), shared with the other Lanczos-based solvers.
"""

from __future__ import annotations

import numpy as np

from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import ends, lanczos_steps


class Lanczos(Solver):
    """Full-reorthogonalisation Lanczos on full-data HVPs (one data pass per step).

    Options: ``tol`` (relative, see module docstring), ``max_steps`` (Krylov dimension cap,
    default 500; memory is max_steps parameter-sized vectors).
    """

    name = "lanczos"
    accepts_start = True

    def __init__(self, tol: float = 1e-3, max_steps: int = 500) -> None:
        super().__init__(tol)
        if max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        self.max_steps = max_steps

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        for state in lanczos_steps(run, run.start_vector(rng), self.max_steps):
            if state.breakdown:
                return "converged", "invariant Krylov subspace: Ritz values are exact"
            if all(state.ritz[e].converged(self.tol) for e in ends(which)):
                return "converged", (f"residual below tol={self.tol} x |Ritz value| after "
                                     f"{state.steps} steps")
        return "max_steps", f"no convergence in max_steps={min(self.max_steps, run.op.size)}"
