"""Conformance kit for HVP operators: ``check_operator(op, dense_hessian)``, in the manner of
:func:`hessbench.solvers.testing.check_solver`.

Every check exercises the operator's public API on a small problem against a dense float64
Hessian that the caller computes independently (``torch.func.hessian``, ``jax.hessian``, the
matrix itself), and raises ``AssertionError`` naming the operator, the check and what was wrong.
The contract checked is the one in :mod:`hessbench.backends.base`.

Usage::

    from hessbench.backends.testing import check_operator
    check_operator(op, dense_hessian)    # all checks; one AssertionError lists every failure

or one pytest test per check::

    import pytest
    from hessbench.backends.testing import CHECKS

    @pytest.mark.parametrize("name", list(CHECKS))
    def test_conformance(name, op, dense_hessian):    # op, dense_hessian: your fixtures
        CHECKS[name](op, dense_hessian)

Arguments (``checks(op, dense_hessian, **options)`` yields ``(name, check)`` pairs too):

- ``op``: the operator, on a SMALL problem (n up to a few hundred parameters, N of tens of
  samples) whose data are chunked unevenly (N not a multiple of ``batch_size``), so that the
  |b|/N weighting is exercised. The checks measure costs as meter differences, so one instance
  serves every check (a JAX operator compiles each chunk shape once).
- ``dense_hessian(indices=None) -> (n, n) array``: the reference in float64: the Hessian of the
  mean loss over all N samples, or over ``indices`` (a 1-D integer array, possibly unsorted or
  with repeats: the mean over the listed samples, a repeated one counted each time). It is
  called for a few index sets per check and cached within a check.
- ``nan_operator`` (optional): an operator on the same problem whose loss is NaN (e.g. the loss
  times NaN) for the NaN-loss part of ``check_non_finite``, skipped when it is None.
- ``rtol`` (optional): the relative error allowed against the reference; by default
  ``RTOL[dtype]`` (float64 1e-10, float32 1e-4, anything else 1e-2). Relative errors are
  ||got - want|| / ||want|| in float64 (per column for blocks).

Checks (``CHECKS`` maps each name to ``check(op, dense_hessian, *, nan_operator=None,
rtol=None)``):

- ``check_dense_agreement``: H v for random and coordinate vectors matches the reference;
  u^T (H v) = v^T (H u) (symmetry).
- ``check_minibatch_weighting``: H_S v for S = all samples in order, a random subset, the same
  subset shuffled, one sample, a subset with repeats, and (with ``op.batch_size`` < N) a subset
  of ``batch_size + 1`` samples matches the reference over S; the full product equals the
  |b|/N-weighted sum of the products over an uneven partition of the samples. (On a
  ``DenseOperator`` every sample has the same Hessian, so weighting errors cannot show.)
- ``check_matmat``: ``matmat`` (full and mini-batch, k = 3 and k = 1) has shape (n, k), equals
  the stacked ``matvec`` results and the reference.
- ``check_repeatability``: the same product twice, with another in between, gives the same
  result (within rtol); products leave their input unchanged.
- ``check_cost_meter``: full, mini-batch (repeats counted), ``matmat`` and ``@`` products
  charge N or |S| samples per vector and one HVP call per vector; ``data_passes`` is
  samples / N; counts are ints.
- ``check_to_scipy``: ``to_scipy()`` is a SciPy ``LinearOperator`` of shape (n, n) and dtype
  ``numpy_dtype`` whose matvec, matmat, rmatvec and ``@`` return NumPy arrays matching the
  reference and charge the meter one call per vector; ``to_scipy(indices=S)`` is H_S; for
  n >= 3, ``eigsh(k=1, which="LA")`` finds the reference's lambda_max (within 10 rtol times the
  spectral radius) and the meter counts exactly the products SciPy made.
- ``check_input_errors``: wrong vector length, 2-D vectors, 1-D or wrong-height blocks ->
  ``ValueError``; empty, 2-D or non-integer indices -> ``ValueError``; out-of-range indices ->
  ``IndexError``; none of them charges the meter.
- ``check_non_finite``: NaN or inf in the vector (matvec, mini-batch, matmat, ``to_scipy``) and
  a NaN loss (``nan_operator``) raise ``NonFiniteHVPError``; the operator stays usable.
- ``check_dtypes``: ``asarray``, ``random_vector`` and every product give the operator's array
  type, ``op.dtype`` and the device of ``op.asarray``'s arrays.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Iterator
from numbers import Integral
from typing import Any

import numpy as np

from hessbench.backends.base import CostMeter, HVPOperator, NonFiniteHVPError, numpy_dtype
from hessbench.backends.base import to_numpy as _to_numpy

__all__ = ["CHECKS", "RTOL", "check_cost_meter", "check_dense_agreement", "check_dtypes",
           "check_input_errors", "check_matmat", "check_minibatch_weighting",
           "check_non_finite", "check_operator", "check_repeatability", "check_to_scipy",
           "checks"]

RTOL = {"float64": 1e-10, "float32": 1e-4}
"""Default relative tolerance against the float64 reference by dtype name (others: 1e-2)."""
_SEED = 20240612

DenseHessian = Callable[..., Any]


# -- plumbing ---------------------------------------------------------------------------------

class _Failure(Exception):
    """A check failed; the message says what was wrong."""


def _dtype_name(dtype: Any) -> str:
    return str(dtype).rpartition(".")[2]


def _label(op: Any) -> str:
    cls = type(op)
    return (f"{cls.__module__}.{cls.__qualname__} (n={getattr(op, 'size', '?')}, "
            f"N={getattr(op, 'num_samples', '?')}, dtype={_dtype_name(getattr(op, 'dtype', '?'))})")


def _validate(op: Any, dense_hessian: Any, nan_operator: Any) -> None:
    if not isinstance(op, HVPOperator):
        raise TypeError(f"check_operator takes an HVPOperator instance, got {type(op).__name__}")
    if not callable(dense_hessian):
        raise TypeError("dense_hessian must be callable: dense_hessian(indices=None) -> (n, n)")
    if nan_operator is not None and not isinstance(nan_operator, HVPOperator):
        raise TypeError(f"nan_operator must be an HVPOperator or None, got "
                        f"{type(nan_operator).__name__}")


def _norm(x: np.ndarray) -> float:
    return float(np.linalg.norm(x))


class _Context:
    """What one check needs: the operator, its reference and helpers that raise _Failure."""

    def __init__(self, op: HVPOperator, dense_hessian: DenseHessian,
                 nan_operator: HVPOperator | None, rtol: float | None) -> None:
        self.op, self.nan_operator = op, nan_operator
        self._dense_fn, self._dense = dense_hessian, {}
        self.n, self.N = op.size, op.num_samples
        self.rtol = rtol if rtol is not None else RTOL.get(_dtype_name(op.dtype), 1e-2)
        self.rng = np.random.default_rng(_SEED)
        # few distinct index-set sizes (a JAX operator compiles once per chunk shape): the
        # shared subset fits in one chunk of op.batch_size
        size, batch = max(1, self.N // 3), getattr(op, "batch_size", None)
        if isinstance(batch, Integral) and batch > 0:
            size = min(size, int(batch))
        self.subset = np.sort(np.random.default_rng(_SEED + 1).choice(
            self.N, size=size, replace=False))
        self.repeats = np.array([0, 0, self.N - 1, 0])

    def require(self, ok: Any, what: str | Callable[[], str]) -> None:
        if not ok:
            raise _Failure(what() if callable(what) else what)

    def dense(self, indices: Any = None) -> np.ndarray:
        """The caller's float64 reference over all samples or ``indices`` (cached)."""
        key = None if indices is None else tuple(int(i) for i in indices)
        if key not in self._dense:
            arg = None if indices is None else np.asarray(indices)
            H = np.asarray(_to_numpy(self._dense_fn(arg)), dtype=np.float64)
            where = "all samples" if key is None else f"indices {list(key)}"
            self.require(H.shape == (self.n, self.n), f"the reference dense_hessian over "
                         f"{where} has shape {H.shape}, expected ({self.n}, {self.n})")
            self.require(np.all(np.isfinite(H)), f"the reference over {where} is not finite")
            self._dense[key] = H
        return self._dense[key]

    def vector(self) -> tuple[Any, np.ndarray]:
        """A standard normal vector in the operator's type, and its float64 NumPy values."""
        v = self.op.asarray(self.rng.standard_normal(self.n))
        return v, np.asarray(_to_numpy(v), dtype=np.float64)

    def block(self, k: int) -> tuple[Any, np.ndarray]:
        V = self.op.asarray(self.rng.standard_normal((self.n, k)))
        return V, np.asarray(_to_numpy(V), dtype=np.float64)

    def close(self, got: Any, want: np.ndarray, what: str, rtol: float | None = None) -> None:
        """``got`` (any array) equals ``want`` within rtol, relatively (per column)."""
        rtol = self.rtol if rtol is None else rtol
        g = np.asarray(_to_numpy(got), dtype=np.float64)
        self.require(g.shape == want.shape,
                     f"{what}: result has shape {g.shape}, expected {want.shape}")
        cols = (g[:, None], want[:, None]) if g.ndim == 1 else (g, want)
        for j in range(cols[0].shape[1]):
            err = _norm(cols[0][:, j] - cols[1][:, j]) / max(_norm(cols[1][:, j]), 1e-300)
            col = f" (column {j})" if g.ndim == 2 else ""
            self.require(err <= rtol, lambda: f"{what}{col}: relative error {err:.2e} > "
                         f"rtol {rtol:.0e}")

    def charged(self, fn: Callable[[], Any]) -> tuple[Any, int, int]:
        """``fn()``, and the samples and HVP calls the meter charged for it."""
        s0, h0 = self.op.meter.snapshot()
        out = fn()
        s1, h1 = self.op.meter.snapshot()
        return out, s1 - s0, h1 - h0

    def raises(self, fn: Callable[[], Any], error: type[BaseException], what: str) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's "invalid value"
                fn()
        except error:
            return
        except Exception as err:
            raise _Failure(f"{what} raised {type(err).__name__} ({err}), expected "
                           f"{error.__name__}") from err
        raise _Failure(f"{what} raised nothing, expected {error.__name__}")


