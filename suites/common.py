"""Shared grid, availability checks and helpers of the asv suites.

The grid is backend x problem x solver (x seed). Defaults are CPU-sized; environment variables
(read when asv discovers the suites, so set them for the whole ``asv run``) change it:

- ``HESSBENCH_ASV_BACKENDS``  comma-separated, default ``torch,jax`` (jax is skipped where
  ``import jax`` or ``hessbench.backends.jax`` fails);
- ``HESSBENCH_ASV_PROBLEMS``  default ``quadratic-small,digits-mlp`` plus the GPU-sized
  ``quadratic-1m,cifar10-resnet18``, which are skipped unless ``HESSBENCH_ASV_GPU=1``;
- ``HESSBENCH_ASV_SOLVERS``   default ``lanczos,multifidelity-lanczos``;
- ``HESSBENCH_ASV_SEEDS``     default ``0-1`` (same syntax as ``hessbench compare --seeds``);
- ``HESSBENCH_ASV_GPU=1``     run on ``cuda`` and enable the GPU-sized problems;
- ``HESSBENCH_CACHE``         where trained checkpoints and references are cached.

Skips raise ``NotImplementedError`` in ``setup`` (asv records them as n/a, not as failures).
This module imports nothing heavy: asv starts a fresh interpreter for every parameter
combination, and the ``track_`` benchmarks only read records solved in ``setup_cache``.
"""

from __future__ import annotations

import os
from typing import Any

from hessbench import backends as backend_registry
from hessbench.seeds import parse_seeds

CPU_PROBLEMS = ("quadratic-small", "digits-mlp")
GPU_PROBLEMS = ("quadratic-1m", "cifar10-resnet18")
DEFAULT_SOLVERS = ("lanczos", "multifidelity-lanczos")
DEFAULT_BACKENDS = ("torch", "jax")

TOL = 1e-3                      # every solve: the solver's own stopping rule at this tolerance
BUDGET = {"max_passes": 300.0}  # and at most this many data passes
TIMED_SEED = 0                  # the seed of the timed full solves


def _env_list(name: str, default: tuple[str, ...]) -> list[str]:
    text = os.environ.get(name, "").strip()
    return [x.strip() for x in text.split(",") if x.strip()] if text else list(default)


def gpu_enabled() -> bool:
    return os.environ.get("HESSBENCH_ASV_GPU", "").strip() not in ("", "0")


BACKENDS = _env_list("HESSBENCH_ASV_BACKENDS", DEFAULT_BACKENDS)
PROBLEMS = _env_list("HESSBENCH_ASV_PROBLEMS", CPU_PROBLEMS + GPU_PROBLEMS)
SOLVERS = _env_list("HESSBENCH_ASV_SOLVERS", DEFAULT_SOLVERS)
SEEDS = parse_seeds(os.environ.get("HESSBENCH_ASV_SEEDS", "").strip() or "0-1")


def backend_skip_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run here, or None if it can."""
    known = backend_registry.available()
    if backend not in known:
        return f"unknown backend {backend!r}; available: {', '.join(known)}"
    try:  # loading the registered operator factory imports what the backend needs (jax, ...)
        backend_registry.operator_factory(backend)
    except Exception as err:  # noqa: BLE001 - ImportError, or a broken install
        return f"backend {backend!r} unavailable here ({type(err).__name__}: {err})"
    return None


def problem_skip_reason(problem: str) -> str | None:
    """Why ``problem`` is not run here (GPU-sized without HESSBENCH_ASV_GPU=1), or None."""
    if problem in GPU_PROBLEMS and not gpu_enabled():
        return f"{problem} is GPU-sized: set HESSBENCH_ASV_GPU=1 to run it"
    return None


def skip_reason(backend: str, problem: str) -> str | None:
    return backend_skip_reason(backend) or problem_skip_reason(problem)


def require(backend: str, problem: str) -> None:
    """Raise NotImplementedError (asv: skipped) if this combination does not run here."""
    reason = skip_reason(backend, problem)
    if reason is not None:
        raise NotImplementedError(reason)


def device(backend: str) -> str | None:
    """``cuda`` for torch when HESSBENCH_ASV_GPU=1, else the default (jax picks its own)."""
    return "cuda" if gpu_enabled() and backend == "torch" else None


def prepare_problems() -> None:
    """Train/load the checkpoints of every problem that runs here (cached in HESSBENCH_CACHE),
    so that no benchmark's setup pays for training."""
    from hessbench import problems

    for name in PROBLEMS:
        if problem_skip_reason(name) is None:
            problems.get(name).torch_parts(progress=False)


def operator(backend: str, problem: str, widths: tuple[int, ...] = ()) -> Any:
    """The full-data Hessian operator, warmed up untimed as ``hessbench run`` does
    (:func:`hessbench.runner.warm_up`: one product, and one block of each of ``widths``), so
    first-call allocation, compilation and strategy choice stay out of the timed code."""
    from hessbench import problems
    from hessbench.runner import warm_up

    require(backend, problem)
    op = problems.get(problem).operator(backend, device=device(backend), progress=False)
    warm_up(op, tuple(dict.fromkeys(min(w, op.size) for w in widths)))
    return op


def block(x: Any) -> Any:
    """Wait for an asynchronously computed array (JAX); a no-op for torch and NumPy."""
    ready = getattr(x, "block_until_ready", None)
    if callable(ready):
        ready()
    return x
