"""What a report says: its setup, how to reproduce it, results, figures and asv values, as a
list of structured blocks (:mod:`hessbench.report.blocks`) built from typed run records, the
long table and the summary rows."""

from __future__ import annotations

import json
import shlex
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hessbench.long_table import ResultRow
from hessbench.records import SUCCESS_EPS, RunRecord
from hessbench.report.blocks import Block, BulletList, CodeBlock, Figure, Heading, Paragraph, Table
from hessbench.report.load import ThroughputMeasurement
from hessbench.report.tables import (asv_tables, group_label, passes_tables,
                                     self_stopped_tables, seconds_tables, several_backends,
                                     throughput_table)
from hessbench.summary import SummaryRow, groups, winner

REFERENCE_METHODS = (
    "Reference methods: `exact` — the problem is built with a known spectrum; `dense` — the "
    "full Hessian by `torch.func.hessian` in float64 and LAPACK `eigh`; `lanczos` — float64 "
    "full-reorthogonalisation Lanczos to tol 1e-9 from two seeds that must agree, with computed "
    "residuals ||Hx − λx|| of at most 1e-6 |λ| (some eigenvalue lies within them).")
CONVERGENCE_CAPTION = (
    "Relative error |λ̂ − λ| / |λ| of the current estimate (held between trace rows; a run's "
    "final answer is held after it stopped; each solver is drawn up to the end of its longest "
    "run). Line: median over seeds; band: interquartile range (where most seeds have an "
    "estimate); dot: the self-stopped answers (median final cost, median final error). Dotted "
    "lines: 10% and 1%. Seconds are the solves' own: each operator was warmed up untimed "
    "before its solve (first products, compilation, strategy choice; its seconds are the "
    "tables' warm-up column).")
PROFILE_CAPTION = (
    "Moré & Wild (2009) data profiles: for each budget of data passes, the fraction of "
    "(problem, seed) instances for which the solver's estimates of both λmax and λmin came "
    "within eps and stayed there. Higher and further left is better; a failed or missing run "
    "counts as unsolved.")
ASV_CAPTION = (
    "Latest value per benchmark and parameter combination from the asv results (`asv run`); "
    "`track_passes_*` in data passes (n/a: never reached or skipped here), `track_rel_error_*` "
    "relative errors of the self-stopped answer, `time_*` seconds, `peakmem_*` peak resident "
    "memory of the benchmark process.")


@dataclass
class ReportInputs:
    """Everything a report is made from."""

    run_dir: Path
    out: Path
    runs: list[RunRecord]
    long_rows: list[ResultRow]
    summary: list[SummaryRow]
    solvers: list[str]
    figures: dict[tuple[str, ...], Path]
    throughput: list[ThroughputMeasurement]
    throughput_command: str | None
    asv_rows: list[dict[str, Any]] | None
    title: str
    command: str | None


def default_title(runs: Sequence[RunRecord]) -> str:
    return "hessbench report: " + ", ".join(dict.fromkeys(r.problem for r in runs))


def _uniq(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(json.dumps(v, sort_keys=True) if isinstance(v, (dict, list))
                              else v for v in values if v not in (None, {}, [])))


def versions_text(runs: Sequence[RunRecord]) -> str:
    """'torch 2.13.0, jax 0.10.2 (40 of 158 runs), ...': every package with its version(s)."""
    seen: dict[str, Counter] = {}
    for r in runs:
        for pkg, ver in r.versions.items():
            seen.setdefault(pkg, Counter())[ver] += 1
    parts = []
    for pkg in sorted(seen, key=lambda p: (p != "python", p)):
        for ver, n in seen[pkg].most_common():
            parts.append(f"{pkg} {ver}" + ("" if n == len(runs) else f" ({n} of {len(runs)} runs)"))
    return ", ".join(parts) or "-"


def recorded_commands(runs: Sequence[RunRecord]) -> list[str]:
    """The recorded ``hessbench compare/run/demo`` command lines (records written from Python,
    e.g. by tests, carry none)."""
    cmds = [r.command for r in runs if len(r.command) >= 2 and r.command[0] == "hessbench"
            and r.command[1] in ("compare", "run", "demo")]
    return list(dict.fromkeys(shlex.join(c) for c in cmds))


