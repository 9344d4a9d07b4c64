"""Run a grid of problems x solvers x seeds and summarise it.

Each run is written as a typed record (``output/<problem>_<solver>_seed<k>.json``) as soon as
it finishes; the summary (:mod:`hessbench.summary`, computed from the long table of
:mod:`hessbench.long_table`) goes to ``summary.json`` and ``summary.md``, and the long table to
``results.csv``. A run that raises is recorded with its error (status ``"error"``); the grid
goes on.

Resuming: a run whose record is already in the output folder with the same identity
(:class:`RunIdentity`: problem key, solver and its effective options, backend, seed, which,
budget, dtype, requested device and hessbench version) is reused, not rerun; ``force=True``
reruns every run. A record of a run that raised is rerun, and so is one whose file name
matches but whose identity does not (other options, say): its file is replaced.

Interrupting (Ctrl-C): the records of finished runs are kept, a partial summary is written
(``summary.md`` says ``PARTIAL: n of m runs finished (interrupted)``; ``summary.json`` is an
object with ``"partial": true``) and :class:`CompareInterrupted` (a ``KeyboardInterrupt``) is
raised; the same call again resumes.
"""

from __future__ import annotations

import inspect
import json
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hessbench.distributed import agree, is_main, planned_devices, share
from hessbench.errors import InputError
from hessbench.files import atomic_write
from hessbench.long_table import long_table, write_csv
from hessbench.records import (SUCCESS_EPS, RecordError, RunRecord, check_output_file,
                               device_request, read_record, write_json)
from hessbench.report.render import render_markdown
from hessbench.report.tables import passes_tables
from hessbench.runner import run_one, versions
from hessbench.summary import SummaryRow, summarise
from hessbench.validate import check_grid, default_strategy

SUMMARY_FILES = ("summary.json", "summary.md", "results.csv")


class GridRuns(list):  # list[RunRecord]; a plain list subclass, so callers see no change
    """The records of a grid in grid order (a ``list`` of :class:`RunRecord`), with how many
    were ``reused`` from the output folder and how many ``ran`` now."""

    def __init__(self, records: Iterable[RunRecord] = (), reused: int = 0, ran: int = 0):
        super().__init__(records)
        self.reused = reused
        self.ran = ran


class CompareInterrupted(KeyboardInterrupt):
    """``run_grid`` was interrupted: ``finished`` of ``planned`` runs have records (kept) and
    a partial summary was written; the message says how to resume."""

    def __init__(self, message: str, finished: int, planned: int):
        super().__init__(message)
        self.finished = finished
        self.planned = planned


@dataclass(frozen=True)
class RunIdentity:
    """What makes two runs the same run (values as JSON reads them back)."""

    problem_key: str
    solver: str
    solver_options: Any
    backend: str
    seed: int
    which: str
    budget: Any
    dtype: str | None
    device: str
    hessbench: str | None
    processes: int = 1
    devices: int = 1
    strategy: str | None = None  # the product strategy asked of the operator

    @classmethod
    def of_record(cls, record: RunRecord) -> RunIdentity:
        return cls(record.problem_key, record.solver, _as_json(record.solver_options),
                   record.backend, record.seed, record.which, _as_json(record.budget),
                   record.dtype, record.requested_device, record.versions.get("hessbench"),
                   record.processes, record.devices, record.warmup.get("strategy_asked"))


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from a record (tuples become lists, and so on)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise InputError(f"{value!r} cannot be recorded in a run record ({err}): give options "
                         "and budgets as JSON values (numbers, strings, lists, dicts)") from err


_RUN_DEFAULTS = {name: p.default for name, p in inspect.signature(run_one).parameters.items()
                 if p.default is not inspect.Parameter.empty}


