"""Run one solver on one problem and produce a self-describing, JSON-ready record."""

from __future__ import annotations

import json
import platform
import socket
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hessbench import solvers
from hessbench import problems
from hessbench.metrics import ENDS, errors, time_to_eps
from hessbench.reference import compute_reference

EPSILONS = (0.1, 0.01)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("hessbench", "torch", "numpy", "scipy", "array-api-compat", "jax", "jaxlib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def cost_to_eps(trace: list[Any], reference: dict[str, float]) -> dict[str, Any]:
    """Cost to reach and stay within each eps, per end and for both ends together."""
    out: dict[str, Any] = {}
    for eps in EPSILONS:
        for label, ends in (("max", ("max",)), ("min", ("min",)), ("both", ENDS)):
            out[f"{label}@{eps:g}"] = time_to_eps(trace, reference, eps, ends)
    return out


def run_one(problem: str, solver: str, *, backend: str = "torch", seed: int = 0,
            which: str = "both", tol: float = 1e-3, budget: dict[str, Any] | None = None,
            dtype: str | None = None, device: str | None = None,
            problem_options: dict[str, Any] | None = None,
            solver_options: dict[str, Any] | None = None, progress: bool = True
            ) -> dict[str, Any]:
    """Solve ``problem`` with ``solver``; returns the run record (see README, "Run records")."""
    prob = problems.get(problem, **(problem_options or {}))
    slv = solvers.get(solver, tol=tol, **(solver_options or {}))
    reference = compute_reference(prob, progress=progress)
    ref = {k: reference[k] for k in ("lambda_max", "lambda_min", "method")}
    op = prob.operator(backend, dtype=dtype, device=device, progress=progress)
    result = slv.solve(op, which=which, seed=seed, budget=budget, progress=progress)
    summary = result.summary()
    return {
        "problem": problem, "problem_description": prob.description,
        "problem_config": prob.config, "problem_key": prob.key, "synthetic": prob.synthetic,
        "solver": solver, "solver_options": {"tol": tol, **(solver_options or {})},
        "backend": backend, "seed": seed, "which": which, "budget": budget or {},
        "dtype": str(op.dtype).replace("torch.", ""), "device": op.describe_device(),
        "parameters": op.size, "num_samples": op.num_samples,
        "host": socket.gethostname(), "platform": platform.platform(), "versions": versions(),
        "command": " ".join(sys.argv),
        **{k: summary[k] for k in ("lambda_max", "lambda_min", "converged", "status",
                                   "message", "data_passes", "hvp_calls", "seconds",
                                   "residual_max", "residual_min")},
        "reference": ref,
        "errors": errors(summary, reference),
        "cost_to_eps": cost_to_eps(result.trace, reference),
        "trace": [vars(row) for row in result.trace],
    }


def write_json(record: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, allow_nan=False))
    tmp.replace(path)
    return path
