"""What every peer adapter shares: the torch problem behind a hessbench operator, metering of
the peer's own Hessian-vector products, and the solver base class.

Metering. A peer multiplies by H through its own code, not through ``run.matvec``; the adapter
wraps the peer's product function (or the operator it iterates) in a :class:`PassMeter`, which
checks the budget before each product and charges ``op.meter`` after it exactly as
hessbench's own products do: a product over all N samples charges N samples (one data pass)
and one HVP call per vector; a product over a batch b charges |b| samples. Wall time is the
solve's (:class:`hessbench.solvers.base.Run`), so the peer's set-up (copying the model, its
gradient pass, curvlinops' determinism probe) counts in seconds; only HVPs count in passes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

import numpy as np
import torch

from hessbench.errors import InputError
from hessbench.registry import MissingDependencyError
from hessbench.solvers.base import BudgetExhausted, Run, Solver
from hessbench.solvers.kernels import ends

INSTALL = "pip install 'hessbench[peers]'"


def require(module: str, dist: str, pin: str) -> Any:
    """Import ``module`` of the distribution ``dist`` (pinned at ``pin``), or raise
    :class:`MissingDependencyError` with the install command (so ``hessbench solvers`` lists
    the adapter as unavailable)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise MissingDependencyError(
            f"needs {dist}=={pin} (Python package {module!r}), which is not installed: "
            f"{INSTALL} (see the README, 'The tools users run today')") from err


def peer_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


class PassMeter:
    """Charges a peer's products to ``run``: :meth:`wrap` a product function so that each call
    is checked against the budget first (``BudgetExhausted`` propagates out of the peer) and
    charged afterwards. ``products`` counts vectors multiplied, ``samples`` samples touched."""

    def __init__(self, run: Run) -> None:
        self.run, self.n = run, run.op.num_samples
        self.products = 0

    def charge(self, samples: int | None = None, vectors: int = 1) -> None:
        self.run.op.meter.charge(self.n if samples is None else samples, vectors)
        self.products += vectors

    def wrap(self, product: Callable[..., Any], samples: Callable[..., int] | None = None,
             vectors: Callable[..., int] | None = None) -> Callable[..., Any]:
        """``product`` metered: ``samples(*args)`` samples (default N: a full-data product) times
        ``vectors(*args)`` vectors (default 1) per call."""

        def metered(*args: Any, **kwargs: Any) -> Any:
            s = self.n if samples is None else samples(*args, **kwargs)
            k = 1 if vectors is None else vectors(*args, **kwargs)
            self.run.check_budget(s, k)
            out = product(*args, **kwargs)
            self.charge(s, k)
            return out

        return metered


class BatchMeanLoss(torch.nn.Module):
    """hessbench's ``loss_fn(outputs, targets)`` (a batch mean, by the operator's contract) as
    an ``nn.Module`` with ``reduction="mean"``, as curvlinops and PyHessian's users pass one."""

    reduction = "mean"

    def __init__(self, loss_fn: Callable[[Any, Any], torch.Tensor]) -> None:
        super().__init__()
        self.loss_fn = loss_fn

    def forward(self, outputs: Any, targets: Any) -> torch.Tensor:
        return self.loss_fn(outputs, targets)


