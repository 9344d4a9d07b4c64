"""Eigensolver sections of ``scripts/gpu_check.py``: ``lanczos`` on ResNet-18 over 50,000
synthetic CIFAR-shaped samples in float32 (one process), the same in reduced precision
(bf16, TF32), and over several processes (torchrun, one GPU each).

The float32 solve runs to a tighter tolerance than the goal's (``ref_tol``, e.g. 1e-4) under a
seconds budget; its trace gives the goal's figure: the first step at which both ends pass the
solver's own stopping rule r <= stop_tol |theta| (r the Ritz residual). With the same seed a
``tol=stop_tol`` solve makes the same steps and stops there, so that step's data passes and
seconds (since the solve's start; warm-up excluded and reported apart) are what a self-stopped
solve costs, and its Ritz values are compared with the longer run's last ones (the reference;
an eigenvalue lies within the reference's residual of it). Errors are |lambda - lambda_ref| /
|lambda_ref| (dimensionless); seconds are wall seconds with the device synchronised.
"""

from __future__ import annotations

import math
import time
from typing import Any

from gpu_check_lib import Recorder, describe_model, guarded, make_parts, peak_memory_gib, torch_op

ENDS = ("max", "min")


def _operator(cfg: dict[str, Any], parts: Any, device: str, **kw: Any) -> Any:
    L = cfg["lanczos"]
    never = L["strategy"] == "auto"  # auto among the eager strategies: no compile in a solve
    return torch_op(parts, device, "float32", check_deterministic=False,
                    strategy=L["strategy"], compile_min_seconds=math.inf if never else 1.0,
                    **kw)


def _trace(result: Any) -> list[dict[str, Any]]:
    return [{"step": r.step, "seconds": r.seconds, "passes": r.data_passes,
             "lambda_max": r.lambda_max, "lambda_min": r.lambda_min,
             "residual_max": r.residual_max, "residual_min": r.residual_min}
            for r in result.trace]


def first_stop(trace: list[dict[str, Any]], tol: float) -> dict[str, Any] | None:
    """The first trace row where both ends pass r <= tol |theta| (the Lanczos stopping rule)."""
    for row in trace:
        if all(row[f"residual_{e}"] is not None and row[f"lambda_{e}"] is not None
               and row[f"residual_{e}"] <= tol * abs(row[f"lambda_{e}"]) for e in ENDS):
            return row
    return None


def _errors(values: dict[str, Any], ref: dict[str, Any]) -> dict[str, float | None]:
    out = {}
    for e in ENDS:
        a, b = values.get(f"lambda_{e}"), ref.get(f"lambda_{e}")
        out[e] = None if a is None or not b else abs(a - b) / abs(b)
    return out


def _solve_summary(result: Any) -> dict[str, Any]:
    return {"status": result.status, "converged": result.converged, "message": result.message,
            "lambda_max": result.lambda_max, "lambda_min": result.lambda_min,
            "residual_max": result.residual_max, "residual_min": result.residual_min,
            "data_passes": result.data_passes, "hvp_calls": result.hvp_calls,
            "seconds": result.seconds}


def _certify(op: Any, result: Any, rec: Recorder, pass_seconds: float) -> dict[str, Any]:
    """Explicit float32 residuals ||H x - theta x|| of the solve's unit Ritz vectors (one
    full product each), relative to |theta|."""
    out: dict[str, Any] = {}
    for e in ENDS:
        x, theta = getattr(result, f"vector_{e}"), getattr(result, f"lambda_{e}")
        if x is None or rec.left() < 1.5 * pass_seconds + 5:
            out[e] = "not measured: no vector or no time left"
            continue
        x = x.to(device=op.device, dtype=op.dtype)
        r = float((op.matvec(x) - theta * x).norm())
        out[e] = {"residual": r, "relative": r / abs(theta)}
    return out