class _Planner:
    """The identity each grid run will have, computed without running (problems and solvers
    are built once per name, after :func:`hessbench.validate.check_grid` checked them; building
    them is cheap and trains nothing)."""

    def __init__(self, run_options: dict[str, Any]):
        self.opts = {**_RUN_DEFAULTS, **run_options}
        self.version = versions().get("hessbench")
        self.parallel = planned_devices(self.opts["backend"], self.opts["device"],
                                        self.opts["devices"], self.opts["process_group"])
        self._problems: dict[str, tuple[str, str]] = {}
        self._solvers: dict[str, Any] = {}

    def _problem(self, name: str) -> tuple[str, str]:
        from hessbench import problems

        if name not in self._problems:
            prob = problems.get(name, **(self.opts["problem_options"] or {}))
            self._problems[name] = (prob.key, self.opts["dtype"] or prob.dtype)
        return self._problems[name]

    def _solver_options(self, name: str) -> Any:
        from hessbench import solvers

        if name not in self._solvers:
            solver = solvers.get(name, tol=self.opts["tol"], **(self.opts["solver_options"] or {}))
            self._solvers[name] = _as_json(solver.options())
        return self._solvers[name]

    def identity(self, problem: str, solver: str, seed: int) -> RunIdentity:
        key, dtype = self._problem(problem)
        return RunIdentity(key, solver, self._solver_options(solver), self.opts["backend"],
                           seed, self.opts["which"], _as_json(dict(self.opts["budget"] or {})),
                           dtype, device_request(self.opts["device"]), self.version,
                           *self.parallel,
                           self.opts["strategy"] or default_strategy(self.opts["backend"]))


def _reusable(path: Path, wanted: RunIdentity) -> RunRecord | None:
    """The record at ``path`` if it is a finished run of identity ``wanted``, else None (no
    file, not a readable record, a run that raised, another identity: rerun it)."""
    if not path.exists():
        return None
    try:
        record = read_record(path)
    except RecordError:
        return None
    if record.raised or RunIdentity.of_record(record) != wanted:
        return None
    return record


def _error_record(problem: str, solver: str, seed: int, command: Sequence[str],
                  options: dict[str, Any], err: Exception) -> RunRecord:
    return RunRecord(problem=problem, solver=solver, seed=seed,
                     backend=options.get("backend", "torch"), which=options.get("which", "both"),
                     budget=dict(options.get("budget") or {}),
                     requested_device=device_request(options.get("device")),
                     command=list(command), status="error",
                     message=f"{type(err).__name__}: {err}",
                     traceback=traceback.format_exc())


