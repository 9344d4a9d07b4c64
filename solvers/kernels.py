"""Building blocks shared by the solvers, each defined once.

- Array-API helpers: :func:`to_numpy`, :func:`norm`, :func:`dot`, :func:`as_like`, :func:`small`,
  :func:`column_norms`. Vector work stays in the operator's array type (torch, JAX, NumPy);
  small dense work (Gram matrices, tridiagonal eigenproblems) is float64 NumPy.
- :class:`KrylovBasis`, an orthonormal basis q_0..q_{k-1} stored as rows of one array, and
  :func:`append_orthonormal`, which adds a block of columns to it (block Gram-Schmidt).
- :func:`ends`, the ends ``"max"`` / ``"min"`` asked for by ``which``.
- :func:`converged`, THE stopping rule of the Lanczos-family solvers (lanczos,
  thick-restart-lanczos, block-lanczos, multifidelity-lanczos): residual <= tol |theta|.
- The Lanczos process: :func:`lanczos_step` (one step: w = H q, alpha = q^T w, full
  reorthogonalisation, beta = ||w||), :func:`invariant` (the breakdown rule), :func:`ritz_ends`
  (extreme Ritz pairs of the projected matrix T, with their residuals) and
  :func:`lanczos_steps` (the generator of full-reorthogonalisation Lanczos states).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from array_api_compat import array_namespace, device, is_writeable_array
from scipy.linalg import eigh_tridiagonal

if TYPE_CHECKING:  # base imports this module (for ``ends``)
    from hessbench.solvers.base import Run

# -- array-API helpers ------------------------------------------------------------------------


def to_numpy(x: Any) -> np.ndarray:
    """A host NumPy copy of a small array (coefficients, never whole bases)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x)


def norm(x: Any) -> float:
    """||x||_2 of a vector, as a Python float."""
    xp = array_namespace(x)
    return float(xp.linalg.vector_norm(x))


def dot(x: Any, y: Any) -> float:
    """x^T y of two vectors, as a Python float."""
    xp = array_namespace(x)
    return float(xp.sum(x * y))


def as_like(matrix: np.ndarray, like: Any) -> Any:
    """A small NumPy matrix in the array type, dtype and device of ``like``."""
    xp = array_namespace(like)
    return xp.asarray(np.asarray(matrix, dtype=np.float64), dtype=like.dtype, device=device(like))


def small(x: Any) -> np.ndarray:
    """A small array (Gram matrix, column norms) as float64 NumPy."""
    return to_numpy(x).astype(np.float64)


def column_norms(V: Any) -> np.ndarray:
    """||V[:, i]||_2 for every column i, as float64 NumPy."""
    xp = array_namespace(V)
    return small(xp.linalg.vector_norm(V, axis=0))


# -- orthonormal bases ------------------------------------------------------------------------


class KrylovBasis:
    """Orthonormal vectors q_0..q_{k-1} of length n, as the rows of a (capacity, n) array;
    the rows past k are zero.

    Rows are written in place where the array type allows it (NumPy, torch) and functionally
    otherwise (JAX); the array doubles when full. New directions are orthogonalised by two passes
    of classical Gram-Schmidt ("twice is enough"), the cost of full reorthogonalisation: O(k n)
    per vector. The capacity also fixes the shapes of the projections (see
    :meth:`orthogonalize`), hence the last bits of their results.
    """

    def __init__(self, like: Any, capacity: int) -> None:
        self.xp = array_namespace(like)
        self.n = like.shape[0]
        self.Q = self.xp.zeros((max(capacity, 1), self.n), dtype=like.dtype,
                               device=getattr(like, "device", None))
        self.k = 0

    def rows(self) -> Any:
        """The k basis vectors, as rows."""
        return self.Q[: self.k, ...]

    def append(self, q: Any) -> None:
        """Add the unit vector q, orthogonal to the basis, as q_k."""
        self.append_columns(q[:, None])

    def append_columns(self, V: Any) -> None:
        """Add the orthonormal columns of V (n x m), orthogonal to the basis, as q_k..q_{k+m-1}
        (one write of m rows)."""
        m = V.shape[1]
        while self.k + m > self.Q.shape[0]:
            self.Q = self.xp.concat([self.Q, self.xp.zeros_like(self.Q)], axis=0)
        if is_writeable_array(self.Q):
            self.Q[self.k:self.k + m, ...] = V.T
        else:
            self.Q = self.Q.at[self.k:self.k + m].set(V.T)
        self.k += m

    def reset(self, rows: Any) -> None:
        """Replace the basis by ``rows`` (orthonormal, as rows), e.g. at a thick restart."""
        self.Q = self.xp.zeros_like(self.Q)
        self.k = 0
        for i in range(rows.shape[0]):
            self.append(rows[i, ...])

    def orthogonalize(self, w: Any, passes: int = 2) -> Any:
        """w - Q^T (Q w), twice (two classical Gram-Schmidt passes; ``passes=1`` where w is
        already orthogonal to the basis but for rounding), for a vector w or a block W (n x b)
        at once (two matrix products per pass: BLAS-3).

        Projects on the first 2^ceil(log2 k) rows (the rows past k are zero): at most twice
        the work, and O(log k) distinct shapes, so JAX compiles O(log k) kernels, not k."""
        if self.k == 0:
            return w
        Qk = self.Q[: min(self.Q.shape[0], 1 << (self.k - 1).bit_length()), ...]
        for _ in range(passes):
            w = w - ((Qk @ w) @ Qk if w.ndim == 1 else ((Qk @ w).T @ Qk).T)
        return w

    def combine(self, coeffs: np.ndarray) -> Any:
        """sum_i coeffs[i] q_i over the first len(coeffs) basis vectors (a Ritz vector)."""
        c = self.xp.asarray(np.asarray(coeffs, dtype=np.float64), dtype=self.Q.dtype,
                            device=getattr(self.Q, "device", None))
        return c @ self.Q[: len(coeffs), ...]


