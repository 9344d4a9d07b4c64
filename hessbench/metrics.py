"""Accuracy and cost metrics of a solve against a reference.

Errors of an estimate x of lambda: relative |x - lambda| / |lambda|, and normalised by the
spectral scale |x - lambda| / |lambda_max| (far looser for a lambda_min near 0).
Cost to eps: the cost (data passes, seconds, HVPs) at the first trace row from which the
estimate stays within relative error eps for the rest of the trace ("reached and stayed").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hessbench.records import END_GROUPS, EPSILONS, AnswerErrors, CostToEps, Reference
from hessbench.solvers.kernels import ends
from hessbench.solvers.result import TraceRow


def relative_error(estimate: float | None, truth: float) -> float | None:
    if estimate is None:
        return None
    return abs(estimate - truth) / abs(truth)


def scaled_error(estimate: float | None, truth: float, scale: float) -> float | None:
    if estimate is None:
        return None
    return abs(estimate - truth) / abs(scale)


def time_to_eps(trace: Sequence[TraceRow], reference: Reference, eps: float,
                end: str = "both") -> CostToEps:
    """Cost at which every estimate of ``end`` ("max", "min" or "both") came within relative
    ``eps`` of the reference and stayed there (unreached: all costs None)."""
    first_ok: int | None = None
    for i, row in enumerate(trace):
        ok = all(_within(getattr(row, f"lambda_{e}"), reference.value(e), eps) for e in ends(end))
        if ok and first_ok is None:
            first_ok = i
        elif not ok:
            first_ok = None
    if first_ok is None:
        return CostToEps(end, eps)
    row = trace[first_ok]
    return CostToEps(end, eps, row.data_passes, row.seconds, row.hvp_calls)


def cost_to_eps(trace: Sequence[TraceRow], reference: Reference) -> list[CostToEps]:
    """:func:`time_to_eps` for every eps in ``EPSILONS`` and every end group (max, min, both)."""
    return [time_to_eps(trace, reference, eps, end) for eps in EPSILONS for end in END_GROUPS]


def _within(estimate: float | None, truth: float, eps: float) -> bool:
    return estimate is not None and math.isfinite(estimate) and \
        abs(estimate - truth) <= eps * abs(truth)


def answer_errors(lambda_max: float | None, lambda_min: float | None,
                  reference: Reference) -> AnswerErrors:
    """Relative and lambda_max-scaled errors of a self-stopped answer."""
    scale = reference.lambda_max
    return AnswerErrors(
        rel_error_max=relative_error(lambda_max, reference.lambda_max),
        rel_error_min=relative_error(lambda_min, reference.lambda_min),
        scaled_error_max=scaled_error(lambda_max, reference.lambda_max, scale),
        scaled_error_min=scaled_error(lambda_min, reference.lambda_min, scale))
