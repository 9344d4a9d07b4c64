"""Run a grid of problems x solvers x seeds and summarise it.

Each run is written as a typed record (``output/<problem>_<solver>_seed<k>.json``); the
summary (:mod:`hessbench.summary`, computed from the long table of :mod:`hessbench.long_table`)
goes to ``summary.json`` and ``summary.md``, and the long table to ``results.csv``. A run that
raises is recorded with its error (status ``"error"``); the grid goes on.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hessbench.long_table import long_table, write_csv
from hessbench.records import SUCCESS_EPS, RunRecord, write_json
from hessbench.report.render import render_markdown
from hessbench.report.tables import passes_tables
from hessbench.runner import run_one
from hessbench.summary import SummaryRow, summarise


def run_grid(problems: Iterable[str], solvers: Iterable[str], seeds: Iterable[int],
             output: str | Path, progress: bool = True, command: Sequence[str] = (),
             **run_options: Any) -> list[RunRecord]:
    """Run every combination, writing ``output/<problem>_<solver>_seed<k>.json``.

    Unknown problem, solver or backend names raise before anything runs."""
    from hessbench import backends
    from hessbench import problems as problem_registry
    from hessbench import solvers as solver_registry

    backends.operator_factory(run_options.get("backend", "torch"))
    problems, solvers, seeds = list(problems), list(solvers), list(seeds)
    for name in problems:
        problem_registry.get(name)
    for name in solvers:
        solver_registry.solver_class(name)
    out = Path(output)
    grid = [(p, s, k) for p in problems for s in solvers for k in seeds]
    records = []
    for problem, solver, seed in tqdm(grid, desc="compare", disable=not progress):
        try:
            record = run_one(problem, solver, seed=seed, progress=False, command=command,
                             **run_options)
        except Exception as err:  # noqa: BLE001 - one failing run must not lose the grid
            record = RunRecord(problem=problem, solver=solver, seed=seed,
                               backend=run_options.get("backend", "torch"),
                               which=run_options.get("which", "both"),
                               budget=dict(run_options.get("budget") or {}),
                               command=list(command), status="error",
                               message=f"{type(err).__name__}: {err}",
                               traceback=traceback.format_exc())
        record.write(out / f"{problem}_{solver}_seed{seed}.json")
        records.append(record)
    return records


def summary_rows(runs: Sequence[RunRecord]) -> list[SummaryRow]:
    """The summary of ``runs``, problems and solvers in registry order."""
    from hessbench.report import registry_orders

    return summarise(long_table(runs), *registry_orders())


def write_summary(runs: Sequence[RunRecord], output: str | Path) -> str:
    """Write ``summary.json``, ``summary.md`` and ``results.csv`` (the long table) to
    ``output``; returns the Markdown tables."""
    rows = summary_rows(runs)
    table = render_markdown(passes_tables(rows, level=3))
    out = Path(output)
    write_json([asdict(r) for r in rows], out / "summary.json")
    write_csv(long_table(runs), out / "results.csv")
    (out / "summary.md").write_text(
        "# Comparison\n\nMedian [interquartile range] over seeds of the data passes until the "
        "estimate came within relative error eps of the reference and stayed there; "
        "(k/n) when only k of n seeds got there. Self-stopped success: converged by the "
        f"solver's own rule and within {SUCCESS_EPS:g} relative error on both ends.\n\n"
        + table)
    return table