def append_orthonormal(basis: KrylovBasis, W: Any, random_vector: Callable[[], Any],
                       scale: float = 0.0, passes: int = 2) -> int:
    """Append the columns of W (n x b) to the orthonormal basis; returns how many were replaced.

    W minus its projection on the basis is formed for the whole block at once (two passes of
    block classical Gram-Schmidt: four matrix products; one pass with ``passes=1``, for a W
    whose large components along the basis the caller has already removed, as block Lanczos
    does with its last two blocks), then the columns are orthonormalised
    among themselves in order (two passes against the new columns before them). A column whose
    remainder is at most 100 eps max(||w||, scale) is numerically in the span: it is replaced by
    a random unit vector orthogonal to the basis and the new columns. A column that cancelled
    by more than 1e4 (remainder < 1e-4 ||w||, so w/||w|| is only about eps ||w_0|| / ||w||
    orthogonal) is orthogonalised once more against both. Nothing is appended once the basis
    spans the whole space.
    """
    xp = array_namespace(W)
    eps = float(xp.finfo(W.dtype).eps)
    ref = column_norms(W)
    V = basis.orthogonalize(W, passes)
    block = KrylovBasis(W[:, 0], capacity=W.shape[1])
    replaced = 0
    for i in range(W.shape[1]):
        if basis.k + block.k >= basis.n:
            break
        v = block.orthogonalize(V[:, i])
        r = norm(v)
        if r <= 100 * eps * max(ref[i], scale):
            replaced += 1
            z = random_vector()
            v = block.orthogonalize(basis.orthogonalize(z))
            r = norm(v)
            if r <= 100 * eps * norm(z):  # pragma: no cover - random vector in the span
                continue
        elif r < 1e-4 * ref[i]:
            v = block.orthogonalize(basis.orthogonalize(v / r))
            r = norm(v)
        block.append(v / r)
    if block.k:
        basis.append_columns(block.rows().T)
    return replaced


# -- ends and the stopping rule --------------------------------------------------------------


def ends(which: str) -> tuple[str, ...]:
    """The ends asked for by ``which``: ("max", "min") for "both", else (which,)."""
    return ("max", "min") if which == "both" else (which,)


def converged(value: float, residual: float, tol: float) -> bool:
    """The stopping rule of the Lanczos-family solvers for one end: r <= tol |theta|.

    theta is a Ritz value (a Rayleigh quotient) and r = ||H x - theta x|| for its unit Ritz
    vector x. For any symmetric H some eigenvalue lies within r of theta, so a stop certifies
    that theta is within tol |theta| of an eigenvalue of H. It cannot certify that this is the
    extreme eigenvalue (no Krylov rule can see an eigenvalue that has not emerged yet), but
    with x = sum_i c_i v_i, r^2 >= c_i^2 (lambda_i - theta)^2: the eigenvector of an
    eigenvalue more than 10 tol |theta| away (the success threshold) has |c_i| < 0.1 in x.

    The sharper gap bound r^2/gap (:func:`error_bound`) is deliberately not used: at an end of
    the spectrum the gap that matters includes the eigenvalues beyond theta, about which the
    Ritz values say nothing until they emerge, while the Ritz gap only measures the distance
    inward. Stopping on it returned the second-smallest eigenvalue (1.4% off) on
    synthetic-cifar-resnet20 (seed 0) and in 5 of 80 runs of the four solvers on
    quadratic-cluster; r <= tol |theta| was right in all of them, at 1.02-1.27x the data passes
    where the old rule was right (scripts/self_stop_study.py, reports/cpu-self-stop-rule).
    """
    return residual <= tol * abs(value)


def error_bound(residual: float, gap: float) -> float:
    """min(r, r^2/gap): some eigenvalue lies within r of theta, and within r^2/gap when every
    other eigenvalue, on both sides, is at least gap away (r alone when gap <= 0). A Ritz gap is
    no such gap at an end of the spectrum: not a stopping rule (see :func:`converged`)."""
    return min(residual, residual * residual / gap) if gap > 0 else residual


