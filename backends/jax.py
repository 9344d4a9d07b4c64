"""JAX HVP operator: forward-over-reverse (``jax.jvp`` of ``jax.grad``), jit-compiled, or its
tangent part alone on gradients linearized once (``strategy``).

The contract (products, mini-batches, cost, errors) is :mod:`hessbench.backends.base`'s. The
signature is JAX's idiom: ``loss_fn(params, batch)`` is a pure function differentiated in its
first argument, as by ``jax.grad`` / ``jax.hessian``, and ``params`` is an explicit pytree; the
PyTorch operator takes a module and a criterion ``loss_fn(outputs, targets)`` instead.

H is the Hessian of the mean loss over all N samples, L(theta) = (1/N) sum_i loss_i(theta),
with respect to every leaf of the parameter pytree, as a linear operator on flat 1-D JAX arrays
(the leaves raveled in pytree order by ``jax.flatten_util.ravel_pytree``). The full product is
accumulated chunk by chunk as H v = sum_b (|b| / N) H_b v, where H_b is the Hessian of
``loss_fn`` (a batch mean) on chunk b, so an uneven last chunk is weighted exactly.

Compilation. The per-chunk product is one jitted function of the chunk's sample indices, so it
is compiled once per chunk *shape* and then reused from JAX's cache: a full-data product uses at
most two shapes (``batch_size`` and the uneven remainder N mod batch_size), a mini-batch product
of |S| samples is cut into chunks of ``batch_size`` too (shapes ``batch_size`` and
|S| mod batch_size), so a solver drawing batches of a fixed size compiles once more, and never
again. Padding the last chunk with zero-weight samples would need per-sample losses; a
user's ``loss_fn`` only promises the batch mean, so the operator caches shapes instead.
``op.trace_count`` counts the traces (one per compiled shape and block width, and for the
linearized strategy one per shape for the linearization and one per shape for the products).

Strategies. ``strategy="auto"`` (the default) times forward-over-reverse against
``"linearized"`` (each full-data chunk's gradient linearized once at theta, so a product runs
only the tangent pass; its residuals stay in memory, within ``max_linearized_bytes``) on the
first chunk at the first full-data product and keeps the faster that agrees; mini-batch
products and device meshes always use forward-over-reverse
(:mod:`hessbench.backends.jax_hvp`; ``op.product_setup()`` records the choice).

float64 and ``jax_enable_x64``. JAX computes in float32 unless x64 is enabled, and a float64
array produced inside a ``jax.enable_x64`` context is silently truncated to float32 by any
operation outside it, including the solver's own vector arithmetic. So a float64 operator needs
x64 enabled process-wide: asking for ``dtype=float64`` while it is off switches it on with
``jax.config.update("jax_enable_x64", True)`` and emits a ``UserWarning`` saying so (enable it
yourself at start-up to avoid the warning). Existing arrays keep their dtypes; what changes for
the rest of the process is the *default* dtype of new arrays (``jnp.array(1.0)`` is then float64,
``jnp.arange(3)`` int64). A float32 operator never touches the flag and stays float32 under it.

Determinism probe. With ``check_deterministic=True`` (the default) the constructor multiplies
one fixed random vector twice and raises
:class:`~hessbench.backends.base.NonDeterministicHVPError` if the products differ beyond
rounding (an impure ``loss_fn``, non-deterministic GPU reductions), as the PyTorch operator does
(:meth:`HVPOperator.probe_determinism`). It costs two full products, charged to ``op.meter``,
and compiles the full-data chunk shapes at construction instead of at the first product.

Many devices. With ``devices="all"`` (or K, or a list) the samples are sharded over a 1-D
device mesh and each product is summed across it by one ``psum``
(:mod:`hessbench.backends.jax_sharded`, ``op.mesh``); products come back on ``op.device``.

Matmul precision. Every product runs under ``jax.default_matmul_precision("highest")`` (scoped
to the operator's calls), so GPUs do not use TF32/bf16 passes for float32 products (their
~1e-3 relative error would swamp a small lambda_min).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from hessbench.backends.base import HVPOperator
from hessbench.backends.jax_hvp import DEFAULT_MAX_LINEARIZED_BYTES, Strategy, check_strategy

__all__ = ["HessianOperator", "resolve_device", "x64_enabled"]

Batch = tuple[Any, Any]


def x64_enabled() -> bool:
    """Whether JAX currently keeps 64-bit floats (globally or in an ``enable_x64`` context)."""
    return jax.dtypes.canonicalize_dtype(np.float64) == np.dtype(np.float64)


def _enable_x64() -> None:
    if x64_enabled():
        return
    jax.config.update("jax_enable_x64", True)
    warnings.warn(
        "hessbench.backends.jax: a float64 operator needs 64-bit JAX, so jax_enable_x64 has "
        "been switched ON for the whole process (jax.config.update('jax_enable_x64', True)). "
        "Existing arrays keep their dtypes, but new JAX arrays created without an explicit dtype are now 64-bit "
        "(jnp.array(1.0) is float64, jnp.arange(3) int64). Enable it yourself at start-up to "
        "silence this warning, or use dtype='float32'.",
        UserWarning, stacklevel=3)


def _host(a: Any) -> Any:
    """JAX and NumPy arrays as they are; a torch tensor (or anything else) as a NumPy array."""
    if isinstance(a, (jax.Array, np.ndarray)):
        return a
    if hasattr(a, "detach"):  # a torch tensor
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _dtype_of(a: Any) -> np.dtype:
    return np.dtype(_host(a).dtype)


def _resolve_dtype(dtype: Any, leaves: list[Any]) -> np.dtype:
    if dtype is None:
        # The parameters' dtype as JAX would store it: never switches x64 on by itself.
        dt = jax.dtypes.canonicalize_dtype(np.result_type(*[_dtype_of(a) for a in leaves]))
    else:
        name = str(dtype)
        if name.startswith("torch."):  # torch.float32 -> "float32"
            dtype = name[len("torch."):]
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def resolve_device(device: Any = None) -> jax.Device:
    """``None`` -> ``jax.devices()[0]``; a ``jax.Device``; or ``"cpu"``, ``"gpu"``, ``"cuda"``,
    ``"tpu"``, optionally with an index (``"cuda:1"``)."""
    if device is None:
        return jax.devices()[0]
    if isinstance(device, jax.Device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be None, a jax.Device or a string, not {type(device)}")
    kind, _, index = device.lower().partition(":")
    platform = {"cuda": "gpu", "rocm": "gpu"}.get(kind, kind)
    try:
        devices = jax.devices(platform)
    except RuntimeError as err:
        raise ValueError(f"no JAX device {device!r} ({err}); available: "
                         f"{', '.join(str(d) for d in jax.devices())}") from None
    i = int(index) if index else 0
    if not 0 <= i < len(devices):
        raise ValueError(f"no JAX device {device!r}: {len(devices)} {platform} device(s)")
    return devices[i]


class HessianOperator(HVPOperator):
    """Hessian of the mean of ``loss_fn`` over ``data`` w.r.t. ``params``, on flat JAX arrays.

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar``, the batch-mean loss, where
            ``batch = (inputs, targets)`` holds the batch's rows of ``data`` and ``params`` has
            the structure of ``params`` below. Pure and jit-able (it is traced, not run
            eagerly). It must be a mean of per-sample losses (no batch statistics: BatchNorm in
            inference form), or H is not the Hessian of the mean loss.
        params: any pytree of floating arrays (dict, nested tuples, ...) at which H is taken;
            the flat vector is ``jax.flatten_util.ravel_pytree(params)``'s order (an
            ``OrderedDict`` keeps insertion order, a plain dict sorts its keys).
        data: ``(inputs, targets)``: arrays (NumPy, JAX, or anything ``np.asarray`` takes), or
            pytrees of arrays, sharing the leading (sample) axis. Placed on ``device`` once;
            floating leaves are cast to ``dtype``, integer ones kept.
        batch_size: samples per chunk (one compiled shape; see module docstring).
        dtype: ``"float32"``/``"float64"`` or a NumPy/JAX float dtype; default: the
            parameters' dtype as JAX stores it. float64 needs x64: see module docstring.
        device: ``None`` (``jax.devices()[0]``), a ``jax.Device`` or ``"cpu"``/``"gpu"``/
            ``"cuda"``/``"tpu"`` (``"cuda:1"`` for the second GPU).
        check_deterministic: run the determinism probe (two full products) at construction.
        devices: ``None`` (one device), ``"all"``, a count K or a list of ``jax.Device``: shard
            the samples over these devices (of ``device``'s platform) and sum each product
            across them, :class:`hessbench.backends.jax_sharded.SampleMesh` (``op.mesh``).
        strategy: full-data products by ``"auto"`` (default: the faster of the two below that
            agrees, timed on the first chunk), ``"forward-over-reverse"`` or ``"linearized"``
            (:mod:`hessbench.backends.jax_hvp`).
        max_linearized_bytes: residual memory allowed to ``"linearized"`` (estimated from the
            first chunk; over it, ``auto`` does not try it and ``"linearized"`` raises).
    """

    def __init__(self, loss_fn: Callable[[Any, Batch], Any], params: Any, data: Batch, *,
                 batch_size: int = 256, dtype: Any = None, device: Any = None,
                 check_deterministic: bool = True, devices: Any = None, strategy: str = "auto",
                 max_linearized_bytes: int = DEFAULT_MAX_LINEARIZED_BYTES) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        check_strategy(strategy, max_linearized_bytes)
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable: loss_fn(params, (inputs, targets))")
        leaves = jax.tree.leaves(params)
        if not leaves:
            raise ValueError("params has no arrays")
        for a in leaves:
            if not jnp.issubdtype(_dtype_of(a), jnp.floating):
                raise ValueError(f"every parameter must be a floating array, got dtype "
                                 f"{_dtype_of(a)}")
        self.dtype = _resolve_dtype(dtype, leaves)
        if self.dtype == np.float64:
            _enable_x64()
        self.device = resolve_device(device)
        if devices is not None:
            from hessbench.backends.jax_sharded import local_device, resolve_devices

            devices = resolve_devices(devices, self.device.platform)
            self.device = local_device(devices)  # where products come back
        self.loss_fn = loss_fn
        self.batch_size = batch_size

        self.params = jax.tree.map(self._put, params)
        self.theta, self._unravel = ravel_pytree(self.params)

        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise TypeError("data must be a pair (inputs, targets) of arrays (or of pytrees "
                            "of arrays sharing the leading sample axis)")
        inputs, targets = (jax.tree.map(self._cast, part) for part in data)
        lengths = {leaf.shape[0] if leaf.ndim else None
                   for leaf in jax.tree.leaves((inputs, targets))}
        if None in lengths or not lengths:
            raise ValueError("inputs and targets must be arrays with a leading sample axis")
        if len(lengths) != 1:
            n_in = {x.shape[0] for x in jax.tree.leaves(inputs)}
            n_t = {x.shape[0] for x in jax.tree.leaves(targets)}
            raise ValueError(f"inputs and targets differ in length: {sorted(n_in)} vs "
                             f"{sorted(n_t)}")
        super().__init__(self.theta.size, lengths.pop())
        self.trace_count = 0
        self.mesh: Any = None
        if devices is not None:
            self._shard(devices, inputs, targets)
        else:
            self._data = (jax.tree.map(lambda a: jax.device_put(a, self.device),
                                       (inputs, targets)))
            self._chunk = min(batch_size, self.num_samples)
            self._full_chunks = self._chunks(np.arange(self.num_samples))
            self._step = jax.jit(self._step_fn)
            self._block_step = jax.jit(self._block_step_fn)
        self._strategy = Strategy(strategy, max_linearized_bytes, loss_fn, self._unravel,
                                  on_trace=self._traced, sharded=self.mesh is not None)
        self._last: Any = None
        self._check_loss(1 if self.mesh else self._chunk)  # the mesh takes batches of one
        if check_deterministic:
            self.probe_determinism()

    # -- conversions ----------------------------------------------------------------------------
    def _cast(self, a: Any) -> Any:
        """A leaf as a NumPy or JAX array: floating -> the operator's dtype, integer/bool kept."""
        a = _host(a)
        dt = _dtype_of(a)
        if jnp.issubdtype(dt, jnp.floating):
            dt = self.dtype
        else:
            dt = jax.dtypes.canonicalize_dtype(dt)
        return a.astype(dt) if isinstance(a, jax.Array) else np.asarray(a, dtype=dt)

    def _put(self, a: Any) -> jax.Array:
        """A leaf on the device, cast as by :meth:`_cast`."""
        return jax.device_put(self._cast(a), self.device)

    def _shard(self, devices: list[jax.Device], inputs: Any, targets: Any) -> None:
        """Spread the samples over ``devices`` (:mod:`hessbench.backends.jax_sharded`)."""
        from hessbench.backends.jax_sharded import SampleMesh

        self.mesh = SampleMesh(devices, loss_fn=self.loss_fn, unravel=self._unravel,
                               num_samples=self.num_samples, batch_size=self.batch_size,
                               dtype=self.dtype, on_trace=self._traced)
        self._data = self.mesh.place((inputs, targets))
        self._theta_mesh = self.mesh.replicate(self.theta)
        self._step, self._block_step = self.mesh.step, self.mesh.block_step

    def _traced(self) -> None:
        self.trace_count += 1  # called while tracing: once per compiled shape, not per call

    def _indices(self, idx: np.ndarray) -> jax.Array:
        return jax.device_put(np.asarray(idx, dtype=np.int32), self.device)

    def asarray(self, x: np.ndarray) -> jax.Array:
        return jax.device_put(np.asarray(x, dtype=self.dtype), self.device)

    def _vector(self, v: Any) -> jax.Array:
        if not isinstance(v, jax.Array):
            return self.asarray(np.asarray(v))
        if v.dtype != self.dtype:
            v = v.astype(self.dtype)
        return jax.device_put(v, self.device)

    def unflatten(self, flat: Any) -> Any:
        """A flat vector as a pytree shaped like ``params``."""
        return self._unravel(self._vector(flat))

    def _on_accelerator(self) -> bool:
        return self.device.platform != "cpu"

    def _nondeterminism_causes(self) -> list[str]:
        return [
            "a loss_fn that is not a pure function of (params, batch) (it reads changing "
            "global state, a host callback or a random key drawn outside): make it pure",
        ] + ([
            "non-deterministic GPU reductions: set XLA_FLAGS=--xla_gpu_deterministic_ops=true "
            "before importing JAX, or compute in float64",
        ] if self._on_accelerator() else [])

    def describe_device(self) -> str:
        if self.mesh is not None:
            return self.mesh.describe_device()
        d = self.device
        return f"{d.platform}:{d.id} ({d.device_kind}, jax {jax.__version__})"

    # -- scale-out: the mesh's, when the samples are sharded -------------------------------------
    def process_count(self) -> int:
        return 1 if self.mesh is None else self.mesh.process_count()

    def device_count(self) -> int:
        return 1 if self.mesh is None else self.mesh.device_count()

    @property
    def is_main_process(self) -> bool:
        return self.mesh is None or self.mesh.is_main_process

    def decide(self, flag: bool) -> bool:
        return flag if self.mesh is None else self.mesh.decide(flag)

    # -- the HVP -------------------------------------------------------------------------------
    def _hvp(self, theta: jax.Array, v: jax.Array, data: Batch, idx: jax.Array) -> jax.Array:
        batch = jax.tree.map(lambda a: a[idx], data)
        grad = jax.grad(lambda t: self.loss_fn(self._unravel(t), batch))
        return jax.jvp(grad, (theta,), (v,))[1]

    def _step_fn(self, acc, weight, theta, v, data, idx):
        self._traced()
        return acc + weight * self._hvp(theta, v, data, idx)

    def _block_step_fn(self, acc, weight, theta, V, data, idx):
        self._traced()
        hvps = jax.vmap(lambda t: self._hvp(theta, t, data, idx), in_axes=1, out_axes=1)(V)
        return acc + weight * hvps

    def _chunks(self, indices: np.ndarray | None) -> list[tuple[jax.Array, float]]:
        if indices is None:
            return self._full_chunks
        B, total = self.batch_size, len(indices)
        return [(self._indices(indices[s:s + B]), len(indices[s:s + B]) / total)
                for s in range(0, total, B)]

    def _check_precision(self) -> None:
        if self.dtype == np.float64 and not x64_enabled():
            raise RuntimeError("this is a float64 operator, but jax_enable_x64 has been "
                               "switched off since it was built; JAX would truncate to float32")

    def _accumulate(self, step: Callable, x: jax.Array, indices: np.ndarray | None) -> jax.Array:
        self._check_precision()
        with jax.default_matmul_precision("highest"):
            if self.mesh is not None:
                out = self.mesh.accumulate(step, self._theta_mesh, x, self._data, indices)
            else:
                full = indices is None
                if full:
                    self._strategy.settle(self._step, self.theta, self._data,
                                          self._full_chunks, self.num_samples)
                if full and self._strategy.chosen == "linearized":
                    out = self._strategy.product(x, self.theta, self._data, self._full_chunks)
                else:
                    out = jnp.zeros(x.shape, dtype=self.dtype, device=self.device)
                    for idx, weight in self._chunks(indices):
                        out = step(out, weight, self.theta, x, self._data, idx)
        self._last = out
        return out

    def _matvec(self, v: Any, indices: np.ndarray | None) -> jax.Array:
        return self._accumulate(self._step, self._vector(v), indices)

    def _matmat(self, V: Any, indices: np.ndarray | None) -> jax.Array:
        return self._accumulate(self._block_step, self._vector(V), indices)

    def _check_loss(self, rows: int) -> None:
        """``loss_fn`` traces on a batch of ``rows`` samples and returns a floating scalar."""
        batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct((rows, *a.shape[1:]), a.dtype),
                             self._data)
        try:
            loss = jax.eval_shape(self.loss_fn, self.params, batch)
        except Exception as err:
            raise ValueError(f"loss_fn(params, (inputs, targets)) failed on a batch of "
                             f"{rows} samples: {type(err).__name__}: {err}") from err
        shape = getattr(loss, "shape", None)
        if shape != () or not jnp.issubdtype(loss.dtype, jnp.floating):
            got = (f"shape {shape}, dtype {loss.dtype}" if shape is not None
                   else type(loss).__name__)
            raise ValueError(f"loss_fn must return a scalar floating array (the batch-mean "
                             f"loss), got {got}; take the mean over the batch")

    def product_setup(self) -> dict[str, Any]:
        """The strategy asked and chosen for full-data products, the candidates timed, and the
        linearized residuals' bytes (JSON values)."""
        return self._strategy.setup()

    def synchronize(self) -> None:
        if self._last is not None:
            self._last.block_until_ready()
