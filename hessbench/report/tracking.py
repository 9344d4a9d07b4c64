"""The tracking report: runs of ``hessbench track`` (folders holding ``tracking.json``),
cold vs warm start.

:func:`build_tracking_report` reads every ``tracking.json`` under a folder and writes
``README.md``, ``index.html``, ``data.json`` and ``figures/`` (``hessbench report RUN_DIR`` on
such a folder: :func:`is_tracking_dir`, :func:`cmd_tracking_report`):

- ``paths_<problem>.png``: λmax and λmin at each checkpoint, the certified references (black)
  and each (solver, start)'s estimates (median over seeds; the estimates are within the error
  table's numbers of the references, so they sit on the line);
- ``cost_<problem>.png``: data passes and seconds of the solve at each checkpoint, median over
  seeds with the min-max band, cold vs warm.

The table gives per (problem, solver, start): seeds succeeded (every checkpoint converged and
both ends within 1%), total data passes and seconds over the run (mean ± sd over seeds), the
worst relative error of each end, and the warm/cold ratio of the mean totals.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hessbench.errors import InputError
from hessbench.records import SUCCESS_EPS, prepare_output_folder
from hessbench.report.blocks import (
    Block,
    BulletList,
    CodeBlock,
    Figure,
    Heading,
    Paragraph,
    Table,
)
from hessbench.report import _slug
from hessbench.report.render import render_html, render_markdown
from hessbench.tracking import TRACKING, CheckpointScore, TrackingSummary, read_tracking

__all__ = ["build_tracking_report", "cmd_tracking_report", "is_tracking_dir",
           "load_tracking_runs", "tracking_data"]

Group = tuple[str, str, bool]  # problem, solver, warm start


def load_tracking_runs(root: str | Path) -> tuple[list[dict[str, Any]], list[TrackingSummary],
                                                  list[CheckpointScore]]:
    """Settings, summaries and per-checkpoint rows of every ``tracking.json`` under ``root``
    (``root`` itself may be a ``hessbench track`` output folder)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder: give the output folder of hessbench track "
                         "or a folder holding several")
    paths = sorted(root.rglob(TRACKING))
    if not paths:
        raise InputError(f"no {TRACKING} under {root}: give the output folder of hessbench "
                         "track (--seeds ...) or a folder holding several")
    settings, summaries, rows = [], [], []
    for path in paths:
        s, su, ro = read_tracking(path)
        settings.append({**s, "path": str(path.relative_to(root))})
        summaries += su
        rows += ro
    return settings, summaries, rows


def _mode(warm: bool) -> str:
    return "warm" if warm else "cold"


def _groups(summaries: Sequence[TrackingSummary]) -> dict[Group, list[TrackingSummary]]:
    out: dict[Group, list[TrackingSummary]] = {}
    for s in sorted(summaries, key=lambda s: (s.problem, s.solver, s.warm_start, s.seed)):
        out.setdefault((s.problem, s.solver, s.warm_start), []).append(s)
    return out


def _stats(xs: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
            "min": min(xs), "max": max(xs)}


