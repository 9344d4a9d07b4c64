"""How many CPU threads hessbench's own commands (``run``, ``compare``, ``demo``) give torch.

torch's default is one intra-op thread per core, and its OpenMP threads spin while they wait:
on a shared or busy machine that makes small products far slower (10-50x for the digits
problems on a loaded 2-core machine; a user's script took 5 min 14 s with the default and
12.9 s with one thread). So the commands choose: ``--threads auto`` (the default) gives each
of this machine's processes of the job an equal part of the cores that are not already busy,

    threads = max(1, (cores - round(load over the last minute)) // local processes),

and ``--threads N`` takes N. The choice is printed and recorded in every run record
(``threads``). The library (operators, solvers) never changes torch's setting; a script sets
its own with ``torch.set_num_threads``. JAX's CPU thread pool is fixed when JAX starts
(``XLA_FLAGS``) and is left alone.
"""

from __future__ import annotations

import os

__all__ = ["auto_threads", "use_threads"]


def _load() -> float | None:
    """Runnable processes on average over the last minute; None where unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:  # not on this platform
        return None


def auto_threads(cores: int | None = None, load: float | None = None,
                 processes: int | None = None) -> int:
    """The ``auto`` thread count for ``cores`` CPUs (default: ``os.cpu_count()``) with
    ``load`` runnable processes on average over the last minute (default:
    ``os.getloadavg()[0]``, 0 where unknown), shared by ``processes`` processes on this machine
    (default: torchrun's ``LOCAL_WORLD_SIZE``, else 1)."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    if load is None:
        load = _load() or 0.0
    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    idle = cores - round(load)
    return max(1, idle // max(1, processes))


def use_threads(choice: str | int) -> tuple[int, str]:
    """Set torch's intra-op threads for this process from ``--threads`` (``"auto"`` or a
    count); return the count and a line saying what was chosen and why."""
    import torch

    if choice == "auto":
        load = _load()  # read once: the count and the message agree
        threads = auto_threads(load=load)
        shown = "unknown" if load is None else f"{load:.1f}"
        why = f"auto: {os.cpu_count()} cores, load {shown}; --threads N to choose"
    else:
        threads, why = int(choice), "--threads"
    torch.set_num_threads(threads)
    return threads, f"torch threads: {threads} per process ({why})"
