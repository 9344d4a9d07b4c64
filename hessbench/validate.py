"""Checks of what the user asked for, made before any training, reference or solve: a bad
name, option, backend, device, dtype, seed or output path fails at once, with a message that
names it and says how to fix it, instead of after minutes of work (or by losing the result).

- :func:`check_run` checks one run (used by :func:`hessbench.runner.run_one`);
  :func:`check_grid` a grid of runs and its output folder (for
  :func:`hessbench.compare.run_grid` and ``hessbench demo``).
- Solver and problem options are checked by :func:`hessbench.solvers.get` and
  :func:`hessbench.problems.get` themselves (:func:`hessbench.registry.check_options`: names,
  and types from the constructor's or factory's annotations), which :func:`check_run` calls.
- :func:`check_output_file` / :func:`check_output_dir` check an output path (``-o``).

Every check raises a subclass of :class:`hessbench.errors.InputError`. This module imports only
the standard library and light hessbench modules at import time; the heavy ones (torch, the
registries) inside the checks.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hessbench.errors import InputError
from hessbench.registry import OptionError
from hessbench.seeds import check_seed, check_seeds

if TYPE_CHECKING:
    from hessbench.problems import Problem
    from hessbench.solvers import Budget, Solver

__all__ = ["DeviceError", "OutputPathError", "check_backend", "check_budget", "check_device",
           "check_devices", "check_dtype", "check_grid", "check_output_dir", "check_output_file",
           "check_run", "check_which"]

DTYPES = ("float32", "float64")
WHICH = ("both", "max", "min")


class DeviceError(InputError):
    """The device does not exist or is not available on this machine."""


class OutputPathError(InputError):
    """An output file whose folder cannot be created or written in."""


# -- backend, device, dtype, which, budget ---------------------------------------------------
def check_backend(backend: str) -> Callable[..., Any]:
    """The operator factory of ``backend``: registered and importable (a missing optional
    dependency names the extra to install, e.g. ``pip install 'hessbench[jax]'``)."""
    from hessbench import backends

    return backends.operator_factory(backend)


def _check_torch_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise DeviceError(f"unknown device {device!r} ({err}); use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"this PyTorch ({torch.__version__}) was built without CUDA"
                   if not torch.backends.cuda.is_built() else
                   "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
            raise DeviceError(f"device {device!r} is not available: {why}; use --device cpu "
                              "or leave --device out")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {device!r} does not exist: this machine has {count} CUDA "
                              f"device(s), cuda:0 to cuda:{count - 1}")
    elif dev.type != "cpu":
        try:
            torch.empty(0, device=dev)
        except (RuntimeError, AssertionError, ValueError, NotImplementedError) as err:
            raise DeviceError(f"device {device!r} is not usable here ({err}); use --device cpu "
                              "or leave --device out") from None


def check_device(device: str | None, backend: str = "torch") -> None:
    """``device`` exists and is available to ``backend``: for ``torch``, ``cpu``, ``cuda`` /
    ``cuda:N`` (CUDA available, N in range) or another torch device that can hold a tensor; for
    ``jax``, a device JAX has. ``None`` (the default placement) always passes; plugin backends
    check ``device`` themselves."""
    if device is None:
        return
    if not isinstance(device, str):
        raise DeviceError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    if backend == "torch":
        _check_torch_device(device)
    elif backend == "jax":
        from hessbench.backends.jax import resolve_device

        try:
            resolve_device(device)
        except (ValueError, TypeError) as err:
            raise DeviceError(f"{err}; use one of those or leave --device out") from None


#: the built-in backends whose operators choose how to compute products (``strategy=``)
STRATEGY_BACKENDS = ("torch", "jax")


def strategies(backend: str) -> tuple[str, ...]:
    """The product strategies of ``backend``'s operator, ``"auto"`` (its default) first; ()
    for a backend without a choice."""
    if backend == "torch":
        from hessbench.backends.torch_hvp import CHOICES
    elif backend == "jax":
        from hessbench.backends.jax_hvp import CHOICES
    else:
        return ()
    return tuple(CHOICES)


def default_strategy(backend: str) -> str | None:
    """The strategy a backend's operator uses when none is asked (None: it has no choice)."""
    return "auto" if backend in STRATEGY_BACKENDS else None


def check_strategy(strategy: str | None, backend: str = "torch") -> None:
    """``strategy`` (how the operator computes products) is None or one of the backend's."""
    if strategy is None:
        return
    if backend not in STRATEGY_BACKENDS:
        raise OptionError(f"backend {backend!r} has no product strategies; --strategy applies "
                          f"to {', '.join(STRATEGY_BACKENDS)}")
    if strategy not in strategies(backend):
        raise OptionError(f"unknown strategy {strategy!r} for the {backend} backend; choose "
                          f"one of {', '.join(strategies(backend))}")


def check_devices(devices: str | int | None, backend: str = "torch",
                  device: str | None = None, distributed: bool = False) -> None:
    """``devices`` (how many devices share each product) is None, ``"all"`` or a positive
    count that the JAX backend has on ``device``'s platform; the torch backend scales over
    processes instead (torchrun), and a process group runs only the torch backend."""
    if distributed and backend != "torch":
        raise InputError(f"a process group (torchrun) runs the torch backend; the {backend!r} "
                         "backend scales over devices: run one process with --devices")
    if devices is None:
        return
    if devices != "all" and (isinstance(devices, bool) or not isinstance(devices, int)
                             or devices < 1):
        raise InputError(f"devices must be 'all' or a positive number of devices, got "
                         f"{devices!r}")
    if backend != "jax":
        raise InputError(f"--devices shards products over the devices of one process, which "
                         f"the JAX backend does; the {backend!r} backend scales over processes:"
                         " launch it with torchrun --nproc-per-node K (one device each)")
    from hessbench.backends.jax import resolve_device
    from hessbench.backends.jax_sharded import resolve_devices

    try:
        resolve_devices(devices, resolve_device(device).platform)
    except ValueError as err:
        raise DeviceError(f"{err}; give --devices all or fewer") from None


