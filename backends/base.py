"""Backend-independent operator contract and cost accounting.

The operator represents H = (1/N) sum_i  d^2 loss_i / d theta^2, the Hessian of the mean loss
over all N samples. ``matvec(v)`` returns H v; ``matvec(v, indices=S)`` returns the mini-batch
Hessian H_S v = (1/|S|) sum_{i in S} H_i v. Every product charges the samples it touched to the
operator's :class:`CostMeter`: a full product costs N samples, a mini-batch product |S|, and a
``matmat`` of k vectors k times that. One data pass is N samples.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace


class NonFiniteHVPError(FloatingPointError):
    """An HVP produced NaN or inf."""


@dataclass
class CostMeter:
    """Counts samples touched by HVPs. ``data_passes = samples / num_samples``."""

    num_samples: int
    samples: int = 0
    hvp_calls: int = 0

    @property
    def data_passes(self) -> float:
        return self.samples / self.num_samples

    def charge(self, samples: int, vectors: int = 1) -> None:
        self.samples += samples * vectors
        self.hvp_calls += vectors

    def snapshot(self) -> tuple[int, int]:
        return self.samples, self.hvp_calls


def sample_indices(num_samples: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random subset of ``batch_size`` distinct indices of ``range(num_samples)``
    (sorted); the whole range, drawing nothing from ``rng``, when ``batch_size == num_samples``."""
    if not 1 <= batch_size <= num_samples:
        raise ValueError(f"batch_size must be in [1, {num_samples}], got {batch_size}")
    if batch_size == num_samples:
        return np.arange(num_samples)
    return np.sort(rng.choice(num_samples, size=batch_size, replace=False))


class HVPOperator(abc.ABC):
    """Symmetric linear operator v -> H v on flat parameter vectors of one array type.

    Subclasses set ``size`` (n, number of parameters), ``num_samples`` (N), ``dtype`` and
    ``device`` and implement ``_matvec(v, indices)``; ``_matmat`` defaults to a loop.
    """

    size: int
    num_samples: int
    dtype: Any
    device: Any

    def __init__(self, size: int, num_samples: int) -> None:
        if num_samples < 1:
            raise ValueError(f"the data set is empty (num_samples={num_samples})")
        self.size = int(size)
        self.num_samples = int(num_samples)
        self.meter = CostMeter(self.num_samples)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    # -- what backends implement -------------------------------------------------------------
    @abc.abstractmethod
    def _matvec(self, v: Any, indices: np.ndarray | None) -> Any: ...

    def _matmat(self, V: Any, indices: np.ndarray | None) -> Any:
        xp = array_namespace(V)
        return xp.stack([self._matvec(V[:, j], indices) for j in range(V.shape[1])], axis=1)

    def asarray(self, x: np.ndarray) -> Any:
        """Convert a NumPy array to this operator's array type, dtype and device."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (call before reading a clock)."""

    def describe_device(self) -> str:
        """Where the products run, for run records (e.g. ``cuda:0 (NVIDIA H100)``)."""
        return "unspecified"

    # -- public API ---------------------------------------------------------------------------
    def matvec(self, v: Any, indices: Any = None) -> Any:
        """H v (all samples) or H_S v for the sample indices S; charges N or |S| samples."""
        if tuple(v.shape) != (self.size,):
            raise ValueError(
                f"vector has shape {tuple(v.shape)}, but the operator acts on vectors of shape "
                f"({self.size},) (one entry per parameter)"
            )
        idx = self._check_indices(indices)
        out = self._matvec(v, idx)
        self.meter.charge(self.num_samples if idx is None else len(idx))
        self._check_finite(out, "matvec")
        return out

    def matmat(self, V: Any, indices: Any = None) -> Any:
        """H V for a block V of shape (n, k); charges k times the samples touched."""
        if V.ndim != 2 or V.shape[0] != self.size:
            raise ValueError(
                f"block has shape {tuple(V.shape)}, expected ({self.size}, k) "
                "(one column per vector)"
            )
        idx = self._check_indices(indices)
        out = self._matmat(V, idx)
        self.meter.charge(self.num_samples if idx is None else len(idx), vectors=V.shape[1])
        self._check_finite(out, "matmat")
        return out

    def __matmul__(self, x: Any) -> Any:
        return self.matvec(x) if x.ndim == 1 else self.matmat(x)

    def sample_indices(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random subset of ``batch_size`` distinct sample indices (sorted)."""
        return sample_indices(self.num_samples, batch_size, rng)

    def random_vector(self, rng: np.random.Generator) -> Any:
        """A standard normal vector (drawn in NumPy float64 so all backends agree for a seed)."""
        return self.asarray(rng.standard_normal(self.size))

    def _check_indices(self, indices: Any) -> np.ndarray | None:
        if indices is None:
            return None
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError("indices must be a non-empty 1-D array of integer sample indices")
        if idx.min() < 0 or idx.max() >= self.num_samples:
            raise IndexError(f"sample indices must lie in [0, {self.num_samples - 1}]")
        return idx

    @staticmethod
    def _check_finite(out: Any, what: str) -> None:
        xp = array_namespace(out)
        if not bool(xp.all(xp.isfinite(out))):
            raise NonFiniteHVPError(
                f"the Hessian-vector product ({what}) returned NaN or inf: the loss or model is "
                "not finite at these parameters, or the vector is"
            )