def _check(body: Callable[[_Context], None]) -> Callable[..., None]:
    """Turn ``body(ctx)`` into ``check_x(op, dense_hessian, *, nan_operator=None, rtol=None)``."""

    @functools.wraps(body)
    def check(op: HVPOperator, dense_hessian: DenseHessian, *,
              nan_operator: HVPOperator | None = None, rtol: float | None = None) -> None:
        _validate(op, dense_hessian, nan_operator)
        try:
            body(_Context(op, dense_hessian, nan_operator, rtol))
        except _Failure as failure:
            raise AssertionError(f"operator {_label(op)} failed {body.__name__}: "
                                 f"{failure}") from None
        except Exception as err:
            raise AssertionError(f"operator {_label(op)} failed {body.__name__}: unexpected "
                                 f"{type(err).__name__}: {err}") from err

    check.__signature__ = inspect.signature(  # type: ignore[attr-defined]
        check, follow_wrapped=False)
    return check


# -- the checks -------------------------------------------------------------------------------

@_check
def check_dense_agreement(c: _Context) -> None:
    """H v matches the dense reference for random and coordinate vectors; H is symmetric."""
    H = c.dense()
    products = []
    for i in range(3):
        v, v64 = c.vector()
        hv = c.op.matvec(v)
        c.close(hv, H @ v64, f"matvec of random vector {i} against the dense Hessian")
        products.append((v64, np.asarray(_to_numpy(hv), dtype=np.float64)))
    e = np.zeros(c.n)
    e[c.n // 2] = 1.0
    c.close(c.op.matvec(c.op.asarray(e)), H[:, c.n // 2],
            f"matvec of the coordinate vector e_{c.n // 2} (column {c.n // 2} of H)")
    (u, hu), (v, hv) = products[:2]
    a, b = float(u @ hv), float(v @ hu)
    scale = max(_norm(u) * _norm(hv), _norm(v) * _norm(hu), 1e-300)
    c.require(abs(a - b) <= 10 * c.rtol * scale, f"not symmetric: u^T (H v) = {a!r} but "
              f"v^T (H u) = {b!r}")


@_check
def check_minibatch_weighting(c: _Context) -> None:
    """H_S v is the mean over the samples of S; H v is the |b|/N-weighted sum over batches."""
    v, v64 = c.vector()
    cases = [("all samples in order", np.arange(c.N)), ("a random subset", c.subset),
             ("the same subset shuffled", c.rng.permutation(c.subset)),
             ("one sample", np.array([c.N - 1])), ("a subset with repeats", c.repeats)]
    batch = getattr(c.op, "batch_size", None)
    if isinstance(batch, Integral) and batch + 1 < c.N and batch + 1 != len(c.subset):
        cases.append((f"batch_size + 1 = {batch + 1} samples",
                      np.sort(c.rng.choice(c.N, size=batch + 1, replace=False))))
    for what, S in cases:
        c.close(c.op.matvec(v, indices=S), c.dense(S) @ v64,
                f"matvec with indices = {what} ({S.tolist()}) against the dense mean Hessian "
                "over those samples")
    if c.N >= 2:
        parts = np.split(c.rng.permutation(c.N), [len(c.subset) % (c.N - 1) or 1])
        total = sum((len(p) / c.N) * np.asarray(_to_numpy(c.op.matvec(v, indices=p)),
                                                dtype=np.float64) for p in parts)
        c.close(c.op.matvec(v), total,
                f"the full product against sum_b (|b|/N) H_b v over the uneven partition "
                f"of sizes {[len(p) for p in parts]}")


@_check
def check_matmat(c: _Context) -> None:
    """matmat equals stacked matvecs and the reference: full and mini-batch, k = 3 and k = 1."""
    H = c.dense()
    S = c.subset
    for k, idx in ((3, None), (3, S), (1, S)):
        V, V64 = c.block(k)
        what, ref = ("full", H) if idx is None else (f"indices {S.tolist()}", c.dense(S))
        out = c.op.matmat(V, indices=idx)
        c.require(tuple(out.shape) == (c.n, k), f"matmat ({what}) of a ({c.n}, {k}) block "
                  f"returned shape {tuple(out.shape)}")
        cols = np.stack([np.asarray(_to_numpy(c.op.matvec(V[:, j], indices=idx)),
                                    dtype=np.float64) for j in range(k)], axis=1)
        c.close(out, cols, f"matmat ({what}, k={k}) against the stacked matvecs")
        c.close(out, ref @ V64, f"matmat ({what}, k={k}) against the dense Hessian")


@_check
def check_repeatability(c: _Context) -> None:
    """The same product twice (another in between) agrees; inputs are left unchanged."""
    v, v64 = c.vector()
    w, _ = c.vector()
    S = c.subset
    for what, idx in (("full", None), (f"indices {S.tolist()}", S)):
        first = np.asarray(_to_numpy(c.op.matvec(v, indices=idx)), dtype=np.float64)
        c.op.matvec(w, indices=idx)
        again = c.op.matvec(v, indices=idx)
        c.close(again, first, f"matvec ({what}) of the same vector a second time")
    c.require(np.array_equal(np.asarray(_to_numpy(v), dtype=np.float64), v64),
              "matvec modified its input vector")
    V, V64 = c.block(3)
    c.op.matmat(V)
    c.require(np.array_equal(np.asarray(_to_numpy(V), dtype=np.float64), V64),
              "matmat modified its input block")


@_check
def check_cost_meter(c: _Context) -> None:
    """Each product charges N or |S| samples and one HVP call per vector."""
    meter = c.op.meter
    c.require(isinstance(meter, CostMeter), f"op.meter is {type(meter).__name__}, not CostMeter")
    c.require(meter.num_samples == c.N,
              f"meter.num_samples = {meter.num_samples} but op.num_samples = {c.N}")
    v, _ = c.vector()
    V, _ = c.block(3)
    S = c.subset
    m = len(S)
    repeats = c.repeats.tolist()
    cases = [("a full matvec", lambda: c.op.matvec(v), c.N, 1),
             (f"a matvec on {m} indices", lambda: c.op.matvec(v, indices=S), m, 1),
             (f"a matvec on the index list {repeats}", lambda: c.op.matvec(v, repeats), 4, 1),
             ("a full matmat of 3 vectors", lambda: c.op.matmat(V), 3 * c.N, 3),
             (f"a matmat of 3 vectors on {m} indices", lambda: c.op.matmat(V, S), 3 * m, 3),
             ("op @ v", lambda: c.op @ v, c.N, 1), ("op @ V (3 columns)", lambda: c.op @ V,
                                                    3 * c.N, 3)]
    for what, fn, samples, calls in cases:
        _, ds, dh = c.charged(fn)
        c.require((ds, dh) == (samples, calls), f"{what} charged {ds} samples and {dh} HVP "
                  f"calls, expected {samples} samples and {calls} calls")
    c.require(isinstance(meter.samples, Integral) and isinstance(meter.hvp_calls, Integral),
              f"meter counts are {type(meter.samples).__name__} and "
              f"{type(meter.hvp_calls).__name__}, expected ints")
    c.require(abs(meter.data_passes - meter.samples / c.N) <= 1e-12 * max(1, meter.data_passes),
              f"meter.data_passes = {meter.data_passes!r} but samples / N = "
              f"{meter.samples / c.N!r}")


@_check
def check_to_scipy(c: _Context) -> None:
    """to_scipy() is a SciPy LinearOperator that matches the reference and charges the meter."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    A = c.op.to_scipy()
    c.require(isinstance(A, LinearOperator), f"to_scipy() returned {type(A).__name__}")
    c.require(A.shape == (c.n, c.n), f"to_scipy().shape = {A.shape}, expected {(c.n, c.n)}")
    c.require(A.dtype == c.op.numpy_dtype,
              f"to_scipy().dtype = {A.dtype}, expected {c.op.numpy_dtype}")
    H = c.dense()
    x = c.rng.standard_normal(c.n)
    x64 = x.astype(c.op.numpy_dtype).astype(np.float64)
    X = c.rng.standard_normal((c.n, 3))
    X64 = X.astype(c.op.numpy_dtype).astype(np.float64)
    for what, fn, want, calls in (
            ("matvec", lambda: A.matvec(x), H @ x64, 1),
            ("matvec of an (n, 1) array", lambda: A.matvec(x[:, None]), (H @ x64)[:, None], 1),
            ("rmatvec", lambda: A.rmatvec(x), H @ x64, 1), ("A @ x", lambda: A @ x, H @ x64, 1),
            ("matmat of 3 vectors", lambda: A.matmat(X), H @ X64, 3)):
        out, ds, dh = c.charged(fn)
        c.require(isinstance(out, np.ndarray) and out.dtype == c.op.numpy_dtype, lambda: (
            f"to_scipy().{what} returned {type(out).__name__} of dtype "
            f"{getattr(out, 'dtype', '?')}, expected a NumPy {c.op.numpy_dtype} array"))
        c.close(out, want, f"to_scipy().{what} against the dense Hessian")
        c.require((ds, dh) == (calls * c.N, calls), f"to_scipy().{what} charged {ds} samples "
                  f"and {dh} HVP calls, expected {calls * c.N} and {calls}")
    S = c.subset
    out, ds, dh = c.charged(lambda: c.op.to_scipy(indices=S).matvec(x))
    c.close(out, c.dense(S) @ x64, f"to_scipy(indices={S.tolist()}).matvec against the dense "
            "Hessian over those samples")
    c.require((ds, dh) == (len(S), 1), f"to_scipy(indices=S).matvec charged {ds} samples and "
              f"{dh} calls, expected {len(S)} and 1")
    if c.n < 3:
        return
    counted = [0]

    def count(fn: Callable[[np.ndarray], np.ndarray], k: Callable[[np.ndarray], int]
              ) -> Callable[[np.ndarray], np.ndarray]:
        def wrapped(y: np.ndarray) -> np.ndarray:
            counted[0] += k(y)
            return fn(y)
        return wrapped

    seen = LinearOperator(A.shape, dtype=A.dtype, matvec=count(A.matvec, lambda y: 1),
                          matmat=count(A.matmat, lambda y: y.shape[1]))
    v0 = c.rng.standard_normal(c.n).astype(c.op.numpy_dtype)
    values, ds, dh = c.charged(lambda: eigsh(seen, k=1, which="LA", v0=v0, tol=c.rtol / 10,
                                             return_eigenvectors=False))
    c.require((ds, dh) == (counted[0] * c.N, counted[0]), f"eigsh made {counted[0]} products "
              f"through to_scipy() but the meter charged {dh} HVP calls and {ds} samples")
    lam, eigs = float(values[0]), np.linalg.eigvalsh(H)
    radius = max(float(np.max(np.abs(eigs))), 1e-300)
    c.require(abs(lam - eigs[-1]) <= 10 * c.rtol * radius, f"eigsh(to_scipy(), k=1, "
              f"which='LA') found {lam!r}, the dense Hessian's lambda_max is {eigs[-1]!r}")


@_check
def check_input_errors(c: _Context) -> None:
    """Bad shapes and indices raise ValueError / IndexError before charging anything."""
    n, op = c.n, c.op
    v, _ = c.vector()
    zeros = lambda *shape: op.asarray(np.zeros(shape))  # noqa: E731
    cases = [(f"matvec of a vector of length {n + 1}", lambda: op.matvec(zeros(n + 1)),
              ValueError),
             (f"matvec of a 2-D ({n}, 1) array", lambda: op.matvec(zeros(n, 1)), ValueError),
             (f"matvec of a 2-D (1, {n}) array", lambda: op.matvec(zeros(1, n)), ValueError),
             (f"matmat of a 1-D ({n},) vector", lambda: op.matmat(zeros(n)), ValueError),
             (f"matmat of a ({n + 1}, 2) block", lambda: op.matmat(zeros(n + 1, 2)), ValueError),
             (f"matvec with indices [{c.N}] (out of range)",
              lambda: op.matvec(v, indices=[c.N]), IndexError),
             ("matvec with indices [-1]", lambda: op.matvec(v, indices=[-1]), IndexError),
             ("matvec with empty indices", lambda: op.matvec(v, indices=[]), ValueError),
             ("matvec with 2-D indices [[0, 1]]", lambda: op.matvec(v, indices=[[0, 1]]),
              ValueError),
             ("matvec with float indices [0.5]", lambda: op.matvec(v, indices=[0.5]),
              ValueError),
             (f"to_scipy().matvec of a NumPy vector of length {n + 1}",
              lambda: op.to_scipy().matvec(np.zeros(n + 1)), ValueError)]
    if n > 1:
        cases.append((f"matvec of a vector of length {n - 1}", lambda: op.matvec(zeros(n - 1)),
                      ValueError))
    for what, fn, error in cases:
        _, ds, dh = c.charged(lambda: c.raises(fn, error, what))
        c.require((ds, dh) == (0, 0), f"{what} raised but charged {ds} samples and {dh} HVP "
                  "calls (validate before computing)")


@_check
def check_non_finite(c: _Context) -> None:
    """NaN/inf vectors and a NaN loss raise NonFiniteHVPError; the operator stays usable."""
    op, n = c.op, c.n
    bad = np.array(c.rng.standard_normal(n))
    bad[n // 2] = np.nan
    nan, nan_numpy = op.asarray(bad), bad.copy()
    bad[n // 2] = np.inf
    inf = op.asarray(bad)
    block = np.array(c.rng.standard_normal((n, 3)))
    block[0, 1] = np.nan
    S = c.subset
    cases = [("matvec of a vector with a NaN", lambda: op.matvec(nan)),
             ("matvec of a vector with an inf", lambda: op.matvec(inf)),
             ("a mini-batch matvec of a vector with a NaN", lambda: op.matvec(nan, indices=S)),
             ("matmat of a block with a NaN in one column", lambda: op.matmat(op.asarray(block))),
             ("to_scipy().matvec of a NumPy vector with a NaN",
              lambda: op.to_scipy().matvec(nan_numpy))]
    for what, fn in cases:
        c.raises(fn, NonFiniteHVPError, what)
    v, v64 = c.vector()
    c.close(op.matvec(v), c.dense() @ v64, "a finite matvec after the non-finite ones")
    if c.nan_operator is not None:
        nop = c.nan_operator
        w = nop.asarray(c.rng.standard_normal(nop.size))
        c.raises(lambda: nop.matvec(w, indices=c.subset), NonFiniteHVPError,
                 "a (mini-batch) matvec of the NaN-loss operator")


@_check
def check_dtypes(c: _Context) -> None:
    """Vectors and products are in the operator's array type, dtype and device."""
    from array_api_compat import device

    op = c.op
    v = op.asarray(c.rng.standard_normal(c.n))
    kind, where = type(v), device(v)

    def same(x: Any, what: str, shape: tuple[int, ...]) -> None:
        c.require(isinstance(x, kind), lambda: f"{what} is {type(x).__module__}."
                  f"{type(x).__name__}, expected {kind.__module__}.{kind.__name__} like "
                  "op.asarray's")
        c.require(numpy_dtype(x.dtype) == op.numpy_dtype,
                  lambda: f"{what} has dtype {x.dtype}, expected op.dtype = {op.dtype}")
        c.require(tuple(x.shape) == shape, lambda: f"{what} has shape {tuple(x.shape)}, "
                  f"expected {shape}")
        c.require(device(x) == where, lambda: f"{what} is on device {device(x)}, expected "
                  f"{where} like op.asarray's")

    same(v, "op.asarray(float64 NumPy vector)", (c.n,))
    same(op.random_vector(c.rng), "op.random_vector(rng)", (c.n,))
    same(op.matvec(v), "matvec's result", (c.n,))
    same(op.matvec(v, indices=c.subset), "a mini-batch matvec's result", (c.n,))
    same(op.matmat(op.asarray(c.rng.standard_normal((c.n, 3)))), "matmat's result", (c.n, 3))
    same(op @ v, "op @ v", (c.n,))


CHECKS: dict[str, Callable[..., None]] = {check.__name__: check for check in (
    check_dense_agreement, check_minibatch_weighting, check_matmat, check_repeatability,
    check_cost_meter, check_to_scipy, check_input_errors, check_non_finite, check_dtypes)}
"""Every check by name; each is called as ``check(op, dense_hessian, *, nan_operator=None,
rtol=None)``."""


def checks(op: HVPOperator, dense_hessian: DenseHessian, *,
           nan_operator: HVPOperator | None = None, rtol: float | None = None
           ) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yield ``(name, check)`` for every conformance check; ``check()`` runs it on ``op``
    against ``dense_hessian`` and raises AssertionError if it fails."""
    _validate(op, dense_hessian, nan_operator)
    for name, check in CHECKS.items():
        yield name, functools.partial(check, op, dense_hessian, nan_operator=nan_operator,
                                      rtol=rtol)


def check_operator(op: HVPOperator, dense_hessian: DenseHessian, *,
                   nan_operator: HVPOperator | None = None, rtol: float | None = None) -> None:
    """Run every conformance check on ``op`` against the float64 reference
    ``dense_hessian(indices=None)``; raise one AssertionError listing every failed check, or
    return None. See the module docstring for the arguments and what each check asserts."""
    failures = []
    for _, check in checks(op, dense_hessian, nan_operator=nan_operator, rtol=rtol):
        try:
            check()
        except AssertionError as err:
            failures.append(str(err))
    if failures:
        raise AssertionError(f"operator {_label(op)} failed {len(failures)} of {len(CHECKS)} "
                             "conformance checks:\n- " + "\n- ".join(failures))
