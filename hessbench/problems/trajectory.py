"""Trajectory problems: the Hessian at checkpoints along one seeded training run.

``digits-mlp-trajectory`` is ``digits-mlp`` (same data, model, seed and recipe: 300 full-batch
Adam steps, cosine schedule) at checkpoint ``k`` of ``checkpoints`` evenly spaced along the run:
the weights after ``round(k * steps / (checkpoints - 1))`` steps, so checkpoint 0 is the
initialisation and the last one the trained ``digits-mlp`` point. The run is made once by
:func:`hessbench.training.train` itself (a loss wrapper snapshots the weights as each step
starts) and all checkpoints are cached together in one entry; each checkpoint is its own
problem (``checkpoint`` is in ``config``), so references are cached per checkpoint.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hessbench.cache import CorruptEntry, brief, cached_entry, cache_dir, key_of
from hessbench.problems.nets import NetProblem, digits_data, digits_mlp
from hessbench.training import train


def checkpoint_steps(steps: int, checkpoints: int) -> list[int]:
    """The training steps after which each checkpoint is taken (first 0, last ``steps``)."""
    return [round(k * steps / (checkpoints - 1)) for k in range(checkpoints)]


@dataclass
class TrajectoryProblem(NetProblem):
    """A :class:`NetProblem` at one checkpoint (``config["checkpoint"]``) of its training run."""

    def trajectory(self, progress: bool = True) -> list[dict[str, torch.Tensor]]:
        """The state dicts of every checkpoint (trained once, then loaded from the cache)."""
        run_config = {k: v for k, v in self.config.items() if k != "checkpoint"}
        path = cache_dir() / "checkpoints" / f"{self.name}-run-{key_of(run_config)}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        marks = checkpoint_steps(self.recipe.steps, self.config["checkpoints"])

        def load(record: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
            try:
                states = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - unreadable in any way: rebuild
                raise CorruptEntry(path, f"unreadable trajectory ({brief(exc)})") from exc
            if not isinstance(states, list) or len(states) != len(marks):
                raise CorruptEntry(path, f"it does not hold {len(marks)} checkpoints")
            return states

        def build() -> tuple[dict[str, Any], dict[Any, bytes], list[dict[str, torch.Tensor]]]:
            torch.manual_seed(self.config["seed"])
            model = self.make_model()
            states: dict[int, dict[str, torch.Tensor]] = {}
            calls = 0

            def loss_fn(outputs: Any, targets: Any) -> torch.Tensor:
                # train() calls the loss once per step (before the update), then full_loss
                # at the end: call i sees the weights after i steps
                nonlocal calls
                if calls in marks and calls not in states:
                    states[calls] = {k: v.detach().to("cpu").clone()
                                     for k, v in model.state_dict().items()}
                calls += 1
                return F.cross_entropy(outputs, targets)

            inputs, targets = self.data()
            final = train(model, loss_fn, inputs, targets, self.recipe, progress=progress,
                          desc=f"training {self.name}")
            ordered = [states[m] for m in marks]
            buffer = io.BytesIO()
            torch.save(ordered, buffer)
            info = {"problem": self.name, **run_config, "steps": marks, "final_loss": final}
            return info, {path: buffer.getvalue()}, ordered

        _, states = cached_entry(path.with_suffix(".json"), [path], load, build)
        return states

    def trained_model(self, progress: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
        states = self.trajectory(progress)
        k = self.config["checkpoint"]
        torch.manual_seed(self.config["seed"])
        model = self.make_model().to(getattr(torch, self.recipe.dtype))
        model.load_state_dict(states[k])
        step = checkpoint_steps(self.recipe.steps, self.config["checkpoints"])[k]
        return model.to(torch.float32).eval(), {"checkpoint": k, "step": step}


def digits_mlp_trajectory(checkpoint: int = 19, checkpoints: int = 20) -> TrajectoryProblem:
    """``digits-mlp`` at checkpoint ``checkpoint`` (0 = initialisation, ``checkpoints - 1`` =
    trained) of ``checkpoints`` evenly spaced along its seeded 300-step training run."""
    if not 2 <= checkpoints <= 301:
        raise ValueError(f"checkpoints must be in 2..301, got {checkpoints}")
    if not 0 <= checkpoint < checkpoints:
        raise ValueError(f"checkpoint must be in 0..{checkpoints - 1}, got {checkpoint}")
    base = digits_mlp()
    step = checkpoint_steps(base.recipe.steps, checkpoints)[checkpoint]
    return TrajectoryProblem(
        name="digits-mlp-trajectory", dtype=base.dtype,
        description=f"digits-mlp after {step} of {base.recipe.steps} training steps "
                    f"(checkpoint {checkpoint} of {checkpoints})",
        config={**{k: v for k, v in base.config.items() if k != "recipe"},
                "checkpoint": checkpoint, "checkpoints": checkpoints},
        make_model=base.make_model, load_data=digits_data, batch_size=base.batch_size,
        recipe=base.recipe)
