"""hessbench's own commands over many processes (torchrun) and devices (JAX ``--devices``).

``torchrun --nproc-per-node K -m hessbench run ...`` (or ``compare``) starts K copies of the
command. :func:`start` sees torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``), initialises the default process group (NCCL when ``--device`` is a GPU, each
rank on ``cuda:LOCAL_RANK``; gloo otherwise) and returns it. Then every rank builds the same
problem; rank 0 computes (or loads) the reference first and shares it, every rank takes rank
0's weights (:func:`hessbench.backends.torch_distributed.broadcast_module`) and its contiguous
shard of the samples (:func:`shard_rows`), and all run the same solver with the same seed on
the all-reduced products. Only rank 0 writes files and shows progress.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from hessbench.errors import InputError

__all__ = ["Launch", "agree", "is_main", "planned_devices", "shard_rows", "share", "start",
           "torchrun_environment"]

T = TypeVar("T")

#: how long a rank waits in a collective before it gives up (torch's default for gloo is 30 min)
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun launch."""

    rank: int
    world_size: int
    local_rank: int


def torchrun_environment(environ: dict[str, str] | None = None) -> Launch | None:
    """The torchrun launch this process belongs to, or None (not under torchrun, or a launch
    of one process)."""
    env = os.environ if environ is None else environ
    if not all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")):
        return None
    try:
        launch = Launch(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]))
    except ValueError:
        raise InputError(f"torchrun's environment is malformed: RANK={env['RANK']!r}, "
                         f"WORLD_SIZE={env['WORLD_SIZE']!r}, LOCAL_RANK={env['LOCAL_RANK']!r}"
                         ) from None
    return launch if launch.world_size > 1 else None


def start(backend: str, device: str | None) -> tuple[Any, str | None]:
    """Under torchrun: initialise the default process group (if not yet) and return it with
    this rank's device (``cuda:LOCAL_RANK`` for ``device="cuda"``); else ``(None, device)``.
    Refuses what cannot work: the JAX backend (it scales with ``--devices``) and a device
    index under torchrun (each rank takes its own GPU)."""
    launch = torchrun_environment()
    if launch is None:
        return None, device
    if backend != "torch":
        raise InputError(f"torchrun runs the torch backend over processes; the {backend!r} "
                         "backend scales over devices instead: run one process with --devices "
                         "all (or --devices K)")
    import torch
    import torch.distributed as dist

    kind, _, index = (device or "cpu").partition(":")
    if kind == "cuda":
        if index:
            raise InputError(f"--device {device} under torchrun: every rank uses its own GPU, "
                             "cuda:LOCAL_RANK; give --device cuda")
        device = f"cuda:{launch.local_rank}"
        torch.cuda.set_device(launch.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo", timeout=DEFAULT_TIMEOUT)
    return dist.group.WORLD, device


def is_main(group: Any = None) -> bool:
    """Whether this process writes files and shows progress: rank 0 of ``group``, or any
    process when there is no group."""
    if group is None:
        return True
    import torch.distributed as dist

    return dist.get_rank(group) == 0


def share(group: Any, make: Callable[[], T]) -> T:
    """``make()`` evaluated on rank 0 of ``group`` and sent to every rank (picklable); an error
    raised by ``make`` on rank 0 is raised on every rank. Without a group, ``make()``."""
    if group is None:
        return make()
    import torch.distributed as dist

    box: list[Any] = [None]
    if dist.get_rank(group) == 0:
        try:
            box[0] = ("ok", make())
        except Exception as err:  # noqa: BLE001 - sent to the other ranks, then raised
            box[0] = ("error", err)
    dist.broadcast_object_list(box, src=dist.get_global_rank(group, 0), group=group)
    status, value = box[0]
    if status == "error":
        raise value
    return value


def agree(group: Any, value: Any, what: str) -> None:
    """Check that every rank of ``group`` holds the same ``value`` (picklable); raise one
    :class:`InputError` on every rank naming ``what`` when they differ."""
    if group is None:
        return
    import torch.distributed as dist

    every: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(every, value, group=group)
    if any(v != every[0] for v in every):
        raise InputError(f"the ranks disagree on {what} ({every}): every rank must run the "
                         "same command")


def shard_rows(num_samples: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous rows of ``num_samples`` split over ``world_size`` ranks as
    evenly as possible (the first ``num_samples % world_size`` ranks hold one more), so that
    the shards concatenated in rank order are the samples in their order."""
    base, extra = divmod(num_samples, world_size)
    begin = rank * base + min(rank, extra)
    return slice(begin, begin + base + (rank < extra))


def planned_devices(backend: str, device: str | None, devices: str | int | None,
                    group: Any = None) -> tuple[int, int]:
    """(processes, devices) a run with these settings computes its products on: the process
    group's size (one device each), or the JAX devices ``devices`` asks for."""
    if group is not None:
        import torch.distributed as dist

        size = dist.get_world_size(group)
        return size, size
    if devices is None:
        return 1, 1
    from hessbench.backends.jax import resolve_device
    from hessbench.backends.jax_sharded import resolve_devices

    return 1, len(resolve_devices(devices, resolve_device(device).platform))
