"""Lanczos with full reorthogonalisation: both extreme eigenvalues from one Krylov space.

After j steps from a random unit q_0, T_j = Q_j^T H Q_j is tridiagonal (alphas, betas). Its
extreme eigenpairs (theta, s) give Ritz values and vectors x = Q_j s with exact residual
||H x - theta x|| = beta_j |s_last|. The stopping rule for an end is

    min(r, r^2 / gap) <= tol * |theta|,

the standard residual bound (some eigenvalue lies within r of theta) sharpened by the gap
bound r^2/gap, with gap the distance from theta to the next Ritz value (an estimate of the true
gap, exact once neighbours have converged). A breakdown (beta ~ 0) means the Krylov space is
invariant: its Ritz values are exact eigenvalues and the solve stops, converged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh_tridiagonal

from solvers.base import Run, Solver
from solvers.krylov import KrylovBasis, dot, norm


@dataclass
class RitzEnd:
    """A Ritz pair at one end of the spectrum of T, with its residual and error bound."""

    value: float
    coeffs: np.ndarray
    residual: float
    error_bound: float
    gap: float

    def converged(self, tol: float) -> bool:
        return self.error_bound <= tol * abs(self.value)


def ritz_ends(alphas: list[float], betas: list[float], beta_next: float) -> dict[str, RitzEnd]:
    """Extreme Ritz pairs of the tridiagonal T (diagonal alphas, off-diagonal betas)."""
    theta, S = eigh_tridiagonal(np.asarray(alphas), np.asarray(betas[: len(alphas) - 1]))
    ends = {}
    for end, i, nb in (("max", -1, -2), ("min", 0, 1)):
        r = abs(beta_next * S[-1, i])
        gap = abs(theta[i] - theta[nb]) if len(theta) > 1 else 0.0
        bound = min(r, r * r / gap) if gap > 0 else r
        ends[end] = RitzEnd(float(theta[i]), S[:, i], float(r), float(bound), float(gap))
    return ends


class Lanczos(Solver):
    """Full-reorthogonalisation Lanczos on full-data HVPs (one data pass per step).

    Options: ``tol`` (relative, see module docstring), ``max_steps`` (Krylov dimension cap,
    default 500; memory is max_steps parameter-sized vectors).
    """

    name = "lanczos"

    def __init__(self, tol: float = 1e-3, max_steps: int = 500) -> None:
        super().__init__(tol)
        if max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        self.max_steps = max_steps

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        op = run.op
        ends = ("max", "min") if which == "both" else (which,)
        steps = min(self.max_steps, op.size)
        q = op.random_vector(rng)
        q = q / norm(q)
        basis = KrylovBasis(q, capacity=min(steps + 1, 64))
        basis.append(q)
        alphas: list[float] = []
        betas: list[float] = []
        for j in range(steps):
            w = run.matvec(q)
            alphas.append(dot(q, w))
            w = basis.orthogonalize(w)
            beta = norm(w)
            ritz = ritz_ends(alphas, betas, beta)
            breakdown = beta <= 1e-12 * max(abs(r.value) for r in ritz.values()) or \
                basis.k == op.size
            for end in ("max", "min"):
                pair = ritz[end]
                run.estimate(end, pair.value, lambda c=pair.coeffs: basis.combine(c),
                             residual=0.0 if breakdown else pair.residual)
            run.record()
            if breakdown:
                return "converged", "invariant Krylov subspace: Ritz values are exact"
            if all(ritz[e].converged(self.tol) for e in ends):
                return "converged", f"error bound below tol={self.tol} after {j + 1} steps"
            betas.append(beta)
            q = w / beta
            basis.append(q)
        return "max_steps", f"no convergence in max_steps={steps}"