def lanczos(cfg: dict[str, Any], rec: Recorder) -> None:
    """One float32 ``lanczos`` solve of both ends (see module docstring)."""
    from hessbench import solvers

    L, dev = cfg["lanczos"], cfg["device"]
    parts = make_parts(L["model"], L["samples"], L["batch"], cfg, dev)
    rec.put("model", describe_model(parts.model, L["model"], cfg["tiny"]))
    rec.put("sizes", {"samples": L["samples"], "batch": L["batch"], "dtype": "float32",
                      "stop_tol": L["stop_tol"], "ref_tol": L["ref_tol"],
                      "max_steps": L["max_steps"]})
    op = _operator(cfg, parts, dev)
    warm = rec.put("warm_up", op.warm_up())
    rec.put("device", op.describe_device())
    pass_s = warm["seconds"]  # the first product: an upper estimate of one pass
    seconds = rec.left() - 3 * pass_s - 10  # two certifying products and a step's overrun
    if seconds < 2 * pass_s:
        rec.finish("failed", f"no time for a solve: {rec.left():.0f} s left, a pass takes "
                             f"{pass_s:.1f} s")
        return
    solver = solvers.get("lanczos", tol=L["ref_tol"], max_steps=L["max_steps"])
    result = solver.solve(op, which="both", seed=cfg["seed"],
                          budget=solvers.Budget(max_seconds=seconds))
    trace = _trace(result)
    final = _solve_summary(result)
    run = rec.put("float32", {"solver": f"lanczos tol={L['ref_tol']}, seed={cfg['seed']}",
                              "budget_seconds": seconds, "final": final,
                              "seconds_per_pass": result.seconds / max(result.data_passes, 1),
                              "trace": trace, "peak_memory_gib": peak_memory_gib(dev)})
    stop = first_stop(trace, L["stop_tol"])
    ref_bound = {e: (final[f"residual_{e}"] / abs(final[f"lambda_{e}"])
                     if final[f"residual_{e}"] is not None and final[f"lambda_{e}"] else None)
                 for e in ENDS}
    run["reference"] = {"lambda_max": final["lambda_max"], "lambda_min": final["lambda_min"],
                        "relative_residual": ref_bound,
                        "what": "the last step of this longer run; an eigenvalue lies within "
                                "its residual of each value"}
    if stop is None:
        run["stop"] = {"reached": False, "passes": result.data_passes,
                       "seconds": result.seconds,
                       "why": f"both ends did not pass r <= {L['stop_tol']} |theta| within the "
                              "budget"}
    else:
        err = _errors(stop, final)
        run["stop"] = {"reached": True, **stop, "error_vs_reference": err,
                       "within_1pct": all(x is not None and x <= 0.01 for x in err.values()),
                       "how": f"first step of the trace with r <= {L['stop_tol']} |theta| at "
                              "both ends: a solve with tol=stop_tol and the same seed stops "
                              "here"}
    rec.put("float32", run)
    run["certified"] = guarded(rec, "certify", _certify, op, result, rec, pass_s)
    rec.put("float32", run)
    goal = {"target_seconds": 60.0, "devices": op.describe_device(),
            "strategy": warm.get("strategy"), "warm_up_seconds": warm["seconds"]}
    if stop is not None:
        goal.update(seconds=stop["seconds"], passes=stop["passes"],
                    within_1pct=run["stop"]["within_1pct"],
                    met=bool(run["stop"]["within_1pct"] and stop["seconds"] < 60.0))
    else:
        goal.update(met=False, reason=run["stop"]["why"],
                    seconds_so_far=result.seconds, passes_so_far=result.data_passes)
    rec.put("goal", goal)


def precision(cfg: dict[str, Any], rec: Recorder) -> None:
    """``lanczos`` (tol=stop_tol) on bf16 and TF32 products of the same operator; eigenvalue
    errors against the float32 reference (from the lanczos section, when it ran) and explicit
    float32 residuals of the Ritz vectors."""
    from hessbench import solvers

    L, dev = cfg["lanczos"], cfg["device"]
    ref = (cfg.get("previous") or {}).get("float32_reference")
    rec.put("reference", ref or "none: the float32 lanczos section gave no answer")
    todo = [p for p in L["precisions"] if p != "tf32" or dev.startswith("cuda")]
    for p in L["precisions"]:
        if p not in todo:
            rec.put(p, {"status": "skipped", "reason": "TF32 needs a CUDA device"})
    if not todo:
        rec.finish("skipped", "no reduced precision applies on this device")
        return
    parts = make_parts(L["model"], L["samples"], L["batch"], cfg, dev)
    op = _operator(cfg, parts, dev)
    pass_s = op.warm_up()["seconds"]
    for i, p in enumerate(todo):
        share = rec.left() / (len(todo) - i)
        guarded(rec, p, _precision_run, cfg, rec, op, p, share, pass_s, ref, solvers)


