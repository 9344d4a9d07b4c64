"""The samples of a JAX HVP operator sharded over a 1-D device mesh, products summed.

``hessbench.backends.jax.HessianOperator(loss_fn, params, data, devices="all" | K | [...])``
keeps a :class:`SampleMesh` (``op.mesh``) and computes the same Hessian of the mean loss over
all N samples (:mod:`hessbench.backends.base`) as

    H v = sum_d sum_{i on device d} w_i H_i v,     w_i = 1/N (full data) or 1/|S| (mini-batch),

each device's part accumulated over its chunks inside ``jax.shard_map`` over a
``jax.sharding.Mesh`` with one axis (:data:`AXIS`), then the D parts summed by one
``jax.lax.psum`` (one all-reduce of n numbers per product, n per column for blocks); vectors
are replicated.

Layout. Device d of D holds the contiguous rows [d L, (d+1) L) with L = ceil(N / D), so global
sample i sits on device i // L at local row i % L; the last rows of the layout (D L - N of
them) are padding. Padding rows are copies of sample 0 with weight 0, so N need not divide by
D and no sample is ever counted twice. A user's ``loss_fn`` only promises a batch mean, so
weighted per-sample losses are computed as ``loss_fn`` on batches of one, vectorised with
``jax.vmap``: sum_i w_i loss_fn(params, (x_i[None], y_i[None])).

Chunks and compilation. Each device works through its rows in chunks of B' = ceil(L / C)
samples, C = ceil(L / batch_size), one jitted call per chunk with arrays of shape (D, B') of
local row indices and weights. A mini-batch S is split by owner and each device's list is
padded (weight 0) to a multiple of B'. So every product, full or mini-batch, uses the one
compiled shape B' (per block width k of ``matmat``).

Many hosts. On a multi-host platform call ``jax.distributed.initialize()`` in every process
first, pass every process the same full ``data`` and ``params`` and ``devices="all"`` (the
global device list): each process places only its own devices' rows
(``jax.make_array_from_callback``), products come back on the process's first device, every
process runs the same solver, and :meth:`SampleMesh.decide` takes process 0's decision.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["AXIS", "SampleMesh", "local_device", "resolve_devices"]

Batch = tuple[Any, Any]

#: the name of the mesh's one axis, along which the samples are sharded
AXIS = "samples"


def resolve_devices(devices: Any, platform: str) -> list[jax.Device]:
    """``"all"`` -> every device of ``platform``; a count K -> the first K of them; a list of
    distinct ``jax.Device`` of one platform as given. Raises ``ValueError`` naming what is
    available."""
    have = jax.devices(platform)
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be 'all', a count or a list of jax.Device, got "
                             f"{devices!r}")
        return list(have)
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(have):
            raise ValueError(f"devices={devices}, but JAX has {len(have)} {platform} device(s) "
                             "(on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=K "
                             "set before importing JAX makes K)")
        return list(have[:devices])
    chosen = list(devices)
    if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
        raise ValueError("devices must be 'all', a count or a non-empty list of jax.Device")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"devices lists a device twice: {chosen}")
    if len({d.platform for d in chosen}) != 1:
        raise ValueError(f"devices mixes platforms: {chosen}")
    return chosen


def local_device(devices: list[jax.Device]) -> jax.Device:
    """This process's first device among ``devices``."""
    local = [d for d in devices if d.process_index == jax.process_index()]
    if not local:
        raise ValueError(f"none of devices {devices} belongs to this process")
    return local[0]


