"""Seconds per data pass: a full-data HVP by each strategy against a gradient pass, side by side.

For one problem (PyTorch backend) this builds one operator per HVP strategy over the same
weights, data and chunks, and times, interleaved round by round so that a busy machine slows
all of them alike: a full-data gradient (``HessianOperator.gradient``: eager reverse mode, the
cost of a training step's backward pass), a full-data product v -> H v by each strategy, by the
default ``auto`` operator, and ``matmat`` of blocks of k vectors by the ``auto`` operator. The
figures are medians over rounds of wall seconds with the device synchronised; the ratios are
median HVP pass / median gradient pass (dimensionless) and, for blocks, seconds per vector of a
block / seconds of one product. One-off work (first calls, compilation, the ``auto`` choice)
is done before the rounds and reported as ``warmup_seconds``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hessbench.backends.torch_hvp import STRATEGIES

DEFAULT = "auto"


@dataclass
class PassTimes:
    """Median seconds of full-data passes of one problem, and the ratios the issue asks for."""

    problem: str
    dtype: str
    chunk: int
    num_samples: int
    parameters: int
    threads: int
    device: str
    rounds: int
    gradient_seconds: float
    hvp_seconds: dict[str, float]          # strategy (or "auto") -> median seconds per pass
    hvp_over_gradient: dict[str, float]    # strategy (or "auto") -> ratio
    chosen: str                            # what "auto" chose for single products
    block_per_vector: dict[str, float] = field(default_factory=dict)  # "k" -> ratio
    warmup_seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # strategy -> why it did not run
    setup: dict[str, Any] = field(default_factory=dict)    # the auto operator's choice

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def time_passes(problem: str, *, chunk: int | None = 128, dtype: str = "float32",
                device: str | None = None, strategies: Sequence[str] = STRATEGIES,
                blocks: Sequence[int] = (4, 8), rounds: int = 5,
                problem_options: dict[str, Any] | None = None,
                progress: bool = False) -> PassTimes:
    """Time gradient, HVP (each strategy and ``auto``) and block passes of ``problem``.

    ``chunk``: samples per chunk for all passes (None: the problem's batch size). A strategy
    that fails to build or run is reported in ``errors`` and left out of the ratios."""
    import torch

    from hessbench import problems
    from hessbench.backends.torch import HessianOperator

    parts = problems.get(problem, **(problem_options or {})).torch_parts(progress=progress)
    chunk = chunk or parts.batch_size
    kw = dict(batch_size=chunk, device=device, dtype=getattr(torch, dtype),
              check_deterministic=False)
    ops: dict[str, Any] = {}
    errors: dict[str, str] = {}
    warm: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for name in (DEFAULT, *strategies):
        t0 = time.perf_counter()
        try:
            op = HessianOperator(parts.model, parts.loss_fn, (parts.inputs, parts.targets),
                                 strategy=name, **kw)
            v = op.random_vector(rng)
            op.matvec(v)  # first call: choice, compilation, allocation
            op.gradient()
            for k in blocks if name == DEFAULT else ():
                op.matmat(op.asarray(rng.standard_normal((op.size, k))))
            op.synchronize()
        except Exception as err:  # noqa: BLE001 - reported, the others still run
            errors[name] = f"{type(err).__name__}: {err}"[:300]
            continue
        warm[name] = time.perf_counter() - t0
        ops[name] = op
    base = ops[DEFAULT]
    v = base.random_vector(rng)
    blocks_in = {k: base.asarray(rng.standard_normal((base.size, k))) for k in blocks}
    times: dict[str, list[float]] = {"gradient": []}
    for _ in range(rounds):
        times["gradient"].append(_timed(base.gradient, base.synchronize))
        for name, op in ops.items():
            times.setdefault(name, []).append(_timed(lambda: op.matvec(v), op.synchronize))
        for k, V in blocks_in.items():
            times.setdefault(f"block{k}", []).append(
                _timed(lambda: base.matmat(V), base.synchronize) / k)
    med = {k: statistics.median(t) for k, t in times.items()}
    grad = med["gradient"]
    hvp = {name: med[name] for name in ops}
    return PassTimes(
        problem=problem, dtype=dtype, chunk=chunk, num_samples=base.num_samples,
        parameters=base.size, threads=torch.get_num_threads(), device=base.describe_device(),
        rounds=rounds, gradient_seconds=grad, hvp_seconds=hvp,
        hvp_over_gradient={name: t / grad for name, t in hvp.items()},
        chosen=base.product_setup().get("strategy", ""),
        block_per_vector={str(k): med[f"block{k}"] / med[DEFAULT] for k in blocks},
        warmup_seconds=warm, errors=errors, setup=base.product_setup())