def check_dtype(dtype: str | None) -> None:
    """``None`` (the problem's dtype), ``"float32"`` or ``"float64"``."""
    if dtype is not None and dtype not in DTYPES:
        raise InputError(f"dtype must be float32 or float64 (or left out), got {dtype!r}")


def check_which(which: str) -> None:
    if which not in WHICH:
        raise InputError(f"which must be one of {', '.join(WHICH)}, got {which!r}")


def check_budget(budget: Budget | Mapping[str, Any] | None) -> Budget:
    """The budget as a :class:`hessbench.solvers.Budget` (known limits, positive values)."""
    from hessbench.solvers.result import Budget

    try:
        return Budget.coerce(dict(budget) if isinstance(budget, Mapping) else budget)
    except (TypeError, ValueError) as err:
        raise InputError(f"bad budget: {err}") from None


# -- output paths -----------------------------------------------------------------------------
def _blocking_file(folder: Path) -> Path | None:
    """The first existing ancestor of ``folder`` (itself included) that is not a folder."""
    for place in (folder, *folder.parents):
        if place.exists() or place.is_symlink():
            return None if place.is_dir() else place
    return None


def _writable_folder(folder: Path, target: Path) -> None:
    """Create ``folder`` (and parents) and prove a file can be made in it."""
    blocker = _blocking_file(folder)
    if blocker is not None:
        raise OutputPathError(f"cannot write {str(target)!r}: {str(blocker)!r} is a file, not a "
                              "folder; choose another output path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(f"cannot create the folder {str(folder)!r} for "
                              f"{str(target)!r} ({err.strerror}); choose a writable place"
                              ) from None
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".hessbench-write-check-")
    except OSError as err:
        raise OutputPathError(f"cannot write in the folder {str(folder)!r} ({err.strerror}); "
                              "choose a writable place or fix its permissions") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a file output (``hessbench run -o``), checked before the run: not a
    symbolic link, a folder or another non-regular file such as a device, which writing would
    replace (:func:`hessbench.records.check_output_file`, the rule writing applies too); its
    folder created and writable. An existing regular file is replaced."""
    from hessbench.records import check_output_file as replaceable

    out = Path(path)
    _writable_folder(out.parent, out)
    return replaceable(out)


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as an output folder (``compare -o``, ``demo -o``): created if missing, writable,
    and neither a file nor a symbolic link (:func:`hessbench.records.prepare_output_folder`)."""
    from hessbench.records import prepare_output_folder

    return prepare_output_folder(path)


# -- a run and a grid of runs -----------------------------------------------------------------
def check_run(problem: str, solver: str, *, backend: str = "torch", seed: int = 0,
              which: str = "both", tol: float = 1e-3,
              budget: Budget | Mapping[str, Any] | None = None, dtype: str | None = None,
              device: str | None = None, devices: str | int | None = None,
              distributed: bool = False, problem_options: Mapping[str, Any] | None = None,
              solver_options: Mapping[str, Any] | None = None,
              strategy: str | None = None) -> tuple[Problem, Solver]:
    """Check every argument of :func:`hessbench.runner.run_one` (same names) without training,
    computing a reference or solving; returns the configured problem and solver."""
    from hessbench import problems, solvers

    prob = problems.get(problem, **(problem_options or {}))
    if "tol" in (solver_options or {}):
        raise OptionError("solver option tol is set by the tolerance (--tol, tol=): give it "
                          "there, once")
    slv = solvers.get(solver, tol=tol, **(solver_options or {}))
    check_backend(backend)
    check_device(device, backend)
    check_devices(devices, backend, device, distributed)
    check_strategy(strategy, backend)
    check_dtype(dtype)
    check_which(which)
    check_seed(seed)
    check_budget(budget)
    return prob, slv


def _distinct(kind: str, names: Iterable[str]) -> list[str]:
    names = list(names)
    if not names:
        raise InputError(f"no {kind}s given: name at least one (see: hessbench {kind}s)")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InputError(f"{kind}(s) {', '.join(map(repr, twice))} given more than once: "
                         "name each once")
    return names


def check_grid(problems: Iterable[str], solvers: Iterable[str], seeds: Iterable[int],
               output: str | os.PathLike[str] | None = None,
               **run_options: Any) -> tuple[list[str], list[str], list[int]]:
    """Check a grid of runs before any of them starts: problems and solvers named once each,
    seeds valid and distinct, every (problem, solver) with ``run_options`` (the keyword
    arguments of :func:`check_run`), then the output folder (created, writable). Returns the
    problems, solvers and seeds as lists."""
    problems, solvers = _distinct("problem", problems), _distinct("solver", solvers)
    seeds = check_seeds(list(seeds))
    for problem in problems:
        for solver in solvers:
            check_run(problem, solver, seed=seeds[0], **run_options)
    if output is not None:
        check_output_dir(output)
    return problems, solvers, seeds
