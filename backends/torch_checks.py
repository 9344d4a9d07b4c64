"""Checks of a PyTorch model for the Hessian operator: which parameters define H, and layers
whose loss is not a mean of per-sample losses (batch statistics) or that update state in place."""

from __future__ import annotations

from typing import Any

import torch

from hessbench.errors import InputError


def select_params(model: torch.nn.Module, params: Any) -> list[str]:
    """Names of the parameters that define H: all with requires_grad (params None), or the
    given names or Parameter objects of the model."""
    named = dict(model.named_parameters())
    if params is None:
        names = [k for k, p in named.items() if p.requires_grad]
    else:
        by_id = {id(p): k for k, p in named.items()}
        names = []
        for p in params:
            key = p if isinstance(p, str) else by_id.get(id(p))
            if key not in named:
                raise ValueError(
                    f"parameter {p if isinstance(p, str) else tuple(p.shape)!r} is not a "
                    f"parameter of the model; its parameters are: {', '.join(named)}"
                )
            names.append(key)
    if not names:
        raise ValueError("no parameters selected (none requires grad)")
    return names


def check_normalisation(model: torch.nn.Module, eval_mode: bool) -> None:
    """Refuse layers that make the loss depend on the batching (batch statistics) or that
    update running statistics in place during a product (torch.func cannot)."""
    batch_stats, running = [], []
    for name, m in model.named_modules():
        tracks = bool(getattr(m, "track_running_stats", False))
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and (not eval_mode
                                                                     or not tracks):
            batch_stats.append(f"{name or 'model'} ({type(m).__name__})")
        elif not eval_mode and tracks and getattr(m, "running_mean", None) is not None:
            running.append(f"{name or 'model'} ({type(m).__name__})")
    if batch_stats:
        why = ("eval_mode=False" if not eval_mode else "track_running_stats=False")
        raise InputError(
            f"the model's BatchNorm layers {', '.join(batch_stats)} would normalise with batch "
            f"statistics ({why}): the loss is then not a mean of per-sample losses and its "
            "Hessian depends on how the data are split into batches; use eval_mode=True with "
            "running statistics (track_running_stats=True, the default), or replace BatchNorm "
            "by a per-sample normalisation (GroupNorm, LayerNorm)")
    if running:
        raise InputError(
            f"the model's layers {', '.join(running)} update their running statistics in "
            "place in train mode, which a Hessian-vector product cannot do; use "
            "eval_mode=True (they then use the stored statistics)")
