"""Deterministic short training recipes that put a model at a trained point, cached on disk.

A checkpoint is ``<key>.pt`` (the state dict, ``torch.save``) and ``<key>.json`` (recipe,
final loss), written atomically, the ``.pt`` first, by :func:`hessbench.cache.write_entry`; the
JSON records the sha256 of the ``.pt`` bytes and of its own values. :func:`load_or_train`
checks both hashes, then that the saved tensors have the model's names and shapes; a checkpoint
failing any check (truncated, unreadable, edited, missing half) is moved aside with a one-line
warning and retrained. Concurrent builders of one checkpoint are serialised by its entry lock:
the first trains, the others wait and load its checkpoint. A checkpoint without hashes (from
before they were recorded) that loads gets them added to its JSON; it is not retrained.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from hessbench.cache import CorruptEntry, brief, cached_entry


@dataclass(frozen=True)
class Recipe:
    """Mini-batch (or full-batch, ``batch_size=None``) training with a seeded order.

    ``optimizer`` is ``"adam"`` or ``"sgd"`` (momentum 0.9); the learning rate follows a cosine
    schedule from ``lr`` to 0 over ``steps``; ``dtype`` is the training precision.
    """

    steps: int
    lr: float
    optimizer: str = "adam"
    batch_size: int | None = None
    weight_decay: float = 0.0
    dtype: str = "float32"
    seed: int = 0


def train(model: torch.nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor],
          inputs: torch.Tensor, targets: torch.Tensor, recipe: Recipe, *,
          device: str | torch.device = "cpu", progress: bool = True, desc: str = "training"
          ) -> float:
    """Train ``model`` in place; returns the final full-data loss (eval mode)."""
    dtype = getattr(torch, recipe.dtype)
    model.to(device=device, dtype=dtype).train()
    x_all = inputs.to(device=device, dtype=dtype)
    y_all = targets.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer
    if recipe.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    elif recipe.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=recipe.lr, momentum=0.9,
                              weight_decay=recipe.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}; use 'adam' or 'sgd'")
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.steps)
    gen = torch.Generator().manual_seed(recipe.seed)
    n = len(x_all)
    order = torch.randperm(n, generator=gen)
    pos = 0
    bar = tqdm(range(recipe.steps), desc=desc, disable=not progress, leave=False)
    for _ in bar:
        if recipe.batch_size is None:
            x, y = x_all, y_all
        else:
            if pos + recipe.batch_size > n:
                order, pos = torch.randperm(n, generator=gen), 0
            sel = order[pos:pos + recipe.batch_size].to(device)
            pos += recipe.batch_size
            x, y = x_all[sel], y_all[sel]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training diverged: loss {loss.item()} ({desc})")
        loss.backward()
        opt.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3g}", refresh=False)
    return full_loss(model, loss_fn, x_all, y_all)


@torch.no_grad()
def full_loss(model: torch.nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor],
              inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 512) -> float:
    """Mean loss over all samples, model in eval mode."""
    model.eval()
    total = 0.0
    for start in range(0, len(inputs), batch_size):
        x, y = inputs[start:start + batch_size], targets[start:start + batch_size]
        total += loss_fn(model(x), y).item() * len(x)
    return total / len(inputs)


def load_or_train(path: Path, model: torch.nn.Module, train_fn: Callable[[], float],
                  meta: dict[str, Any]) -> dict[str, Any]:
    """Load the checkpoint at ``path`` into ``model``, or run ``train_fn`` and save it.

    Returns the checkpoint metadata (``meta`` and ``final_loss``). Checked, locked and written
    as the module docstring says; ``model`` must be freshly initialised (a rebuild trains it).
    """
    path = Path(path)

    def load(record: dict[str, Any]) -> None:
        _load_weights(path, model)

    def build() -> tuple[dict[str, Any], dict[Path, bytes], None]:
        final = train_fn()
        model.to("cpu")
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        return {**meta, "final_loss": final}, {path: buffer.getvalue()}, None

    info, _ = cached_entry(path.with_suffix(".json"), [path], load, build)
    return info


def _load_weights(path: Path, model: torch.nn.Module) -> None:
    """Load the state dict at ``path`` into ``model``; raises ``CorruptEntry`` (leaving the model
    untouched) when the file is unreadable or its tensors' names or shapes differ."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, OSError...: all mean "rebuild"
        raise CorruptEntry(path, f"unreadable checkpoint ({brief(exc)})") from exc
    expected = model.state_dict()
    if not isinstance(state, dict) or set(state) != set(expected):
        raise CorruptEntry(path, "its tensor names differ from the model's")
    for name, tensor in expected.items():
        shape = getattr(state[name], "shape", None)
        if shape != tensor.shape:
            raise CorruptEntry(path, f"its tensor {name} has shape {shape}, the model's "
                                     f"{tuple(tensor.shape)}")
    model.load_state_dict(state)


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    return asdict(recipe)