def _worst(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return max(vals) if vals else None


def tracking_data(summaries: Sequence[TrackingSummary],
                  rows: Sequence[CheckpointScore]) -> dict[str, Any]:
    """The JSON-able aggregates behind the report: per group (problem, solver, start) the
    success count, totals' statistics over seeds, worst errors, and per checkpoint the
    reference and the median / min / max over seeds of estimates, passes and seconds; per
    (problem, solver) with both starts, the warm/cold ratios of the mean totals."""
    groups = []
    for (problem, solver, warm), part in _groups(summaries).items():
        mine = [r for r in rows if (r.problem, r.solver, r.warm_start) == (problem, solver, warm)]
        per = {}
        for k in sorted({r.checkpoint for r in mine}):
            at = [r for r in mine if r.checkpoint == k]
            entry: dict[str, Any] = {"checkpoint": k, "ref_max": at[0].ref_max,
                                     "ref_min": at[0].ref_min,
                                     "success": sum(bool(r.success) for r in at),
                                     "seeds": len(at)}
            for f in ("lambda_max", "lambda_min", "data_passes", "seconds", "error_max",
                      "error_min"):
                vals = [getattr(r, f) for r in at if getattr(r, f) is not None]
                entry[f] = ({"median": float(np.median(vals)), "min": min(vals),
                             "max": max(vals)} if vals else None)
            per[k] = entry
        scored = [s.success for s in part if s.success is not None]
        groups.append({
            "problem": problem, "solver": solver, "start": _mode(warm),
            "seeds": [s.seed for s in part], "checkpoints": part[0].checkpoints,
            "success": sum(scored) if scored else None, "scored": len(scored),
            "data_passes": _stats([s.data_passes for s in part]),
            "seconds": _stats([s.seconds for s in part]),
            "step_seconds": _stats([s.step_seconds for s in part]),
            "max_error_max": _worst([s.max_error_max for s in part]),
            "max_error_min": _worst([s.max_error_min for s in part]),
            "failed": {str(s.seed): list(s.failed) for s in part if s.failed},
            "per_checkpoint": list(per.values())})
    ratios = []
    by = {(g["problem"], g["solver"], g["start"]): g for g in groups}
    for (problem, solver, start), g in by.items():
        cold = by.get((problem, solver, "cold"))
        if start == "warm" and cold is not None:
            ratios.append({"problem": problem, "solver": solver,
                           "passes_warm_over_cold": g["data_passes"]["mean"]
                           / cold["data_passes"]["mean"],
                           "seconds_warm_over_cold": g["seconds"]["mean"]
                           / cold["seconds"]["mean"]})
    return {"success_eps": SUCCESS_EPS, "groups": groups, "warm_vs_cold": ratios}


def _plot_paths(problem: str, groups: list[dict[str, Any]], path: Path) -> None:
    from hessbench.report.figures import _plt, _save, solver_styles

    plt = _plt()
    styles = solver_styles([f"{g['solver']} {g['start']}" for g in groups])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, end in zip(axes, ("max", "min")):
        per = groups[0]["per_checkpoint"]
        ks = [e["checkpoint"] for e in per]
        refs = [e[f"ref_{end}"] for e in per]
        if all(r is not None for r in refs):
            ax.plot(ks, refs, color="black", lw=3, alpha=0.35, label="reference (certified)")
        for i, g in enumerate(groups):
            label = f"{g['solver']} {g['start']}"
            color, _ = styles[label]
            pts = [(e["checkpoint"], e[f"lambda_{end}"]["median"]) for e in g["per_checkpoint"]
                   if e[f"lambda_{end}"] is not None]
            if pts:
                ax.plot(*zip(*pts), ls="none", marker="ox^v"[i % 4], mfc="none", ms=7 + 2 * i,
                        color=color, label=f"{label} (median over seeds)")
        ax.set_xlabel("checkpoint (0 = initialisation)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(f"λ{end}")
        ax.set_title(f"λ{end}")
        if end == "max" and all(r is not None and r > 0 for r in refs):
            ax.set_yscale("log")
        if end == "min" and all(r is not None and r < 0 for r in refs):
            ax.set_yscale("symlog", linthresh=min(abs(r) for r in refs))
        ax.legend(fontsize=10)
    fig.suptitle(f"{problem}: Hessian extremes along the training run")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _plot_cost(problem: str, groups: list[dict[str, Any]], path: Path) -> None:
    from hessbench.report.figures import _plt, _save, solver_styles

    plt = _plt()
    styles = solver_styles([f"{g['solver']} {g['start']}" for g in groups])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, field, unit in zip(axes, ("data_passes", "seconds"), ("data passes", "seconds")):
        for g in groups:
            label = f"{g['solver']} {g['start']}"
            color, style = styles[label]
            per = [e for e in g["per_checkpoint"] if e[field] is not None]
            ks = [e["checkpoint"] for e in per]
            ax.plot(ks, [e[field]["median"] for e in per], color=color, ls=style, marker="o",
                    label=f"{label}: total {g[field]['mean']:.0f}" if field == "data_passes"
                    else f"{label}: total {g[field]['mean']:.1f} s")
            ax.fill_between(ks, [e[field]["min"] for e in per], [e[field]["max"] for e in per],
                            color=color, alpha=0.15)
        ax.set_xlabel("checkpoint (0 = initialisation)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(f"{unit} per checkpoint (solve)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=10, title="median, min-max over seeds; mean total", title_fontsize=9)
    fig.suptitle(f"{problem}: cost per checkpoint, cold vs warm start")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _fmt_err(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def summary_table(data: dict[str, Any]) -> Table:
    """One row per (problem, solver, start)."""
    rows = []
    ratio = {(r["problem"], r["solver"]): r for r in data["warm_vs_cold"]}
    for g in data["groups"]:
        r = ratio.get((g["problem"], g["solver"])) if g["start"] == "warm" else None
        rows.append([
            f"`{g['problem']}`", f"`{g['solver']}`", g["start"],
            "-" if g["success"] is None else f"{g['success']}/{g['scored']}",
            f"{g['data_passes']['mean']:.0f} ± {g['data_passes']['sd']:.0f}",
            f"{g['seconds']['mean']:.1f} ± {g['seconds']['sd']:.1f}",
            _fmt_err(g["max_error_max"]), _fmt_err(g["max_error_min"]),
            "" if r is None else f"{r['passes_warm_over_cold']:.2f} / "
                                 f"{r['seconds_warm_over_cold']:.2f}"])
    return Table(["problem", "solver", "start", "seeds succeeded", "total data passes",
                  "total seconds", "worst error λmax", "worst error λmin",
                  "warm/cold passes / seconds"], rows)


def finding(data: dict[str, Any]) -> list[str]:
    """One sentence per (problem, solver) with both starts."""
    out = []
    by = {(g["problem"], g["solver"], g["start"]): g for g in data["groups"]}
    for r in data["warm_vs_cold"]:
        cold, warm = by[(r["problem"], r["solver"], "cold")], by[(r["problem"], r["solver"],
                                                                  "warm")]
        p = r["passes_warm_over_cold"]
        verb = "saves" if p < 1 else "costs"
        out.append(
            f"`{r['problem']}`, `{r['solver']}`: warm start {verb} "
            f"{abs(1 - p) * 100:.0f}% of the data passes over the run "
            f"({warm['data_passes']['mean']:.0f} vs {cold['data_passes']['mean']:.0f} cold, mean "
            f"over {len(warm['seeds'])} seeds) and takes {r['seconds_warm_over_cold']:.2f}x the "
            f"solve seconds ({warm['seconds']['mean']:.1f} vs {cold['seconds']['mean']:.1f} s); "
            f"success (every checkpoint converged, both ends within 1%): warm "
            f"{warm['success']}/{warm['scored']}, cold {cold['success']}/{cold['scored']} seeds."
            + _halves(cold, warm))
    return out


def _halves(cold: dict[str, Any], warm: dict[str, Any]) -> str:
    """Where the saving is: warm/cold median passes summed over each half of the run."""
    med = {m: {e["checkpoint"]: e["data_passes"]["median"] for e in g["per_checkpoint"]
               if e["data_passes"] is not None} for m, g in (("cold", cold), ("warm", warm))}
    ks = sorted(set(med["cold"]) & set(med["warm"]))
    if len(ks) < 4:
        return ""
    parts = (ks[:len(ks) // 2], ks[len(ks) // 2:])
    ratios = [sum(med["warm"][k] for k in p) / sum(med["cold"][k] for k in p) for p in parts]
    return (f" Warm/cold median passes: {ratios[0]:.2f} over checkpoints {parts[0][0]}-"
            f"{parts[0][-1]}, {ratios[1]:.2f} over {parts[1][0]}-{parts[1][-1]} (the later "
            "Hessians change less from one checkpoint to the next).")


def build_tracking_report(root: str | Path, output: str | Path, *, title: str | None = None,
                          intro: Sequence[Block] = (), command: str | None = None
                          ) -> dict[str, Any]:
    """Write ``README.md``, ``data.json`` and ``figures/`` for the tracking runs under
    ``root`` into ``output``; returns ``{"readme", "data", "figures"}`` (paths)."""
    settings, summaries, rows = load_tracking_runs(root)
    out = prepare_output_folder(output)
    fig_dir = prepare_output_folder(out / "figures")
    data = tracking_data(summaries, rows)
    data["runs"] = settings
    figures: dict[str, Path] = {}
    blocks: list[Block] = [Heading(1, title or "Tracking the Hessian's extremes along training"),
                           *intro]
    blocks += [Heading(2, "Finding"), BulletList(finding(data) or ["(no run has both starts)"]),
               Heading(2, "Summary"), summary_table(data),
               Paragraph("Totals are of the solves at every checkpoint (`data_passes`, "
                         "`seconds` of the monitor records), mean ± sd over seeds; a seed "
                         "succeeds when at every checkpoint the solver stopped by its own rule "
                         f"and each end is within {SUCCESS_EPS:.0%} of the certified "
                         "reference (`compute_reference(cheapest=True)`); the worst errors are "
                         "the largest relative errors over checkpoints and seeds.")]
    for problem in sorted({g["problem"] for g in data["groups"]}):
        part = [g for g in data["groups"] if g["problem"] == problem]
        figures[f"paths_{problem}"] = fig_dir / f"paths_{_slug(problem)}.png"
        figures[f"cost_{problem}"] = fig_dir / f"cost_{_slug(problem)}.png"
        _plot_paths(problem, part, figures[f"paths_{problem}"])
        _plot_cost(problem, part, figures[f"cost_{problem}"])
        blocks += [Heading(2, f"`{problem}`"),
                   Figure(figures[f"paths_{problem}"], f"{problem}: eigenvalue paths"),
                   Figure(figures[f"cost_{problem}"], f"{problem}: cost per checkpoint")]
    if command:
        blocks += [Heading(2, "Reproduce"), CodeBlock(command)]
    readme = out / "README.md"
    readme.write_text(render_markdown(blocks), encoding="utf-8")
    html = out / "index.html"
    html.write_text(render_html(blocks, title or "Tracking"), encoding="utf-8")
    data_path = out / "data.json"
    data_path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return {"readme": readme, "html": html, "data": data_path, "figures": figures}


def is_tracking_dir(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is (or holds) the output of ``hessbench track``: a folder with a
    ``tracking.json`` in it or below."""
    path = Path(run_dir)
    return path.is_dir() and next(path.rglob(TRACKING), None) is not None


def cmd_tracking_report(args: Any, command: str | None = None) -> int:
    """``hessbench report RUN_DIR -o OUT`` for a tracking folder (``args.run_dir``,
    ``args.output``, ``args.title``)."""
    written = build_tracking_report(args.run_dir, args.output, title=args.title,
                                    command=command)
    print(f"wrote {written['readme']}, {written['html']}, {written['data']} and "
          f"{len(written['figures'])} figure(s) in {Path(args.output) / 'figures'}")
    return 0