@dataclass
class TorchParts:
    """A private copy of the problem behind a torch operator: the model in the operator's dtype
    and device, eval mode, only the operator's parameters trainable (so a peer's flat vectors
    follow ``op.param_names``), the loss (a batch mean) and the data."""

    model: torch.nn.Module
    params: list[torch.nn.Parameter]
    loss_fn: Callable[[Any, Any], torch.Tensor]
    criterion: torch.nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    batch_size: int

    def batches(self, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.inputs[i:i + size], self.targets[i:i + size])
                for i in range(0, len(self.inputs), size)]

    def equal_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of one size (for peers that average batches with equal weights): the fewest
        of at least ``ceil(N / batch_size)`` batches that divide N, or one batch of all N when
        that would need more than 4 times as many (N prime, say)."""
        n, least = len(self.inputs), -(-len(self.inputs) // self.batch_size)
        count = next((c for c in range(least, 4 * least + 1) if n % c == 0), 1)
        return self.batches(n // count)


def torch_parts(op: Any, solver: str) -> TorchParts:
    """The model, loss and data behind a hessbench torch ``HessianOperator`` (its ``model``,
    ``loss_fn``, ``param_names``, ``batch_size``, ``dtype``, ``device`` and tensor data);
    :class:`InputError` for any other operator (JAX, dense, a loader or several processes)."""
    from hessbench.backends.torch import HessianOperator

    if not isinstance(op, HessianOperator):
        raise InputError(f"solver {solver!r} runs a PyTorch library on the model itself and "
                         f"needs hessbench's torch operator (backend 'torch'), not "
                         f"{type(op).__module__}.{type(op).__name__}")
    tensors = getattr(op, "_tensors", None)
    if tensors is None or op.shard is not None:
        raise InputError(f"solver {solver!r} needs a torch operator built on one process from "
                         "a pair of tensors (inputs, targets), not a DataLoader or a process "
                         "group")
    model = copy.deepcopy(op.model).to(device=op.device, dtype=op.dtype).eval()
    chosen = set(op.param_names)
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(name in chosen)
        p.grad = None
        if name in chosen:
            params.append(p)
    with torch.no_grad():  # the operator's point (identical to the model's, cast)
        for p, value in zip(params, torch.split(op.theta, [p.numel() for p in params])):
            p.copy_(value.view_as(p))
    inputs, targets = tensors
    return TorchParts(model, params, op.loss_fn, BatchMeanLoss(op.loss_fn), inputs, targets,
                      op.batch_size)


@dataclass
class Answer:
    """A peer's final answer for one end; ``value`` None when the peer has no routine for it."""

    value: float | None
    converged: bool
    note: str
    residual: float | None = None


class PeerSolver(Solver):
    """A peer library's eigensolver run on the model behind a torch operator, its products
    metered (:class:`PassMeter`). ``tol`` is hessbench's tolerance: settings that keep the
    peer's defaults ignore it (the peer stops by its own rule); the careful settings use it.
    Subclasses implement ``_answers(run, which, rng, parts) -> {end: Answer}``; the run's one
    trace row is the final answer (peers expose no per-step estimates). The result message
    starts with the peer's name and installed version (``[PyHessian 0.1]``), which the run
    record keeps; an end the peer cannot compute is reported as unsupported (status
    ``"failed"``, no value), a peer that raises as failed with its error message."""

    dist: ClassVar[str] = ""
    pin: ClassVar[str] = ""

    def _answers(self, run: Run, which: str, rng: np.random.Generator,
                 parts: TorchParts) -> dict[str, Answer]:
        raise NotImplementedError

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        tag = f"[{self.dist} {peer_version(self.dist)}] "
        parts = torch_parts(run.op, self.name)
        seed = int(rng.integers(2**31 - 1))
        with torch.random.fork_rng(devices=[]):  # the peer's torch.randn draws are seeded
            torch.manual_seed(seed)
            try:
                answers = self._answers(run, which, rng, parts)
            except RuntimeError as err:  # e.g. PyHessian's call of the removed torch.eig
                run.record()
                return "failed", f"{tag}the peer raised {type(err).__name__}: {err}"
            except BudgetExhausted as stop:
                run.record()  # the ends published before the budget ran out, at its cost
                return "budget", f"{tag}{stop}"
        asked = ends(which)
        for end in asked:
            a = answers.get(end)
            if a is not None and a.value is not None:
                run.estimate(end, a.value, residual=a.residual)
        run.record()
        notes = "; ".join(f"{'λ' + end}: {answers[end].note}" for end in asked if end in answers)
        if any(answers.get(e) is None or answers[e].value is None for e in asked):
            return "failed", tag + notes
        if all(answers[e].converged for e in asked):
            return "converged", tag + notes
        return "max_steps", tag + notes


def publish(run: Run, end: str, answer: Answer) -> Answer:
    """Publish an end's answer as soon as the peer has it (kept if the budget stops the
    other end)."""
    if answer.value is not None:
        run.estimate(end, answer.value, residual=answer.residual)
    return answer


def unsupported(what: str) -> Answer:
    return Answer(None, False, f"unsupported: {what}")
