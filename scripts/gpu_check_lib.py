"""Shared pieces of the GPU check (``scripts/gpu_check.py``): models, synthetic data, the
result file a section writes as it goes, and small measurements.

Models are hessbench's CIFAR ResNets at a random initialisation (seeded), never trained, with
BatchNorm running statistics taken from one no-grad pass in train mode over the first samples
(so that eval-mode activations are normalised); a dry run uses tiny ResNets of the same code.
Data are hessbench's SYNTHETIC CIFAR-shaped images (not CIFAR-10).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

#: tiny stand-ins for a dry run: (widths, blocks per stage) of hessbench.resnet.CifarResNet
TINY = {"resnet20": ((4, 8), (1, 1)), "resnet18": ((8, 16), (1, 1))}

#: relative error of a float32 product against float64 allowed as "float32 level" (measured
#: ~1e-7 to 1e-6 on CPUs; TF32's is ~1e-3, bfloat16's ~1e-2)
FLOAT32_RTOL = 1e-4
#: relative error of a float64 product on another device or backend against the CPU's
FLOAT64_RTOL = 1e-10


def weights_note(cfg: dict[str, Any]) -> str:
    return (f"random initialisation (torch.manual_seed({cfg['seed']}); hessbench.resnet's "
            "He-normal convolutions, BatchNorm weight 1 and bias 0, torch's default linear "
            "head), BatchNorm running statistics from one no-grad pass in train mode over the "
            f"first {cfg['bn_samples']} samples; no training; the Hessian is taken in eval mode")


def data_note(cfg: dict[str, Any]) -> str:
    return (f"SYNTHETIC CIFAR-shaped images, hessbench.cifar.synthetic_cifar10(N, "
            f"seed={cfg['seed']}): not CIFAR-10")


def make_model(name: str, tiny: bool) -> Any:
    """A freshly initialised CIFAR ResNet (``resnet20`` / ``resnet18``, or its tiny stand-in)."""
    from hessbench import resnet

    if tiny:
        widths, blocks = TINY[name]
        return resnet.CifarResNet(widths, blocks)
    return getattr(resnet, name)()


def describe_model(model: Any, name: str, tiny: bool) -> dict[str, Any]:
    params = sum(p.numel() for p in model.parameters())
    arch = f"tiny CifarResNet{TINY[name]} standing in for {name} (dry run)" if tiny else name
    return {"name": name, "architecture": arch, "parameters": int(params)}


def calibrate_batchnorm(model: Any, inputs: Any, device: str, batch: int = 256) -> None:
    """Set BatchNorm running statistics to the mean and variance over ``inputs`` (one no-grad
    pass in train mode with a cumulative average), then eval mode, on the CPU."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.to(device).train()
    with torch.no_grad():
        for lo in range(0, len(inputs), batch):
            model(inputs[lo:lo + batch].to(device))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.cpu().eval()


def synthetic_data(samples: int, cfg: dict[str, Any], save: bool = True) -> tuple[Any, Any]:
    """``synthetic_cifar10(samples, seed)``, kept in the work folder when large (50,000
    images take seconds to make)."""
    import torch

    from hessbench.cifar import synthetic_cifar10

    path = Path(cfg["workdir"]) / f"data-{samples}-{cfg['seed']}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    data = synthetic_cifar10(samples, seed=cfg["seed"])
    if save and samples >= 4096:
        torch.save(data, path)
    return data


def make_parts(name: str, samples: int, batch: int, cfg: dict[str, Any], device: str,
               save: bool = True) -> Any:
    """A problem's parts (model, loss, data, chunk size) for ``name`` on ``samples`` synthetic
    samples; the model is on the CPU in float32 (the operators copy it). The calibrated
    weights are kept in the work folder, so every section (and process) that asks for the same
    model and samples gets the same weights."""
    import torch
    import torch.nn.functional as F

    from hessbench.problems.base import TorchProblemParts

    inputs, targets = synthetic_data(samples, cfg, save)
    torch.manual_seed(cfg["seed"])
    model = make_model(name, cfg["tiny"])
    path = Path(cfg["workdir"]) / f"model-{name}-{samples}-{cfg['seed']}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        model.eval()
    else:
        calibrate_batchnorm(model, inputs[:cfg["bn_samples"]], device)
        if save:
            torch.save(model.state_dict(), path)
    return TorchProblemParts(model, F.cross_entropy, inputs, targets, batch)


def torch_op(parts: Any, device: str, dtype: str, **kw: Any) -> Any:
    """The torch ``HessianOperator`` of ``parts`` (keywords passed on)."""
    import torch

    from hessbench.backends.torch import HessianOperator

    return HessianOperator(parts.model, parts.loss_fn, (parts.inputs, parts.targets),
                           batch_size=parts.batch_size, device=device,
                           dtype=getattr(torch, dtype), **kw)


def to_numpy64(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x, dtype=np.float64)


def rel_err(x: Any, ref: np.ndarray) -> float:
    """||x - ref|| / ||ref|| in float64 (dimensionless)."""
    return float(np.linalg.norm(to_numpy64(x) - ref) / np.linalg.norm(ref))


def tf32_flags() -> dict[str, Any]:
    """torch's TF32 switches as they are now (legacy flags and, where present, the newer
    ``fp32_precision`` settings)."""
    import torch

    out: dict[str, Any] = {
        "cuda.matmul.allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn.allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision()}
    for key, obj in (("cuda.matmul.fp32_precision", torch.backends.cuda.matmul),
                     ("cudnn.conv.fp32_precision", getattr(torch.backends.cudnn, "conv", None))):
        value = getattr(obj, "fp32_precision", None)
        if value is not None:
            out[key] = str(value)
    return out


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_gib(device: str) -> float | None:
    import torch

    if not device.startswith("cuda"):
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:600]


class Recorder:
    """A section's result, rewritten to ``path`` (atomically) at every update, so that what a
    section measured survives when it is stopped at its time limit."""

    def __init__(self, path: str | os.PathLike[str], budget: float) -> None:
        self.path = Path(path)
        self.start = time.perf_counter()
        self.budget = budget
        self.data: dict[str, Any] = {"status": "running", "reason": None, "figures": {}}
        self.write()

    def left(self) -> float:
        """Seconds left of this section's budget."""
        return self.budget - (time.perf_counter() - self.start)

    def put(self, key: str, value: Any) -> Any:
        self.data["figures"][key] = value
        self.write()
        return value

    def finish(self, status: str, reason: str | None = None) -> None:
        self.data.update(status=status, reason=reason)
        self.write()

    def fail(self, err: BaseException) -> None:
        self.data["traceback"] = traceback.format_exc()[-3000:]
        self.finish("failed", error_text(err))

    def write(self) -> None:
        self.data["seconds"] = round(time.perf_counter() - self.start, 3)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)


def guarded(rec: Recorder, key: str, fn: Any, *args: Any, **kw: Any) -> Any:
    """Run one part of a section; an exception is recorded under ``key`` as
    ``{"status": "failed", "reason": ...}`` and the section goes on. Returns fn's value or
    None."""
    try:
        return fn(*args, **kw)
    except Exception as err:  # noqa: BLE001 - recorded; the other parts still run
        rec.put(key, {**rec.data["figures"].get(key, {}), "status": "failed",
                      "reason": error_text(err), "traceback": traceback.format_exc()[-1500:]})
        return None
