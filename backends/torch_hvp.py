"""How the PyTorch operator computes one chunk's Hessian-vector product, and how it chooses.

A strategy maps (v, inputs, targets) to H_b v, the Hessian of the batch-mean loss on one chunk
b of the data times v (and a block of vectors to H_b V):

- ``"forward-over-reverse"``: ``torch.func.jvp`` of ``torch.func.grad`` (Pearlmutter's
  R-operator); blocks by ``torch.func.vmap`` over the tangents. The reference strategy.
- ``"reverse-over-reverse"``: double backward, g = dL/dtheta with ``create_graph=True``, then
  H v = d(g . v)/dtheta; blocks by one batched backward (``is_grads_batched``).
- ``"compiled"``: forward-over-reverse (and its vmapped block) through ``torch.compile``
  (a warning is logged before compiling: a compiler crash kills the process, as torch 2.13's
  Inductor does on the quadratic problems' reflection loop, so the reader knows why). Every
  new input shape is first checked against the reference strategy on that chunk (a known
  compiler issue can silently drop forward-mode tangents); a shape that disagrees is computed
  by the reference strategy from then on, and the disagreement is recorded.
- ``"auto"`` (the operator's default): on the first product, time the eager strategies on the
  first chunk of the data and keep the fastest whose product agrees with the reference to
  :func:`agreement_rtol`; the compiled strategy joins the candidates when the fastest eager
  full-data product is estimated at ``compile_min_seconds`` or more (compilation costs 5-100 s
  on a CPU: it is repaid only by long products). Blocks of k vectors are chosen the same way on
  the first block of each width, with one more candidate, ``"loop"``: k single products by the
  single-product strategy (blocks do not always pay: on CPU convolutions a vmapped block costs
  more per vector than single products); compiled blocks are not tried on a CPU (on ResNet-20
  they took 160-255 s per width to compile and ran slower than the eager blocks). The timing products are counted (``timing_samples``,
  the samples they touched) and recorded by :meth:`Strategies.setup`, not charged to the
  operator's meter, which counts exactly the products asked for.

Seconds in :class:`Candidate` are medians of a few products on one chunk, wall clock with the
device synchronised; the candidate that wins has the least.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.func import grad, jvp, vmap

from hessbench.backends.base import PROBE_SEED, Candidate, agreement_rtol

LOG = logging.getLogger("hessbench")

REFERENCE = "forward-over-reverse"
STRATEGIES = ("forward-over-reverse", "reverse-over-reverse", "compiled")
CHOICES = ("auto", *STRATEGIES)
EAGER = ("forward-over-reverse", "reverse-over-reverse")

Loss = Callable[[torch.Tensor, Any, Any], torch.Tensor]  # loss(theta, inputs, targets)
Product = Callable[[torch.Tensor, Any, Any], torch.Tensor]


@dataclass
class Choice:
    """The strategy in use for single products or for blocks of one width, and why."""

    strategy: str
    candidates: list[Candidate] = field(default_factory=list)


PRECISIONS = ("bf16", "tf32")


def check_precision(precision: str, device: torch.device, dtype: torch.dtype) -> None:
    """Raise ``ValueError`` unless ``precision`` would change products in ``dtype`` on
    ``device``: bf16 autocast and TF32 act on float32 arithmetic only (float64 stays float64)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "tf32" and device.type != "cuda":
        raise ValueError(f"TF32 products need a CUDA device; this operator runs on {device}")
    if dtype != torch.float32:
        raise ValueError(f"{precision} products change float32 arithmetic only; this operator "
                         f"computes in {str(dtype).removeprefix('torch.')}, which they would "
                         f"leave as it is: build the operator with dtype=torch.float32")


@contextlib.contextmanager
def precision_context(precision: str | None, device: torch.device) -> Iterator[None]:
    """Products in reduced precision inside: ``"bf16"`` autocasts to bfloat16 (matmuls and
    convolutions; reductions and the loss stay in float32), ``"tf32"`` allows TF32 matmuls and
    convolutions on CUDA (restored after); ``None`` changes nothing."""
    if precision is None:
        yield
    elif precision == "tf32":
        flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    else:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield


def check_strategy(strategy: str) -> str:
    if strategy not in CHOICES:
        raise ValueError(f"strategy must be one of {', '.join(CHOICES)}; got {strategy!r}")
    return strategy


