"""The report's matplotlib figures (written as PNG; matplotlib is imported only here).

- :func:`plot_convergence`: relative error of the lambda_max and lambda_min estimates vs data
  passes and vs seconds; median over seeds with the interquartile band, per solver;
- :func:`plot_data_profiles`: Moré & Wild data profiles at 1% and 10% on both ends;
- :func:`plot_throughput`: HVP throughput (samples/s) per backend, dtype and batch size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hessbench.files import atomic_write
from hessbench.long_table import ResultRow
from hessbench.records import EPSILONS, RunRecord, check_output_file
from hessbench.report.curves import cost_grid, data_profile, error_at, final_error, median_band
from hessbench.report.extras import require
from hessbench.report.load import ThroughputMeasurement

PROFILE_EPS = (0.01, 0.1)
ERROR_FLOOR = 1e-16  # relative errors are drawn no lower than this (log axes)

# 13+ distinguishable colours: tab10, then three more, in the registry's solver order; the
# line style (solid, dashed, dash-dot) is a second cue.
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#e6ab02", "#00008b", "#66c2a5",
          "#a6d854", "#fc8d62"]
STYLES = ["-", "--", "-."]


def solver_styles(solvers: Sequence[str]) -> dict[str, tuple[str, str]]:
    """A (colour, line style) per solver, stable for a given solver order."""
    return {s: (COLORS[i % len(COLORS)], STYLES[(i // 10) % len(STYLES)])
            for i, s in enumerate(solvers)}


def _plt():
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 13, "axes.titlesize": 15, "axes.labelsize": 14,
                         "legend.fontsize": 12, "xtick.labelsize": 12, "ytick.labelsize": 12,
                         "figure.titlesize": 17, "axes.grid": True, "grid.alpha": 0.3,
                         "savefig.dpi": 110})
    return plt


def _save(fig: Any, path: Path) -> None:
    """Save ``fig`` as PNG at ``path`` atomically (never over a link or a non-regular file)."""
    atomic_write(check_output_file(path), lambda f: fig.savefig(f, format="png"))


def plot_convergence(runs: Sequence[RunRecord], label: str, path: Path,
                     colors: dict[str, tuple[str, str]]) -> None:
    """2 x 2 panels: rows x = data passes / seconds, columns lambda_max / lambda_min."""
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(15, 10.5), constrained_layout=True, sharex="row")
    ref = runs[0].reference
    solvers_here = [s for s in colors if any(r.solver == s for r in runs)]
    ylo = {"max": 3e-3, "min": 3e-3}  # y-range per column from the medians (10% and 1% shown)
    yhi = {"max": 0.3, "min": 0.3}
    drawn: set[str] = set()
    for row, (axis, xlabel) in enumerate((("data_passes", "data passes (HVP samples / N)"),
                                          ("seconds", "wall-clock time (s)"))):
        grid = cost_grid(runs, axis)
        for col, end in enumerate(("max", "min")):
            ax = axes[row, col]
            for solver in solvers_here:
                group = [r for r in runs if r.solver == solver and r.trace]
                curves = np.array([error_at(r.trace, r.reference, end, grid, axis)
                                   for r in group])
                med, q1, q3 = median_band(np.maximum(curves, ERROR_FLOOR))
                color, style = colors[solver]
                # draw each solver only up to where its longest run ended
                stop = max(getattr(r.trace[-1], axis) for r in group)
                keep = grid <= stop * 1.0001
                if np.all(np.isnan(med[keep])):
                    continue
                drawn.add(solver)
                ax.plot(grid[keep], med[keep], style, color=color, lw=2.2,
                        label=f"{solver} (n={len(group)})")
                # band where the upper quartile exists (not while seeds lack an estimate)
                ax.fill_between(grid[keep], q1[keep], q3[keep], where=np.isfinite(q3[keep]),
                                color=color, alpha=0.12, lw=0)
                # a dot at the self-stopped answers: median final cost, median final error
                x_end = float(np.median([getattr(r.trace[-1], axis) for r in group]))
                finals = [e for e in (final_error(r, end) for r in group) if e is not None]
                if 2 * len(finals) > len(group):
                    ax.plot([x_end], [max(float(np.median(finals)), ERROR_FLOOR)], "o",
                            color=color, ms=8, mec="white", mew=1.2, zorder=5)
                finite = med[keep][np.isfinite(med[keep])]
                if finite.size:
                    yhi[end] = max(yhi[end], float(finite.max()))
                    ylo[end] = min(ylo[end], float(finite.min()))
            for eps in EPSILONS:
                ax.axhline(eps, color="0.35", lw=1, ls=":")
                ax.annotate(f"{eps:.0%}", xy=(1.0, eps), xycoords=("axes fraction", "data"),
                            xytext=(3, 0), textcoords="offset points", va="center",
                            fontsize=11, color="0.35")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"relative error of λ{end} estimate")
            lam = ref.value(end)
            ax.set_title(f"λ{end}  (reference {lam:.6g})")
    for (row, col), ax in np.ndenumerate(axes):
        end = ("max", "min")[col]
        ax.set_ylim(max(ylo[end] / 4, ERROR_FLOOR / 2), min(yhi[end] * 4, 1e4))
    for solver in solvers_here:  # listed even when no median estimate exists anywhere
        if solver not in drawn:
            n = sum(r.solver == solver for r in runs)
            color, style = colors[solver]
            axes[0, 0].plot([], [], style, color=color, lw=2.2,
                            label=f"{solver} (n={n}): no median estimate")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in axes.flat:  # a solver may appear in only some panels
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    order = [lab for s in solvers_here for lab in seen if lab.startswith(f"{s} (")]
    fig.legend([seen[lab] for lab in order], order, loc="outside right center",
               title="solver (seeds)", frameon=False)
    seeds = len({r.seed for r in runs})
    fig.suptitle(f"{label}: relative error vs cost — median over {seeds} seed(s), "
                 "band = interquartile range")
    _save(fig, path)
    plt.close(fig)


def plot_data_profiles(rows: Sequence[ResultRow], path: Path,
                       colors: dict[str, tuple[str, str]]) -> None:
    """Data profiles at 1% and 10%, one step curve per solver (see :func:`data_profile`)."""
    plt = _plt()
    costs = [r.data_passes for r in rows if r.end == "both" and r.eps in PROFILE_EPS
             and r.data_passes is not None]
    used = [r.passes_used for r in rows if r.status != "error" and r.passes_used is not None]
    lo = max(min(costs + [1.0]) * 0.7, 1e-3)
    hi = max(costs + used + [1.0]) * 1.25
    budgets = np.geomspace(lo, hi, 600)
    fig, axes = plt.subplots(1, len(PROFILE_EPS), figsize=(15, 6.2), constrained_layout=True,
                             sharey=True)
    for ax, eps in zip(np.atleast_1d(axes), PROFILE_EPS):
        profiles, n = data_profile(rows, eps, budgets)
        for solver in colors:
            if solver not in profiles:
                continue
            color, style = colors[solver]
            ax.step(budgets, profiles[solver], style, where="post", color=color, lw=2.2,
                    label=f"{solver} ({profiles[solver][-1]:.0%})")
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("budget (data passes)")
        ax.set_title(f"both ends within {eps:.0%} ({n} problem×seed instances)")
    np.atleast_1d(axes)[0].set_ylabel("fraction of instances solved")
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center",
               title="solver (solved to 1%\nat the largest budget)", frameon=False)
    fig.suptitle("Data profiles (Moré & Wild 2009): instances solved vs budget")
    _save(fig, path)
    plt.close(fig)


def plot_throughput(rows: Sequence[ThroughputMeasurement], path: Path) -> None:
    """One panel per problem: a bar of samples/s per (backend, dtype, batch size), each bar
    labelled with its value and its ratio to the first backend's bar of the same dtype and
    batch size (linear axis per panel: problems differ by orders of magnitude)."""
    plt = _plt()

    problems = list(dict.fromkeys(r.problem for r in rows))
    ncols = min(3, len(problems))
    nrows = math.ceil(len(problems) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols + 2.0, 4.6 * nrows),
                             constrained_layout=True, squeeze=False)
    backends = list(dict.fromkeys(r.backend for r in rows))
    color = {"torch": "#ee4c2c", "jax": "#1f4e9c"}
    for ax, problem in zip(axes.flat, problems):
        mine = sorted((r for r in rows if r.problem == problem),
                      key=lambda r: (r.dtype, r.batch_size,
                                     backends.index(r.backend)))
        base: dict[tuple[str, int], float] = {}
        for i, r in enumerate(mine):
            key = (r.dtype, r.batch_size)
            value = r.samples_per_second
            base.setdefault(key, value)
            ax.barh(i, value, color=color.get(r.backend, COLORS[i % len(COLORS)]))
            ratio = "" if base[key] == value else f"  ({value / base[key]:.2f}x)"
            ax.text(value, i, f" {value:,.0f}{ratio}", va="center", fontsize=12)
        ax.set_yticks(range(len(mine)), [f"{r.backend} {r.dtype}\nbatch {r.batch_size}"
                                         for r in mine])
        ax.invert_yaxis()
        ax.set_xlim(0, 1.45 * max(r.samples_per_second for r in mine))
        ax.set_xlabel("HVP throughput (samples/s)")
        ax.set_title(problem)
    for ax in list(axes.flat)[len(problems):]:
        ax.set_visible(False)
    devices = sorted({f"{r.backend}: {r.device}" for r in rows if r.device})
    fig.suptitle("HVP throughput, PyTorch vs JAX" + (f"\n({'; '.join(devices)})" if devices
                                                    else ""))
    _save(fig, path)
    plt.close(fig)
