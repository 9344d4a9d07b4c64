"""Accuracy and cost metrics of a solve against a reference.

Errors of an estimate x of lambda: relative |x - lambda| / |lambda|, and normalised by the
spectral scale |x - lambda| / |lambda_max| (far looser for a lambda_min near 0).
Time-to-eps: the cost (data passes, seconds, HVPs) at the first trace row from which the estimate
stays within relative error eps for the rest of the trace ("reached and stayed").
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from hessbench.solvers.result import TraceRow

ENDS = ("max", "min")


def relative_error(estimate: float | None, truth: float) -> float | None:
    if estimate is None:
        return None
    return abs(estimate - truth) / abs(truth)


def scaled_error(estimate: float | None, truth: float, scale: float) -> float | None:
    if estimate is None:
        return None
    return abs(estimate - truth) / abs(scale)


def time_to_eps(trace: Iterable[TraceRow | dict[str, Any]], reference: dict[str, float],
                eps: float, ends: tuple[str, ...] = ENDS) -> dict[str, float] | None:
    """Cost at which every end in ``ends`` came within relative ``eps`` and stayed there.

    Returns ``{"data_passes", "seconds", "hvp_calls"}`` or ``None`` if never reached.
    """
    rows = [r if isinstance(r, dict) else vars(r) for r in trace]
    first_ok: int | None = None
    for i, row in enumerate(rows):
        ok = all(_within(row.get(f"lambda_{e}"), reference[f"lambda_{e}"], eps) for e in ends)
        if ok and first_ok is None:
            first_ok = i
        elif not ok:
            first_ok = None
    if first_ok is None:
        return None
    row = rows[first_ok]
    return {"data_passes": row["data_passes"], "seconds": row["seconds"],
            "hvp_calls": row["hvp_calls"]}


def _within(estimate: float | None, truth: float, eps: float) -> bool:
    return estimate is not None and math.isfinite(estimate) and \
        abs(estimate - truth) <= eps * abs(truth)


def errors(result: dict[str, Any], reference: dict[str, float]) -> dict[str, float | None]:
    """Relative and lambda_max-scaled errors of a result's self-stopped answer."""
    scale = reference["lambda_max"]
    out: dict[str, float | None] = {}
    for e in ENDS:
        est, truth = result.get(f"lambda_{e}"), reference[f"lambda_{e}"]
        out[f"rel_error_{e}"] = relative_error(est, truth)
        out[f"scaled_error_{e}"] = scaled_error(est, truth, scale)
    return out