def run_grid(problems: Iterable[str], solvers: Iterable[str], seeds: Iterable[int],
             output: str | Path, progress: bool = True, command: Sequence[str] = (),
             force: bool = False, **run_options: Any) -> GridRuns:
    """Run every combination, writing ``output/<problem>_<solver>_seed<k>.json`` as each run
    finishes; ``run_options`` go to :func:`hessbench.runner.run_one`. Returns the records in
    grid order (a :class:`GridRuns` list, with the ``reused`` and ``ran`` counts).

    Runs already recorded in ``output`` with the same :class:`RunIdentity` are reused unless
    ``force`` (see the module docstring). Before anything runs, raises an
    :class:`hessbench.errors.InputError` for what :func:`hessbench.validate.check_grid` refuses
    (unknown names, bad options, no or repeated problems, solvers or seeds, an output folder
    that is a file or a link or cannot be written) and for a symbolic link or non-regular file
    where a record or summary goes. On an interrupt, writes a partial summary and raises
    :class:`CompareInterrupted`.

    With ``run_options["process_group"]`` (torchrun), every rank runs every run together
    (:func:`hessbench.runner.run_one`); rank 0 decides which runs are reused and alone writes
    records and summaries; a run that raised on some ranks only stops the grid (the group's
    collectives would no longer match)."""
    group = run_options.get("process_group")
    checked = {k: v for k, v in run_options.items() if k != "process_group"}
    problems, solvers, seeds = check_grid(problems, solvers, seeds, output,
                                          distributed=group is not None, **checked)
    main = is_main(group)
    progress = progress and main
    out = Path(output)
    planner = _Planner(run_options)
    grid = [(p, s, k) for p in problems for s in solvers for k in seeds]
    identities = [planner.identity(p, s, k) for p, s, k in grid]
    paths = [check_output_file(out / f"{p}_{s}_seed{k}.json") for p, s, k in grid]
    for name in SUMMARY_FILES:
        check_output_file(out / name)

    def reusable() -> dict[int, RunRecord]:
        found = ((i, _reusable(path, wanted)) for i, (path, wanted)
                 in enumerate(zip(paths, identities)))
        return {} if force else {i: record for i, record in found if record is not None}

    done = share(group, reusable)  # rank 0 reads the folder
    reused = len(done)
    todo = [i for i in range(len(grid)) if i not in done]
    try:
        with tqdm(total=len(todo), desc="compare", disable=not progress) as bar:
            for i in todo:
                problem, solver, seed = grid[i]
                try:
                    record = run_one(problem, solver, seed=seed, progress=False,
                                     command=command, **run_options)
                except Exception as err:  # noqa: BLE001 - one failing run must not lose the grid
                    record = _error_record(problem, solver, seed, command, run_options, err)
                agree(group, record.raised, f"whether {problem} {solver} seed {seed} raised "
                      f"(this rank: {record.message or 'no error'})")
                if main:
                    record.write(paths[i])
                done[i] = record
                bar.update()
    except KeyboardInterrupt:
        finished = [done[i] for i in sorted(done)]
        if main:
            write_summary(finished, out, planned=len(grid))
        raise CompareInterrupted(
            f"interrupted: {len(finished)} of {len(grid)} runs finished, their records and a "
            f"partial summary are in {out}/; run the same command again to resume",
            len(finished), len(grid)) from None
    return GridRuns((done[i] for i in range(len(grid))), reused=reused, ran=len(todo))


def summary_rows(runs: Sequence[RunRecord]) -> list[SummaryRow]:
    """The summary of ``runs``, problems and solvers in registry order."""
    from hessbench.report import registry_orders

    return summarise(long_table(runs), *registry_orders())


def write_summary(runs: Sequence[RunRecord], output: str | Path, *,
                  planned: int | None = None) -> str:
    """Write ``summary.json``, ``summary.md`` and ``results.csv`` (the long table) to
    ``output``; returns the Markdown tables.

    ``summary.json`` is the list of summary rows. ``planned`` (how many runs the grid had)
    greater than ``len(runs)`` marks a partial summary: ``summary.md`` then says, under its title,
    ``PARTIAL: n of m runs finished (interrupted)`` and ``summary.json`` is an object
    ``{"partial": true, "finished": n, "planned": m, "rows": [...]}``, so that no reader
    takes it for a complete summary."""
    rows = summary_rows(runs)
    table = render_markdown(passes_tables(rows, level=3))
    out = Path(output)
    partial = planned is not None and planned > len(runs)
    data: Any = [asdict(r) for r in rows]
    note = ""
    if partial:
        data = {"partial": True, "finished": len(runs), "planned": planned, "rows": data}
        note = (f"**PARTIAL: {len(runs)} of {planned} runs finished (interrupted).** Run the "
                "same command again to resume.\n\n")
    write_json(data, out / "summary.json")
    write_csv(long_table(runs), out / "results.csv")
    atomic_write(check_output_file(out / "summary.md"),
                 "# Comparison\n\n" + note + "Median [interquartile range] over seeds of the "
                 "data passes until the estimate came within relative error eps of the "
                 "reference and stayed there; (k/n) when only k of n seeds got there. "
                 "Self-stopped success: converged by the solver's own rule and within "
                 f"{SUCCESS_EPS:g} relative error on both ends. Seconds are the solves' own; "
                 "the untimed warm-up before each solve is the last column.\n\n" + table)
    return table
