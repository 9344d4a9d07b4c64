"""Timing section of ``scripts/gpu_check.py``: seconds of a full-data gradient, a full-data
Hessian-vector product (HVP) per strategy, and ``matmat`` per vector, side by side.

For one model on synthetic CIFAR-shaped data (chunks of ``batch`` samples) it builds one torch
``HessianOperator`` per strategy (eager: forward-over-reverse, reverse-over-reverse and the
default ``auto``; compiled: ``compiled``) over the same weights and data, makes every first
call untimed (allocation, cuDNN autotuning, compilation: reported as ``warmup_seconds``), then
times rounds, interleaved so that a busy device slows all alike, while the section's budget
lasts. Figures are medians over rounds of wall seconds with the device synchronised; ratios
are HVP pass / gradient pass and (matmat seconds / k) / HVP pass (dimensionless).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np

from gpu_check_lib import (Recorder, describe_model, error_text, guarded, make_parts,
                           peak_memory_gib, synchronize, torch_op)

EAGER = ("forward-over-reverse", "reverse-over-reverse", "auto")


def _timed(fn: Callable[[], Any], device: str) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def _warm(op: Any, v: Any, blocks: dict[int, Any], rec: Recorder, device: str,
          entry: dict[str, Any]) -> None:
    """First calls of one operator, each timed once (compilation included); a block that
    fails (e.g. out of memory) is recorded and left out."""
    warm = entry.setdefault("warmup_seconds", {})
    warm["hvp"] = _timed(lambda: op.matvec(v), device)
    rec.put("strategies", rec.data["figures"]["strategies"])
    for k, V in blocks.items():
        if rec.left() < 2 * warm["hvp"] + 5:  # a block compiles anew: as long again
            entry.setdefault("block_errors", {})[str(k)] = "section time limit"
            continue
        try:
            warm[f"block{k}"] = _timed(lambda: op.matmat(V), device)
        except Exception as err:  # noqa: BLE001 - recorded; single products still timed
            entry.setdefault("block_errors", {})[str(k)] = error_text(err)
        rec.put("strategies", rec.data["figures"]["strategies"])


def timing(cfg: dict[str, Any], rec: Recorder, model: str, compiled: bool) -> None:
    """Gradient vs HVP vs ``matmat`` per vector for ``model``, eager or compiled."""
    t, dev = cfg["timing"], cfg["device"]
    parts = make_parts(model, t["samples"], t["batch"], cfg, dev)
    rec.put("model", describe_model(parts.model, model, cfg["tiny"]))
    rec.put("sizes", {"samples": t["samples"], "batch": t["batch"], "dtype": "float32",
                      "blocks": t["blocks"]})
    rng = np.random.default_rng(cfg["seed"])
    names = ("compiled",) if compiled else EAGER
    ops: dict[str, Any] = {}
    entries: dict[str, dict[str, Any]] = rec.put("strategies", {})
    v = blocks = None
    for name in names:
        entry = entries.setdefault(name, {})
        try:
            op = torch_op(parts, dev, "float32", strategy=name, check_deterministic=False)
            if v is None:
                v = op.random_vector(rng)
                blocks = {k: op.asarray(rng.standard_normal((op.size, k)))
                          for k in t["blocks"]}
            _warm(op, v, blocks, rec, dev, entry)
            entry["setup"] = op.product_setup()
            ops[name] = op
        except Exception as err:  # noqa: BLE001 - recorded; the other strategies still run
            entry.update(status="failed", reason=error_text(err))
        rec.put("strategies", entries)
    if not ops:
        rec.finish("failed", "no strategy ran")
        return
    base = next(iter(ops.values()))
    rec.put("gradient_warmup_seconds", _timed(base.gradient, dev))
    if not compiled:
        guarded(rec, "determinism_probe", _probe, base, rec)
    _rounds(cfg, rec, ops, v, blocks, base)


def _probe(op: Any, rec: Recorder) -> None:
    from hessbench.backends.base import NonDeterministicHVPError

    try:
        rec.put("determinism_probe", {"ok": True, "rel_diff": op.probe_determinism(),
                                      "strategy": op.product_setup().get("strategy")})
    except NonDeterministicHVPError as err:
        rec.put("determinism_probe", {"ok": False, "reason": error_text(err)})


def _rounds(cfg: dict[str, Any], rec: Recorder, ops: dict[str, Any], v: Any,
            blocks: dict[int, Any], base: Any) -> None:
    dev = cfg["device"]
    times: dict[str, list[float]] = {}

    def add(key: str, seconds: float) -> None:
        times.setdefault(key, []).append(seconds)

    done, last = 0, 0.0
    while done < cfg["timing"]["rounds"] and (done == 0 or rec.left() > 1.3 * last + 3):
        t0 = time.perf_counter()
        add("gradient", _timed(base.gradient, dev))
        for name, op in ops.items():
            add(name, _timed(lambda: op.matvec(v), dev))
            warmed = rec.data["figures"]["strategies"][name]["warmup_seconds"]
            for k, V in blocks.items():
                if f"block{k}" in warmed:
                    add(f"{name}/block{k}", _timed(lambda: op.matmat(V), dev) / k)
        done, last = done + 1, time.perf_counter() - t0
        _summarise(rec, times, ops, blocks, done)
    rec.put("peak_memory_gib", peak_memory_gib(dev))


def _summarise(rec: Recorder, times: dict[str, list[float]], ops: dict[str, Any],
               blocks: dict[int, Any], rounds: int) -> None:
    med = {k: statistics.median(t) for k, t in times.items()}
    grad = med["gradient"]
    rec.data["figures"]["rounds"] = rounds
    rec.data["figures"]["gradient_seconds"] = grad
    entries = rec.data["figures"]["strategies"]
    for name in ops:
        entry = entries[name]
        entry["hvp_seconds"] = med[name]
        entry["hvp_over_gradient"] = med[name] / grad
        entry["matmat_per_vector"] = {
            str(k): {"seconds": med[f"{name}/block{k}"],
                     "over_hvp": med[f"{name}/block{k}"] / med[name]}
            for k in blocks if f"{name}/block{k}" in med}
    rec.put("strategies", entries)
