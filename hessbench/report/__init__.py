"""Publishable report of a ``hessbench compare`` run: ``hessbench report RUN_DIR -o OUT``.

Reads the typed run records of RUN_DIR (:func:`hessbench.records.load_runs`), builds the
long table (:mod:`hessbench.long_table`) and its summary (:mod:`hessbench.summary`), and
writes to OUT:

- ``README.md``: the setup (machine, device, threads, versions, problems with their reference
  eigenvalues and how they were obtained, effective solver options, budgets, seeds, the
  commands that reproduce it), the tables and the figures;
- ``index.html``: the same, self-contained (figures embedded as base64 PNG);
- ``results.csv``: the long table, one row per run x end x eps, to re-plot without rerunning;
- ``summary.json``: the summary rows;
- ``figures/*.png``: ``convergence_<problem>[_<backend>].png`` (relative error of the
  lambda_max and lambda_min estimates vs data passes and vs seconds), ``data_profile.png``
  (Moré & Wild data profiles) and ``hvp_throughput.png`` if RUN_DIR has ``throughput.json``
  (:mod:`hessbench.report.load`).

``asv_results`` (e.g. ``.asv/results``) folds in the latest value of every asv benchmark.

A file of RUN_DIR that is not a readable run record (invalid JSON, a malformed or old record)
is skipped with a :class:`hessbench.records.RecordWarning` naming it; ``strict=True`` raises
:class:`hessbench.records.RecordError` naming it instead. A missing optional dependency
(matplotlib, Jinja2, markdown-it-py) is a :class:`hessbench.errors.UserError` naming it and
the extra to install (``pip install 'hessbench[report]'``), raised before anything is written.
Every file is written atomically (:func:`hessbench.files.atomic_write`).

Modules: ``load`` (throughput and asv inputs), ``curves`` (error curves, data profiles),
``figures`` (matplotlib), ``tables`` and ``content`` (the document as structured blocks),
``render`` (Markdown, and HTML through Jinja2 and markdown-it-py).
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hessbench.errors import InputError
from hessbench.files import atomic_write
from hessbench.long_table import long_table, write_csv
from hessbench.records import check_output_file, load_runs, prepare_output_folder, write_json
from hessbench.report.content import ReportInputs, default_title, document
from hessbench.report.extras import require_report_extras
from hessbench.report.load import load_asv_results, load_throughput
from hessbench.report.render import render_html, render_markdown
from hessbench.report.tables import group_label, several_backends
from hessbench.summary import summarise

__all__ = ["build_report", "load_asv_results", "registry_orders"]


def registry_orders() -> tuple[list[str], list[str], list[str]]:
    """Problems, solvers and backends in registry order (built-ins first): the order of every
    table."""
    from hessbench import backends, problems, solvers

    return problems.available(), solvers.available(), backends.available()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def build_report(run_dir: str | Path, output: str | Path, *,
                 asv_results: str | Path | None = None, title: str | None = None,
                 command: str | None = None, strict: bool = False) -> dict[str, Any]:
    """Write the report of the runs in ``run_dir`` to ``output``; returns what was written
    (``readme``, ``html``, ``csv``, ``summary``, ``figures``: name -> path, ``rows``: the
    summary rows). Files of ``run_dir`` that are not readable run records are skipped with a
    warning each, or with ``strict`` raise (see the module docstring)."""
    require_report_extras()
    from hessbench.report import figures as fig

    run_dir, out = Path(run_dir), Path(output)
    if not run_dir.is_dir():
        raise InputError(f"no run records in {run_dir}: it does not exist or is not a folder; "
                         "give the output folder of hessbench compare")
    runs = load_runs(run_dir, strict=strict)
    if not runs:
        raise InputError(f"no run records (readable JSON files with 'problem' and 'solver') "
                         f"in {run_dir}: give the output folder of hessbench compare")
    out = prepare_output_folder(out)
    fig_dir = prepare_output_folder(out / "figures")

    problem_order, solver_order, backend_order = registry_orders()
    rows = long_table(runs)
    summary = summarise(rows, problem_order, solver_order, backend_order)
    present = {r.solver for r in runs}
    solvers = [s for s in solver_order if s in present] + sorted(present - set(solver_order))
    styles = fig.solver_styles(solvers)
    several = several_backends(summary)

    figures: dict[tuple[str, ...], Path] = {}
    for row in summary:
        key = ("convergence", row.problem, row.backend)
        group = [r for r in runs if (r.problem, r.backend) == key[1:] and not r.raised]
        if key not in figures and group:
            label = group_label(row.problem, row.backend, several)
            path = fig_dir / f"convergence_{_slug(label)}.png"
            fig.plot_convergence(group, label, path, styles)
            figures[key] = path
    if any(not r.raised for r in runs):
        figures[("data_profile",)] = fig_dir / "data_profile.png"
        fig.plot_data_profiles(rows, figures[("data_profile",)], styles)
    throughput, throughput_cmd = load_throughput(run_dir)
    if throughput:
        figures[("throughput",)] = fig_dir / "hvp_throughput.png"
        fig.plot_throughput(throughput, figures[("throughput",)])

    inputs = ReportInputs(
        run_dir=run_dir, out=out, runs=runs, long_rows=rows, summary=summary, solvers=solvers,
        figures=figures, throughput=throughput, throughput_command=throughput_cmd,
        asv_rows=load_asv_results(asv_results) if asv_results is not None else None,
        title=title or default_title(runs), command=command)
    blocks = document(inputs)
    readme = atomic_write(check_output_file(out / "README.md"), render_markdown(blocks))
    index = atomic_write(check_output_file(out / "index.html"),
                         render_html(blocks, title=inputs.title))
    csv_path = write_csv(rows, out / "results.csv")
    summary_path = write_json([asdict(r) for r in summary], out / "summary.json")
    return {"readme": readme, "html": index, "csv": csv_path, "summary": summary_path,
            "figures": {"_".join(k): p for k, p in figures.items()}, "rows": summary}
