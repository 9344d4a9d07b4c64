"""Curves and profiles computed from run records and the long table, for the figures.

- :func:`error_at`: the relative error |lambda_hat - lambda| / |lambda| of a run's estimate of
  one end as a step function of cost (data passes or seconds);
- :func:`median_band`: median and quartiles of such curves over seeds;
- :func:`data_profile`: Moré & Wild (SIAM J. Optim. 20(1), 2009) data profiles, the fraction
  of instances (problem, backend, seed) a solver solved (both ends within eps, reached and
  stayed) within each budget of data passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hessbench.long_table import ResultRow
from hessbench.records import Reference, RunRecord
from hessbench.solvers.result import TraceRow


def error_at(trace: Sequence[TraceRow], reference: Reference, end: str, x: np.ndarray,
             axis: str = "data_passes") -> np.ndarray:
    """Relative error of the ``end`` estimate held after the last trace row with
    ``row.<axis> <= x`` (NaN before the first estimate); after the run ended, its final
    error."""
    truth = reference.value(end)
    costs = np.array([getattr(row, axis) for row in trace], dtype=float)
    values = [getattr(row, f"lambda_{end}") for row in trace]
    errs = np.array([np.nan if v is None or not math.isfinite(v) else abs(v - truth) / abs(truth)
                     for v in values])
    # carry the last known estimate forward over rows without one for this end
    for i in range(1, len(errs)):
        if np.isnan(errs[i]) and not np.isnan(errs[i - 1]):
            errs[i] = errs[i - 1]
    idx = np.searchsorted(costs, x, side="right") - 1
    out = np.full(len(x), np.nan)
    valid = idx >= 0
    out[valid] = errs[idx[valid]]
    return out


def median_band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and quartiles over seeds (rows); 'no estimate yet' counts as an infinite error,
    so the median exists once half the seeds have an estimate. Non-finite results are NaN,
    except the upper quartile, which may be inf (the band is clipped at the top)."""
    big = 1e300  # stands for "infinite"; np.percentile interpolates inf into NaN
    filled = np.where(np.isnan(curves), big, curves)
    q1, med, q3 = np.percentile(filled, [25, 50, 75], axis=0)
    q1, med, q3 = (np.where(a >= big / 1e3, np.inf, a) for a in (q1, med, q3))

    def fix(a: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(a), a, np.nan)

    return fix(med), fix(q1), q3


def cost_grid(runs: Sequence[RunRecord], axis: str, points: int = 400) -> np.ndarray:
    """Log-spaced costs spanning the traces of ``runs``."""
    lo = min(getattr(r.trace[0], axis) for r in runs if r.trace)
    hi = max(getattr(r.trace[-1], axis) for r in runs if r.trace)
    lo = max(lo, 1e-6)
    hi = max(hi, lo * 1.01)
    return np.geomspace(lo, hi, points)


def final_error(run: RunRecord, end: str) -> float | None:
    """Relative error of the last estimate in the trace (None if there is none)."""
    value = getattr(run.trace[-1], f"lambda_{end}") if run.trace else None
    if value is None or not math.isfinite(value) or run.reference is None:
        return None
    truth = run.reference.value(end)
    return abs(value - truth) / abs(truth)


def data_profile(rows: Sequence[ResultRow], eps: float, budgets: np.ndarray
                 ) -> tuple[dict[str, np.ndarray], int]:
    """Fraction of instances (problem, backend, seed) each solver solved (both ends within
    ``eps``, reached and stayed) within each budget of data passes; a missing or failed run is
    unsolved. Returns (solver -> fractions, number of instances)."""
    mine = [r for r in rows if r.end == "both" and r.eps == eps]
    instances = sorted({(r.problem, r.backend, r.seed) for r in mine})
    cost: dict[str, dict[tuple[str, str, int], float]] = {}
    for r in mine:
        cost.setdefault(r.solver, {})[(r.problem, r.backend, r.seed)] = \
            math.inf if r.data_passes is None else r.data_passes
    out = {}
    for solver, c in cost.items():
        values = np.array([c.get(inst, math.inf) for inst in instances])
        out[solver] = (values[None, :] <= budgets[:, None]).mean(axis=1)
    return out, len(instances)
