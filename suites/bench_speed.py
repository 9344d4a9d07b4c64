"""Seconds per data pass: HVP / gradient pass per strategy, and block cost per vector.

``setup_cache`` times every problem once (:func:`hessbench.speed.time_passes`, float32, one
torch thread set here, chunks of 128, rounds interleaved); the ``track_`` benchmarks report
its ratios. Problems: ``HESSBENCH_ASV_RATIO_PROBLEMS`` (comma-separated, default
``digits-mlp,digits-cnn``; add ``synthetic-cifar-resnet20`` for the CPU ResNet, minutes) and
``HESSBENCH_ASV_RATIO_STRATEGIES`` (default ``auto`` and the three strategies).
The issue-13 target is ``track_hvp_over_gradient`` <= 3 for ``auto`` (the default strategy).
"""

from __future__ import annotations

import os
from typing import Any

STRATEGIES = [p.strip() for p in os.environ.get(
    "HESSBENCH_ASV_RATIO_STRATEGIES",
    "auto,forward-over-reverse,reverse-over-reverse,compiled").split(",") if p.strip()]
PROBLEMS = [p.strip() for p in os.environ.get("HESSBENCH_ASV_RATIO_PROBLEMS",
                                               "digits-mlp,digits-cnn").split(",") if p.strip()]
BLOCKS = (4, 8)


def _measure() -> dict[str, Any]:
    import torch

    from hessbench.speed import time_passes

    torch.set_num_threads(1)
    timed = [s for s in STRATEGIES if s != "auto"]
    return {p: time_passes(p, chunk=128, dtype="float32", strategies=timed, blocks=BLOCKS,
                           rounds=3).as_dict() for p in PROBLEMS}


_measure.timeout = 1800  # compiles every problem's products once (and trains if uncached)


class PassRatios:
    """HVP pass / gradient pass (dimensionless) per strategy; ``auto`` is the default."""

    params = (PROBLEMS, STRATEGIES)
    param_names = ("problem", "strategy")
    setup_cache = staticmethod(_measure)
    timeout = 1800
    unit = "ratio"

    def setup(self, results: dict[str, Any], problem: str, strategy: str) -> None:
        if strategy not in results[problem]["hvp_over_gradient"]:
            raise NotImplementedError(results[problem]["errors"].get(strategy, "not measured"))

    def track_hvp_over_gradient(self, results: dict[str, Any], problem: str,
                                strategy: str) -> float:
        return float(results[problem]["hvp_over_gradient"][strategy])

    track_hvp_over_gradient.unit = "ratio"  # type: ignore[attr-defined]


class BlockCost:
    """Seconds per vector of a ``matmat`` block of k vectors / seconds of one product."""

    params = (PROBLEMS, [str(k) for k in BLOCKS])
    param_names = ("problem", "k")
    setup_cache = staticmethod(_measure)
    timeout = 1800

    def track_block_per_vector(self, results: dict[str, Any], problem: str, k: str) -> float:
        return float(results[problem]["block_per_vector"][k])

    track_block_per_vector.unit = "ratio"  # type: ignore[attr-defined]
