"""Thick-restart Lanczos (Wu & Simon 2000): extreme eigenvalues with a bounded Krylov basis.

Lanczos with full reorthogonalisation builds an orthonormal basis Q (m <= max_basis vectors) with

    H Q = Q T + beta q_{m+1} e_m^T,

T symmetric. A Ritz pair (theta, z) of T gives x = Q z with ||H x - theta x|| = beta |z_m|, and
the stopping rule per asked end is that of ``lanczos``: r <= tol |theta|
(:func:`hessbench.solvers.kernels.converged`). When the basis is full, the method restarts from
the kept Ritz vectors Y = Q Z_K and the residual vector q_{m+1}; the new T is the arrowhead

    [[diag(theta_K), s], [s^T, alpha]],   s_i = beta z_{m,i},

continued by ordinary Lanczos steps (tridiagonal below it), so the relation above still holds
exactly. Kept at a restart: the ``keep`` extreme Ritz pairs at each asked end (both ends for
``which="both"``), and locked pairs: converged ones (same rule) elsewhere, typically the
outliers at the other end. Locked pairs keep their small couplings s_i, so locking perturbs
nothing; full reorthogonalisation deflates them from every new direction, so Lanczos does not
spend steps rebuilding them after each restart. Locked pairs fill at most half of the free room,
the outermost (by rank from the nearer end of the Ritz spectrum) first.

Each step is the Lanczos step of :mod:`hessbench.solvers.kernels` (``lanczos_step``), with its
breakdown rule (``invariant``), Ritz pairs (``ritz_ends``) and stopping rule; T is
eigendecomposed densely here (``numpy.linalg.eigh``), since it is not tridiagonal after a restart.

Memory: the basis never holds more than ``max_basis`` vectors (plus the residual vector and,
during a restart, the kept Ritz vectors being formed). With max_basis >= the steps needed it is
plain full-reorthogonalisation Lanczos, step for step.
"""

from __future__ import annotations

import numpy as np

from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import (KrylovBasis, as_like, converged, ends, invariant,
                                       lanczos_step, norm, ritz_ends)


def _end_index(end: str, keep: int, m: int) -> range:
    """Indices (ascending Ritz values) of the ``keep`` extreme Ritz pairs at ``end``."""
    return range(m - keep, m) if end == "max" else range(keep)


class ThickRestartLanczos(Solver):
    """Thick-restart Lanczos with locking on full-data HVPs; see the module docstring.

    Options: ``tol``; ``max_basis`` (stored vectors, default 40); ``keep`` (Ritz vectors kept at
    each asked end on a restart, default max(2, max_basis // 8), at most (max_basis - 2) // 2);
    ``max_steps`` (HVPs, default 2000).
    """

    name = "thick-restart-lanczos"
    accepts_start = True

    def __init__(self, tol: float = 1e-3, max_basis: int = 40, keep: int | None = None,
                 max_steps: int = 2000) -> None:
        super().__init__(tol)
        if max_basis < 4:
            raise ValueError(f"max_basis must be at least 4, got {max_basis}")
        if keep is None:
            keep = min(max(2, max_basis // 8), (max_basis - 2) // 2)
        if not 1 <= keep <= (max_basis - 2) // 2:
            raise ValueError(f"keep must be in [1, (max_basis - 2) // 2 = {(max_basis - 2) // 2}]"
                             f" (room for both ends and two Lanczos steps), got {keep}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        self.max_basis, self.keep, self.max_steps = max_basis, keep, max_steps

    def _kept(self, theta: np.ndarray, resid: np.ndarray, asked: tuple[str, ...],
              capacity: int) -> np.ndarray:
        """Indices of the Ritz pairs kept at a restart: wanted ends, then locked ones."""
        m = len(theta)
        wanted = sorted({i for e in asked for i in _end_index(e, self.keep, m)})
        room = capacity - len(wanted) - 1
        outward = np.argsort(np.minimum(np.arange(m), m - 1 - np.arange(m)), kind="stable")
        locked = [int(i) for i in outward
                  if i not in wanted and converged(theta[i], resid[i], self.tol)]
        return np.array(sorted(wanted + locked[: room // 2]))

    @staticmethod
    def _restart(basis: KrylovBasis, T: np.ndarray, theta: np.ndarray, Z: np.ndarray,
                 beta: float) -> None:
        """Overwrite the basis with the Ritz vectors Q Z and T with the arrowhead (no q yet)."""
        basis.reset(as_like(Z.T, basis.Q) @ basis.rows())
        k = len(theta)
        T[:] = 0.0
        T[np.arange(k), np.arange(k)] = theta
        T[k, :k] = T[:k, k] = beta * Z[-1, :]

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        op = run.op
        asked = ends(which)
        capacity = min(self.max_basis, op.size)
        q = run.start_vector(rng)
        q = q / norm(q)
        basis = KrylovBasis(q, capacity=capacity)
        basis.append(q)
        T = np.zeros((capacity, capacity))
        for step in range(self.max_steps):
            j = basis.k - 1
            T[j, j], w, beta = lanczos_step(run, basis, q)
            theta, Z = np.linalg.eigh(T[: j + 1, : j + 1])
            ritz = ritz_ends(theta, Z, beta)
            breakdown = invariant(beta, theta, basis, op.size)
            for end in asked:
                pair = ritz[end]
                run.estimate(end, pair.value, lambda c=pair.coeffs: basis.combine(c),
                             residual=0.0 if breakdown else pair.residual)
            run.record()
            if breakdown:
                return "converged", "invariant Krylov subspace: Ritz values are exact"
            if all(ritz[e].converged(self.tol) for e in asked):
                return "converged", (f"residual below tol={self.tol} x |Ritz value| after "
                                     f"{step + 1} steps")
            if basis.k < capacity:
                q = w / beta
                T[j, j + 1] = T[j + 1, j] = beta
                basis.append(q)
                continue
            K = self._kept(theta, np.abs(beta * Z[-1, :]), asked, capacity)
            self._restart(basis, T, theta[K], Z[:, K], beta)
            q = w / beta
            basis.append(q)
            for end, i in (("max", len(theta) - 1), ("min", 0)):
                if end in asked:  # the published Ritz vector is now basis row searchsorted(K, i)
                    unit = np.zeros(len(K))
                    unit[np.searchsorted(K, i)] = 1.0
                    run.estimate(end, theta[i], lambda c=unit: basis.combine(c), run.res[end])
        return "max_steps", f"no convergence in max_steps={self.max_steps}"
