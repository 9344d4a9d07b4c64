"""PyTorch HVP operator: products by the fastest strategy that agrees with forward-over-reverse.

H is the Hessian, with respect to the chosen parameters, of the mean loss over the N samples
one pass over the data yields: L(theta) = (1/N) sum_i loss_i(theta). The full product is
accumulated batch by batch as H v = sum_b (|b| / N) H_b v, where H_b is the Hessian of
``loss_fn`` (a batch mean) on batch b, so an uneven last batch is weighted correctly.

Loaders. With a ``DataLoader`` (or any re-iterable of batches) N and every product cover exactly
the samples a pass yields, and every pass must yield the same multiset of samples; the rules
(which samplers have a fixed sample set, what ``drop_last`` does with and without shuffling,
``DistributedSampler`` padding) are in :mod:`hessbench.backends.loaders`, and a loader that
breaks them is refused with :class:`~hessbench.backends.loaders.UnsupportedLoaderError`
naming the option. Each full product re-counts the samples and raises the same error if a pass
yielded a different number. Mini-batch index j is the loader's j-th sample (``dataset[ids[j]]``
for the sampler's index list ``ids``), collated by the loader's ``collate_fn``.

Many processes. With ``process_group=`` each rank of a ``torch.distributed`` group passes its
own shard of the data (tensors or a loader, uneven sizes allowed) and H is the Hessian of the
mean loss over all ranks' samples: each rank accumulates sum_b (|b| / N) H_b v over its batches
(N the global sample count) and the products are all-reduced (gloo on CPUs, NCCL on GPUs). The
construction checks that the ranks agree (no empty shard, same parameters, dtype and values);
the rules are in :mod:`hessbench.backends.torch_distributed`.

Determinism probe. With ``check_deterministic=True`` (the default) the constructor multiplies
one fixed random vector twice and raises
:class:`~hessbench.backends.base.NonDeterministicHVPError` if the products differ beyond
rounding (random augmentation, dropout in train mode, a loader whose passes differ,
non-deterministic GPU kernels): :meth:`HVPOperator.probe_determinism`. It costs two full
products, charged to ``op.meter``.

The model runs in eval mode by default (BatchNorm uses its running statistics, dropout is off):
in train mode the loss is not a sum over samples and its "Hessian" depends on how the data are
split into batches. ``eval_mode=False`` is refused for models with BatchNorm (which would then
normalise with batch statistics) or other layers that update running statistics, and a
BatchNorm without running statistics (``track_running_stats=False``) is refused in either mode;
dropout in train mode is caught by the probe. The user's module is not modified: parameters and
buffers are passed to ``torch.func.functional_call`` as copies in the requested dtype and
device, and the module's train/eval flags are restored after every product. On CUDA, TF32
matmuls and convolutions are switched off process-wide (TF32 error ~1e-3 |H| would swamp a
small lambda_min).

Strategies. How one chunk's product is computed (forward-over-reverse through ``torch.func``,
reverse-over-reverse, ``torch.compile``d forward-over-reverse, vmapped or batched blocks) is
chosen by timing on the first product (``strategy="auto"``) or fixed by ``strategy=``; compiled
products are checked against eager ones: :mod:`hessbench.backends.torch_hvp`.
``op.product_setup()`` records the choice.

The contract (products, mini-batches, cost, errors) is :mod:`hessbench.backends.base`'s. The
signature is PyTorch's idiom: a stateful module and a criterion ``loss_fn(outputs, targets)``
like ``torch.nn`` losses (and curvlinops' ``HessianLinearOperator``); the JAX operator takes a
pure ``loss_fn(params, batch)`` instead, JAX's idiom.
"""

from __future__ import annotations

import contextlib
import copy
import platform
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from hessbench.backends.base import HVPOperator
from hessbench.backends.loaders import (LoaderSamples, UnsupportedLoaderError, batch_length,
                                        loader_samples)
from hessbench.backends.torch_checks import check_normalisation, select_params
from hessbench.backends.torch_distributed import Shard, check_process_group, fingerprint, join
from hessbench.backends.torch_hvp import (Strategies, check_precision, check_strategy,
                                          precision_context)
from hessbench.errors import InputError

Batch = tuple[Any, Any]

__all__ = ["HessianOperator", "SINGLE_PROCESS"]

SINGLE_PROCESS: Any = type("SingleProcess", (), {"__repr__": lambda self: "SINGLE_PROCESS"})()
"""Default of ``process_group``: this process alone holds all the data."""


