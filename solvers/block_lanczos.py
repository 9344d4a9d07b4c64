"""Block Lanczos with full reorthogonalisation: both extreme eigenvalues, one block Krylov space.

From an orthonormal start block Q_1 (n x b), step j computes W = H Q_j with one ``matmat`` (the
b vectors share one pass over the data; the meter still charges b passes), A_j = Q_j^T W, and
the next block Q_{j+1} by orthogonalising W against the whole basis (full reorthogonalisation,
which also removes Q_j A_j + Q_{j-1} B_{j-1}^T; two passes of block Gram-Schmidt, BLAS-3). The
columns are orthogonalised in order, so B_j = Q_{j+1}^T W is upper triangular and

    H [Q_1..Q_j] = [Q_1..Q_j] T_j + Q_{j+1} B_j E_j^T

with T_j block tridiagonal of bandwidth b (diagonal blocks A_i, off-diagonal B_i; the rounding
below B_i's diagonal is dropped and its norm delta added to every residual bound).

Ritz pairs, cheaply: each step, the extreme eigenvalues theta of T_j come from LAPACK's banded
bisection (``eig_banded``, eigenvalues only) and their vectors s from two steps of inverse
iteration with the banded LU of T_j - theta I, O(k b^2). For x = Q s (unit),

    ||H x - theta x|| <= hypot(||B_j s_last||, ||T_j s - theta s||) + delta,

exact for an exact eigenpair of T_j and honest for an inexact one (s_last: the last block row
of s). That bound r is the residual published and tested: the stopping rule per asked end is
that of ``lanczos``, r <= tol |theta| (:func:`hessbench.solvers.kernels.converged`).

Rank deficiency: a column of W whose remainder after orthogonalisation is at most
100 eps max(||w||, ||H|| estimate) is numerically in the span; it is replaced by a random unit
vector orthogonal to the basis, so blocks keep b columns (and hvp_calls stays a multiple of b).
If every column of a block is deflated, the space is invariant and its Ritz values are exact
eigenvalues (converged). Only when the basis reaches the whole space can a block be smaller.

Block size b = 1 is single-vector Lanczos: it runs the ``lanczos`` kernel
(:func:`hessbench.solvers.kernels.lanczos_steps`). ``block_size="auto"`` chooses b by timing
products at the start of the solve (:func:`choose_block_size`, whose docstring states the rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from array_api_compat import array_namespace
from scipy.linalg import LinAlgError, eig_banded, solve_banded

from hessbench.solvers.base import BudgetExhausted, Run, Solver
from hessbench.solvers.kernels import (KrylovBasis, append_orthonormal, as_like, column_norms,
                                       converged, ends, lanczos_steps, norm, small)

KRYLOV_DIMENSION = 500
"""Default cap on the Krylov dimension b x max_steps (that of ``lanczos``'s max_steps)."""


CANDIDATES = (2, 4, 8)
"""Block widths ``block_size="auto"`` may time, in this order."""

PAYOFF = 0.9
"""A width is chosen only where it is predicted to take at most this fraction of the seconds of
single-vector Lanczos: below a 10% gain, one timing per width and the block steps' own work
can eat it."""


def vector_factor(b: int) -> float:
    """Predicted HVPs a block-b Krylov space needs to reach both ends to tol, relative to b = 1:
    sqrt(b). Measured (float32, tol 1e-3, median of 5 seeds, b = 2 / 4 / 8): digits-mlp
    1.42 / 1.93 / 2.80, digits-cnn 1.29 / 1.86 / 2.63; a block of b converges in fewer steps,
    but not b times fewer."""
    return math.sqrt(b)


@dataclass
class BlockChoice:
    """The outcome of :func:`choose_block_size`: the width ``size``, the measured ``seconds``
    of one product per width (1: a ``matvec``; b: a ``matmat`` of b vectors), and the chosen
    width's timed start block (orthonormal columns) with its product, which the solve reuses."""

    size: int
    seconds: dict[int, float]
    start: Any = field(repr=False)
    product: Any = field(repr=False)

    @property
    def costs(self) -> dict[int, float]:
        """Seconds per vector of each width's product, relative to one ``matvec``."""
        one = max(self.seconds[1], 1e-12)
        return {k: t / (k * one) for k, t in self.seconds.items()}

    @property
    def predicted(self) -> dict[int, float]:
        """Predicted seconds of each width relative to single vectors: cost x vector factor."""
        return {k: c * vector_factor(k) for k, c in self.costs.items()}

    def summary(self) -> dict[str, Any]:
        """JSON-ready: size, seconds, costs and predicted ratios by width."""
        return {"size": self.size, "seconds": dict(self.seconds), "costs": self.costs,
                "predicted": self.predicted}

    def describe(self) -> str:
        widths = [k for k in self.seconds if k > 1]
        costs = ", ".join(f"{k}: {self.costs[k]:.2f}" for k in widths) or "none timed"
        pred = ", ".join(f"{k}: {self.predicted[k]:.2f}" for k in widths) or "-"
        return (f"block size {self.size} (auto: matmat seconds per vector / matvec {costs}; "
                f"x sqrt(b) = predicted seconds vs b=1 {pred}; used where <= {PAYOFF})")


def _orthonormal_pair(V: Any, HV: Any) -> tuple[Any, Any]:
    """(V R^-1, HV R^-1) with V R^-1 orthonormal: Cholesky QR twice (V random, well
    conditioned), so HV R^-1 = H (V R^-1) needs no product."""
    for _ in range(2):
        R = np.linalg.cholesky(small(V.T @ V)).T
        Rinv = as_like(np.linalg.inv(R), V)
        V, HV = V @ Rinv, HV @ Rinv
    return V, HV


def choose_block_size(run: Run, rng: np.random.Generator,
                      candidates: tuple[int, ...] = CANDIDATES) -> BlockChoice:
    """Time one ``matvec`` (t_1) and ``matmat`` blocks of the ``candidates`` widths (t_b) on
    random vectors, every product charged to ``run``, and choose the block size.

    The rule: the seconds of block Lanczos with width b relative to b = 1 are predicted as
    c_b x sqrt(b), c_b = t_b / (b t_1) the measured cost per vector and sqrt(b) the extra
    vectors a block Krylov space needs (:func:`vector_factor`). The width with the least
    prediction is chosen if that prediction is at most ``PAYOFF`` (0.9); otherwise b = 1,
    which is ``lanczos``. So a block of 4 is used only where it costs at most 0.45 of a product
    per vector, one of 8 at most 0.32 and one of 2 at most 0.64.

    Widths are timed in increasing order, and a width b is timed only if it could pay: a
    block of b costs at least the last block timed (width p), so c_b sqrt(b) >= t_p /
    (t_1 sqrt(b)), which must be below ``PAYOFF``. Widths above n / 4, or beyond what the
    run's budget has left, are not timed. The
    chosen width's timed block is the start block of the solve (its product is reused), so
    what the choice costs is the other widths' products: at most 1 + 2 + 4 + 8 vectors.

    Each width is timed once, at its first use: warm the operator up for every candidate
    width first (``op.warm_up(block=b)``; first-call allocation, JAX compilation, a backend's
    own strategy choice), or one-off work is taken for the cost of blocks. The choice
    depends on timings, so an ``"auto"`` solve is not reproducible bit for bit.
    """
    op = run.op

    def timed(product: Any, x: Any) -> tuple[Any, float]:
        t0 = run.seconds()
        y = product(x)
        return y, run.seconds() - t0

    v = op.random_vector(rng)
    v = v / norm(v)
    hv, t1 = timed(run.matvec, v)
    seconds = {1: t1}
    blocks = {1: (v[:, None], hv[:, None])}
    last = 1
    one = max(t1, 1e-12)
    for b in candidates:
        if 4 * b > op.size or seconds[last] / (one * math.sqrt(b)) >= PAYOFF:
            break
        try:
            run.check_budget(op.num_samples, b)
        except BudgetExhausted:  # leave the budget to the solve (its first step is paid)
            break
        V = array_namespace(v).stack([op.random_vector(rng) for _ in range(b)], axis=1)
        HV, seconds[b] = timed(run.matmat, V)
        blocks[b] = (V, HV)
        last = b
    choice = BlockChoice(1, seconds, *blocks[1])
    pred = {b: p for b, p in choice.predicted.items() if b > 1}
    if pred and min(pred.values()) <= PAYOFF:
        size = min(pred, key=pred.__getitem__)
        choice = BlockChoice(size, seconds, *_orthonormal_pair(*blocks[size]))
    return choice


def _band(T: np.ndarray, u: int) -> np.ndarray:
    """The lower band (u + 1 rows) of the symmetric T, LAPACK's lower band storage."""
    k = T.shape[0]
    u = min(u, k - 1)
    lower = np.zeros((u + 1, k))
    for d in range(u + 1):
        lower[d, : k - d] = np.diagonal(T, -d)
    return lower


def _inverse_iteration(lower: np.ndarray, theta: float, k: int) -> np.ndarray | None:
    """Two steps of inverse iteration with T - theta I (banded LU, partial pivoting) from a
    fixed start; None if the shifted matrix is exactly singular."""
    u = lower.shape[0] - 1
    ab = np.zeros((2 * u + 1, k))
    ab[u:] = lower
    ab[u] -= theta
    for d in range(1, u + 1):
        ab[u - d, d:] = ab[u + d, : k - d]
    x = np.cos(np.arange(k) + 0.5)  # not orthogonal to an eigenvector, but for a null set
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for _ in range(2):
                x = solve_banded((u, u), ab, x, check_finite=False)
                x = x / np.linalg.norm(x)
    except (LinAlgError, ValueError):
        return None
    return x if np.all(np.isfinite(x)) else None


def extreme_pairs(T: np.ndarray, u: int, asked: tuple[str, ...]
                  ) -> dict[str, tuple[float, np.ndarray, float]]:
    """(theta, s, ||T s - theta s||) at each asked end of the symmetric T of bandwidth u:
    theta by banded bisection (eigenvalue only), s (unit) by inverse iteration, or by
    ``eig_banded`` with vectors where the shifted matrix is singular."""
    k = T.shape[0]
    lower = _band(T, u)
    out = {}
    for end in asked:
        i = k - 1 if end == "max" else 0
        theta = float(eig_banded(lower, lower=True, eigvals_only=True, select="i",
                                 select_range=(i, i))[0])
        s = _inverse_iteration(lower, theta, k)
        if s is None:
            values, S = eig_banded(lower, lower=True, select="i", select_range=(i, i))
            theta, s = float(values[0]), S[:, 0]
        out[end] = (theta, s, float(np.linalg.norm(T @ s - theta * s)))
    return out


class BlockLanczos(Solver):
    """Block Lanczos (full reorthogonalisation) on full-data block HVPs; see the module docstring.

    Options: ``tol``; ``block_size`` (b, vectors per ``matmat``, default 4; b = 1 is
    ``lanczos``; ``"auto"`` times a matvec and blocks of 2, 4, 8 vectors at the start of the
    solve, products counted, and keeps the width predicted fastest, see
    :func:`choose_block_size`; the last choice is kept in
    ``block_choice`` and stated in the result's message); ``max_steps`` (block steps, default
    ceil(500 / b); memory is b (max_steps + 1) parameter-sized vectors).
    """

    name = "block-lanczos"

    def __init__(self, tol: float = 1e-3, block_size: int | Literal["auto"] = 4,
                 max_steps: int | None = None) -> None:
        super().__init__(tol)
        if block_size != "auto" and (isinstance(block_size, bool) or
                                     not isinstance(block_size, int) or block_size < 1):
            raise ValueError(f"block_size must be a positive int or 'auto', got {block_size!r}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        self.block_size = block_size
        self.max_steps = max_steps
        self.block_choice: BlockChoice | None = None

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        op = run.op
        product, note = None, ""
        if self.block_size == "auto":
            self.block_choice = choose_block_size(run, rng)
            b, start, product = (self.block_choice.size, self.block_choice.start,
                                 self.block_choice.product)
            note = f"{self.block_choice.describe()}; "
        else:
            b = min(self.block_size, op.size)
            first = op.random_vector(rng)
            start = array_namespace(first).stack(
                [first] + [op.random_vector(rng) for _ in range(b - 1)], axis=1)
        steps = self.max_steps or math.ceil(KRYLOV_DIMENSION / b)
        if b == 1:
            status, message = self._single(run, which, start[:, 0],
                                           None if product is None else product[:, 0], steps)
        else:
            status, message = self._block(run, which, rng, start, product, steps)
        return status, note + message

    def _single(self, run: Run, which: str, q: Any, first: Any, steps: int) -> tuple[str, str]:
        """b = 1: the Lanczos process of ``lanczos`` (its first product ``first`` if known)."""
        for state in lanczos_steps(run, q, steps, publish=ends(which), first=first):
            if state.breakdown:
                return "converged", "invariant Krylov subspace: Ritz values are exact"
            if all(state.ritz[e].converged(self.tol) for e in ends(which)):
                return "converged", (f"residual below tol={self.tol} x |Ritz value| after "
                                     f"{state.steps} steps")
        return "max_steps", f"no convergence in max_steps={min(steps, run.op.size)}"

    def _block(self, run: Run, which: str, rng: np.random.Generator, start: Any,
               product: Any, steps: int) -> tuple[str, str]:
        """b >= 2 from the start block (orthonormal if its ``product`` H start is given)."""
        op = run.op
        b = start.shape[1]
        basis = KrylovBasis(start[:, 0], capacity=min(op.size, b * (steps + 1), 64))
        if product is None:
            append_orthonormal(basis, start, lambda: op.random_vector(rng))
        else:
            basis.append_columns(start)
        T = np.zeros((0, 0))
        hnorm = delta2 = 0.0
        k0 = 0
        for step in range(steps):
            k1 = basis.k
            Qj = basis.rows()[k0:k1, ...].T
            W = product if step == 0 and product is not None else run.matmat(Qj)
            hnorm = max(hnorm, float(column_norms(W).max()))
            A = small(Qj.T @ W)
            local = basis.rows()[max(k0 - b, 0):k1, ...]  # Q_{j-1}, Q_j: the large components
            W1 = W - ((local @ W).T @ local).T
            replaced = append_orthonormal(basis, W1, lambda: op.random_vector(rng), hnorm,
                                          passes=1)
            k2 = basis.k
            B = small(basis.rows()[k1:k2, ...] @ W)
            delta2 += 2 * float(np.sum(np.tril(B, -1) ** 2))  # rounding: ||T - band||_F^2
            B = np.triu(B)
            if k2 > T.shape[0]:
                T = np.pad(T, (0, max(k2, 2 * T.shape[0]) - T.shape[0]))
            T[k0:k1, k0:k1] = (A + A.T) / 2
            T[k1:k2, k0:k1] = B
            T[k0:k1, k1:k2] = B.T
            exact = replaced == k1 - k0 or k1 == op.size
            done = []
            for end, (theta, s, rt) in extreme_pairs(T[:k1, :k1], b, ends(which)).items():
                rb = float(np.linalg.norm(B @ s[k0:k1]))
                r = 0.0 if exact else math.hypot(rb, rt) + math.sqrt(delta2)
                done.append(converged(theta, r, self.tol))
                run.estimate(end, theta, lambda c=s: basis.combine(c), residual=r)
            run.record()
            if exact:
                return "converged", "invariant block Krylov subspace: Ritz values are exact"
            if all(done):
                return "converged", (f"residual below tol={self.tol} x |Ritz value| after "
                                     f"{step + 1} block steps of {b}")
            k0 = k1
        return "max_steps", f"no convergence in max_steps={steps} block steps of {b}"
