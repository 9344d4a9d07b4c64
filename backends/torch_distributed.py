"""One PyTorch Hessian operator over the processes of a ``torch.distributed`` process group.

Every process (rank) of the group holds its own shard of the data, ``n_r`` samples, and the same
model. The operator is the Hessian of the mean loss over all N = sum_r n_r samples:

    H v = sum_r (n_r / N) H_r v = all_reduce_SUM over ranks of  sum_{b on rank r} (|b| / N) H_b v,

so uneven shards are weighted exactly; no sample is duplicated (a ``DistributedSampler`` that
pads the data with repeated samples is refused by :mod:`hessbench.backends.loaders`).
Global sample index j (for mini-batch products, 0 <= j < N) is sample ``j - offset_r`` of the
rank r whose shard holds it, ``offset_r = n_0 + ... + n_{r-1}``: the shards concatenated in rank
order. A mini-batch product H_S v = (1/|S|) sum_{j in S} H_j v is computed the same way, each
rank summing the H_j v of the indices it holds (possibly none) and the result all-reduced.

Vectors are replicated: every rank calls the same product with the same vector, and gets the
same all-reduced result, so every rank runs the same solver with the same seed to the same
answer. The cost meter counts global samples (one data pass is N samples, as on one process).

At construction, :func:`join` exchanges what every rank built (sample count, parameter count,
dtype, parameter names and a SHA-256 of the parameter and buffer values): an empty shard, a
rank that failed to build its operator, or a model that differs between ranks raises the same
:class:`DistributedSetupError` on every rank, naming the ranks, instead of hanging or computing
a wrong Hessian. A collective that fails later (a rank killed, or gone silent past the group's
timeout) raises :class:`DistributedProductError` naming the operation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from hessbench.errors import InputError

__all__ = ["DistributedProductError", "DistributedSetupError", "Shard", "broadcast_module",
           "check_process_group", "fingerprint", "join"]


class DistributedSetupError(InputError):
    """The ranks of a process group cannot build one Hessian operator together (an empty
    shard, a rank that failed, models or dtypes that differ); raised on every rank."""


class DistributedProductError(RuntimeError):
    """A collective operation of the operator failed: another rank failed, was killed or did
    not answer within the process group's timeout."""


def check_process_group(group: Any) -> Any:
    """``group`` if it is a usable process group, else an :class:`InputError` saying why."""
    if not (dist.is_available() and dist.is_initialized()):
        raise InputError(
            "process_group was given, but torch.distributed has no initialised process group "
            "(torch.distributed.group.WORLD is None until then): call "
            "torch.distributed.init_process_group(...) first in every process (under torchrun "
            "the environment provides the rendezvous), or leave process_group out for a "
            "single-process operator")
    if group is None:
        raise InputError(
            "process_group=None: pass a process group (torch.distributed.group.WORLD, or one "
            "from torch.distributed.new_group), or leave the argument out for a "
            "single-process operator")
    if not isinstance(group, dist.ProcessGroup):
        raise InputError(f"process_group must be a torch.distributed.ProcessGroup, got "
                         f"{type(group).__name__}")
    if dist.get_rank(group) < 0:
        raise InputError("this process is not a member of the given process_group")
    return group


