"""The contract every HVP operator keeps, and its cost accounting.

An operator is the Hessian of the MEAN loss over N samples, with respect to n parameters,

    L(theta) = (1/N) sum_i loss_i(theta),      H = (1/N) sum_i H_i,   H_i = d^2 loss_i / d theta^2,

as a symmetric linear map on flat vectors of length n (``op.size``; ``op.shape == (n, n)``):

- ``matvec(v)`` returns H v. Backends accumulate it over chunks b of the data as
  H v = sum_b (|b|/N) H_b v, where H_b is the Hessian of the batch-mean loss on b, so an uneven
  last chunk is weighted exactly (never 1/#chunks).
- ``matvec(v, indices=S)`` returns the mini-batch product H_S v = (1/|S|) sum_{i in S} H_i v
  for a non-empty 1-D integer array of sample indices S (any order; a repeated index counts as
  often as it appears); ``op.sample_indices(b, rng)`` draws b distinct indices.
- ``matmat(V, indices=None)`` for V of shape (n, k) returns H V (or H_S V), column j equal to
  ``matvec(V[:, j])`` up to rounding. ``op @ x`` is ``matvec`` or ``matmat`` by ``x.ndim``.
- Cost: every product charges ``op.meter`` (:class:`CostMeter`): a full product N samples and
  one HVP call, a mini-batch product |S| samples (with repetitions) and one call, a ``matmat``
  of k vectors k times that and k calls. One data pass is N samples:
  ``meter.data_passes = meter.samples / N``. ``op.to_scipy()`` charges the same meter.
- Vectors are flat: the parameters raveled in the backend's order (torch: ``op.param_names``,
  by default ``model.named_parameters()`` order; JAX: ``ravel_pytree(params)``); their
  ``op.unflatten`` inverts it.
- Arrays, dtype, device: products take and return the operator's array type (torch tensor,
  JAX array, NumPy or any array-API array for :class:`~hessbench.backends.dense.DenseOperator`)
  in ``op.dtype`` on the operator's device. Make vectors with ``op.asarray(numpy_array)`` or
  ``op.random_vector(rng)``; the torch and JAX operators also cast and move other floating
  vectors to ``op.dtype`` and their device (``DenseOperator`` uses its library's promotion).
  ``op.numpy_dtype`` is ``op.dtype`` as a NumPy dtype.
- Errors: a vector not of shape (n,) (``matvec``) or a block not of shape (n, k) (``matmat``)
  raises ``ValueError``; indices that are not a non-empty 1-D integer array raise
  ``ValueError``, out-of-range ones ``IndexError``; these are raised before any work and
  charge nothing. A product containing NaN or inf (a non-finite vector, or a loss / model that
  is not finite at these parameters) raises :class:`NonFiniteHVPError` after it was computed
  and charged; the operator stays usable.
- Data: the N samples are exactly those one pass over the data yields, and every pass yields
  the same multiset of them (torch ``DataLoader`` rules: :mod:`hessbench.backends.loaders`;
  a loader that cannot promise it is refused with an ``InputError`` naming the option).
- One fixed matrix: the same vector gives the same product up to rounding. The torch and JAX
  constructors check it with :meth:`HVPOperator.probe_determinism` (keyword
  ``check_deterministic=True``): two full products of one fixed random vector, charged to
  ``op.meter``, must agree within :func:`determinism_rtol` (by dtype and device), else
  :class:`NonDeterministicHVPError` (an ``InputError``) names the likely causes and fixes.

Constructors follow their framework's idiom rather than one shared signature, on purpose:
PyTorch's ``HessianOperator(model, loss_fn, data, ...)`` takes a stateful ``nn.Module`` and a
criterion ``loss_fn(outputs, targets)`` like ``torch.nn`` losses and curvlinops'
``HessianLinearOperator(model_func, loss_func, params, data)``; JAX's
``HessianOperator(loss_fn, params, data, ...)`` takes a pure function ``loss_fn(params, batch)``
of the parameter pytree, as ``jax.hessian`` / ``jax.grad`` differentiate their first argument.
A module holds its own parameters (``params=`` only selects a subset); a JAX model's are an
explicit value, so each order is the natural one and neither is made to mimic the other. Both
return the batch-MEAN loss, take ``data`` as ``(inputs, targets)`` and the same keywords
``batch_size``, ``dtype``, ``device``. :mod:`hessbench.backends.testing` checks the contract.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from array_api_compat import array_namespace

from hessbench.errors import InputError

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator


class NonFiniteHVPError(FloatingPointError):
    """An HVP produced NaN or inf."""


class NonDeterministicHVPError(InputError):
    """The same vector multiplied twice gave products further apart than rounding explains."""


PROBE_SEED = 20240611
"""Seed of the determinism probe's vector: fixed, so it never draws from a user's generator."""


def determinism_rtol(dtype: Any, accelerator: bool) -> float:
    """The relative difference ||p1 - p2|| / max(||p1||, ||p2||) the determinism probe allows
    between two products of one vector: 1e3 eps of ``dtype`` on a CPU, 1e4 eps on an
    accelerator (float64: 2.2e-13 / 2.2e-12; float32: 1.2e-4 / 1.2e-3).

    Why: on a CPU the same batches in the same order give bitwise-equal products; a shuffling
    loader only reorders the sum over samples, which moves the result by a few eps times the
    sum's condition (measured ~1e-15 in float64, ~1e-6 in float32 on small MLPs); 1e3 eps leaves
    a wide margin. GPUs add non-deterministic reductions (atomics in scatter/index_add,
    cuDNN's backward convolutions): ~1e-6 relative in float32, i.e. ~10 eps, hence 1e4 eps.
    What the probe is for is far above both: random augmentation moves products by ~30%,
    dropout by O(1), a shuffled ``drop_last`` by about (samples dropped) / N.
    """
    return (1e4 if accelerator else 1e3) * float(np.finfo(numpy_dtype(dtype)).eps)


def agreement_rtol(dtype: Any) -> float:
    """The relative difference ||p - p_ref|| / ||p_ref|| allowed between one chunk's product by
    an HVP strategy and by the backend's reference strategy: 1e4 eps of ``dtype`` (float32
    1.2e-3, float64 2.2e-12). Strategies differ only in the order of floating-point operations
    (measured 1e-7 to 3e-5 in float32 on the benchmark's networks); a dropped tangent or a wrong
    graph is O(1)."""
    return 1e4 * float(np.finfo(numpy_dtype(dtype)).eps)


@dataclass
class Candidate:
    """One HVP strategy timed on one chunk by an operator choosing its strategy: median seconds
    per product (per vector for blocks), seconds of its first call (compilation included),
    relative difference to the reference strategy, and why it was not used."""

    name: str
    seconds: float | None = None
    first_seconds: float | None = None
    rel_diff: float | None = None
    accepted: bool = False
    error: str | None = None


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


def numpy_dtype(dtype: Any) -> np.dtype:
    """A NumPy, JAX or torch dtype (``torch.float32``) as the NumPy dtype of the same name."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(str(dtype).rpartition(".")[2])


def to_numpy(x: Any) -> np.ndarray:
    """An array (NumPy, JAX, torch on any device, ...) as a NumPy array of the same dtype."""
    if hasattr(x, "detach"):  # a torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _writable(x: Any) -> np.ndarray:
    out = to_numpy(x)
    return out if out.flags.writeable else out.copy()  # JAX's host arrays are read-only


class HVPOperator(abc.ABC):
    """Symmetric linear operator v -> H v on flat parameter vectors of one array type (the
    contract is in the module docstring).

    Subclasses set ``size`` (n, number of parameters), ``num_samples`` (N), ``dtype`` and
    ``device``, implement ``_matvec(v, indices)`` and ``asarray``; ``_matmat`` defaults to a
    loop. The public methods validate shapes and indices, charge the meter and check finiteness.
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

    @property
    def numpy_dtype(self) -> np.dtype:
        """``dtype`` as a NumPy dtype (e.g. ``torch.float32`` -> ``float32``)."""
        return numpy_dtype(self.dtype)

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

    # -- one-off work before timed solves --------------------------------------------------
    def warm_up(self, block: int | None = None) -> dict[str, Any]:
        """Do the one-off work of the first products now, untimed by any solve: first-call
        allocation, compilation, the choice of a product strategy. Multiplies one random
        vector (seed ``PROBE_SEED``) and, with ``block=k``, one block of k vectors, charged
        to ``op.meter`` like any product (solvers charge meter differences, so their costs
        are unaffected). Returns ``{"seconds": wall seconds of the warm-up, "block": k,
        **self.product_setup()}`` for run records."""
        import time

        rng = np.random.default_rng(PROBE_SEED)
        self.synchronize()
        t0 = time.perf_counter()
        self.matvec(self.random_vector(rng))
        if block:
            V = self.asarray(rng.standard_normal((self.size, int(block))))
            self.matmat(V)
        self.synchronize()
        return {"seconds": time.perf_counter() - t0, "block": block, **self.product_setup()}

    def product_setup(self) -> dict[str, Any]:
        """How this operator computes products, as JSON values for run records (the torch
        operator: its strategy, the candidates it timed and their agreement); ``{}`` here."""
        return {}

    def reduced_precision(self, precision: str) -> HVPOperator:
        """This operator computing its products in reduced ``precision`` (``"bf16"``: bfloat16
        autocast; ``"tf32"``: TF32 matmuls on CUDA), sharing this operator's meter, data and
        weights; the returned operator's ``dtype`` is still this one's (vectors in and out).
        Backends that cannot raise ``NotImplementedError`` naming the backend."""
        raise NotImplementedError(
            f"{type(self).__name__} has no reduced-precision products")

    def _on_accelerator(self) -> bool:
        """Whether products run on a GPU/TPU (looser determinism tolerance)."""
        return False

    # -- scale-out (operators whose products span several processes or devices override) -----
    def process_count(self) -> int:
        """How many processes compute each product together (1 unless distributed)."""
        return 1

    def device_count(self) -> int:
        """How many devices compute each product together, over all processes."""
        return 1

    @property
    def is_main_process(self) -> bool:
        """Whether this process is the one that writes files and shows progress (rank 0)."""
        return True

    def decide(self, flag: bool) -> bool:
        """The main process's value of ``flag``, on every process.

        Every process runs the same solver on the same (replicated) products, so their
        decisions agree, except those read off a clock: a budget in seconds is decided on the
        main process and shared, so that no process leaves a collective product early."""
        return flag

    def _nondeterminism_causes(self) -> list[str]:
        """Likely causes of non-deterministic products, each with its fix, most specific first
        (backends add what they can see, e.g. dropout layers in train mode)."""
        return [
            "random data augmentation (random crops, flips, noise in the dataset's transform): "
            "build the operator on un-augmented data (a deterministic test-time transform)",
            "dropout or other randomness in the model in train mode: keep the model in eval "
            "mode (eval_mode=True)",
            "a loader whose passes differ (shuffling with drop_last=True, a random sampler, or "
            "shuffled uneven batches with a loss that is not the batch mean, e.g. "
            "reduction='sum'): use drop_last=False, a fixed sample set and a batch-mean loss",
        ] + ([
            "non-deterministic GPU kernels (atomic adds, cuDNN algorithms): enable "
            "deterministic algorithms (torch.use_deterministic_algorithms(True) with "
            "CUBLAS_WORKSPACE_CONFIG=:4096:8; JAX: XLA_FLAGS=--xla_gpu_deterministic_ops=true)"
            " or compute in float64",
        ] if self._on_accelerator() else [])

    def probe_determinism(self) -> float:
        """Multiply one fixed random vector (seed ``PROBE_SEED``) twice by H and return the
        relative difference d = ||p1 - p2|| / max(||p1||, ||p2||) (0 if both vanish).

        Raises :class:`NonDeterministicHVPError` when d exceeds
        ``determinism_rtol(dtype, accelerator)``: the eigensolvers assume one fixed matrix.
        Costs two full products, charged to ``op.meter`` (solvers measure meter differences,
        so their costs are unaffected). Non-finite products are not judged: the next product
        the caller makes raises :class:`NonFiniteHVPError` with its usual message.
        """
        v = self.random_vector(np.random.default_rng(PROBE_SEED))
        products = []
        for _ in range(2):
            out = self._matvec(v, None)
            self.meter.charge(self.num_samples)
            products.append(np.asarray(to_numpy(out), dtype=np.float64))
        p1, p2 = products
        if not (np.all(np.isfinite(p1)) and np.all(np.isfinite(p2))):
            return 0.0
        scale = max(float(np.linalg.norm(p1)), float(np.linalg.norm(p2)))
        diff = float(np.linalg.norm(p1 - p2)) / scale if scale > 0 else 0.0
        rtol = determinism_rtol(self.dtype, self._on_accelerator())
        if diff > rtol:
            causes = "".join(f" ({i}) {c};" for i, c in enumerate(self._nondeterminism_causes(),
                                                                 start=1))
            raise NonDeterministicHVPError(
                f"Hessian-vector products are not deterministic: one vector multiplied twice "
                f"gave products {diff:.2e} apart (relative difference), above the tolerance "
                f"{rtol:.1e} for {numpy_dtype(self.dtype)} on {self.describe_device()}; an "
                f"eigensolver would chase a moving matrix and could report a wrong answer as "
                f"converged. Likely causes and fixes:{causes[:-1]}. (check_deterministic=False "
                f"skips this check, at your own risk.)")
        return diff

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

    def to_scipy(self, indices: Any = None) -> LinearOperator:
        """This operator as a ``scipy.sparse.linalg.LinearOperator`` of shape (n, n) and dtype
        ``numpy_dtype``: H, or H_S for fixed sample ``indices``.

        Its matvec/matmat (and rmatvec/rmatmat: H is symmetric) convert NumPy to this
        operator's array type with ``asarray``, call ``self.matvec`` / ``self.matmat`` (so
        every product is charged to ``self.meter``) and return new NumPy arrays in
        ``numpy_dtype``.
        A complex vector costs two products (real and imaginary parts).
        """
        from scipy.sparse.linalg import LinearOperator

        idx = self._check_indices(indices)

        def matvec(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x).reshape(-1)
            if np.iscomplexobj(x):
                return matvec(x.real) + 1j * matvec(x.imag)
            return _writable(self.matvec(self.asarray(x), indices=idx))

        def matmat(X: np.ndarray) -> np.ndarray:
            X = np.asarray(X)
            if np.iscomplexobj(X):
                return matmat(X.real) + 1j * matmat(X.imag)
            return _writable(self.matmat(self.asarray(X), indices=idx))

        return LinearOperator(self.shape, matvec=matvec, rmatvec=matvec, matmat=matmat,
                              rmatmat=matmat, dtype=self.numpy_dtype)

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
