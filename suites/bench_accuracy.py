"""Accuracy per cost: data passes to 10% / 1% relative error and the self-stopped answer's error.

Every (backend, problem, solver, seed) is solved once in ``setup_cache`` (tol 1e-3, at most 300
data passes, like ``hessbench compare``); the ``track_`` benchmarks read those records. The
values are deterministic for a seed (data passes count samples, not seconds), so a change is
a change of the algorithm. NaN (asv: n/a) means the estimate never came within eps and stayed
there, or the combination is skipped here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from . import common


def _solve_all() -> dict[str, Any]:
    from hessbench.runner import run_one

    records: dict[str, Any] = {}
    for backend in common.BACKENDS:
        for problem in common.PROBLEMS:
            reason = common.skip_reason(backend, problem)
            for solver in common.SOLVERS:
                for seed in common.SEEDS:
                    key = f"{backend}|{problem}|{solver}|{seed}"
                    if reason is not None:
                        records[key] = {"skip": reason}
                        continue
                    try:
                        r = run_one(problem, solver, backend=backend, seed=seed, tol=common.TOL,
                                    budget=dict(common.BUDGET), device=common.device(backend),
                                    progress=False)
                    except Exception as err:  # noqa: BLE001 - reported by the benchmarks
                        records[key] = {"error": f"{type(err).__name__}: {err}"}
                        continue
                    records[key] = dataclasses.replace(r, trace=[])  # the typed record
    return records


class Accuracy:
    """Data passes to relative error eps (reached and stayed), and the self-stopped error."""

    params = (common.BACKENDS, common.PROBLEMS, common.SOLVERS, common.SEEDS)
    param_names = ("backend", "problem", "solver", "seed")
    version = "1"   # pinned: the values depend on the solvers, not on this file's source
    timeout = 600

    def setup_cache(self) -> dict[str, Any]:
        return _solve_all()

    setup_cache.timeout = 7200  # every solve of the grid runs here, once

    def setup(self, records: dict[str, Any], backend: str, problem: str, solver: str,
              seed: int) -> None:
        record = records.get(f"{backend}|{problem}|{solver}|{seed}")
        if record is None:
            raise NotImplementedError("not in the grid solved by setup_cache")
        if isinstance(record, dict) and "skip" in record:
            raise NotImplementedError(record["skip"])
        if isinstance(record, dict):
            raise RuntimeError(f"{problem} / {solver} / seed {seed} on {backend}: "
                               f"{record['error']}")
        self.record = record

    def _passes(self, end: str, eps: float) -> float:
        hit = self.record.cost(end, eps)
        return math.nan if hit.data_passes is None else float(hit.data_passes)

    def track_passes_to_10pct_max(self, *args: Any) -> float:
        return self._passes("max", 0.1)

    def track_passes_to_1pct_max(self, *args: Any) -> float:
        return self._passes("max", 0.01)

    def track_passes_to_10pct_min(self, *args: Any) -> float:
        return self._passes("min", 0.1)

    def track_passes_to_1pct_min(self, *args: Any) -> float:
        return self._passes("min", 0.01)

    def track_passes_to_1pct_both(self, *args: Any) -> float:
        return self._passes("both", 0.01)

    def track_passes_self_stopped(self, *args: Any) -> float:
        return float(self.record.data_passes)

    def track_rel_error_max(self, *args: Any) -> float:
        err = self.record.errors.rel_error_max
        return math.nan if err is None else float(err)

    def track_rel_error_min(self, *args: Any) -> float:
        err = self.record.errors.rel_error_min
        return math.nan if err is None else float(err)

    for _track in (track_passes_to_10pct_max, track_passes_to_1pct_max,
                   track_passes_to_10pct_min, track_passes_to_1pct_min,
                   track_passes_to_1pct_both, track_passes_self_stopped):
        _track.unit = "data passes"
    for _track in (track_rel_error_max, track_rel_error_min):
        _track.unit = "relative error"
    del _track
