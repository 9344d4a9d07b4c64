"""An orthonormal Krylov basis stored as rows of one array, written for the array API.

Rows are written in place where the array type allows it (NumPy, torch) and functionally
otherwise (JAX). New directions are orthogonalised by two passes of classical Gram-Schmidt
("twice is enough"), the cost of full reorthogonalisation: O(k n) per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_writeable_array


def to_numpy(x: Any) -> np.ndarray:
    """A host NumPy copy of a small array (coefficients, never whole bases)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x)


def norm(x: Any) -> float:
    xp = array_namespace(x)
    return float(xp.linalg.vector_norm(x))


def dot(x: Any, y: Any) -> float:
    xp = array_namespace(x)
    return float(xp.sum(x * y))


class KrylovBasis:
    """Orthonormal vectors q_0..q_{k-1} of length n, as the rows of a (capacity, n) array;
    the rows past k are zero."""

    def __init__(self, like: Any, capacity: int) -> None:
        self.xp = array_namespace(like)
        self.n = like.shape[0]
        self.Q = self.xp.zeros((max(capacity, 1), self.n), dtype=like.dtype,
                               device=getattr(like, "device", None))
        self.k = 0

    def rows(self) -> Any:
        return self.Q[: self.k, ...]

    def append(self, q: Any) -> None:
        if self.k == self.Q.shape[0]:
            self.Q = self.xp.concat([self.Q, self.xp.zeros_like(self.Q)], axis=0)
        if is_writeable_array(self.Q):
            self.Q[self.k, ...] = q
        else:
            self.Q = self.Q.at[self.k].set(q)
        self.k += 1

    def reset(self, rows: Any) -> None:
        """Replace the basis by ``rows`` (orthonormal, as rows), e.g. at a thick restart."""
        self.Q = self.xp.zeros_like(self.Q)
        self.k = 0
        for i in range(rows.shape[0]):
            self.append(rows[i, ...])

    def orthogonalize(self, w: Any) -> Any:
        """w minus its projection on the basis (two Gram-Schmidt passes).

        Projects on the first 2^ceil(log2 k) rows (the rows past k are zero): at most twice
        the work, and O(log k) distinct shapes, so JAX compiles O(log k) kernels, not k."""
        if self.k == 0:
            return w
        Qk = self.Q[: min(self.Q.shape[0], 1 << (self.k - 1).bit_length()), ...]
        for _ in range(2):
            w = w - (Qk @ w) @ Qk
        return w

    def combine(self, coeffs: np.ndarray) -> Any:
        """sum_i coeffs[i] q_i over the first len(coeffs) basis vectors (a Ritz vector)."""
        c = self.xp.asarray(np.asarray(coeffs, dtype=np.float64), dtype=self.Q.dtype,
                            device=getattr(self.Q, "device", None))
        return c @ self.Q[: len(coeffs), ...]
