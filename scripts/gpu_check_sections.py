"""The checks of ``scripts/gpu_check.py`` that compare products: the environment, and the
CUDA (or, in a dry run, CPU) products of both backends against a float64 CPU product.

Each section is ``section(cfg, rec)``: ``cfg`` the settings (sizes, device, seed, work folder,
time budget), ``rec`` a :class:`gpu_check_lib.Recorder` that keeps what was measured so far.
Errors are relative 2-norm errors ||p - p_ref|| / ||p_ref|| (dimensionless) of one full-data
Hessian-vector product against the float64 product of the same weights, data and vector on
the CPU (torch, forward-over-reverse).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from gpu_check_lib import (FLOAT32_RTOL, FLOAT64_RTOL, Recorder, describe_model, error_text,
                           guarded, make_parts, rel_err, tf32_flags, to_numpy64, torch_op)


def environment(cfg: dict[str, Any], rec: Recorder) -> None:
    """Versions, devices and threads (no measurement)."""
    import importlib.metadata as md

    import torch

    import hessbench

    versions: dict[str, Any] = {"python": platform.python_version()}
    for pkg in ("torch", "jax", "jaxlib", "numpy", "scipy", "scikit-learn",
                "array-api-compat", "tqdm", "filelock"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    versions["cuda (torch build)"] = torch.version.cuda
    versions["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    import array_api_compat

    cuda = torch.cuda.is_available()
    fig = {
        "versions": versions,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
                                               "XLA_PYTHON_CLIENT_PREALLOCATE", "PYTHONPATH")},
        "hessbench_from": str(Path(hessbench.__file__).parent),
        "array_api_compat_from": str(Path(array_api_compat.__file__).parent),
        "cuda_available": cuda,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda else [],
    }
    rec.put("environment", fig)
    try:
        import jax

        fig["jax_devices"] = [str(d) for d in jax.devices()]
        fig["jax_default_backend"] = jax.default_backend()
    except Exception as err:  # noqa: BLE001 - recorded; JAX sections will fail on their own
        fig["jax_devices"] = error_text(err)
    rec.put("environment", fig)


def _reference(cfg: dict[str, Any], spec: dict[str, Any], parts: Any) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """(v, H v) in float64 on the CPU for the seeded vector v; kept in the work folder."""
    path = Path(cfg["workdir"]) / f"ref-{spec['model']}-{spec['samples']}-{cfg['seed']}.npz"
    if path.exists():
        saved = np.load(path)
        return saved["v"], saved["hv"]
    op = torch_op(parts, "cpu", "float64", strategy="forward-over-reverse",
                  check_deterministic=False)
    v = np.random.default_rng(cfg["seed"]).standard_normal(op.size)
    hv = to_numpy64(op.matvec(op.asarray(v)))
    np.savez(path, v=v, hv=hv)
    return v, hv


def _check(value: float, rtol: float, **extra: Any) -> dict[str, Any]:
    return {"rel_err": value, "rtol": rtol, "ok": bool(value <= rtol), **extra}


def _agree_torch_model(cfg: dict[str, Any], spec: dict[str, Any], rec: Recorder) -> None:
    import torch

    from hessbench.backends.base import NonDeterministicHVPError

    dev, name = cfg["device"], spec["model"]
    cuda = dev.startswith("cuda")
    parts = make_parts(name, spec["samples"], spec["batch"], cfg, dev)
    fig: dict[str, Any] = {**describe_model(parts.model, name, cfg["tiny"]),
                           "samples": spec["samples"], "batch": spec["batch"],
                           "reference": "torch, float64, CPU, forward-over-reverse"}
    checks: dict[str, Any] = {}
    fig["checks"] = checks
    v, ref = _reference(cfg, spec, parts)
    rec.put(name, fig)
    if cuda:  # as a user who switched TF32 on would have it: the operator must switch it off
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        fig["tf32_flags_before_build"] = tf32_flags()
    try:  # the user's default path: strategy "auto", determinism probe on
        op = torch_op(parts, dev, "float32")
        checks["determinism_probe"] = {"ok": True}
    except NonDeterministicHVPError as err:
        checks["determinism_probe"] = {"ok": False, "reason": error_text(err)}
        op = torch_op(parts, dev, "float32", check_deterministic=False)
    if cuda:
        flags = tf32_flags()
        checks["tf32_off_after_build"] = {
            "ok": not (flags["cuda.matmul.allow_tf32"] or flags["cudnn.allow_tf32"]),
            "flags": flags}
    e32 = rel_err(op.matvec(op.asarray(v)), ref)
    checks["float32"] = _check(e32, FLOAT32_RTOL, device=op.describe_device(),
                               strategy=op.product_setup().get("strategy"))
    rec.put(name, fig)
    bf16 = rel_err(op.reduced_precision("bf16").matvec(op.asarray(v)), ref)
    checks["bf16_product"] = {"rel_err": bf16, "note": "information: bfloat16 autocast"}
    if cuda:
        tf32 = rel_err(op.reduced_precision("tf32").matvec(op.asarray(v)), ref)
        checks["tf32_control"] = {
            "rel_err": tf32, "float32_error_below_tf32_error": bool(e32 < tf32),
            "flags_after": tf32_flags(),
            "note": "the same product with TF32 on: float32's error far below this shows "
                    "that the float32 product did not run in TF32"}
        rec.put(name, fig)
        cpu32 = torch_op(parts, "cpu", "float32", strategy="forward-over-reverse",
                         check_deterministic=False)
        checks["cpu_float32"] = {"rel_err": rel_err(cpu32.matvec(cpu32.asarray(v)), ref),
                                 "note": "information: float32 on the CPU, for scale"}
        op64 = torch_op(parts, dev, "float64", strategy="forward-over-reverse",
                        check_deterministic=False)
        checks["float64_on_device"] = _check(rel_err(op64.matvec(op64.asarray(v)), ref),
                                             FLOAT64_RTOL)
    fig["status"] = "ok" if all(c.get("ok", True) for c in checks.values()) else "failed"
    rec.put(name, fig)


def agreement_torch(cfg: dict[str, Any], rec: Recorder) -> None:
    """torch ``HessianOperator`` on ``cfg['device']``: float32 (default strategy) and float64
    products against float64 on the CPU; TF32 switched on beforehand and checked off after
    the operator is built; a TF32 product as control."""
    _each_model(cfg, rec, _agree_torch_model)


def _agree_jax_model(cfg: dict[str, Any], spec: dict[str, Any], rec: Recorder,
                     dtype: str) -> None:
    from hessbench.jax_models import operator_from_parts

    name = spec["model"]
    parts = make_parts(name, spec["samples"], spec["batch"], cfg, cfg["device"])
    v, ref = _reference(cfg, spec, parts)
    fig = rec.data["figures"].get(name) or {**describe_model(parts.model, name, cfg["tiny"]),
                                            "samples": spec["samples"],
                                            "batch": spec["batch"], "checks": {}}
    device = "gpu" if cfg["device"].startswith("cuda") else "cpu"
    op = operator_from_parts(parts, dtype=dtype, device=device)  # determinism probe on
    fig["checks"][dtype] = _check(rel_err(op.matvec(op.asarray(v)), ref),
                                  FLOAT32_RTOL if dtype == "float32" else FLOAT64_RTOL,
                                  device=op.describe_device())
    fig["status"] = "ok" if all(c.get("ok", True) for c in fig["checks"].values()) \
        else "failed"
    rec.put(name, fig)


def agreement_jax(cfg: dict[str, Any], rec: Recorder) -> None:
    """JAX ``HessianOperator`` (the same weights through ``hessbench.jax_models``) on the GPU
    (dry run: CPU), float32 then float64, against float64 torch on the CPU."""
    for dtype in ("float32", "float64"):  # float64 switches jax_enable_x64 on: last
        _each_model(cfg, rec, lambda c, s, r: _agree_jax_model(c, s, r, dtype),
                    label=dtype)


def _each_model(cfg: dict[str, Any], rec: Recorder, fn: Any, label: str = "") -> None:
    """Run ``fn`` per agreement model, each guarded; the section fails if any model does."""
    for spec in cfg["agreement"]:
        name = spec["model"]
        if rec.left() < cfg["min_part_seconds"]:
            entry = rec.data["figures"].setdefault(name, {})
            entry.setdefault("skipped", []).append(f"{label or 'all'}: section time limit")
            rec.put(name, entry)
            continue
        guarded(rec, name, fn, cfg, spec, rec)
    bad = [k for k, f in rec.data["figures"].items() if f.get("status") != "ok"]
    if bad:
        rec.finish("failed", f"checks failed or did not run for: {', '.join(bad)}")
