"""Block Lanczos with full reorthogonalisation: both extreme eigenvalues, one block Krylov space.

From a random orthonormal block Q_1 (n x b), step j computes W = H Q_j with one ``matmat`` (the b
vectors share one pass over the data; the meter still charges b passes), A_j = Q_j^T W, and the
next block Q_{j+1} by orthogonalising the columns of W against the whole basis (full
reorthogonalisation, which also removes Q_j A_j + Q_{j-1} B_{j-1}^T). B_j = Q_{j+1}^T W, so

    H [Q_1..Q_j] = [Q_1..Q_j] T_j + Q_{j+1} B_j E_j^T

with T_j block tridiagonal (diagonal blocks A_i, off-diagonal B_i). A Ritz pair (theta, s) of
T_j (float64) gives x = Q s with residual ||H x - theta x|| = ||B_j s_last|| (s_last: the last
block row of s). The stopping rule per asked end is that of ``lanczos``: r <= tol |theta|
(:func:`hessbench.solvers.kernels.converged`).

Rank deficiency: a column of W whose remainder after orthogonalisation is at most
100 eps max(||w||, ||H|| estimate) is numerically in the span; it is replaced by a random unit
vector orthogonal to the basis, so blocks keep b columns (and hvp_calls stays a multiple of b).
The relation above then holds up to that level. If every column of a block is deflated, the
space is invariant and its Ritz values are exact eigenvalues (converged). Only when the basis
reaches the whole space (n not a multiple of b) can the last block be smaller.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace
from scipy.linalg import eig_banded

from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import (KrylovBasis, append_orthonormal, column_norms,
                                       converged, ends, small)


def _extreme_ritz_pairs(T: np.ndarray, bandwidth: int,
                        asked: tuple[str, ...]) -> dict[str, tuple[float, np.ndarray]]:
    """(theta, eigenvector) at each asked end of the banded T."""
    k = T.shape[0]
    u = min(max(bandwidth, 0), k - 1)
    band = np.array([np.pad(np.diagonal(T, -d), (0, d)) for d in range(u + 1)])
    out = {}
    for end in asked:
        i = k - 1 if end == "max" else 0
        theta, S = eig_banded(band, lower=True, select="i", select_range=(i, i))
        out[end] = (float(theta[0]), S[:, 0])
    return out


class BlockLanczos(Solver):
    """Block Lanczos (full reorthogonalisation) on full-data block HVPs; see the module docstring.

    Options: ``tol``, ``block_size`` (b, default 4: vectors per ``matmat``), ``max_steps``
    (block steps, default 125; memory is b (max_steps + 1) parameter-sized vectors).
    """

    name = "block-lanczos"

    def __init__(self, tol: float = 1e-3, block_size: int = 4, max_steps: int = 125) -> None:
        super().__init__(tol)
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        self.block_size = block_size
        self.max_steps = max_steps

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        op = run.op
        b = min(self.block_size, op.size)
        start = [op.random_vector(rng) for _ in range(b)]
        basis = KrylovBasis(start[0], capacity=min(op.size, b * (self.max_steps + 1), 64))
        append_orthonormal(basis, array_namespace(start[0]).stack(start, axis=1),
                           lambda: op.random_vector(rng))
        T = np.zeros((0, 0))
        hnorm = 0.0
        k0 = 0
        for step in range(self.max_steps):
            k1 = basis.k
            Qj = basis.rows()[k0:k1, ...].T
            W = run.matmat(Qj)
            hnorm = max(hnorm, float(column_norms(W).max()))
            A = small(Qj.T @ W)
            replaced = append_orthonormal(basis, W, lambda: op.random_vector(rng), hnorm)
            k2 = basis.k
            B = small(basis.rows()[k1:k2, ...] @ W)
            if k2 > T.shape[0]:
                T = np.pad(T, (0, max(k2, 2 * T.shape[0]) - T.shape[0]))
            T[k0:k1, k0:k1] = (A + A.T) / 2
            T[k1:k2, k0:k1] = B
            T[k0:k1, k1:k2] = B.T
            pairs = _extreme_ritz_pairs(T[:k1, :k1], 2 * b - 1, ends(which))
            exact = replaced == k1 - k0 or k1 == op.size
            done = []
            for end, (theta, s) in pairs.items():
                r = 0.0 if exact else float(np.linalg.norm(B @ s[k0:k1]))
                done.append(converged(theta, r, self.tol))
                run.estimate(end, theta, lambda c=s: basis.combine(c), residual=r)
            run.record()
            if exact:
                return "converged", "invariant block Krylov subspace: Ritz values are exact"
            if all(done):
                return "converged", (f"residual below tol={self.tol} x |Ritz value| after "
                                     f"{step + 1} block steps")
            k0 = k1
        return "max_steps", f"no convergence in max_steps={self.max_steps} block steps"
