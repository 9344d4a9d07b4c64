"""Run one solver on one problem and produce its typed run record
(:class:`hessbench.records.RunRecord`)."""

from __future__ import annotations

import platform
import socket
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from hessbench.backends.base import HVPOperator
from hessbench.distributed import is_main, share
from hessbench.metrics import answer_errors, cost_to_eps
from hessbench.records import Reference, RunRecord, device_request
from hessbench.reference import compute_reference
from hessbench.validate import check_run


#: the peer libraries of hessbench.peers and what they run on, recorded where installed
PEER_PACKAGES = ("PyHessian", "hessian-eigenthings", "curvlinops-for-pytorch",
                 "backpack-for-pytorch")


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on (those installed)."""
    out = {"python": platform.python_version()}
    for pkg in ("hessbench", "torch", "numpy", "scipy", "array-api-compat", "jax", "jaxlib",
                *PEER_PACKAGES):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def torch_threads() -> int:
    """torch's intra-op thread count in this process (what CPU products ran with)."""
    import torch

    return torch.get_num_threads()


def warm_up_blocks(solver: Any, size: int | None = None) -> tuple[int, ...]:
    """The block widths ``solver`` multiplies through ``op.matmat``, to warm up before its
    solve: its ``block_size`` option (``block-lanczos``, ``lobpcg``, ``chebyshev``) capped at
    the operator's ``size`` as the solvers cap it; for ``block_size="auto"`` every width it
    may time (its ``block_candidates`` attribute, else its module's ``CANDIDATES``, e.g.
    ``hessbench.solvers.block_lanczos.CANDIDATES``), so that timing a width does not measure
    that width's first call; ``()`` for single-vector solvers."""
    block = getattr(solver, "block_size", None)
    if block == "auto":
        module = sys.modules.get(type(solver).__module__)
        widths = tuple(getattr(solver, "block_candidates", None)
                       or getattr(module, "CANDIDATES", ()))
    else:
        widths = (block,)
    widths = tuple(w for w in widths if isinstance(w, int) and not isinstance(w, bool)
                   and w >= 1)
    return tuple(dict.fromkeys(w if size is None else min(w, size) for w in widths))


def warm_up(op: HVPOperator, widths: Sequence[int] = ()) -> dict[str, Any]:
    """``op.warm_up`` for one vector and each block width (one call per width, or one call
    without a block): ``{"seconds": their total wall seconds, "block": the width, a list of
    widths, or None, **op.product_setup()}`` as the last call returned it."""
    calls = [op.warm_up(block=w) for w in widths] or [op.warm_up(block=None)]
    out = dict(calls[-1])
    out["seconds"] = float(sum(c.get("seconds", 0.0) for c in calls))
    out["block"] = None if not widths else widths[0] if len(widths) == 1 else list(widths)
    return out


def run_one(problem: str, solver: str, *, backend: str = "torch", seed: int = 0,
            which: str = "both", tol: float = 1e-3, budget: dict[str, Any] | None = None,
            dtype: str | None = None, device: str | None = None,
            problem_options: dict[str, Any] | None = None,
            solver_options: dict[str, Any] | None = None, progress: bool = True,
            command: Sequence[str] = (), devices: str | int | None = None,
            process_group: Any = None, cheapest_reference: bool = False,
            strategy: str | None = None) -> RunRecord:
    """Solve ``problem`` with ``solver`` from ``seed``; the record holds the effective solver
    options (defaults included), the answer, its errors against the certified reference and
    the cost to reach each eps. ``command`` is the command line that asked for the run.

    Every argument is checked first (:func:`hessbench.validate.check_run`: names, options,
    backend, device, dtype, seed, budget), before any training, reference or solve; a bad one
    raises a :class:`hessbench.errors.InputError` saying how to fix it.

    ``devices`` (``"all"`` or K) shards each product over that many devices (JAX backend).
    ``process_group`` (a ``torch.distributed`` group; every rank calls ``run_one`` with the
    same arguments): rank 0 computes the reference and shares it, each rank takes its shard of
    the samples, every rank returns the same record and only rank 0 shows progress
    (:mod:`hessbench.distributed`). ``cheapest_reference`` (the demo's choice) never forms a
    dense Hessian for the reference (:func:`hessbench.reference.compute_reference`).
    ``strategy`` chooses how the torch or JAX operator computes products (default: its
    ``"auto"``, timed on the first chunk); the record's ``warmup`` holds what was asked and used.

    Before the solve, the operator is warmed up untimed (:meth:`HVPOperator.warm_up`: one
    product, and one block of each width a block solver uses, see :func:`warm_up_blocks`),
    so first-call allocation, compilation and the choice of a product strategy are not
    charged to the solve's ``seconds``; the record's ``warmup`` holds what it returned (its
    wall seconds, the block width(s) and the operator's product setup)."""
    prob, slv = check_run(problem, solver, backend=backend, seed=seed, which=which, tol=tol,
                          budget=budget, dtype=dtype, device=device, devices=devices,
                          distributed=process_group is not None,
                          problem_options=problem_options, solver_options=solver_options,
                          strategy=strategy)
    progress = progress and is_main(process_group)
    computed = share(process_group, lambda: compute_reference(
        prob, progress=progress, cheapest=cheapest_reference))
    reference = Reference(float(computed["lambda_max"]), float(computed["lambda_min"]),
                          str(computed["method"]))
    op = prob.operator(backend, dtype=dtype, device=device, devices=devices,
                       process_group=process_group, progress=progress, strategy=strategy)
    warmup = warm_up(op, warm_up_blocks(slv, op.size))  # untimed: not the solve's work
    result = slv.solve(op, which=which, seed=seed, budget=budget, progress=progress)
    answer = result.summary()
    return RunRecord(
        problem=problem, solver=solver, seed=seed, backend=backend, which=which,
        solver_options=slv.options(), budget=dict(budget or {}),
        problem_description=prob.description, problem_config=prob.config,
        problem_key=prob.key, synthetic=prob.synthetic,
        dtype=str(op.dtype).replace("torch.", ""), device=op.describe_device(),
        requested_device=device_request(device),
        threads=torch_threads(), processes=op.process_count(), devices=op.device_count(),
        parameters=op.size, num_samples=op.num_samples,
        host=socket.gethostname(), platform=platform.platform(), versions=versions(),
        command=list(command),
        **{k: answer[k] for k in ("lambda_max", "lambda_min", "converged", "status",
                                  "message", "data_passes", "hvp_calls", "seconds",
                                  "residual_max", "residual_min")},
        warmup=dict(warmup),
        reference=reference,
        errors=answer_errors(answer["lambda_max"], answer["lambda_min"], reference),
        cost_to_eps=cost_to_eps(result.trace, reference),
        trace=list(result.trace),
    )
