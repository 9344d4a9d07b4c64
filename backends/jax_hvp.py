"""How the JAX operator computes a full-data product, and how it chooses.

- ``"forward-over-reverse"``: ``jax.jvp`` of ``jax.grad`` on each chunk, one jitted call per
  chunk (:class:`hessbench.backends.jax.HessianOperator`). The reference strategy, and the
  only one for mini-batch products (``indices=``) and on a device mesh (``devices=``).
- ``"linearized"``: the gradient map of each full-data chunk b, theta -> grad L_b(theta), is
  linearized once at the operator's theta (``jax.linearize`` inside ``jax.jit``: the primal
  forward and backward passes run once, and their residuals, the activations and derivatives
  the tangent pass reads, stay in memory as arrays); a product v -> sum_b (|b|/N) H_b v then
  runs only the tangent (linear) part of forward-over-reverse. Same arithmetic on the tangents,
  so the products agree with the reference to rounding. Memory: the residuals of all chunks
  (``linearized_bytes``; 4.7 MB per sample on the CIFAR ResNet-20 in float32, 1.2 GB for its
  N = 256), estimated from the first chunk and refused above ``max_linearized_bytes``.
- ``"auto"`` (the operator's default): on the first full-data product, time both strategies on
  the first chunk (a first call with compilation, then the median of :data:`REPEATS` calls)
  and keep the faster whose product agrees with the reference to :func:`agreement_rtol`;
  ``"linearized"`` is a candidate only where its estimated residuals fit the budget and there
  is no mesh. The timing products are counted (``timing_samples``) and recorded by
  :meth:`Strategy.setup`, not charged to the operator's meter.

Blocks (``matmat``) use the strategy chosen for single products (``jax.vmap`` over columns).
Measured on one CPU core, float32, chunks of 128, side by side (``scripts/hvp_throughput.py``):
the linearized products took 0.70x the seconds of forward-over-reverse on the ResNet-20 and
0.67x on digits-cnn, but 1.4-1.5x on the small digits MLP and the quadratic, where a product is
a few milliseconds (hence timing, not a fixed rule).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hessbench.backends.base import Candidate, agreement_rtol

__all__ = ["CHOICES", "REFERENCE", "STRATEGIES", "Candidate", "Strategy", "agreement_rtol",
           "check_strategy"]

REFERENCE = "forward-over-reverse"
STRATEGIES = ("forward-over-reverse", "linearized")
CHOICES = ("auto", *STRATEGIES)
REPEATS = 3  # timed calls per candidate after its first call

#: default ``max_linearized_bytes``: 2 GiB of residuals
DEFAULT_MAX_LINEARIZED_BYTES = 2 * 2**30


def check_strategy(strategy: Any, max_linearized_bytes: Any) -> None:
    """Raise ``ValueError`` for an unknown strategy or a budget that is not a positive int."""
    if strategy not in CHOICES:
        raise ValueError(f"strategy must be one of {', '.join(CHOICES)}; got {strategy!r}")
    if (not isinstance(max_linearized_bytes, (int, np.integer))
            or isinstance(max_linearized_bytes, bool) or max_linearized_bytes < 1):
        raise ValueError(f"max_linearized_bytes must be a positive number of bytes, got "
                         f"{max_linearized_bytes!r}")


def _nbytes(tree: Any) -> int:
    return sum(int(leaf.nbytes) for leaf in jax.tree.leaves(tree))


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


@dataclass
class Strategy:
    """The strategy asked and chosen for full-data products, and the linearized chunks.

    Args:
        asked: one of :data:`CHOICES`.
        max_linearized_bytes: residual memory allowed to ``linearized`` (all chunks).
        loss_fn, unravel: the operator's ``loss_fn(params, batch)`` and flat -> pytree map.
        on_trace: called once per trace of a jitted function (the operator counts them).
        sharded: the operator runs on a device mesh (forward-over-reverse only).
    """

    asked: str
    max_linearized_bytes: int
    loss_fn: Callable[[Any, Any], Any]
    unravel: Callable[[Any], Any]
    on_trace: Callable[[], None]
    sharded: bool = False
    chosen: str | None = None
    candidates: list[Candidate] = field(default_factory=list)
    timing_samples: int = 0
    linearized_bytes: int | None = None
    _maps: list[tuple[Any, float]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        check_strategy(self.asked, self.max_linearized_bytes)
        if self.sharded and self.asked == "linearized":
            raise ValueError("strategy='linearized' is not available with devices= (a device "
                             "mesh): use 'forward-over-reverse' or 'auto'")
        if self.sharded or self.asked == REFERENCE:
            self.chosen = REFERENCE
        self._linearize = jax.jit(self._linearize_fn)
        self._apply = jax.jit(self._apply_fn)
        self._apply_block = jax.jit(self._apply_block_fn)

    # -- the linearized products ---------------------------------------------------------------
    def _linearize_fn(self, theta: jax.Array, data: Any, idx: jax.Array) -> Any:
        """The tangent map v -> H_b v of chunk ``idx`` at ``theta``: a ``jax.tree_util.Partial``
        whose leaves are the residuals."""
        self.on_trace()
        batch = jax.tree.map(lambda a: a[idx], data)
        grad = jax.grad(lambda t: self.loss_fn(self.unravel(t), batch))
        return jax.linearize(grad, theta)[1]

    def _apply_fn(self, acc: jax.Array, weight: Any, tangent: Any, v: jax.Array) -> jax.Array:
        self.on_trace()
        return acc + weight * tangent(v)

    def _apply_block_fn(self, acc: jax.Array, weight: Any, tangent: Any,
                        V: jax.Array) -> jax.Array:
        self.on_trace()
        return acc + weight * jax.vmap(tangent, in_axes=1, out_axes=1)(V)

    def _linearize_chunks(self, theta: jax.Array, data: Any,
                          chunks: list[tuple[jax.Array, float]]) -> None:
        """Linearize the chunks not yet linearized (all of them, the first time)."""
        for idx, weight in chunks[len(self._maps):]:
            self._maps.append((self._linearize(theta, data, idx), weight))
        self.linearized_bytes = sum(_nbytes(t) for t, _ in self._maps)

    def product(self, x: jax.Array, theta: jax.Array, data: Any,
                chunks: list[tuple[jax.Array, float]]) -> jax.Array:
        """sum_b (|b|/N) H_b x by the linearized chunks; ``x`` a vector or an (n, k) block."""
        self._linearize_chunks(theta, data, chunks)
        apply = self._apply if x.ndim == 1 else self._apply_block
        out = jnp.zeros(x.shape, dtype=x.dtype, device=next(iter(x.devices())))
        for tangent, weight in self._maps:
            out = apply(out, weight, tangent, x)
        return out

    # -- the choice ----------------------------------------------------------------------------
    def settle(self, step: Callable, theta: jax.Array, data: Any,
               chunks: list[tuple[jax.Array, float]], num_samples: int) -> None:
        """Choose (``auto``) or check (``linearized``) before the first full-data product;
        ``step(acc, weight, theta, v, data, idx)`` is the reference's jitted chunk product."""
        if self.chosen is not None:
            return
        idx, _ = chunks[0]
        size = int(idx.shape[0])
        t0 = time.perf_counter()
        first = self._linearize(theta, data, idx)
        jax.block_until_ready(first)
        linearize_seconds = time.perf_counter() - t0
        estimate = _nbytes(first) * num_samples / size
        self.timing_samples += size
        over = estimate > self.max_linearized_bytes
        if over and self.asked == "linearized":
            raise ValueError(
                f"strategy='linearized' would keep about {_gib(estimate)} of residuals "
                f"({_gib(_nbytes(first))} for the first chunk of {size} samples, N = "
                f"{num_samples}), above max_linearized_bytes = "
                f"{_gib(self.max_linearized_bytes)}: raise max_linearized_bytes if the memory "
                f"is there, or use strategy='forward-over-reverse'")
        if self.asked == "linearized":
            self._maps = [(first, chunks[0][1])]
            self.chosen = "linearized"
            return
        v = jnp.asarray(np.random.default_rng(0).standard_normal(theta.shape),
                        dtype=theta.dtype, device=next(iter(theta.devices())))
        zero = jnp.zeros_like(v)
        ref_out, ref_candidate = self._time(Candidate(REFERENCE), size,
                                            lambda: step(zero, 1.0, theta, v, data, idx))
        ref_candidate.accepted = True
        lin = Candidate("linearized")
        if over:
            lin.error = (f"residuals would take about {_gib(estimate)} > max_linearized_bytes "
                         f"= {_gib(self.max_linearized_bytes)}")
        else:
            out, lin = self._time(lin, size, lambda: self._apply(zero, 1.0, first, v))
            lin.first_seconds = (lin.first_seconds or 0.0) + linearize_seconds
            scale = float(jnp.linalg.norm(ref_out))
            diff = float(jnp.linalg.norm(out - ref_out))
            lin.rel_diff = diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)
            lin.accepted = lin.rel_diff <= agreement_rtol(theta.dtype)
            if not lin.accepted:
                lin.error = (f"disagrees with {REFERENCE}: relative difference "
                             f"{lin.rel_diff:.1e} > {agreement_rtol(theta.dtype):.1e}")
        self.candidates = [ref_candidate, lin]
        best = min((c for c in self.candidates if c.accepted), key=lambda c: c.seconds)
        self.chosen = best.name
        if self.chosen == "linearized":
            self._maps = [(first, chunks[0][1])]

    def _time(self, candidate: Candidate, size: int, product: Callable[[], jax.Array]
              ) -> tuple[jax.Array, Candidate]:
        """A first call, then the median of :data:`REPEATS` calls, into ``candidate``; the
        products' samples (``size`` each) are added to ``timing_samples``."""
        self.timing_samples += (1 + REPEATS) * size
        t0 = time.perf_counter()
        out = jax.block_until_ready(product())
        candidate.first_seconds = time.perf_counter() - t0
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            jax.block_until_ready(product())
            times.append(time.perf_counter() - t0)
        candidate.seconds = statistics.median(times)
        return out, candidate

    def setup(self) -> dict[str, Any]:
        """The strategy asked and chosen, the candidates timed and the residual memory."""
        return {"strategy_asked": self.asked, "strategy": self.chosen,
                "candidates": [asdict(c) for c in self.candidates],
                "timing_samples": self.timing_samples,
                "linearized_bytes": self.linearized_bytes,
                "max_linearized_bytes": self.max_linearized_bytes}