@dataclass
class RitzEnd:
    """A Ritz pair (theta, s) at one end of the spectrum of T, with its residual
    r = |beta s_last| = ||H x - theta x|| (x = Q s)."""

    value: float
    coeffs: np.ndarray
    residual: float

    def converged(self, tol: float) -> bool:
        """The stopping rule :func:`converged`: r <= tol |theta|."""
        return converged(self.value, self.residual, tol)


def ritz_ends(theta: np.ndarray, S: np.ndarray, beta: float) -> dict[str, RitzEnd]:
    """The extreme Ritz pairs of T = S diag(theta) S^T (theta ascending) when
    H Q = Q T + beta q_next e_last^T: the residual of pair i is |beta S[-1, i]|."""
    return {end: RitzEnd(float(theta[i]), S[:, i], float(abs(beta * S[-1, i])))
            for end, i in (("max", -1), ("min", 0))}


# -- the Lanczos process ----------------------------------------------------------------------


def lanczos_step(run: Run, basis: KrylovBasis, q: Any, indices: np.ndarray | None = None,
                 product: Any = None) -> tuple[float, Any, float]:
    """One Lanczos step from the newest basis vector q (one HVP, charged to ``run``):
    w = H q (H_S q for ``indices``; or ``product`` when the caller already has it), alpha =
    q^T w, w <- w minus its projection on the basis (full reorthogonalisation, which also
    removes alpha q + beta_prev q_prev), beta = ||w||.
    Returns (alpha, w, beta); the next basis vector is w / beta unless :func:`invariant`."""
    w = run.matvec(q, indices) if product is None else product
    alpha = dot(q, w)
    w = basis.orthogonalize(w)
    return alpha, w, norm(w)


def invariant(beta: float, theta: np.ndarray, basis: KrylovBasis, size: int) -> bool:
    """The breakdown rule: the Krylov space is (numerically) invariant, so its Ritz values
    theta are exact eigenvalues, when beta <= 1e-12 max|theta| or the basis spans all ``size``
    dimensions."""
    return bool(beta <= 1e-12 * np.abs(theta).max()) or basis.k == size


@dataclass
class LanczosState:
    """After ``steps`` Lanczos steps: the basis, T's diagonal (alphas) and off-diagonal (betas;
    both the process's live lists, which later steps extend), all Ritz values ``theta``
    (ascending) with their coefficient vectors ``S`` (columns), beta = ||w|| (the norm of the
    new direction, the residual coupling of T), the extreme Ritz pairs and whether the Krylov
    space became invariant (:func:`invariant`)."""

    steps: int
    basis: KrylovBasis
    alphas: list[float]
    betas: list[float]
    theta: np.ndarray
    S: np.ndarray
    beta: float
    ritz: dict[str, RitzEnd]
    breakdown: bool


def lanczos_steps(run: Run, q: Any, max_steps: int, indices: np.ndarray | None = None,
                  publish: tuple[str, ...] = ("max", "min"), capacity: int | None = None,
                  first: Any = None) -> Iterator[LanczosState]:
    """Full-reorthogonalisation Lanczos on H (or on the fixed mini-batch H_S for ``indices``)
    from the start vector ``q``, at most min(max_steps, n) steps. After step j, T_j (diagonal
    alphas, off-diagonal betas) is eigendecomposed (``eigh_tridiagonal``); the Ritz estimates of
    the ends in ``publish`` (none for ``()``) are published, a trace row is recorded and the state
    is yielded. On a breakdown (:func:`invariant`) the residuals are published as 0 and the
    iteration ends. ``capacity``: rows of the basis array (default min(max_steps + 1, 64)).
    ``first``: H q for the unit start vector q when the caller already paid for it (the
    first step then makes no product)."""
    if first is None:
        q = q / norm(q)
    basis = KrylovBasis(q, capacity=min(max_steps + 1, 64) if capacity is None else capacity)
    basis.append(q)
    alphas: list[float] = []
    betas: list[float] = []
    steps = min(max_steps, run.op.size)
    for j in range(steps):
        alpha, w, beta = lanczos_step(run, basis, q, indices, first if j == 0 else None)
        alphas.append(alpha)
        theta, S = eigh_tridiagonal(np.asarray(alphas), np.asarray(betas))
        ritz = ritz_ends(theta, S, beta)
        breakdown = invariant(beta, theta, basis, run.op.size)
        for end in publish:
            pair = ritz[end]
            run.estimate(end, pair.value, lambda c=pair.coeffs: basis.combine(c),
                         residual=0.0 if breakdown else pair.residual)
        run.record()
        yield LanczosState(j + 1, basis, alphas, betas, theta, S, beta, ritz, breakdown)
        if breakdown or j + 1 == steps:
            return
        betas.append(beta)
        q = w / beta
        basis.append(q)
