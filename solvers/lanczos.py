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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import eigh_tridiagonal

from hessbench.solvers.base import Run, Solver
from hessbench.solvers.krylov import KrylovBasis, dot, norm


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


def error_bound(residual: float, gap: float) -> float:
    """min(r, r^2/gap): some eigenvalue lies within r of theta, and within r^2/gap when the
    rest of the spectrum is at least gap away (r alone when no gap is known)."""
    return min(residual, residual * residual / gap) if gap > 0 else residual


def ritz_ends(alphas: list[float], betas: list[float], beta_next: float) -> dict[str, RitzEnd]:
    """Extreme Ritz pairs of the tridiagonal T (diagonal alphas, off-diagonal betas)."""
    theta, S = eigh_tridiagonal(np.asarray(alphas), np.asarray(betas[: len(alphas) - 1]))
    ends = {}
    for end, i, nb in (("max", -1, -2), ("min", 0, 1)):
        r = abs(beta_next * S[-1, i])
        gap = abs(theta[i] - theta[nb]) if len(theta) > 1 else 0.0
        ends[end] = RitzEnd(float(theta[i]), S[:, i], float(r), float(error_bound(r, gap)),
                            float(gap))
    return ends


@dataclass
class LanczosState:
    """After ``steps`` Lanczos steps: the basis, T's diagonal and off-diagonal, the extreme
    Ritz pairs and whether the Krylov space became invariant."""

    steps: int
    basis: KrylovBasis
    alphas: list[float]
    betas: list[float]
    ritz: dict[str, RitzEnd]
    breakdown: bool

    def ritz_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All Ritz values (ascending) and their coefficient vectors in the basis."""
        return eigh_tridiagonal(np.asarray(self.alphas), np.asarray(self.betas[: self.steps - 1]))


def lanczos_steps(run: Run, q: Any, max_steps: int, indices: np.ndarray | None = None,
                  publish: tuple[str, ...] = ("max", "min")) -> Iterator[LanczosState]:
    """Full-reorthogonalisation Lanczos on H (or on the fixed mini-batch H_S for ``indices``)
    from the start vector ``q``. After each step it publishes the Ritz estimates of the ends in
    ``publish``, records a trace row and yields the state. On a breakdown (an invariant Krylov
    space: its Ritz values are exact eigenvalues of the operator) the residuals are published
    as 0 and the iteration ends."""
    q = q / norm(q)
    basis = KrylovBasis(q, capacity=min(max_steps + 1, 64))
    basis.append(q)
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(min(max_steps, run.op.size)):
        w = run.matvec(q, indices)
        alphas.append(dot(q, w))
        w = basis.orthogonalize(w)
        beta = norm(w)
        ritz = ritz_ends(alphas, betas, beta)
        breakdown = beta <= 1e-12 * max(abs(r.value) for r in ritz.values()) or \
            basis.k == run.op.size
        for end in publish:
            pair = ritz[end]
            run.estimate(end, pair.value, lambda c=pair.coeffs: basis.combine(c),
                         residual=0.0 if breakdown else pair.residual)
        run.record()
        yield LanczosState(j + 1, basis, alphas, betas, ritz, breakdown)
        if breakdown:
            return
        betas.append(beta)
        q = w / beta
        basis.append(q)


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
        ends = ("max", "min") if which == "both" else (which,)
        for state in lanczos_steps(run, run.op.random_vector(rng), self.max_steps):
            if state.breakdown:
                return "converged", "invariant Krylov subspace: Ritz values are exact"
            if all(state.ritz[e].converged(self.tol) for e in ends):
                return "converged", f"error bound below tol={self.tol} after {state.steps} steps"
        return "max_steps", f"no convergence in max_steps={min(self.max_steps, run.op.size)}"
