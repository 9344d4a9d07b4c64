"""What a benchmark problem is: data, a model at a trained point, and a loss, with an exact
or certified reference for lambda_max and lambda_min of the full-data loss Hessian."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from hessbench import backends
from hessbench.backends.base import HVPOperator
from hessbench.cache import key_of


@dataclass
class TorchProblemParts:
    """Everything a backend needs: model at its trained point, loss and data as tensors."""

    model: torch.nn.Module
    loss_fn: Callable[[Any, Any], torch.Tensor]
    inputs: torch.Tensor
    targets: torch.Tensor
    batch_size: int


@dataclass
class Problem(abc.ABC):
    """A named problem. ``config`` holds every setting that defines it (it keys the caches)."""

    name: str
    description: str
    config: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float64"
    synthetic: bool = False

    @property
    def key(self) -> str:
        return key_of({"name": self.name, **self.config})

    @abc.abstractmethod
    def torch_parts(self, progress: bool = True) -> TorchProblemParts:
        """Model (trained, cached), loss and data for the PyTorch backend."""

    def exact_reference(self) -> dict[str, float] | None:
        """The exactly known extreme eigenvalues, where the problem is built with them."""
        return None

    def operator(self, backend: str = "torch", *, dtype: str | None = None,
                 device: str | None = None, devices: str | int | None = None,
                 process_group: Any = None, progress: bool = True,
                 strategy: str | None = None) -> HVPOperator:
        """The full-data Hessian operator of this problem on ``backend`` (see
        ``hessbench.backends.available()``: ``"torch"``, ``"jax"``, plugins), built by the
        backend's registered factory from :meth:`torch_parts`. The JAX operator uses the same
        trained weights (converted by :func:`hessbench.jax_models.from_torch`), data, loss and
        batch size, and the same flat vector layout. ``dtype`` defaults to the problem's; a
        float64 JAX operator switches ``jax_enable_x64`` on (see :mod:`hessbench.backends.jax`).
        ``devices`` (``"all"`` or a count K) shards the data over that many devices of
        ``device``'s kind (JAX); ``process_group`` (a ``torch.distributed`` group) gives each
        rank its contiguous shard of the samples (torch); ``strategy`` how products are computed
        (the torch and JAX operators' ``strategy``, default ``"auto"``). Each is passed to the
        factory only when given."""
        factory = backends.operator_factory(backend)
        extra = {k: v for k, v in (("devices", devices), ("process_group", process_group),
                                   ("strategy", strategy)) if v is not None}
        op = factory(self.torch_parts(progress=progress), dtype=dtype or self.dtype,
                     device=device, **extra)
        if not isinstance(op, HVPOperator):
            raise TypeError(f"backend {backend!r} built {type(op).__name__}, not an HVPOperator")
        return op


def torch_operator(parts: TorchProblemParts, *, dtype: str = "float64",
                   device: str | None = None, check_deterministic: bool = True,
                   process_group: Any = None, strategy: str = "auto") -> HVPOperator:
    """The PyTorch ``HessianOperator`` of a problem's parts (the ``"torch"`` backend);
    ``check_deterministic`` as the operator's (its two-product probe).

    With a ``process_group``, every rank takes rank 0's weights
    (:func:`~hessbench.backends.torch_distributed.broadcast_module`) and its contiguous shard
    of the samples (:func:`hessbench.distributed.shard_rows`), so the operator over the group
    is the problem's full-data Hessian, and global sample j is the problem's sample j."""
    from hessbench.backends.torch import HessianOperator

    data = (parts.inputs, parts.targets)
    extra: dict[str, Any] = {}
    if process_group is not None:
        import torch.distributed as dist

        from hessbench.backends.torch_distributed import broadcast_module, check_process_group
        from hessbench.distributed import shard_rows

        check_process_group(process_group)
        broadcast_module(parts.model, process_group)
        rows = shard_rows(len(parts.inputs), dist.get_rank(process_group),
                          dist.get_world_size(process_group))
        data, extra = (parts.inputs[rows], parts.targets[rows]), {"process_group": process_group}
    return HessianOperator(parts.model, parts.loss_fn, data,
                           batch_size=parts.batch_size, device=device,
                           dtype=getattr(torch, dtype),
                           check_deterministic=check_deterministic, strategy=strategy,
                           **extra)