class SampleMesh:
    """The samples sharded over ``devices`` and the products on them (module docstring).

    Args:
        devices: the mesh's devices (:func:`resolve_devices`).
        loss_fn, unravel: the operator's batch-mean ``loss_fn(params, batch)`` and the map
            from the flat parameter vector to the ``params`` pytree.
        num_samples, batch_size, dtype: N, the chunk size bound and the float dtype.
        on_trace: called once per trace of a product function (the operator counts them).
    """

    def __init__(self, devices: list[jax.Device], *, loss_fn: Any, unravel: Any,
                 num_samples: int, batch_size: int, dtype: Any,
                 on_trace: Any = lambda: None) -> None:
        self.devices = devices
        self.mesh = Mesh(np.array(devices), (AXIS,))
        self.device = local_device(devices)  # where products come back
        self.loss_fn, self.unravel, self.dtype = loss_fn, unravel, dtype
        self.num_samples, self.batch_size = num_samples, batch_size
        self._on_trace = on_trace
        self._replicated = NamedSharding(self.mesh, PartitionSpec())
        self._sharded = NamedSharding(self.mesh, PartitionSpec(AXIS))
        self._zero_fns: dict[tuple[int, ...], Any] = {}
        self.step = jax.jit(self._step_fn)
        self.block_step = jax.jit(self._block_step_fn)
        self._reduce = jax.jit(self._reduce_fn)
        self._full = self.chunks(np.arange(num_samples))

    # -- layout --------------------------------------------------------------------------------
    @property
    def rows_per_device(self) -> int:
        """L = ceil(N / D): rows each device holds, padding included."""
        return math.ceil(self.num_samples / len(self.devices))

    @property
    def chunk_width(self) -> int:
        """B': samples per device per compiled call."""
        rows = self.rows_per_device
        return math.ceil(rows / math.ceil(rows / self.batch_size))

    def place(self, data: Batch) -> Batch:
        """Each leaf's N rows padded to D L and sharded along the mesh."""
        rows = self.rows_per_device * len(self.devices)

        def place(a: Any) -> jax.Array:
            host = np.asarray(a)
            layout = np.arange(rows)
            padded = host[np.where(layout < len(host), layout, 0)]  # padding: sample 0's copies
            return self._put_sharded(padded)
        return jax.tree.map(place, data)

    def replicate(self, x: jax.Array) -> jax.Array:
        return jax.device_put(x, self._replicated)

    def chunks(self, indices: np.ndarray | None) -> list[tuple[jax.Array, jax.Array]]:
        """(local rows, weights) arrays of shape (D, B') sharded over the mesh, one pair per
        compiled call, for the full data (``indices=None``) or the samples ``indices``."""
        if indices is None:
            return self._full
        D, L, width = len(self.devices), self.rows_per_device, self.chunk_width
        owner, row = np.divmod(np.asarray(indices, dtype=np.int64), L)
        per_device = [row[owner == d] for d in range(D)]
        calls = max(1, math.ceil(max(len(r) for r in per_device) / width))
        rows = np.zeros((D, calls * width), dtype=np.int32)
        weights = np.zeros((D, calls * width), dtype=self.dtype)
        for d, r in enumerate(per_device):
            rows[d, :len(r)] = r
            weights[d, :len(r)] = 1.0 / len(indices)
        put = self._put_sharded
        return [(put(rows[:, c * width:(c + 1) * width]),
                 put(weights[:, c * width:(c + 1) * width])) for c in range(calls)]

    def _put_sharded(self, a: np.ndarray) -> jax.Array:
        return jax.make_array_from_callback(a.shape, self._sharded, lambda index: a[index])

    # -- the HVP -------------------------------------------------------------------------------
    def _local_hvp(self, theta: jax.Array, v: jax.Array, data: Batch, rows: jax.Array,
                   weights: jax.Array) -> jax.Array:
        """sum_j weights[j] H_{rows[j]} v over this device's rows (shapes (1, B'))."""
        batch = jax.tree.map(lambda a: a[rows[0]], data)

        def loss(t: jax.Array) -> jax.Array:
            p = self.unravel(t)
            per_sample = jax.vmap(
                lambda one: self.loss_fn(p, jax.tree.map(lambda a: a[None], one)))(batch)
            return jnp.sum(weights[0] * per_sample)
        return jax.jvp(jax.grad(loss), (theta,), (v,))[1]
    def _partial(self, local: Any, acc, theta, x, data, rows, weights):
        """acc[d] + device d's part of one chunk's product; acc has shape (D, *x.shape)."""
        # check_vma=False: with JAX's varying-axes tracking, the gradient w.r.t. the replicated
        # theta would come back already summed over the mesh (one all-reduce per chunk); the
        # parts are summed once per product instead, by _reduce
        spec, rep = PartitionSpec(AXIS), PartitionSpec()
        part = jax.shard_map(lambda a, t, u, d, r, w: a + local(t, u, d, r, w)[None],
                             mesh=self.mesh, in_specs=(spec, rep, rep, spec, spec, spec),
                             out_specs=spec, check_vma=False)
        return part(acc, theta, x, data, rows, weights)

    def _step_fn(self, acc, theta, v, data, rows, weights):
        self._on_trace()  # runs once per trace, not per call
        return self._partial(self._local_hvp, acc, theta, v, data, rows, weights)

    def _block_step_fn(self, acc, theta, V, data, rows, weights):
        self._on_trace()

        def block(t, U, d, r, w):
            return jax.vmap(lambda u: self._local_hvp(t, u, d, r, w), in_axes=1,
                            out_axes=1)(U)
        return self._partial(block, acc, theta, V, data, rows, weights)

    def _reduce_fn(self, acc: jax.Array) -> jax.Array:
        """sum_d acc[d], replicated: the one all-reduce (psum) of a product."""
        return jax.shard_map(lambda a: jax.lax.psum(a[0], AXIS), mesh=self.mesh,
                             in_specs=PartitionSpec(AXIS), out_specs=PartitionSpec(),
                             check_vma=False)(acc)

    def _zeros(self, shape: tuple[int, ...]) -> jax.Array:
        """Zeros of shape (D, *shape), one row per device, made on the devices."""
        if shape not in self._zero_fns:
            self._zero_fns[shape] = jax.jit(
                lambda: jnp.zeros((len(self.devices), *shape), dtype=self.dtype),
                out_shardings=self._sharded)
        return self._zero_fns[shape]()

    def accumulate(self, step: Any, theta: jax.Array, x: jax.Array, data: Batch,
                   indices: np.ndarray | None) -> jax.Array:
        """The product of ``step`` (:attr:`step` or :attr:`block_step`) with replicated
        ``theta`` and ``x``, on :attr:`device`."""
        x = self.replicate(x)
        acc = self._zeros(tuple(x.shape))
        for rows, weights in self.chunks(indices):
            acc = step(acc, theta, x, data, rows, weights)
        out = self._reduce(acc)
        return next(s.data for s in out.addressable_shards if s.device == self.device)

    # -- scale-out -----------------------------------------------------------------------------
    def device_count(self) -> int:
        return len(self.devices)

    def process_count(self) -> int:
        return len({d.process_index for d in self.devices})

    @property
    def is_main_process(self) -> bool:
        return jax.process_index() == min(d.process_index for d in self.devices)

    def decide(self, flag: bool) -> bool:
        if self.process_count() == 1:
            return flag
        from jax.experimental import multihost_utils

        return bool(multihost_utils.broadcast_one_to_all(np.array(flag)))

    def describe_device(self) -> str:
        d = self.devices[0]
        hosts = self.process_count()
        where = f" on {hosts} processes" if hosts > 1 else ""
        return (f"{d.platform} x {len(self.devices)} devices{where} ({d.device_kind}, "
                f"jax {jax.__version__})")