def compare_commands(runs: Sequence[RunRecord], solvers: Sequence[str],
                     run_dir: str | Path) -> list[str]:
    """``hessbench compare`` commands for this grid, rebuilt from the records (one per
    backend, budget and tolerance found)."""
    ok = [r for r in runs if not r.raised]
    grouped: dict[tuple[str, str, Any], list[RunRecord]] = {}
    for r in ok:
        key = (r.backend, json.dumps(r.budget, sort_keys=True), r.solver_options.get("tol"))
        grouped.setdefault(key, []).append(r)
    if not grouped:
        grouped[("torch", "{}", None)] = list(runs)
    cmds = []
    for (backend, budget, tol), group in grouped.items():
        if len(grouped) == 1:
            group = group + [r for r in runs if r.raised]
        present = {r.solver for r in group}
        seeds = sorted({r.seed for r in group})
        seed_text = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) \
            else ",".join(map(str, seeds))
        parts = ["hessbench", "compare", "--problems", *dict.fromkeys(r.problem for r in group),
                 "--solvers", *[s for s in solvers if s in present], "--seeds", seed_text]
        limits = json.loads(budget)
        for key, flag in (("max_passes", "--max-passes"), ("max_seconds", "--max-seconds"),
                          ("max_hvps", "--max-hvps")):
            if key in limits:
                parts += [flag, f"{limits[key]:g}"]
        if tol is not None and tol != 1e-3:
            parts += ["--tol", f"{tol:g}"]
        if backend != "torch":
            parts += ["--backend", backend]
        cmds.append(" ".join(parts + ["-o", str(run_dir)]))
    return cmds


def winner_line(part: Sequence[SummaryRow], label: str) -> str:
    best = winner(part)
    if best is None:
        return f"{label}: none (no solver reached 1% on both ends with at least half of its " \
               "self-stopped answers successful)"
    r = next(x for x in part if x.solver == best)
    passes = r.stats("data_passes", "both", 0.01).median
    secs = r.stats("seconds", "both", 0.01).median
    return (f"{label}: **{best}** ({passes:.3g} data passes" +
            (f", {secs:.3g} s" if secs is not None else "") +
            f" to 1% on both ends, median; {r.success}/{r.seeds} self-stopped successes)")


def _setup(i: ReportInputs) -> list[Block]:
    ok = [r for r in i.runs if not r.raised]
    errors = len(i.runs) - len(ok)
    seeds = sorted({r.seed for r in i.runs})

    def joined(values: Iterable[Any], quote: bool = False) -> str:
        items = _uniq(values)
        return ", ".join(f"`{v}`" if quote else str(v) for v in items)

    setup = [
        ("host", joined(r.host for r in ok) or "-"),
        ("platform", joined(r.platform for r in ok) or "-"),
        ("device", joined(r.device for r in ok) or "-"),
        ("threads", joined(r.threads for r in ok) or "-"),
        ("backend", joined(r.backend for r in ok) or "-"),
        ("dtype", joined(r.dtype for r in ok) or "-"),
        ("versions", versions_text(ok)),
        ("solvers", ", ".join(f"`{s}`" for s in i.solvers)),
        ("solver options (effective)", "; ".join(
            f"`{s}`: `{o}`" for s in i.solvers
            for o in _uniq(r.solver_options for r in ok if r.solver == s)) or "-"),
        ("which", joined(r.which for r in ok) or "-"),
        ("budget per run", joined((r.budget for r in ok), quote=True) or "none"),
        ("seeds", ", ".join(map(str, seeds))),
        ("success", f"a self-stopped answer succeeds when the solver's own rule says "
                    f"converged *and* both ends are within {SUCCESS_EPS:.0%} relative error"),
        ("run records", f"`{i.run_dir}` ({len(i.runs)} JSON files, {errors} errors)"),
        ("long table", "`results.csv`: one row per run × end × eps (columns: "
                       "problem, backend, solver, seed, end, eps, data_passes, seconds, "
                       "hvp_calls, self_stopped_error, success, converged, status, "
                       "passes_used, warmup_seconds)"),
    ]
    blocks: list[Block] = [Heading(2, "Setup"), Table(["setting", "value"],
                                                      [[k, v] for k, v in setup])]
    blocks.append(Heading(3, "Problems and reference eigenvalues"))
    several = several_backends(i.summary)
    body = []
    for problem, backend, _ in groups(i.summary):
        label = group_label(problem, backend, several)
        r = next((x for x in ok if (x.problem, x.backend) == (problem, backend)), None)
        if r is None or r.reference is None:
            body.append([label, "(every run failed)", "", "", "", "", ""])
            continue
        body.append([label, r.problem_description, f"{r.parameters:,}", f"{r.num_samples:,}",
                     f"{r.reference.lambda_max:.8g}", f"{r.reference.lambda_min:.8g}",
                     r.reference.method])
    blocks.append(Table(["problem", "description", "parameters", "samples N",
                         "reference λmax", "reference λmin", "reference method"], body))
    blocks.append(Paragraph(REFERENCE_METHODS))
    recorded = recorded_commands(i.runs)
    lines = (["# the grid (as recorded in the run records)" if recorded else
              "# the grid (rebuilt from the run records)"]
             + (recorded or compare_commands(i.runs, i.solvers, i.run_dir)))
    if i.throughput and i.throughput_command:
        lines += ["# HVP throughput (throughput.json in the run folder)", i.throughput_command]
    lines += ["# this report", i.command or f"hessbench report {i.run_dir} --output {i.out}"]
    blocks += [Heading(3, "Reproduce"), CodeBlock("\n".join(lines))]
    return blocks