class HessianOperator(HVPOperator):
    """Hessian of the mean loss of ``model`` over ``data`` as a linear operator on flat tensors.

    Args:
        model: a ``torch.nn.Module``; ``model(inputs)`` gives the outputs.
        loss_fn: ``loss_fn(outputs, targets)`` returning the scalar batch-mean loss.
        data: a pair of tensors ``(inputs, targets)`` (moved to ``device`` and cast to ``dtype``
            once; random access makes mini-batches cheap), or a ``DataLoader`` of
            ``(inputs, targets)`` batches whose passes yield one fixed set of samples (see the
            module docstring; mini-batch products read ``dataset[i]``), or any other
            re-iterable of batches (N is counted; no mini-batch products).
        batch_size: samples per chunk of a full-data product (tensor data only).
        device, dtype: where and in which floating dtype to compute (default: the parameters').
        params: which parameters define H: ``None`` (all with ``requires_grad``), or names or
            ``Parameter`` objects of ``model``; the others are held fixed.
        eval_mode: run the model in eval mode (default True; see the module docstring).
        check_deterministic: run the determinism probe (two full products) at construction.
        process_group: a ``torch.distributed`` process group (e.g.
            ``torch.distributed.group.WORLD``) whose ranks each pass their own shard of the
            data: H is then the Hessian of the mean loss over all ranks' samples, every product
            is all-reduced, and the ranks' models must be equal (checked).
            See :mod:`hessbench.backends.torch_distributed`.
        strategy: how products are computed: ``"auto"`` (default: the fastest that agrees
            with the reference, timed on the first product), ``"forward-over-reverse"``,
            ``"reverse-over-reverse"`` or ``"compiled"``; see
            :mod:`hessbench.backends.torch_hvp`. ``compile_min_seconds``: ``auto`` tries
            ``torch.compile`` only when an eager full product takes at least this long.
        block_chunk: vectors per vmapped/batched call in ``matmat`` (None: the whole block;
            smaller bounds the memory of wide blocks).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[Any, Any], torch.Tensor],
        data: Batch | Iterable[Batch],
        *,
        batch_size: int = 256,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        params: Sequence[str] | Sequence[torch.nn.Parameter] | None = None,
        eval_mode: bool = True,
        check_deterministic: bool = True,
        process_group: Any = SINGLE_PROCESS,
        strategy: str = "auto",
        compile_min_seconds: float = 1.0,
        block_chunk: int | None = None,
    ) -> None:
        check_strategy(strategy)
        if block_chunk is not None and block_chunk < 1:
            raise ValueError(f"block_chunk must be a positive number of vectors or None, "
                             f"got {block_chunk}")
        self._shard: Shard | None = None
        if process_group is SINGLE_PROCESS:
            self._build(model, loss_fn, data, batch_size, device, dtype, params, eval_mode)
            num_samples = self._local_samples
        else:
            group = check_process_group(process_group)
            error = None
            try:
                self._build(model, loss_fn, data, batch_size, device, dtype, params, eval_mode)
            except Exception as err:  # noqa: BLE001 - told to every rank by join, then raised
                error = err
            info = {} if error else {
                "samples": self._local_samples, "parameters": self.theta.numel(),
                "dtype": str(self.dtype), "names": self.param_names,
                "fingerprint": fingerprint([self.theta, *self._fixed.values()])}
            self._shard = join(group, info, error)
            num_samples = self._shard.total
        super().__init__(self.theta.numel(), num_samples)
        self._precision: str | None = None  # reduced_precision() sets "bf16" or "tf32"
        self._strategies = Strategies(self._loss, self.theta, strategy,
                                      compile_min_seconds=compile_min_seconds,
                                      block_chunk=block_chunk, synchronize=self.synchronize)
        if self._local_samples:
            self._check_loss(next(self._batches(None)))
        if check_deterministic:
            self.probe_determinism()

    def _build(self, model: torch.nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor],
               data: Batch | Iterable[Batch], batch_size: int,
               device: str | torch.device | None, dtype: torch.dtype | None, params: Any,
               eval_mode: bool) -> None:
        """This process's part: parameters, fixed state and data (``_local_samples``)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        first = next(iter(model.parameters()), None)
        if first is None:
            raise ValueError("the model has no parameters")
        self.device = torch.device(device) if device is not None else first.device
        self.dtype = dtype if dtype is not None else first.dtype
        if not self.dtype.is_floating_point:
            raise ValueError(f"dtype must be floating point, got {self.dtype}")
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.model, self.loss_fn, self.eval_mode = model, loss_fn, eval_mode
        check_normalisation(model, eval_mode)
        self.batch_size = batch_size

        self.param_names = select_params(model, params)
        named = dict(model.named_parameters())
        cast = lambda t: t.detach().to(device=self.device, dtype=self.dtype)  # noqa: E731
        self._shapes = [named[k].shape for k in self.param_names]
        self._numels = [named[k].numel() for k in self.param_names]
        self.theta = torch.cat([cast(named[k]).reshape(-1) for k in self.param_names])
        self._fixed = {k: cast(p) for k, p in named.items() if k not in set(self.param_names)}
        self._fixed.update(
            {k: (cast(b) if b.is_floating_point() else b.to(self.device))
             for k, b in model.named_buffers()}
        )

        self._tensors: Batch | None = None
        self._samples: LoaderSamples | None = None
        if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
            inputs, targets = data
            if len(inputs) != len(targets):
                raise ValueError(
                    f"inputs and targets differ in length: {len(inputs)} vs {len(targets)}"
                )
            self._tensors = self._to_device((inputs, targets))  # moved and cast once
            self._local_samples = len(inputs)
        else:
            self._loader = data
            self._samples = loader_samples(data)
            self._local_samples = self._samples.num_samples

    # -- parameters -----------------------------------------------------------------------------
    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat vector into named parameter tensors."""
        parts = torch.split(flat, self._numels)
        return {k: t.view(s) for k, t, s in zip(self.param_names, parts, self._shapes)}

    # -- data -------------------------------------------------------------------------------------
    def _to_device(self, x: Any) -> Any:
        if torch.is_tensor(x):
            x = x.to(self.device, non_blocking=True)
            return x.to(self.dtype) if x.is_floating_point() else x
        if isinstance(x, (tuple, list)):
            return type(x)(self._to_device(t) for t in x)
        if isinstance(x, dict):
            return {k: self._to_device(t) for k, t in x.items()}
        return x

    def _batches(self, indices: np.ndarray | None) -> Iterator[tuple[Batch, int]]:
        """Yield ((inputs, targets), batch size) on the operator's device and dtype: this
        process's samples, or those of its local ``indices``."""
        if self._tensors is not None:
            inputs, targets = self._tensors
            idx = np.arange(self._local_samples) if indices is None else indices
            for start in range(0, len(idx), self.batch_size):
                sel = torch.as_tensor(idx[start:start + self.batch_size], device=self.device)
                yield (inputs[sel], targets[sel]), len(sel)
        elif indices is None:
            count = 0
            for inputs, targets in self._loader:
                size = batch_length(targets)
                count += size
                yield self._to_device((inputs, targets)), size
            if count != self._local_samples:
                raise UnsupportedLoaderError(
                    f"{self._samples.description} yielded {count} samples in this pass but "
                    f"{self._local_samples} when the operator was built: its passes do not yield "
                    "one fixed set of samples, so products would mix different Hessians; use a "
                    "fixed sampler with drop_last=False, or pass the samples as tensors")
        else:
            samples = self._samples
            if samples.sample_ids is None:
                raise InputError(
                    f"mini-batch products need random access to samples, which "
                    f"{samples.description} does not give; pass data as a pair of tensors, or "
                    "a DataLoader over a map-style dataset (dataset[i] -> (input, target))")
            ids = samples.sample_ids[indices]
            for start in range(0, len(ids), self.batch_size):
                chunk = ids[start:start + self.batch_size]
                inputs, targets = samples.collate_fn([samples.dataset[int(i)] for i in chunk])
                yield self._to_device((inputs, targets)), len(chunk)

    # -- the HVP ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _mode(self) -> Iterator[None]:
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.train(not self.eval_mode)
        try:
            yield
        finally:
            for m, training in modes:
                m.training = training

    def _loss(self, flat: torch.Tensor, inputs: Any, targets: Any) -> torch.Tensor:
        state = {**self._fixed, **self.unflatten(flat)}
        return self.loss_fn(functional_call(self.model, state, (inputs,)), targets)

    def _check_loss(self, batch: tuple[Batch, int]) -> None:
        (inputs, targets), _ = batch
        with self._mode(), torch.no_grad():
            loss = self._loss(self.theta, inputs, targets)
        if not torch.is_tensor(loss) or loss.ndim != 0:
            shape = tuple(loss.shape) if torch.is_tensor(loss) else type(loss).__name__
            raise ValueError(
                f"loss_fn must return a scalar tensor (the batch-mean loss), got {shape}; "
                "use reduction='mean'"
            )

    def _settle(self, block: int | None) -> None:
        """Choose the strategy for single products or blocks of ``block`` vectors (timed on the
        first chunk under ``auto``; the timing products are counted in ``product_setup()``,
        not charged to the meter, which counts the products asked for)."""
        if self._strategies.settled(block):
            return
        if block is not None:
            self._settle(None)  # a block candidate loops over single products
        (inputs, targets), size = next(self._batches(None))  # every shard holds samples
        with self._mode(), precision_context(self._precision, self.device):
            self._strategies.choose((inputs, targets), self._local_samples / size, block, size)

    def _accumulate(self, product: Callable[[Any, Any], torch.Tensor],
                    indices: np.ndarray | None, shape: tuple[int, ...]) -> torch.Tensor:
        """sum over this process's batches b of (|b| / total) product(b), summed over the
        process group's ranks; total is N, or |S| for global sample indices S."""
        total = len(indices) if indices is not None else self.num_samples
        local = indices if indices is None or self._shard is None else self._shard.local(indices)
        out = torch.zeros(shape, dtype=self.dtype, device=self.device)
        if local is None or len(local):
            with self._mode(), precision_context(self._precision, self.device):
                for (inputs, targets), size in self._batches(local):
                    out += (size / total) * product(inputs, targets)
        if self._shard is not None:
            self._shard.all_reduce(out)
        return out

    def _matvec(self, v: torch.Tensor, indices: np.ndarray | None) -> torch.Tensor:
        v = v.to(device=self.device, dtype=self.dtype)
        self._settle(None)
        single = self._strategies.single
        return self._accumulate(lambda x, y: single(v, x, y).to(self.dtype), indices,
                                (self.size,))

    def _matmat(self, V: torch.Tensor, indices: np.ndarray | None) -> torch.Tensor:
        Vt = V.to(device=self.device, dtype=self.dtype).T.contiguous()
        self._settle(len(Vt))
        block = self._strategies.block
        return self._accumulate(lambda x, y: block(Vt, x, y).T.to(self.dtype), indices,
                                tuple(V.shape))

    def gradient(self) -> torch.Tensor:
        """The gradient of the mean loss over all samples, (1/N) sum_i grad loss_i (flat,
        summed over the process group), by eager reverse mode over the same chunks as the
        products: the baseline of the HVP / gradient cost ratio. Not charged to the meter."""
        def chunk_grad(x: Any, y: Any) -> torch.Tensor:
            theta = self.theta.detach().requires_grad_(True)
            with torch.enable_grad():
                return torch.autograd.grad(self._loss(theta, x, y), theta)[0]

        return self._accumulate(chunk_grad, None, (self.size,))

    def product_setup(self) -> dict[str, Any]:
        """The HVP strategy asked and chosen, with the candidates timed (JSON values)."""
        return {**self._strategies.setup(), "precision": self._precision or str(self.dtype).replace("torch.", "")}

    def reduced_precision(self, precision: str) -> HessianOperator:
        """This operator with products in ``"bf16"`` (bfloat16 autocast, CPU or CUDA) or
        ``"tf32"`` (TF32 matmuls and convolutions, CUDA only), sharing its meter, weights and
        data; vectors in and out stay in ``dtype``. The strategy is chosen anew (timed under
        the reduced precision) when ``auto``. A float64 operator refuses (``ValueError``): both
        act on float32 arithmetic only."""
        check_precision(precision, self.device, self.dtype)
        reduced = copy.copy(self)  # shares meter, data, weights and process group
        reduced._precision = precision
        reduced._strategies = self._strategies.fresh(reduced._loss)
        return reduced

    def asarray(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, dtype=self.dtype, device=self.device)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _on_accelerator(self) -> bool:
        return self.device.type != "cpu"

    def _nondeterminism_causes(self) -> list[str]:
        seen = []
        if not self.eval_mode:
            dropout = [f"'{k or 'model'}' ({type(m).__name__})"
                       for k, m in self.model.named_modules()
                       if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
            if dropout:
                seen.append(f"the model's dropout layers {', '.join(dropout)} run in train "
                            "mode because eval_mode=False, drawing new masks for every "
                            "product: use eval_mode=True")
        if self._samples is not None and self._samples.shuffled:
            seen.append(f"{self._samples.description} shuffles: with a loss that is not the "
                        "batch mean (e.g. reduction='sum') the product depends on how samples "
                        "fall into batches; use a batch-mean loss or shuffle=False")
        generic = super()._nondeterminism_causes()
        if seen and not self.eval_mode:  # the dropout cause, now named specifically
            generic = [c for c in generic if not c.startswith("dropout")]
        return seen + generic

    def describe_device(self) -> str:
        if self.device.type == "cuda":
            where = f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        else:
            where = (f"{self.device.type} ({platform.processor() or platform.machine()}, "
                     f"{torch.get_num_threads()} threads)")
        if self._shard is None:
            return where
        return f"{where} x {self._shard.world_size} processes ({self._shard.backend})"

    # -- scale-out -------------------------------------------------------------------------
    def process_count(self) -> int:
        return 1 if self._shard is None else self._shard.world_size

    def device_count(self) -> int:
        return self.process_count()  # one device per process

    @property
    def is_main_process(self) -> bool:
        return self._shard is None or self._shard.rank == 0

    def decide(self, flag: bool) -> bool:
        return flag if self._shard is None else self._shard.decide(flag)

    @property
    def shard(self) -> Shard | None:
        """This rank's place among the process group's samples (None: single process)."""
        return self._shard