def _collective_device(group: Any) -> torch.device:
    """Where tensors for the group's collectives live (NCCL: this process's GPU)."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _fail(what: str, err: Exception) -> DistributedProductError:
    return DistributedProductError(
        f"rank {dist.get_rank()}: the collective '{what}' failed: another process of the "
        f"group failed, was killed, or did not answer within the group's timeout (set by "
        f"init_process_group(timeout=...)); see that process's own error. ({type(err).__name__}: "
        f"{str(err).strip().splitlines()[0] if str(err).strip() else ''})")


def fingerprint(tensors: Sequence[torch.Tensor]) -> str:
    """SHA-256 of the values of ``tensors`` (in order; moved to the CPU): equal on two ranks
    exactly when they hold bitwise-equal parameters and buffers."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
        h.update(str(tuple(t.shape)).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Shard:
    """Where this rank's samples sit among all N: global indices
    ``offset .. offset + count - 1``; ``counts[r]`` is rank r's shard size."""

    group: Any
    rank: int
    counts: tuple[int, ...]

    @property
    def world_size(self) -> int:
        return len(self.counts)

    @property
    def count(self) -> int:
        return self.counts[self.rank]

    @property
    def offset(self) -> int:
        return sum(self.counts[: self.rank])

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def backend(self) -> str:
        return str(dist.get_backend(self.group))

    def local(self, indices: np.ndarray) -> np.ndarray:
        """The entries of global ``indices`` this rank holds, as local sample indices (in the
        given order, repeats kept)."""
        local = indices - self.offset
        return local[(local >= 0) & (local < self.count)]

    def all_reduce(self, tensor: torch.Tensor, what: str = "product") -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place; every rank gets the same result."""
        device = _collective_device(self.group)
        buf = tensor if tensor.device == device else tensor.to(device)
        try:
            dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=self.group)
        except (RuntimeError, dist.DistError) as err:
            raise _fail(f"all_reduce ({what})", err) from err
        if buf is not tensor:
            tensor.copy_(buf)
        return tensor

    def decide(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (a broadcast of one byte)."""
        t = torch.tensor([int(flag)], dtype=torch.uint8, device=_collective_device(self.group))
        try:
            dist.broadcast(t, src=dist.get_global_rank(self.group, 0), group=self.group)
        except (RuntimeError, dist.DistError) as err:
            raise _fail("broadcast (budget decision)", err) from err
        return bool(t.item())


def _gather(group: Any, info: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[Any] = [None] * dist.get_world_size(group)
    try:
        dist.all_gather_object(out, info, group=group)
    except (RuntimeError, dist.DistError) as err:
        raise _fail("all_gather_object (operator setup)", err) from err
    return out


def join(group: Any, info: dict[str, Any], error: BaseException | None) -> Shard:
    """Exchange what each rank built and check that together they define one Hessian.

    ``info`` holds this rank's ``samples`` (shard size), ``parameters`` (n), ``dtype``,
    ``names`` (the parameter names, in order) and ``fingerprint`` (of parameter and buffer
    values); ``error`` is the error this rank met while building its part (None if none).
    Raises :class:`DistributedSetupError` on every rank when any rank failed, holds no
    samples, or differs from rank 0; this rank's own error is chained."""
    rank = dist.get_rank(group)
    mine = {**info, "error": None if error is None else f"{type(error).__name__}: {error}"}
    every = _gather(group, mine)
    failed = [(r, e["error"]) for r, e in enumerate(every) if e["error"]]
    if failed:
        raise DistributedSetupError(
            "the operator could not be built on every rank: "
            + "; ".join(f"rank {r} failed: {msg}" for r, msg in failed)) from error
    empty = [r for r, e in enumerate(every) if e["samples"] == 0]
    if empty:
        raise DistributedSetupError(
            f"rank(s) {', '.join(map(str, empty))} hold no samples (shard sizes "
            f"{[e['samples'] for e in every]}): give every rank at least one sample, or use "
            "a smaller process group")
    ref = every[0]
    for key, what, fix in (
            ("parameters", "parameter count", "the same model on every rank"),
            ("names", "parameter names", "the same model and the same params= on every rank"),
            ("dtype", "dtype", "the same dtype= on every rank"),
            ("fingerprint", "parameter and buffer values (SHA-256)",
             "the same weights on every rank: load one checkpoint everywhere, or call "
             "hessbench.backends.torch_distributed.broadcast_module(model, group) before "
             "building the operator")):
        differ = [r for r, e in enumerate(every) if e[key] != ref[key]]
        if differ:
            shown = ("" if key in ("names", "fingerprint") else
                     f" ({', '.join(f'rank {r}: {e[key]}' for r, e in enumerate(every))})")
            raise DistributedSetupError(
                f"rank(s) {', '.join(map(str, differ))} differ from rank 0 in {what}{shown}: "
                f"one Hessian over all ranks needs {fix}")
    return Shard(group, rank, tuple(int(e["samples"]) for e in every))


def broadcast_module(model: torch.nn.Module, group: Any = None, src_rank: int = 0) -> None:
    """Copy group rank ``src_rank``'s parameter and buffer values into ``model`` on every rank
    of ``group`` (default: the world), in place."""
    group = group if group is not None else dist.group.WORLD
    src = dist.get_global_rank(group, src_rank)
    device = _collective_device(group)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            buf = t.detach().to(device)
            try:
                dist.broadcast(buf, src=src, group=group)
            except (RuntimeError, dist.DistError) as err:
                raise _fail("broadcast (model weights)", err) from err
            if buf is not t:
                t.copy_(buf)