def _results(i: ReportInputs) -> list[Block]:
    several = several_backends(i.summary)
    return [
        Heading(2, "Results"),
        Paragraph("Median [interquartile range] over seeds of the cost until the estimate came "
                  "within relative error eps of the reference *and stayed there*; (k/n) when "
                  "only k of n seeds got there, `never` when none did. The **winner** per "
                  "problem has the least median data passes to 1% on both ends among solvers "
                  "whose self-stopped answers succeeded for at least half the seeds. Seconds "
                  "are the solves' own; the untimed warm-up of the operator before each solve "
                  "is the warm-up column."),
        Paragraph("Winners:"),
        BulletList([winner_line(part, group_label(p, b, several))
                    for p, b, part in groups(i.summary)]),
        Heading(3, "Data passes to eps (and seconds to 1%, both ends)"),
        *passes_tables(i.summary),
        Heading(3, "Seconds to eps"),
        *seconds_tables(i.summary),
        Heading(3, "Self-stopped answers"),
        Paragraph("What each solver returned when it stopped by its own rule or at the budget: "
                  "success (converged and within 1% on both ends), the statuses, the data "
                  "passes used and the median relative errors of the returned values."),
        *self_stopped_tables(i.long_rows, i.summary),
    ]


def _figures(i: ReportInputs) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Figures")]
    several = several_backends(i.summary)
    for problem, backend, _ in groups(i.summary):
        path = i.figures.get(("convergence", problem, backend))
        if path is not None:
            label = group_label(problem, backend, several)
            blocks += [Heading(3, f"Convergence: {label}"),
                       Figure(path, f"relative error vs data passes and seconds, {label}"),
                       Paragraph(CONVERGENCE_CAPTION)]
    if ("data_profile",) in i.figures:
        blocks += [Heading(3, "Data profiles"), Figure(i.figures[("data_profile",)],
                                                       "data profiles"),
                   Paragraph(PROFILE_CAPTION)]
    if i.throughput:
        blocks += [Heading(3, "HVP throughput"),
                   Figure(i.figures[("throughput",)], "HVP throughput"),
                   throughput_table(i.throughput)]
    return blocks


def _asv(i: ReportInputs) -> list[Block]:
    if i.asv_rows is None:
        return []
    tables = asv_tables(i.asv_rows)
    blocks: list[Block] = [Heading(2, "asv benchmarks (latest values)")]
    if not tables:
        blocks.append(Paragraph("No asv results with values were found."))
    blocks.append(Paragraph(ASV_CAPTION))
    for caption, table in tables:
        blocks += [Paragraph(caption), table]
    return blocks


def document(i: ReportInputs) -> list[Block]:
    """The whole report, in order."""
    problems = {(r.problem, r.backend) for r in i.runs}
    seeds = {r.seed for r in i.runs}
    blocks: list[Block] = [
        Heading(1, i.title),
        Paragraph(f"Eigensolvers for the extreme eigenvalues λmax and λmin of neural-network "
                  f"loss Hessians, from Hessian-vector products. {len(i.runs)} runs: "
                  f"{len(problems)} problem(s) × {len(i.solvers)} solver(s) × {len(seeds)} "
                  f"seed(s). Cost is counted in **data passes** (samples touched by HVPs / N: "
                  f"one full-data HVP is one pass) and in wall-clock seconds."),
        *_setup(i), *_results(i), *_figures(i), *_asv(i)]
    raised = [r for r in i.runs if r.raised]
    if raised:
        blocks += [Heading(2, "Runs that raised"), Table(
            ["problem", "solver", "seed", "error"],
            [[r.problem, r.solver, str(r.seed), r.message] for r in raised])]
    return blocks
