"""An explicit symmetric matrix as an operator: exact spectra for tests and conformance checks."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace

from hessbench.backends.base import HVPOperator


class DenseOperator(HVPOperator):
    """v -> A v for an explicit symmetric matrix A (any array-API array; NumPy by default).

    It stands for one sample (N = 1) unless ``num_samples`` says otherwise; every sample has the
    same Hessian A, so mini-batch products are exact. Vectors are not cast: pass them in the
    matrix's dtype (``asarray``), or the array library's type promotion applies.
    """

    def __init__(self, matrix: Any, num_samples: int = 1) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square, got shape {tuple(matrix.shape)}")
        super().__init__(matrix.shape[0], num_samples)
        self.matrix = matrix
        self._xp = array_namespace(matrix)
        self.dtype = matrix.dtype
        self.device = getattr(matrix, "device", "cpu")

    def _matvec(self, v: Any, indices: np.ndarray | None) -> Any:
        return self.matrix @ v

    def _matmat(self, V: Any, indices: np.ndarray | None) -> Any:
        return self.matrix @ V

    def asarray(self, x: np.ndarray) -> Any:
        return self._xp.asarray(x, dtype=self.dtype)
