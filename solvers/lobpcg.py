"""LOBPCG (Knyazev 2001) for the smallest and the largest algebraic eigenvalue.

For lambda_min it minimises the Rayleigh quotient of A = H, for lambda_max that of A = -H (so
lambda_max = -lambda_min(-H): never a largest-magnitude value); ``which="both"`` runs both, one
after the other. Each iteration, with X the block of b current Ritz vectors (theta ascending),

    R = A X - X diag(theta),   W = M^{-1} R,   span [X, W, P]  ->  Rayleigh-Ritz  ->  X, P,

where P is the previous search direction (the [W, P] part of the new X) and M^{-1} an optional
preconditioner. Only W costs HVPs: one ``matmat`` of b vectors per iteration; A X and A P are
updated by the same small combinations. For stability (Hetmaniuk & Lehoucq 2006) P is made
orthogonal to X, W orthogonal to X and P, and each block orthonormal by SVQB (Stathopoulos &
Wu 2002: eigendecomposition of the scaled Gram matrix, numerically dependent columns dropped,
applied twice); the Rayleigh-Ritz step itself runs on the Gram matrices of [X, W, P] in float64
through the same SVQB transform. Stopping rule per asked end: the residual of the extreme Ritz
pair, ||H x - theta x|| <= tol |theta|.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from array_api_compat import array_namespace

from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import as_like, column_norms, ends, small


def svqb_transform(G: np.ndarray, drop: float) -> np.ndarray:
    """C with C^T G C = I on the numerically independent part of the Gram matrix G.

    G is scaled to unit diagonal, eigendecomposed, and directions with eigenvalue below
    ``drop`` (relative to the largest) are dropped; C may have fewer columns than G.
    """
    d = np.sqrt(np.clip(np.diag(G), 0.0, None))
    live = d > 0
    C = np.zeros((len(d), 0))
    if not live.any():
        return C
    scaled = G[np.ix_(live, live)] / np.outer(d[live], d[live])
    lam, U = np.linalg.eigh((scaled + scaled.T) / 2)
    ok = lam > drop * lam[-1]
    C = np.zeros((len(d), int(ok.sum())))
    C[live] = U[:, ok] / d[live][:, None] / np.sqrt(lam[ok])
    return C


def orthonormalize(V: Any, AV: Any | None = None) -> tuple[Any, Any | None]:
    """Orthonormal columns spanning V (SVQB twice), dependent ones dropped; AV transformed alike."""
    xp = array_namespace(V)
    drop = 100 * xp.finfo(V.dtype).eps
    for _ in range(2):
        if V.shape[1] == 0:
            break
        C = as_like(svqb_transform(small(V.T @ V), drop), V)
        V = V @ C
        AV = None if AV is None else AV @ C
    return V, AV


def project_out(V: Any, AV: Any | None, U: Any, AU: Any | None) -> tuple[Any, Any | None]:
    """V minus its projection on the orthonormal columns of U (twice); AV updated with AU."""
    for _ in range(2):
        C = U.T @ V
        V = V - U @ C
        AV = None if AV is None else AV - AU @ C
    return V, AV


def rayleigh_ritz(S: Any, AS: Any) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values (ascending) and coefficients C (float64) of A on span(S), C^T S^T S C = I."""
    drop = 100 * array_namespace(S).finfo(S.dtype).eps
    C = svqb_transform(small(S.T @ S), drop)
    M = small(S.T @ AS)
    theta, Y = np.linalg.eigh(C.T @ ((M + M.T) / 2) @ C)
    return theta, C @ Y


class LOBPCG(Solver):
    """LOBPCG (Knyazev 2001) on full-data block HVPs, one end after the other.

    Options: ``tol``; ``block_size`` (b, default 1); ``max_steps`` (iterations per end, default
    1000); ``preconditioner`` (None, or a callable r -> M^{-1} r on one parameter vector, M
    symmetric positive definite, e.g. a diagonal). It is applied to the residuals of both ends:
    for lambda_max they are those of -H, so an approximation of H^{-1} (which helps lambda_min)
    slows lambda_max down; pass it with ``which="min"``.
    """

    name = "lobpcg"

    def __init__(self, tol: float = 1e-3, block_size: int = 1, max_steps: int = 1000,
                 preconditioner: Callable[[Any], Any] | None = None) -> None:
        super().__init__(tol)
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        if preconditioner is not None and not callable(preconditioner):
            raise ValueError("preconditioner must be None or a callable r -> M^{-1} r")
        self.block_size, self.max_steps = block_size, max_steps
        self.preconditioner = preconditioner

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        failed = [msg for end in ends(which) if (msg := self._one_end(run, end, rng))]
        if failed:
            return "max_steps", "; ".join(failed)
        return "converged", f"residual below tol={self.tol} * |theta| at every asked end"

    def _precondition(self, R: Any) -> Any:
        if self.preconditioner is None:
            return R
        xp = array_namespace(R)
        return xp.stack([self.preconditioner(R[:, i]) for i in range(R.shape[1])], axis=1)

    def _one_end(self, run: Run, end: str, rng: np.random.Generator) -> str:
        """LOBPCG for lambda_min of A = sign H; returns "" if converged, else why not."""
        op = run.op
        sign = -1.0 if end == "max" else 1.0
        first = op.random_vector(rng)
        xp = array_namespace(first)
        b = min(self.block_size, op.size)
        X, _ = orthonormalize(xp.stack([first] + [op.random_vector(rng) for _ in range(b - 1)],
                                       axis=1))
        AX = sign * run.matmat(X)
        theta, C = rayleigh_ritz(X, AX)
        X, AX = X @ as_like(C, X), AX @ as_like(C, X)
        P = AP = None
        for _ in range(self.max_steps):
            R = AX - X * as_like(theta[None, :], X)
            r = float(column_norms(R[:, :1])[0])
            run.estimate(end, sign * theta[0], X[:, 0], residual=r)
            run.record()
            if r <= self.tol * abs(theta[0]):
                return ""
            W, _ = project_out(self._precondition(R), None, X, None)
            if P is not None:
                W, _ = project_out(W, None, P, None)
            W, _ = orthonormalize(W)
            if W.shape[1] == 0:
                return f"{end}: stagnated (the residuals lie in the search space)"
            AW = sign * run.matmat(W)
            S = xp.concat([X, W] + ([] if P is None else [P]), axis=1)
            AS = xp.concat([AX, AW] + ([] if P is None else [AP]), axis=1)
            theta_all, C = rayleigh_ritz(S, AS)
            theta, C = theta_all[:b], as_like(C[:, :b], S)
            X, AX = S @ C, AS @ C
            P, AP = S[:, b:] @ C[b:, ...], AS[:, b:] @ C[b:, ...]
            P, AP = project_out(P, AP, X, AX)
            P, AP = orthonormalize(P, AP)
            if P.shape[1] == 0:
                P = AP = None
        return f"{end}: no convergence in max_steps={self.max_steps}"