def _precision_run(cfg: dict[str, Any], rec: Recorder, op: Any, p: str, share: float,
                   pass_s: float, ref: dict[str, Any] | None, solvers: Any) -> None:
    L = cfg["lanczos"]
    rop = op.reduced_precision(p)
    warm = rop.warm_up()
    # the share less: the warm-up spent, two certifying float32 products, a step's overrun
    seconds = share - warm["seconds"] - 2 * pass_s - warm["seconds"] - 5
    entry: dict[str, Any] = rec.put(p, {"warm_up": warm, "budget_seconds": seconds})
    if seconds < 2 * warm["seconds"]:
        entry.update(status="skipped", reason="section time limit")
        rec.put(p, entry)
        return
    result = solvers.get("lanczos", tol=L["stop_tol"], max_steps=L["max_steps"]).solve(
        rop, which="both", seed=cfg["seed"], budget=solvers.Budget(max_seconds=seconds))
    entry.update(final=_solve_summary(result), trace=_trace(result),
                 seconds_per_pass=result.seconds / max(result.data_passes, 1))
    if ref:
        entry["error_vs_float32"] = _errors(entry["final"], ref)
    rec.put(p, entry)
    entry["certified_float32"] = _certify(op, result, rec, pass_s)
    entry["status"] = "ok"
    rec.put(p, entry)


def distributed(cfg: dict[str, Any], rec: Recorder) -> None:
    """The float32 ``lanczos`` solve (tol=stop_tol) with the torch.distributed operator, one
    process per GPU (CPU processes and gloo in a dry run), run under torchrun."""
    import torch.distributed as dist

    from hessbench import solvers
    from hessbench.backends.torch_distributed import broadcast_module
    from hessbench.distributed import shard_rows, start

    L = cfg["lanczos"]
    group, device = start("torch", "cuda" if cfg["device"].startswith("cuda") else "cpu")
    if group is None:
        raise RuntimeError("the distributed section must run under torchrun with 2+ processes")
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    parts = make_parts(L["model"], L["samples"], L["batch"], cfg, device or "cpu", save=False)
    broadcast_module(parts.model, group)
    rows = shard_rows(len(parts.inputs), rank, world)
    local = type(parts)(parts.model, parts.loss_fn, parts.inputs[rows], parts.targets[rows],
                        parts.batch_size)
    op = _operator(cfg, local, device or "cpu", process_group=group)
    warm = op.warm_up()
    seconds = cfg["deadline"] - time.time() - 2 * warm["seconds"] - 10
    if rank == 0:
        rec.put("setup", {"processes": world, "devices": op.describe_device(),
                          "warm_up": warm, "budget_seconds": seconds})
    result = solvers.get("lanczos", tol=L["stop_tol"], max_steps=L["max_steps"]).solve(
        op, which="both", seed=cfg["seed"], budget=solvers.Budget(max_seconds=max(seconds, 1)))
    if rank == 0:
        final = rec.put("final", _solve_summary(result))
        ref = (cfg.get("previous") or {}).get("float32_reference")
        err = _errors(final, ref) if ref else None
        rec.put("error_vs_float32_reference", err)
        within = bool(err) and all(x is not None and x <= 0.01 for x in err.values())
        rec.put("goal", {"processes": world, "devices": op.describe_device(),
                         "seconds": result.seconds, "passes": result.data_passes,
                         "self_stopped": result.converged, "within_1pct": within,
                         "target_seconds": 60.0,
                         "met": bool(result.converged and within and result.seconds < 60.0),
                         "warm_up_seconds": warm["seconds"]})
    dist.destroy_process_group()

