"""The long-format results table: one row per run x end x eps.

Every summary, winner, table and figure of ``compare`` and ``report`` is computed from these
rows by grouping (never by parsing text). A row holds the cost at which the estimate of
``end`` ("max", "min" or "both") came within relative error ``eps`` of the reference and stayed
there (None: never), the self-stopped answer's relative error at that end ("both": the larger
over the asked ends) and whether that answer succeeded: converged by the solver's own rule and
within ``eps`` on that end ("both": every asked end). Seconds are the solve's; the run's
untimed warm-up before it (:attr:`hessbench.records.RunRecord.warmup`) is ``warmup_seconds``,
the same on every row of a run (empty for records without it). It is written as CSV next to a
report's figures, so a reader can re-plot without rerunning.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from hessbench.files import atomic_write
from hessbench.records import END_GROUPS, EPSILONS, RunRecord, check_output_file


@dataclass(frozen=True)
class ResultRow:
    """One run at one end and one eps (see the module docstring); costs None when the run
    never reached eps there (or raised: ``status == "error"``)."""

    problem: str
    backend: str
    solver: str
    seed: int
    end: str
    eps: float
    data_passes: float | None
    seconds: float | None
    hvp_calls: int | None
    self_stopped_error: float | None
    success: bool
    converged: bool
    status: str
    passes_used: float | None
    warmup_seconds: float | None = None


def rows_of(run: RunRecord, epsilons: Iterable[float] = EPSILONS) -> list[ResultRow]:
    """The rows of one run, for every end group and eps."""
    out = []
    for eps in epsilons:
        for end in END_GROUPS:
            cost = run.cost(end, eps)
            out.append(ResultRow(
                problem=run.problem, backend=run.backend, solver=run.solver, seed=run.seed,
                end=end, eps=eps, data_passes=cost.data_passes, seconds=cost.seconds,
                hvp_calls=cost.hvp_calls, self_stopped_error=run.answer_error(end),
                success=run.succeeded(end, eps),
                converged=run.converged, status=run.status, passes_used=run.data_passes,
                warmup_seconds=run.warmup_seconds))
    return out


def long_table(runs: Iterable[RunRecord], epsilons: Iterable[float] = EPSILONS
               ) -> list[ResultRow]:
    """The rows of every run, in the order of the runs."""
    eps = tuple(epsilons)
    return [row for run in runs for row in rows_of(run, eps)]


COLUMNS = tuple(f.name for f in fields(ResultRow))


def write_csv(rows: Iterable[ResultRow], path: str | Path) -> Path:
    """CSV with a header line; a missing value (never reached, no answer) is an empty cell.
    Written atomically; refuses to replace a symbolic link or non-regular file
    (:func:`hessbench.records.check_output_file`)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if v is None else v for v in astuple(row)])
    return atomic_write(check_output_file(path), buffer.getvalue())


def read_csv(path: str | Path) -> list[ResultRow]:
    """The rows of a CSV written by :func:`write_csv`."""
    numbers = {"seed": int, "eps": float, "data_passes": float, "seconds": float,
               "hvp_calls": int, "self_stopped_error": float, "passes_used": float,
               "warmup_seconds": float}

    def value(column: str, text: str) -> Any:
        if column in ("success", "converged"):
            return text == "True"
        if column in numbers:
            return None if text == "" else numbers[column](text)
        return text

    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path}: expected the columns {', '.join(COLUMNS)}")
        return [ResultRow(**{k: value(k, v) for k, v in line.items()}) for line in reader]
