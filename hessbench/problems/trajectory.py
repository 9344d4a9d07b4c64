"""Trajectory problems: the Hessian at checkpoints along one seeded training run.

Registered: ``digits-mlp-trajectory``, ``digits-cnn-trajectory`` (20 checkpoints each, the
``digits-mlp`` / ``digits-cnn`` recipes) and ``synthetic-cifar-resnet20-trajectory`` (ResNet-20
on synthetic CIFAR-shaped data, sized for a CPU: by default 128 samples and 19 epochs = 19 SGD
steps of 128, 20 checkpoints: the initialisation and the weights after each step; options
``subset``, ``epochs``, ``checkpoints``). Its training takes seconds, but its references
(float64 Lanczos on 272,474 parameters, ~1 s per product on one CPU thread) take minutes per
checkpoint on a CPU: the CPU tracking study leaves it out.

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

from hessbench.cache import CorruptEntry, brief, cache_dir, cached_entry, key_of
from hessbench.problems.nets import (
    NetProblem,
    cifar_problem,
    digits_cnn,
    digits_mlp,
)
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
            except Exception as exc:
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


def _check(checkpoint: int, checkpoints: int, steps: int) -> None:
    if not 2 <= checkpoints <= steps + 1:
        raise ValueError(f"checkpoints must be in 2..{steps + 1}, got {checkpoints}")
    if not 0 <= checkpoint < checkpoints:
        raise ValueError(f"checkpoint must be in 0..{checkpoints - 1}, got {checkpoint}")


def along(base: NetProblem, name: str, checkpoint: int, checkpoints: int,
          label: str | None = None) -> TrajectoryProblem:
    """``base`` (a :class:`NetProblem`: same data, model, seed and recipe) at checkpoint
    ``checkpoint`` of ``checkpoints`` along its training run, named ``name`` (described as
    ``label``, default the base's name)."""
    _check(checkpoint, checkpoints, base.recipe.steps)
    step = checkpoint_steps(base.recipe.steps, checkpoints)[checkpoint]
    return TrajectoryProblem(
        name=name, dtype=base.dtype, synthetic=base.synthetic,
        description=f"{label or base.name} after {step} of {base.recipe.steps} training steps "
                    f"(checkpoint {checkpoint} of {checkpoints})",
        config={**{k: v for k, v in base.config.items() if k != "recipe"},
                "checkpoint": checkpoint, "checkpoints": checkpoints},
        make_model=base.make_model, load_data=base.load_data, batch_size=base.batch_size,
        recipe=base.recipe, local=dict(base.local))


def digits_mlp_trajectory(checkpoint: int = 19, checkpoints: int = 20) -> TrajectoryProblem:
    """``digits-mlp`` at checkpoint ``checkpoint`` (0 = initialisation, ``checkpoints - 1`` =
    trained) of ``checkpoints`` evenly spaced along its seeded 300-step training run."""
    return along(digits_mlp(), "digits-mlp-trajectory", checkpoint, checkpoints)


def digits_cnn_trajectory(checkpoint: int = 19, checkpoints: int = 20) -> TrajectoryProblem:
    """``digits-cnn`` at checkpoint ``checkpoint`` (0 = initialisation, ``checkpoints - 1`` =
    trained) of ``checkpoints`` evenly spaced along its seeded 300-step training run."""
    return along(digits_cnn(), "digits-cnn-trajectory", checkpoint, checkpoints)


def synthetic_cifar_resnet20_trajectory(checkpoint: int = 19, checkpoints: int = 20,
                                        subset: int = 128, epochs: int = 19
                                        ) -> TrajectoryProblem:
    """ResNet-20 (eval mode) on ``subset`` synthetic CIFAR-shaped samples at checkpoint
    ``checkpoint`` of ``checkpoints`` along ``epochs`` epochs of SGD (batches of 128), sized
    for a CPU; ``synthetic-cifar-resnet20`` with fewer samples and steps."""
    if subset < 1 or epochs < 1:
        raise ValueError(f"subset and epochs must be >= 1, got {subset} and {epochs}")
    base = cifar_problem("synthetic-cifar-resnet20", "resnet20", subset=subset, synthetic=True,
                         epochs=epochs)
    return along(base, "synthetic-cifar-resnet20-trajectory", checkpoint, checkpoints,
                 label=f"ResNet-20 on SYNTHETIC CIFAR-shaped data (N={subset:,})")
