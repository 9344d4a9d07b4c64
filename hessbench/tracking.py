"""The tracking benchmark: a solver run at every checkpoint of a trajectory problem, scored
against each checkpoint's certified reference.

:func:`score` turns one seed's monitor records (:class:`hessbench.monitor_record.HessianRecord`,
``epoch`` = checkpoint index) and the checkpoints' references
(:func:`hessbench.reference.compute_reference` with ``cheapest=True``, cached per checkpoint)
into typed per-checkpoint rows (:class:`CheckpointScore`) and one :class:`TrackingSummary` per
(problem, solver, warm/cold, seed): total data passes and seconds over the run, the largest
per-checkpoint relative error of each end, and success: at *every* checkpoint the solver
stopped by its own rule (``converged``) and each asked end is within ``SUCCESS_EPS`` = 1%
relative of the reference (``|est - ref| <= 0.01 |ref|``, as ``hessbench compare``).

``tracking.json`` (:func:`write_tracking`, :func:`read_tracking`) holds both, with the settings.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hessbench.errors import InputError
from hessbench.metrics import relative_error
from hessbench.monitor_record import HessianRecord, finite_or_none
from hessbench.records import SUCCESS_EPS
from hessbench.solvers.kernels import ends

__all__ = ["TRACKING", "CheckpointScore", "TrackingSummary", "format_table", "read_tracking",
           "score", "summarise", "write_tracking"]

TRACKING = "tracking.json"
VERSION = 1


@dataclass(frozen=True)
class CheckpointScore:
    """One checkpoint of one tracking run: the estimates, their certified references
    (``ref_max`` / ``ref_min``, None without references) and relative errors, the solve's
    own cost (``data_passes``, ``seconds``) and the whole step's (``operator_passes``,
    ``step_seconds``: operator construction and certifying products included)."""

    problem: str
    solver: str
    warm_start: bool
    seed: int
    checkpoint: int
    lambda_max: float | None
    lambda_min: float | None
    ref_max: float | None
    ref_min: float | None
    error_max: float | None
    error_min: float | None
    converged: bool
    status: str
    warm_started: bool
    data_passes: float
    seconds: float
    operator_passes: float
    step_seconds: float
    success: bool | None

    def to_json(self) -> dict[str, Any]:
        return {k: finite_or_none(v) for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class TrackingSummary:
    """One tracking run (problem, solver, warm/cold, seed) over its checkpoints: totals of the
    solves' data passes and seconds (``operator_passes`` / ``step_seconds``: whole steps), the
    largest relative error of each end over the checkpoints (None: end not asked or no
    reference), ``converged`` checkpoints of ``checkpoints``, ``failed``: the checkpoints that
    were not converged or had an asked end off by more than 1%, and ``success`` (None without
    references): no checkpoint failed."""

    problem: str
    solver: str
    warm_start: bool
    seed: int
    which: str
    tol: float
    checkpoints: int
    data_passes: float
    seconds: float
    operator_passes: float
    step_seconds: float
    max_error_max: float | None
    max_error_min: float | None
    converged: int
    failed: tuple[int, ...]
    success: bool | None

    def to_json(self) -> dict[str, Any]:
        data = {k: finite_or_none(v) for k, v in dataclasses.asdict(self).items()}
        data["failed"] = list(self.failed)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrackingSummary:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(data)
        if missing:
            raise InputError(f"not a tracking summary: missing {sorted(missing)}")
        values = {k: v for k, v in data.items() if k in names}
        values["failed"] = tuple(values["failed"])
        return cls(**values)


def score(problem: str, records: Sequence[HessianRecord],
          references: dict[int, dict[str, Any]] | None, *, warm_start: bool,
          seed: int) -> list[CheckpointScore]:
    """Per-checkpoint rows of one seed's run (``records``: one per checkpoint, ``epoch`` =
    checkpoint); ``references``: checkpoint -> a ``compute_reference`` dict (or None)."""
    rows = []
    for r in records:
        ref = None if references is None else references.get(r.epoch)
        truth = {e: None if ref is None else float(ref[f"lambda_{e}"]) for e in ("max", "min")}
        est = {"max": r.lambda_max, "min": r.lambda_min}
        err = {e: None if truth[e] is None or est[e] is None or not math.isfinite(est[e])
               else relative_error(est[e], truth[e]) for e in ("max", "min")}
        if ref is None:
            ok = None
        else:
            ok = bool(r.converged) and all(
                err[e] is not None and err[e] <= SUCCESS_EPS for e in ends(r.which))
        rows.append(CheckpointScore(
            problem=problem, solver=r.solver, warm_start=warm_start, seed=seed,
            checkpoint=r.epoch, lambda_max=r.lambda_max, lambda_min=r.lambda_min,
            ref_max=truth["max"], ref_min=truth["min"], error_max=err["max"],
            error_min=err["min"], converged=bool(r.converged), status=r.status,
            warm_started=bool(r.warm_started), data_passes=float(r.data_passes),
            seconds=float(r.seconds), operator_passes=float(r.operator_passes),
            step_seconds=float(r.step_seconds), success=ok))
    return rows


def summarise(rows: Sequence[CheckpointScore], *, which: str, tol: float) -> TrackingSummary:
    """The :class:`TrackingSummary` of one run's rows (all of one problem, solver, mode and
    seed)."""
    if not rows:
        raise InputError("no checkpoints to summarise")
    keys = {(r.problem, r.solver, r.warm_start, r.seed) for r in rows}
    if len(keys) != 1:
        raise InputError(f"rows of several runs given to summarise: {sorted(keys)}")
    problem, solver, warm, seed = keys.pop()

    def worst(end: str) -> float | None:
        if end not in ends(which):
            return None
        errs = [getattr(r, f"error_{end}") for r in rows]
        if any(e is None for e in errs):
            return None if all(r.success is None for r in rows) else math.inf
        return max(errs)

    scored = all(r.success is not None for r in rows)
    failed = tuple(r.checkpoint for r in rows if scored and not r.success)
    return TrackingSummary(
        problem=problem, solver=solver, warm_start=warm, seed=seed, which=which, tol=tol,
        checkpoints=len(rows), data_passes=sum(r.data_passes for r in rows),
        seconds=sum(r.seconds for r in rows),
        operator_passes=sum(r.operator_passes for r in rows),
        step_seconds=sum(r.step_seconds for r in rows),
        max_error_max=worst("max"), max_error_min=worst("min"),
        converged=sum(r.converged for r in rows), failed=failed,
        success=(not failed) if scored else None)


def write_tracking(path: Path, summaries: Iterable[TrackingSummary],
                   rows: Iterable[CheckpointScore], settings: dict[str, Any],
                   references: dict[int, dict[str, Any]] | None) -> Path:
    """Write ``tracking.json``: settings, references (checkpoint -> lambda_max, lambda_min,
    method, residuals), the summaries and the per-checkpoint rows."""
    from hessbench.files import atomic_write

    keep = ("lambda_max", "lambda_min", "residual_max", "residual_min", "method")
    data = {"version": VERSION, "settings": settings,
            "references": None if references is None else
            {str(k): {f: v.get(f) for f in keep} for k, v in sorted(references.items())},
            "summaries": [s.to_json() for s in summaries],
            "checkpoints": [r.to_json() for r in rows]}
    return atomic_write(Path(path), json.dumps(data, indent=1) + "\n")


def read_tracking(path: Path) -> tuple[dict[str, Any], list[TrackingSummary],
                                       list[CheckpointScore]]:
    """``(settings, summaries, rows)`` of a ``tracking.json`` written by
    :func:`write_tracking`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        summaries = [TrackingSummary.from_json(s) for s in data["summaries"]]
        rows = [CheckpointScore(**r) for r in data["checkpoints"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path} is not a readable tracking.json ({err})") from None
    return data.get("settings", {}), summaries, rows


def format_table(summaries: Sequence[TrackingSummary]) -> str:
    """A plain-text table: one line per run, then the mean over seeds per (problem, solver,
    mode)."""
    header = ("problem", "solver", "start", "seed", "passes", "seconds", "max err max",
              "max err min", "converged", "success")

    def err(x: float | None) -> str:
        return "-" if x is None else f"{x:.2e}"

    def ok(s: TrackingSummary) -> str:
        if s.success is None:
            return "no reference"
        return "yes" if s.success else f"no (checkpoints {', '.join(map(str, s.failed))})"

    lines = [[s.problem, s.solver, "warm" if s.warm_start else "cold", str(s.seed),
              f"{s.data_passes:.0f}", f"{s.seconds:.2f}", err(s.max_error_max),
              err(s.max_error_min), f"{s.converged}/{s.checkpoints}", ok(s)]
             for s in summaries]
    groups: dict[tuple[str, str, bool], list[TrackingSummary]] = {}
    for s in summaries:
        groups.setdefault((s.problem, s.solver, s.warm_start), []).append(s)
    for (problem, solver, warm), part in groups.items():
        if len(part) > 1:
            wins = [s.success for s in part if s.success is not None]
            lines.append([problem, solver, "warm" if warm else "cold", "mean",
                          f"{sum(s.data_passes for s in part) / len(part):.0f}",
                          f"{sum(s.seconds for s in part) / len(part):.2f}", "", "", "",
                          f"{sum(wins)}/{len(wins)} seeds" if wins else "no reference"])
    widths = [max(len(r[i]) for r in [list(header), *lines]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in [list(header), *lines])