class Strategies:
    """The products of one operator: ``single(v, x, y)`` and ``block(V, x, y)`` (V of shape
    (k, n), one vector per row; returns (k, n)), by the asked strategy or the one ``auto``
    chose. ``loss(theta, inputs, targets)`` is the batch-mean loss at the flat parameters."""

    def __init__(self, loss: Loss, theta: torch.Tensor, strategy: str = "auto", *,
                 compile_min_seconds: float = 1.0, block_chunk: int | None = None,
                 synchronize: Callable[[], None] = lambda: None) -> None:
        self.loss, self.theta = loss, theta
        self.asked = check_strategy(strategy)
        self.compile_min_seconds = compile_min_seconds
        self.block_chunk = block_chunk
        self.synchronize = synchronize
        self.single_choice: Choice | None = None
        self.block_choice: dict[int, Choice] = {}
        self._compiled: dict[str, Any] = {}
        self._checked: dict[tuple, bool] = {}  # (kind, shapes) -> compiled product agreed
        self.fallbacks: list[str] = []
        self.timing_samples = 0  # samples touched by the products that timed candidates

    def fresh(self, loss: Loss) -> Strategies:
        """The same options, nothing chosen yet, for another loss (a reduced precision)."""
        return Strategies(loss, self.theta, self.asked,
                          compile_min_seconds=self.compile_min_seconds,
                          block_chunk=self.block_chunk, synchronize=self.synchronize)

    def settled(self, block: int | None) -> bool:
        """Whether the strategy for single products (None) or blocks of ``block`` is chosen."""
        return self.single_choice is not None if block is None else block in self.block_choice

    # -- the strategies ------------------------------------------------------------------------
    def _fwd_rev(self, v: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        g = grad(self.loss)
        return jvp(lambda p: g(p, x, y), (self.theta,), (v,))[1]

    def _fwd_rev_block(self, V: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        return vmap(lambda t: self._fwd_rev(t, x, y), chunk_size=self.block_chunk)(V)

    def _rev_rev(self, V: torch.Tensor, x: Any, y: Any, batched: bool = False) -> torch.Tensor:
        theta = self.theta.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.loss(theta, x, y), theta, create_graph=True)
            (hv,) = torch.autograd.grad(g, theta, grad_outputs=V, is_grads_batched=batched)
        return hv.detach()

    def _rev_rev_block(self, V: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        rows = self.block_chunk or len(V)
        return torch.cat([self._rev_rev(V[i:i + rows], x, y, batched=True)
                          for i in range(0, len(V), rows)])

    def _compiled_fn(self, kind: str) -> Any:
        if kind not in self._compiled:
            LOG.warning(
                "hessbench: compiling the Hessian-vector product with torch.compile "
                "(strategy %r; one-off, seconds to minutes). If the process crashes here, "
                "a compiler bug is the likely cause (torch 2.13's Inductor segfaults on some "
                "models): pass strategy='reverse-over-reverse' or 'forward-over-reverse' "
                "(--strategy on the command line).",
                self.asked)
            fn = self._fwd_rev if kind == "single" else self._fwd_rev_block
            self._compiled[kind] = torch.compile(fn, dynamic=False)
        return self._compiled[kind]

    def _checked_compiled(self, kind: str, V: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        """The compiled product, checked against the reference on the first chunk of each
        shape; a shape that disagreed is computed by the reference from then on."""
        key = (kind, tuple(V.shape), _shapes(x), _shapes(y))
        reference = self._fwd_rev if kind == "single" else self._fwd_rev_block
        if key not in self._checked:
            out, ref = self._compiled_fn(kind)(V, x, y), reference(V, x, y)
            diff = _rel_diff(out, ref)
            self._checked[key] = diff <= agreement_rtol(self.theta.dtype)
            if not self._checked[key]:
                self.fallbacks.append(
                    f"compiled {kind} product for input shapes {key[1:]} differed from "
                    f"forward-over-reverse by {diff:.1e} (relative): computed by "
                    "forward-over-reverse instead")
            return out if self._checked[key] else ref
        return self._compiled_fn(kind)(V, x, y) if self._checked[key] else reference(V, x, y)

    def _loop(self, V: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        return torch.stack([self.single(v, x, y) for v in V])

    def _product(self, name: str, kind: str) -> Product:
        if name == "loop":
            return self._loop
        if name == "compiled":
            return lambda V, x, y: self._checked_compiled(kind, V, x, y)
        if kind == "single":
            return self._fwd_rev if name == REFERENCE else (
                lambda v, x, y: self._rev_rev(v, x, y))
        return self._fwd_rev_block if name == REFERENCE else self._rev_rev_block

    # -- what the operator calls ---------------------------------------------------------------
    def single(self, v: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        if self.single_choice is None:
            raise RuntimeError("call choose() with the first chunk before the first product")
        return self._product(self.single_choice.strategy, "single")(v, x, y)

    def block(self, V: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        return self._product(self.block_choice[len(V)].strategy, "block")(V, x, y)

    def choose(self, chunk: tuple[Any, Any], chunks_per_pass: float,
               block: int | None = None, chunk_samples: int = 0) -> None:
        """Settle the strategy for single products (``block=None``) or blocks of ``block``
        vectors, timing candidates on ``chunk`` (of ``chunk_samples`` samples) if asked for
        ``auto``; the timing products are counted in ``timing_samples``."""
        if self.settled(block):
            return
        kind = "single" if block is None else "block"
        if self.asked != "auto":
            choice = Choice(self.asked)
        else:
            choice, made = self._time_candidates(kind, chunk, chunks_per_pass, block or 1)
            self.timing_samples += made * chunk_samples
        if block is None:
            self.single_choice = choice
        else:
            self.block_choice[block] = choice

    def _time_candidates(self, kind: str, chunk: tuple[Any, Any], chunks_per_pass: float,
                         width: int, repeats: int = 3) -> tuple[Choice, int]:
        x, y = chunk
        rng = np.random.default_rng(PROBE_SEED)
        V = torch.as_tensor(rng.standard_normal((width, self.theta.numel())),
                            dtype=self.theta.dtype, device=self.theta.device)
        arg = V[0] if kind == "single" else V
        ref = None
        candidates, made = [], 0
        names = (*EAGER, "compiled") if kind == "single" else (*EAGER, "loop", "compiled")
        for name in names:
            if name == "compiled":
                eager = [c.seconds for c in candidates if c.accepted]
                if not eager or min(eager) * width * chunks_per_pass < self.compile_min_seconds:
                    continue
                if kind == "block" and self.theta.device.type == "cpu":
                    continue  # CPU: minutes per width to compile, slower than eager blocks
            cand = Candidate(name)
            product = self._compiled_fn(kind) if name == "compiled" else self._product(name, kind)
            try:
                t0 = time.perf_counter()
                out = product(arg, x, y)
                self.synchronize()
                cand.first_seconds = time.perf_counter() - t0
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    product(arg, x, y)
                    self.synchronize()
                    times.append(time.perf_counter() - t0)
                made += (repeats + 1) * width
                cand.seconds = statistics.median(times) / width
                ref = out if ref is None else ref  # the reference is timed first
                cand.rel_diff = _rel_diff(out, ref)
                cand.accepted = bool(torch.isfinite(out).all()) and \
                    cand.rel_diff <= agreement_rtol(self.theta.dtype)
                if name == "compiled" and cand.accepted:
                    self._checked[(kind, tuple(arg.shape), _shapes(x), _shapes(y))] = True
            except Exception as err:  # noqa: BLE001 - a strategy this model cannot run
                cand.error = f"{type(err).__name__}: {err}"[:300]
            candidates.append(cand)
        accepted = [c for c in candidates if c.accepted]
        best = min(accepted, key=lambda c: c.seconds) if accepted else Candidate(REFERENCE)
        return Choice(best.name, candidates), made

    def setup(self) -> dict[str, Any]:
        """The strategy asked and chosen (single products and each block width), with the
        timed candidates, as JSON values for run records."""
        out: dict[str, Any] = {"strategy_asked": self.asked,
                               "timing_samples": self.timing_samples}
        if self.single_choice is not None:
            out["strategy"] = self.single_choice.strategy
            out["candidates"] = [asdict(c) for c in self.single_choice.candidates]
        for width, choice in sorted(self.block_choice.items()):
            out.setdefault("block_strategy", {})[str(width)] = {
                "strategy": choice.strategy,
                "candidates": [asdict(c) for c in choice.candidates]}
        if self.fallbacks:
            out["fallbacks"] = list(self.fallbacks)
        return out


def _shapes(x: Any) -> Any:
    if torch.is_tensor(x):
        return tuple(x.shape)
    if isinstance(x, (tuple, list)):
        return tuple(_shapes(t) for t in x)
    if isinstance(x, dict):
        return tuple((k, _shapes(t)) for k, t in sorted(x.items()))
    return type(x).__name__


def _rel_diff(out: torch.Tensor, ref: torch.Tensor) -> float:
    scale = float(torch.linalg.vector_norm(ref.double()))
    diff = float(torch.linalg.vector_norm((out - ref).double()))
    return diff / scale if scale > 0 else diff
