"""Summaries of the long-format results table (:mod:`hessbench.long_table`), by grouping.

Per (problem, backend, solver) over seeds: median and interquartile range of the data passes
and seconds until the estimate reached relative error eps and stayed there (for lambda_max,
lambda_min and both), with how many seeds reached it; a seed that never did counts as an
infinite cost, so the median exists only when more than half the seeds got there. Also the
success of the self-stopped answers: converged by the solver's own rule *and* within
``SUCCESS_EPS`` on every asked end, and the median seconds of the runs' untimed warm-ups
(kept out of every seconds figure). Runs that raised are counted, not summarised.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hessbench.long_table import ResultRow
from hessbench.records import END_GROUPS, EPSILONS, SUCCESS_EPS

UNITS = ("data_passes", "seconds")


@dataclass(frozen=True)
class Stats:
    """Median [q1, q3] of a cost over runs (None where undefined: too few reached), with how
    many of the runs reached eps at all."""

    median: float | None
    q1: float | None
    q3: float | None
    reached: int
    runs: int


@dataclass(frozen=True)
class CostStats:
    unit: str
    end: str
    eps: float
    stats: Stats


@dataclass
class SummaryRow:
    """One (problem, backend, solver) over its seeds."""

    problem: str
    backend: str
    solver: str
    seeds: int
    errors: int
    converged: int
    success: int
    success_rate: float
    median_passes_used: float | None
    costs: list[CostStats] = field(default_factory=list)
    median_warmup_seconds: float | None = None

    def stats(self, unit: str, end: str, eps: float) -> Stats:
        for c in self.costs:
            if (c.unit, c.end, c.eps) == (unit, end, eps):
                return c.stats
        raise KeyError(f"no {unit} statistics for {end} at eps={eps:g}")


def cost_stats(values: Sequence[float | None]) -> Stats:
    """Median and quartiles of costs, None standing for "never reached" (infinite cost)."""
    reached = [v for v in values if v is not None]
    n = len(values)
    if 2 * len(reached) <= n - (n % 2 == 0) or not reached:  # median undefined
        return Stats(None, None, None, len(reached), n)
    never = 1e300  # "never reached" without inf - inf in np.percentile's interpolation
    filled = np.array([v if v is not None else never for v in values], dtype=float)
    q1, med, q3 = np.percentile(filled, [25, 50, 75])

    def fix(x: float) -> float | None:
        return None if x >= never / 10 else float(x)

    return Stats(fix(med), fix(q1), fix(q3), len(reached), n)


def _rank(order: Sequence[str]):
    index = {name: i for i, name in enumerate(order)}
    return lambda name: (index.get(name, len(index)), name)


def summarise(rows: Iterable[ResultRow], problem_order: Sequence[str] = (),
              solver_order: Sequence[str] = (), backend_order: Sequence[str] = ()
              ) -> list[SummaryRow]:
    """One :class:`SummaryRow` per (problem, backend, solver), sorted by problem, backend and
    solver, each in the given order (names not listed come after, by name)."""
    groups: dict[tuple[str, str, str], list[ResultRow]] = {}
    for r in rows:
        groups.setdefault((r.problem, r.backend, r.solver), []).append(r)
    p_rank, s_rank, b_rank = _rank(problem_order), _rank(solver_order), _rank(backend_order)
    out = []
    for key in sorted(groups, key=lambda k: (p_rank(k[0]), b_rank(k[1]), s_rank(k[2]))):
        group = groups[key]
        runs = [r for r in group if r.end == "both" and r.eps == group[0].eps]
        ok = [r for r in runs if r.status != "error"]
        costs = [CostStats(unit, end, eps, cost_stats(
                     [getattr(r, unit) for r in group
                      if r.end == end and r.eps == eps and r.status != "error"]))
                 for eps in EPSILONS for end in END_GROUPS for unit in UNITS]
        success = sum(r.success for r in group
                      if r.end == "both" and r.eps == SUCCESS_EPS and r.status != "error")
        used = [r.passes_used for r in ok if r.passes_used is not None]
        warm = [r.warmup_seconds for r in ok if r.warmup_seconds is not None]
        out.append(SummaryRow(
            problem=key[0], backend=key[1], solver=key[2], seeds=len(runs),
            errors=len(runs) - len(ok), converged=sum(r.converged for r in ok),
            success=success, success_rate=success / len(runs),
            median_passes_used=float(np.median(used)) if used else None, costs=costs,
            median_warmup_seconds=float(np.median(warm)) if warm else None))
    return out


def winner(rows: Iterable[SummaryRow]) -> str | None:
    """Least median data passes to 1% on both ends among solvers whose self-stopped answers
    succeeded for at least half the seeds (ties: by name); None if no solver qualifies."""
    eligible = [(r.stats("data_passes", "both", 0.01).median, r.solver) for r in rows
                if r.stats("data_passes", "both", 0.01).median is not None
                and 2 * r.success >= r.seeds]
    return min(eligible)[1] if eligible else None


def groups(rows: Sequence[SummaryRow]) -> list[tuple[str, str, list[SummaryRow]]]:
    """The summary rows by (problem, backend), in their order."""
    out: dict[tuple[str, str], list[SummaryRow]] = {}
    for r in rows:
        out.setdefault((r.problem, r.backend), []).append(r)
    return [(p, b, rs) for (p, b), rs in out.items()]
