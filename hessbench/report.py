"""Publishable report of a ``hessbench compare`` run: ``hessbench report RUN_DIR -o OUT``.

Reads the run records of RUN_DIR (:func:`hessbench.compare.load_runs`), summarises them
(:func:`hessbench.compare.summarise`) and writes to OUT:

- ``README.md``: the setup (machine, device, versions, problems with their reference
  eigenvalues and how they were obtained, budgets, tolerances, seeds, the commands that
  reproduce it), the tables and the figures;
- ``index.html``: the same, self-contained (tables as HTML, figures embedded as base64 PNG);
- ``summary.json``: the summary rows; ``figures/*.png``: the figures:

  - ``convergence_<problem>.png``: relative error of the lambda_max and lambda_min estimates vs
    data passes and vs seconds; median over seeds with the interquartile band, per solver;
  - ``data_profile.png``: data profiles (More & Wild, SIAM J. Optim. 20(1), 2009): the fraction
    of (problem, seed) instances whose estimates came within eps on both ends (and stayed
    there) within a budget of data passes, one curve per solver;
  - ``hvp_throughput.png``: HVP throughput per backend, if RUN_DIR has ``throughput.json``.

``throughput.json`` (written e.g. by ``scripts/hvp_throughput.py``) is a JSON list of
measurements, or an object whose ``"results"`` key is that list; each measurement has
``problem``, ``backend``, ``dtype``, ``batch_size`` and ``samples_per_second`` (samples of the
HVP per second of wall clock), and optionally ``device`` (other keys are ignored).

``asv_results`` (e.g. ``.asv/results``) folds in the latest value of every asv benchmark found
there, read with asv's own ``asv.results`` module (needs ``asv`` installed).
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from hessbench.compare import (SUCCESS_EPS, _cell, _winner, load_runs, markdown_table,
                               summarise)
from hessbench.runner import EPSILONS

THROUGHPUT_FILE = "throughput.json"
THROUGHPUT_KEYS = ("problem", "backend", "dtype", "batch_size", "samples_per_second")
PROFILE_EPS = (0.01, 0.1)
ERROR_FLOOR = 1e-16  # relative errors are drawn no lower than this (log axes)

# 13+ distinguishable colours: tab10, then three more, in the registry's solver order; the
# line style (solid, dashed, dash-dot) is a second cue.
_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#e6ab02", "#00008b", "#66c2a5",
           "#a6d854", "#fc8d62"]
_STYLES = ["-", "--", "-."]


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def build_report(run_dir: str | Path, output: str | Path, *,
                 asv_results: str | Path | None = None, title: str | None = None,
                 command: str | None = None) -> dict[str, Any]:
    """Write the report of the runs in ``run_dir`` to ``output``; returns what was written
    (``readme``, ``html``, ``summary``, ``figures``: name -> path, ``rows``)."""
    run_dir, out = Path(run_dir), Path(output)
    runs = load_runs(run_dir)
    if not runs:
        raise FileNotFoundError(f"no run records (JSON files with 'problem' and 'solver') in "
                                f"{run_dir}")
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)

    labelled = _label_by_backend(runs)
    ok = [r for r in labelled if r.get("status") != "error" and "trace" in r]
    problems = _problem_order(labelled)
    rank = {p: i for i, p in enumerate(problems)}
    labelled = sorted(labelled, key=lambda r: rank[r["problem"]])  # stable within a problem
    rows = summarise(labelled)
    solver_order = _solver_order(r["solver"] for r in labelled)
    colors = {s: (_COLORS[i % len(_COLORS)], _STYLES[(i // 10) % len(_STYLES)])
              for i, s in enumerate(solver_order)}

    figures: dict[str, Path] = {}
    for problem in problems:
        group = [r for r in ok if r["problem"] == problem]
        if group:
            path = fig_dir / f"convergence_{_slug(problem)}.png"
            plot_convergence(group, problem, path, colors)
            figures[f"convergence:{problem}"] = path
    if ok:
        path = fig_dir / "data_profile.png"
        plot_data_profiles(labelled, path, colors)
        figures["data_profile"] = path
    throughput, throughput_cmd = load_throughput(run_dir)
    if throughput:
        path = fig_dir / "hvp_throughput.png"
        plot_throughput(throughput, path)
        figures["throughput"] = path
    asv_rows = load_asv_results(asv_results) if asv_results is not None else None

    blocks = _blocks(run_dir, labelled, rows, problems, figures, out, throughput, throughput_cmd,
                     asv_rows, title=title, command=command)
    readme = out / "README.md"
    readme.write_text(render_markdown(blocks))
    index = out / "index.html"
    index.write_text(render_html(blocks, title=title or _default_title(labelled)))
    summary = out / "summary.json"
    summary.write_text(json.dumps(rows, indent=1))
    return {"readme": readme, "html": index, "summary": summary, "figures": figures,
            "rows": rows}


def _label_by_backend(runs: list[dict]) -> list[dict]:
    """With several backends in one run dir, summarise each separately: 'problem [backend]'."""
    backends = {r.get("backend", "torch") for r in runs if r.get("status") != "error"}
    if len(backends) <= 1:
        return runs
    return [{**r, "problem": f"{r['problem']} [{r.get('backend', 'torch')}]"} for r in runs]


def _solver_order(names: Iterable[str]) -> list[str]:
    try:
        from hessbench import solvers

        known = solvers.available()
    except Exception:  # noqa: BLE001 - colours only
        known = []
    present = list(dict.fromkeys(names))
    return [s for s in known if s in present] + [s for s in present if s not in known]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


# --------------------------------------------------------------------------------------------
# Curves from traces
# --------------------------------------------------------------------------------------------
def error_at(trace: list[dict], reference: dict[str, float], end: str, x: np.ndarray,
             axis: str = "data_passes") -> np.ndarray:
    """Relative error of the ``end`` estimate held after the last trace row with
    ``row[axis] <= x`` (NaN before the first estimate); after the run ended, its final error."""
    truth = reference[f"lambda_{end}"]
    costs = np.array([row[axis] for row in trace], dtype=float)
    errs = np.array([np.nan if row.get(f"lambda_{end}") is None or
                     not math.isfinite(row[f"lambda_{end}"])
                     else abs(row[f"lambda_{end}"] - truth) / abs(truth) for row in trace])
    # carry the last known estimate forward over rows without one for this end
    for i in range(1, len(errs)):
        if np.isnan(errs[i]) and not np.isnan(errs[i - 1]):
            errs[i] = errs[i - 1]
    idx = np.searchsorted(costs, x, side="right") - 1
    out = np.full(len(x), np.nan)
    valid = idx >= 0
    out[valid] = errs[idx[valid]]
    return out


def median_band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and quartiles over seeds (rows); 'no estimate yet' counts as an infinite error,
    so the median exists once half the seeds have an estimate. Non-finite results are NaN."""
    big = 1e300  # stands for "infinite"; np.percentile interpolates inf into NaN
    filled = np.where(np.isnan(curves), big, curves)
    q1, med, q3 = np.percentile(filled, [25, 50, 75], axis=0)
    q1, med, q3 = (np.where(a >= big / 1e3, np.inf, a) for a in (q1, med, q3))
    fix = lambda a: np.where(np.isfinite(a), a, np.nan)  # noqa: E731
    return fix(med), fix(q1), q3  # q3 may be inf: the band is clipped at the top of the axis


def _grid(runs: list[dict], axis: str, points: int = 400) -> np.ndarray:
    lo = min(r["trace"][0][axis] for r in runs if r["trace"])
    hi = max(r["trace"][-1][axis] for r in runs if r["trace"])
    lo = max(lo, 1e-6)
    hi = max(hi, lo * 1.01)
    return np.geomspace(lo, hi, points)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 13, "axes.titlesize": 15, "axes.labelsize": 14,
                         "legend.fontsize": 12, "xtick.labelsize": 12, "ytick.labelsize": 12,
                         "figure.titlesize": 17, "axes.grid": True, "grid.alpha": 0.3,
                         "savefig.dpi": 110})
    return plt


def plot_convergence(runs: list[dict], problem: str, path: Path,
                     colors: dict[str, tuple[str, str]]) -> None:
    """2 x 2 panels: rows x = data passes / seconds, columns lambda_max / lambda_min."""
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(15, 10.5), constrained_layout=True, sharex="row")
    ref = runs[0]["reference"]
    solvers_here = [s for s in colors if any(r["solver"] == s for r in runs)]
    ylo = {"max": 3e-3, "min": 3e-3}  # y-range per column from the medians (10% and 1% shown)
    yhi = {"max": 0.3, "min": 0.3}
    drawn: set[str] = set()
    for row, (axis, xlabel) in enumerate((("data_passes", "data passes (HVP samples / N)"),
                                          ("seconds", "wall-clock time (s)"))):
        grid = _grid(runs, axis)
        for col, end in enumerate(("max", "min")):
            ax = axes[row, col]
            for solver in solvers_here:
                group = [r for r in runs if r["solver"] == solver and r["trace"]]
                curves = np.array([error_at(r["trace"], r["reference"], end, grid, axis)
                                   for r in group])
                med, q1, q3 = median_band(np.maximum(curves, ERROR_FLOOR))
                color, style = colors[solver]
                # draw each solver only up to where its longest run ended
                stop = max(r["trace"][-1][axis] for r in group)
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
                x_end = float(np.median([r["trace"][-1][axis] for r in group]))
                finals = [e for e in (_final_error(r, end) for r in group) if e is not None]
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
            lam = ref[f"lambda_{end}"]
            ax.set_title(f"λ{end}  (reference {lam:.6g})")
    for (row, col), ax in np.ndenumerate(axes):
        end = ("max", "min")[col]
        ax.set_ylim(max(ylo[end] / 4, ERROR_FLOOR / 2), min(yhi[end] * 4, 1e4))
    for solver in solvers_here:  # listed even when no median estimate exists anywhere
        if solver not in drawn:
            n = sum(r["solver"] == solver for r in runs)
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
    seeds = len({r["seed"] for r in runs})
    fig.suptitle(f"{problem}: relative error vs cost — median over {seeds} seed(s), "
                 "band = interquartile range")
    fig.savefig(path)
    plt.close(fig)


def _final_error(run: dict, end: str) -> float | None:
    value = run["trace"][-1].get(f"lambda_{end}") if run.get("trace") else None
    if value is None or not math.isfinite(value):
        return None
    truth = run["reference"][f"lambda_{end}"]
    return abs(value - truth) / abs(truth)


def data_profile(runs: list[dict], eps: float, budgets: np.ndarray
                 ) -> tuple[dict[str, np.ndarray], int]:
    """Fraction of instances (problem, seed) each solver solved (both ends within ``eps``,
    reached and stayed) within each budget of data passes; a missing or failed run is
    unsolved. Returns (solver -> fractions, number of instances)."""
    instances = sorted({(r["problem"], r["seed"]) for r in runs})
    cost: dict[str, dict[tuple[str, int], float]] = {}
    for r in runs:
        hit = None if r.get("status") == "error" else \
            (r.get("cost_to_eps") or {}).get(f"both@{eps:g}")
        cost.setdefault(r["solver"], {})[(r["problem"], r["seed"])] = \
            math.inf if hit is None else hit["data_passes"]
    out = {}
    for solver, c in cost.items():
        values = np.array([c.get(inst, math.inf) for inst in instances])
        out[solver] = (values[None, :] <= budgets[:, None]).mean(axis=1)
    return out, len(instances)


def plot_data_profiles(runs: list[dict], path: Path, colors: dict[str, tuple[str, str]]) -> None:
    plt = _plt()
    costs = [h["data_passes"] for r in runs if r.get("status") != "error"
             for eps in PROFILE_EPS
             for h in [(r.get("cost_to_eps") or {}).get(f"both@{eps:g}")] if h]
    used = [r["data_passes"] for r in runs if r.get("status") != "error"]
    lo = max(min(costs + [1.0]) * 0.7, 1e-3)
    hi = max(costs + used + [1.0]) * 1.25
    budgets = np.geomspace(lo, hi, 600)
    fig, axes = plt.subplots(1, len(PROFILE_EPS), figsize=(15, 6.2), constrained_layout=True,
                             sharey=True)
    for ax, eps in zip(np.atleast_1d(axes), PROFILE_EPS):
        profiles, n = data_profile(runs, eps, budgets)
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
    fig.savefig(path)
    plt.close(fig)


def load_throughput(run_dir: str | Path) -> tuple[list[dict[str, Any]], str | None]:
    """The measurements of ``RUN_DIR/throughput.json`` (see module docstring) and the command
    recorded with them (its ``"command"`` key), or ([], None)."""
    path = Path(run_dir) / THROUGHPUT_FILE
    if not path.exists():
        return [], None
    data = json.loads(path.read_text())
    command = data.get("command") if isinstance(data, dict) else None
    if isinstance(data, dict):
        data = data.get("results", [])
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of measurements or {{'results': [...]}}")
    rows = []
    for i, m in enumerate(data):
        missing = [k for k in THROUGHPUT_KEYS if k not in m]
        if missing:
            raise ValueError(f"{path}: measurement {i} lacks {missing}; each needs "
                             f"{', '.join(THROUGHPUT_KEYS)}")
        rows.append(m)
    return rows, command


def plot_throughput(rows: list[dict[str, Any]], path: Path) -> None:
    """One panel per problem: a bar of samples/s per (backend, dtype, batch size), each bar
    labelled with its value and its ratio to the first backend's bar of the same dtype and
    batch size (linear axis per panel: problems differ by orders of magnitude)."""
    plt = _plt()

    problems = list(dict.fromkeys(r["problem"] for r in rows))
    ncols = min(3, len(problems))
    nrows = math.ceil(len(problems) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols + 2.0, 4.6 * nrows),
                             constrained_layout=True, squeeze=False)
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    color = {"torch": "#ee4c2c", "jax": "#1f4e9c"}
    for ax, problem in zip(axes.flat, problems):
        mine = sorted((r for r in rows if r["problem"] == problem),
                      key=lambda r: (str(r["dtype"]), r["batch_size"],
                                     backends.index(r["backend"])))
        base: dict[tuple[str, int], float] = {}
        for i, r in enumerate(mine):
            key = (str(r["dtype"]), r["batch_size"])
            value = float(r["samples_per_second"])
            base.setdefault(key, value)
            ax.barh(i, value, color=color.get(r["backend"], _COLORS[i % len(_COLORS)]))
            ratio = "" if base[key] == value else f"  ({value / base[key]:.2f}x)"
            ax.text(value, i, f" {value:,.0f}{ratio}", va="center", fontsize=12)
        ax.set_yticks(range(len(mine)), [f"{r['backend']} {r['dtype']}\nbatch {r['batch_size']}"
                                         for r in mine])
        ax.invert_yaxis()
        ax.set_xlim(0, 1.45 * max(float(r["samples_per_second"]) for r in mine))
        ax.set_xlabel("HVP throughput (samples/s)")
        ax.set_title(problem)
    for ax in list(axes.flat)[len(problems):]:
        ax.set_visible(False)
    devices = sorted({f"{r['backend']}: {r['device']}" for r in rows if r.get("device")})
    fig.suptitle("HVP throughput, PyTorch vs JAX" + (f"\n({'; '.join(devices)})" if devices
                                                    else ""))
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# asv results
# --------------------------------------------------------------------------------------------
def load_asv_results(results_dir: str | Path) -> list[dict[str, Any]]:
    """Latest value of every asv benchmark (per machine) and parameter combination, read with
    ``asv.results``. Rows: benchmark, machine, commit, params (dict), value, unit, type."""
    try:
        from asv import results as asv_results
        from asv import util as asv_util
    except ImportError as err:
        raise RuntimeError("--asv-results needs asv: pip install asv") from err
    results_dir = str(results_dir)
    if not os.path.isdir(results_dir):
        raise FileNotFoundError(f"no asv results folder {results_dir}")
    meta: dict[str, Any] = {}
    bench_json = os.path.join(results_dir, "benchmarks.json")
    if os.path.exists(bench_json):
        meta = asv_util.load_json(bench_json, api_version=2)
    # the latest value per (benchmark, machine, parameter combination); a skipped (NaN) value
    # does not hide an older measured one
    latest: dict[tuple, dict[str, Any]] = {}
    for res in asv_results.iter_results(results_dir):
        machine = res.params.get("machine", "?")
        for key in res.get_all_result_keys():
            when = (res.started_at or {}).get(key) or res.date or 0
            params = res.get_result_params(key) or []
            values = res.get_result_value(key, params)
            info = meta.get(key, {}) if isinstance(meta, dict) else {}
            names = info.get("param_names") or [f"p{i}" for i in range(len(params))]
            combos = list(itertools.product(*params)) if params else [()]
            if not isinstance(values, list):
                values = [values]
            for combo, value in zip(combos, values):
                skipped = isinstance(value, float) and math.isnan(value)
                slot = (key, machine, combo)
                old = latest.get(slot)
                if old is not None and (when < old["when"] or (skipped and not old["skipped"])):
                    continue
                latest[slot] = {
                    "when": when, "skipped": skipped, "benchmark": key, "machine": machine,
                    "commit": (res.commit_hash or "")[:8],
                    "params": {n: _unquote(v) for n, v in zip(names, combo)},
                    "value": value, "unit": info.get("unit", ""),
                    "type": info.get("type", key.rsplit(".", 1)[-1].split("_")[0])}
    rows = []
    for slot in sorted(latest, key=lambda s: (s[0], s[1])):  # stable: params in asv's order
        row = dict(latest[slot])
        del row["when"], row["skipped"]
        rows.append(row)
    return rows


def _unquote(v: Any) -> Any:
    if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        return v[1:-1]
    return v


def _fmt_asv(value: Any, unit: str) -> str:
    if value is None:
        return "failed"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    v = float(value)
    if unit == "seconds":
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
            if v >= scale or scale == 1e-9:
                return f"{v / scale:.3g} {name}"
    if unit == "bytes":
        return f"{v / 2**20:.1f} MiB"
    return f"{v:.3g}"


_METHOD_ORDER = ("passes_to_10pct_max", "passes_to_10pct_min", "passes_to_1pct_max",
                 "passes_to_1pct_min", "passes_to_1pct_both", "passes_self_stopped",
                 "rel_error_max", "rel_error_min")


def _short(method: str) -> str:
    """'track_passes_to_1pct_max' -> 'passes_to_1pct_max' (time_/peakmem_ prefixes stay)."""
    return method[len("track_"):] if method.startswith("track_") else method


def _families(methods: list[str]) -> str:
    """['passes_a', 'passes_b', 'x'] -> 'passes_*, x'."""
    heads = Counter(m.split("_")[0] for m in methods)
    out = []
    for m in methods:
        head = m.split("_")[0]
        name = f"{head}_*" if heads[head] > 1 else m
        if name not in out:
            out.append(name)
    return ", ".join(out)


def _method_order(method: str) -> tuple[int, str]:
    short = _short(method)
    return (_METHOD_ORDER.index(short) if short in _METHOD_ORDER else len(_METHOD_ORDER), short)


def asv_tables(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Markdown tables of asv values: one per benchmark class and machine, a row per
    parameter combination with a value, a column per benchmark method."""
    out = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        cls = r["benchmark"].rsplit(".", 1)[0]
        groups.setdefault((cls, r["machine"]), []).append(r)
    for (cls, machine), group in groups.items():
        methods = list(dict.fromkeys(r["benchmark"].rsplit(".", 1)[1] for r in group))
        names = list(dict.fromkeys(n for r in group for n in r["params"]))
        table: dict[tuple, dict[str, str]] = {}
        for r in group:
            value = r["value"]
            if value is not None and isinstance(value, float) and math.isnan(value):
                continue  # skipped here (n/a)
            combo = tuple(r["params"].get(n, "") for n in names)
            table.setdefault(combo, {})[r["benchmark"].rsplit(".", 1)[1]] = \
                _fmt_asv(value, r["unit"])
        if not table:
            continue
        units = {r["benchmark"].rsplit(".", 1)[1]: r["unit"] for r in group}
        methods.sort(key=_method_order)
        head = names + [_short(m) for m in methods]
        lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        for combo, vals in table.items():
            lines.append("| " + " | ".join([str(c) for c in combo]
                                            + [vals.get(m, "n/a") for m in methods]) + " |")
        by_unit: dict[str, list[str]] = {}
        for m in methods:
            if units.get(m) and units[m] not in ("seconds", "bytes"):
                by_unit.setdefault(units[m], []).append(_short(m))
        commits = sorted({r["commit"] for r in group if r["commit"]})
        caption = f"`{cls}` on {machine}" + (f", commit {', '.join(commits)}" if commits else "")
        if by_unit:
            caption += " (" + "; ".join(f"{_families(ms)} in {u}" for u, ms in by_unit.items()) \
                + ")"
        out.append((caption, "\n".join(lines)))
    return out


# --------------------------------------------------------------------------------------------
# Tables beyond compare.markdown_table
# --------------------------------------------------------------------------------------------
def seconds_table(rows: list[dict]) -> str:
    """Per problem: median [IQR] seconds to eps for max / min / both (the winner as in
    :func:`hessbench.compare.markdown_table`: least data passes to 1% on both ends)."""
    lines = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        part = [r for r in rows if r["problem"] == problem]
        best = _winner(part)
        lines += [f"#### {problem}", "",
                  "| solver | " + " | ".join(f"seconds to {e:g}: max / min / both"
                                             for e in EPSILONS) + " |",
                  "|---" * (len(EPSILONS) + 1) + "|"]
        for r in part:
            cells = [" / ".join(_cell(r[f"seconds:{end}@{e:g}"], ".3g")
                                for end in ("max", "min", "both")) for e in EPSILONS]
            name = f"**{r['solver']}** (winner)" if r["solver"] == best else r["solver"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def self_stopped_table(runs: list[dict], rows: list[dict]) -> str:
    """Per problem and solver: success rate, statuses, passes used, final errors (median)."""
    lines = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        part = [r for r in rows if r["problem"] == problem]
        best = _winner(part)
        lines += [f"#### {problem}", "",
                  "| solver | success | success rate | statuses | passes used (median) | "
                  "rel. error λmax (median) | rel. error λmin (median) |",
                  "|---|---|---|---|---|---|---|"]
        for row in part:
            group = [r for r in runs if r["problem"] == problem and r["solver"] == row["solver"]]
            statuses = Counter(r.get("status", "?") for r in group)
            st = ", ".join(f"{k} {v}" for k, v in statuses.most_common())
            errs = {e: [r["errors"][f"rel_error_{e}"] for r in group
                        if r.get("status") != "error"
                        and r["errors"].get(f"rel_error_{e}") is not None]
                    for e in ("max", "min")}
            med = {e: (f"{np.median(v):.2e}" if v else "-") for e, v in errs.items()}
            used = "-" if row["median_passes_used"] is None else \
                f"{row['median_passes_used']:.3g}"
            name = f"**{row['solver']}** (winner)" if row["solver"] == best else row["solver"]
            lines.append(f"| {name} | {row['success']}/{row['seeds']} | "
                         f"{row['success_rate']:.0%} | {st} | {used} | {med['max']} | "
                         f"{med['min']} |")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Content
# --------------------------------------------------------------------------------------------
def _default_title(runs: list[dict]) -> str:
    problems = list(dict.fromkeys(r["problem"] for r in runs))
    return "hessbench report: " + ", ".join(problems)


def _uniq(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(json.dumps(v, sort_keys=True) if isinstance(v, (dict, list))
                              else v for v in values if v is not None))


def _reproduce(runs: list[dict]) -> list[str]:
    """The recorded ``hessbench compare/run/demo`` commands, the executable's path shortened
    to its name (records written from Python, e.g. by tests, carry no usable command)."""
    cmds = []
    for c in _uniq(r.get("command") for r in runs):
        parts = str(c).split()
        if len(parts) >= 2 and Path(parts[0]).name in ("hessbench", "hessbench.exe") \
                and parts[1] in ("compare", "run", "demo"):
            cmds.append(" ".join(["hessbench"] + parts[1:]))
    return cmds


def _compare_command(runs: list[dict], run_dir: str | Path = "RUN_DIR") -> list[str]:
    """``hessbench compare`` commands for this grid, rebuilt from the records (one per
    backend, budget and tolerance found)."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        if r.get("status") == "error":
            continue
        key = (r.get("backend", "torch"), json.dumps(r.get("budget") or {}, sort_keys=True),
               (r.get("solver_options") or {}).get("tol"))
        groups.setdefault(key, []).append(r)
    if not groups:
        groups[("torch", "{}", None)] = runs
    errors = [r for r in runs if r.get("status") == "error"]
    cmds = []
    for (backend, budget, tol), group in groups.items():
        group = group + (errors if len(groups) == 1 else [])
        problems = list(dict.fromkeys(r["problem"].split(" [")[0] for r in group))
        solvers_ = _solver_order(r["solver"] for r in group)
        seeds = sorted({r["seed"] for r in group})
        seed_text = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) \
            else ",".join(map(str, seeds))
        parts = ["hessbench compare", "--problems", *problems, "--solvers", *solvers_,
                 "--seeds", seed_text]
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


def _versions_text(runs: list[dict]) -> str:
    """'torch 2.13.0, jax 0.10.2 (40 of 158 runs), ...': every package with its version(s)."""
    seen: dict[str, Counter] = {}
    for r in runs:
        for pkg, ver in (r.get("versions") or {}).items():
            seen.setdefault(pkg, Counter())[ver] += 1
    parts = []
    for pkg in sorted(seen, key=lambda p: (p != "python", p)):
        for ver, n in seen[pkg].most_common():
            parts.append(f"{pkg} {ver}" + ("" if n == len(runs) else f" ({n} of {len(runs)} runs)"))
    return ", ".join(parts) or "-"


def _problem_order(runs: list[dict]) -> list[str]:
    """Problems in the order of the recorded ``--problems``, else in the order found."""
    found = list(dict.fromkeys(r["problem"] for r in runs))
    for cmd in _reproduce(runs):
        tokens = cmd.split()
        if "--problems" in tokens:
            i = tokens.index("--problems") + 1
            listed = []
            while i < len(tokens) and not tokens[i].startswith("-"):
                listed.append(tokens[i])
                i += 1
            rank = {p: k for k, p in enumerate(listed)}
            return sorted(found, key=lambda p: (rank.get(p.split(" [")[0], len(rank)),
                                                found.index(p)))
    return found


def _winner_line(rows: list[dict], problem: str) -> str:
    part = [r for r in rows if r["problem"] == problem]
    best = _winner(part)
    if best is None:
        return f"{problem}: none (no solver reached 1% on both ends with at least half of its " \
               "self-stopped answers successful)"
    r = next(x for x in part if x["solver"] == best)
    passes = r["data_passes:both@0.01"]["median"]
    secs = r["seconds:both@0.01"]["median"]
    return (f"{problem}: **{best}** ({passes:.3g} data passes" +
            (f", {secs:.3g} s" if secs is not None else "") +
            f" to 1% on both ends, median; {r['success']}/{r['seeds']} self-stopped successes)")


def _blocks(run_dir: Path, runs: list[dict], rows: list[dict], problems: list[str],
            figures: dict[str, Path], out: Path, throughput: list[dict],
            throughput_cmd: str | None, asv_rows: list[dict] | None, *, title: str | None,
            command: str | None
            ) -> list[tuple[str, Any]]:
    ok = [r for r in runs if r.get("status") != "error"]
    errors = [r for r in runs if r.get("status") == "error"]
    seeds = sorted({r["seed"] for r in runs})
    solver_names = _solver_order(r["solver"] for r in runs)
    B: list[tuple[str, Any]] = [("h1", title or _default_title(runs))]
    B.append(("p", f"Eigensolvers for the extreme eigenvalues λmax and λmin of neural-network "
                   f"loss Hessians, from Hessian-vector products. {len(runs)} runs: "
                   f"{len(problems)} problem(s) × {len(solver_names)} solver(s) × "
                   f"{len(seeds)} seed(s). Cost is counted in **data passes** (samples touched "
                   f"by HVPs / N: one full-data HVP is one pass) and in wall-clock seconds."))

    # -- setup --------------------------------------------------------------------------------
    B.append(("h2", "Setup"))
    vtext = _versions_text(ok)
    setup = [
        ("host", ", ".join(_uniq(r.get("host") for r in ok)) or "-"),
        ("platform", ", ".join(_uniq(r.get("platform") for r in ok)) or "-"),
        ("device", ", ".join(_uniq(r.get("device") for r in ok)) or "-"),
        ("backend", ", ".join(_uniq(r.get("backend") for r in ok)) or "-"),
        ("dtype", ", ".join(_uniq(r.get("dtype") for r in ok)) or "-"),
        ("versions", vtext),
        ("solvers", ", ".join(f"`{s}`" for s in solver_names)),
        ("solver options", ", ".join(
            f"`{s}`" for s in _uniq(r.get("solver_options") for r in ok)) or "-"),
        ("which", ", ".join(_uniq(r.get("which") for r in ok)) or "-"),
        ("budget per run", ", ".join(f"`{b}`" for b in _uniq(r.get("budget") for r in ok))
         or "none"),
        ("seeds", ", ".join(map(str, seeds))),
        ("success", f"a self-stopped answer succeeds when the solver's own rule says "
                    f"converged *and* both ends are within {SUCCESS_EPS:.0%} relative error"),
        ("run records", f"`{run_dir}` ({len(runs)} JSON files, {len(errors)} errors)"),
    ]
    B.append(("table", "| setting | value |\n|---|---|\n" + "\n".join(
        f"| {k} | {v} |" for k, v in setup)))

    B.append(("h3", "Problems and reference eigenvalues"))
    prob_lines = ["| problem | description | parameters | samples N | reference λmax | "
                  "reference λmin | reference method |", "|---" * 7 + "|"]
    for p in problems:
        r = next((x for x in ok if x["problem"] == p), None)
        if r is None:
            prob_lines.append(f"| {p} | (every run failed) | | | | | |")
            continue
        ref = r["reference"]
        prob_lines.append(
            f"| {p} | {r.get('problem_description', '')} | {r.get('parameters', '-'):,} | "
            f"{r.get('num_samples', '-'):,} | {ref['lambda_max']:.8g} | "
            f"{ref['lambda_min']:.8g} | {ref.get('method', '-')} |")
    B.append(("table", "\n".join(prob_lines)))
    B.append(("p", "Reference methods: `exact` — the problem is built with a known spectrum; "
                   "`dense` — the full Hessian by `torch.func.hessian` in float64 and LAPACK "
                   "`eigh`; `lanczos` — float64 full-reorthogonalisation Lanczos to tol 1e-9 "
                   "from two seeds that must agree."))

    B.append(("h3", "Reproduce"))
    recorded = _reproduce(runs)
    B.append(("code", "\n".join(
        ["# the grid (as recorded in the run records)" if recorded else
         "# the grid (rebuilt from the run records)"]
        + (recorded or _compare_command(runs, run_dir))
        + ([f"# HVP throughput ({THROUGHPUT_FILE} in the run folder)", throughput_cmd]
           if throughput and throughput_cmd else [])
        + ["# this report",
           command or f"hessbench report {run_dir} --output {out}"])))

    # -- tables -------------------------------------------------------------------------------
    B.append(("h2", "Results"))
    B.append(("p", "Median [interquartile range] over seeds of the cost until the estimate came "
                   "within relative error eps of the reference *and stayed there*; (k/n) when "
                   "only k of n seeds got there, `never` when none did. The **winner** per "
                   "problem has the least median data passes to 1% on both ends among solvers "
                   "whose self-stopped answers succeeded for at least half the seeds."))
    B.append(("p", "Winners:"))
    B.append(("ul", [_winner_line(rows, p) for p in problems]))
    B.append(("h3", "Data passes to eps (and seconds to 1%, both ends)"))
    B.append(("mdtables", re.sub(r"^### ", "#### ", markdown_table(rows), flags=re.M)))
    B.append(("h3", "Seconds to eps"))
    B.append(("mdtables", seconds_table(rows)))
    B.append(("h3", "Self-stopped answers"))
    B.append(("p", "What each solver returned when it stopped by its own rule or at the budget: "
                   "success (converged and within 1% on both ends), the statuses, the data "
                   "passes used and the median relative errors of the returned values."))
    B.append(("mdtables", self_stopped_table(runs, rows)))

    # -- figures ------------------------------------------------------------------------------
    B.append(("h2", "Figures"))
    for p in problems:
        key = f"convergence:{p}"
        if key in figures:
            B.append(("h3", f"Convergence: {p}"))
            B.append(("img", (figures[key], f"relative error vs data passes and seconds, {p}")))
            B.append(("p", "Relative error |λ̂ − λ| / |λ| of the current estimate (held between "
                           "trace rows; a run's final answer is held after it stopped; each "
                           "solver is drawn up to the end of its longest run). Line: median over "
                           "seeds; band: interquartile range (where most seeds have an "
                           "estimate); dot: the self-stopped answers (median final cost, "
                           "median final error). Dotted lines: 10% and 1%. Seconds include "
                           "each run's start-up (the first run of a process pays one-off "
                           "warm-up)."))
    if "data_profile" in figures:
        B.append(("h3", "Data profiles"))
        B.append(("img", (figures["data_profile"], "data profiles")))
        B.append(("p", "Moré & Wild (2009) data profiles: for each budget of data passes, the "
                       "fraction of (problem, seed) instances for which the solver's estimates "
                       "of both λmax and λmin came within eps and stayed there. Higher and "
                       "further left is better; a failed or missing run counts as unsolved."))
    if throughput:
        B.append(("h3", "HVP throughput"))
        B.append(("img", (figures["throughput"], "HVP throughput")))
        lines = ["| problem | backend | dtype | batch size | samples/s | device |",
                 "|---|---|---|---|---|---|"]
        for m in sorted(throughput, key=lambda m: (m["problem"], m["backend"],
                                                   str(m["dtype"]), m["batch_size"])):
            lines.append(f"| {m['problem']} | {m['backend']} | {m['dtype']} | "
                         f"{m['batch_size']} | {m['samples_per_second']:.4g} | "
                         f"{m.get('device', '-')} |")
        B.append(("table", "\n".join(lines)))

    # -- asv ----------------------------------------------------------------------------------
    if asv_rows is not None:
        B.append(("h2", "asv benchmarks (latest values)"))
        tables = asv_tables(asv_rows)
        if not tables:
            B.append(("p", "No asv results with values were found."))
        B.append(("p", "Latest value per benchmark and parameter combination from the asv "
                       "results (`asv run`); `track_passes_*` in data passes (n/a: never reached "
                       "or skipped here), `track_rel_error_*` relative errors of the "
                       "self-stopped answer, `time_*` seconds, `peakmem_*` peak resident memory "
                       "of the benchmark process."))
        for caption, table in tables:
            B.append(("p", caption))
            B.append(("table", table))

    if errors:
        B.append(("h2", "Runs that raised"))
        B.append(("table", "| problem | solver | seed | error |\n|---|---|---|---|\n" + "\n".join(
            f"| {r['problem']} | {r['solver']} | {r['seed']} | "
            f"{str(r.get('message', '')).replace('|', '/')} |" for r in errors)))
    return B


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
def render_markdown(blocks: list[tuple[str, Any]]) -> str:
    out = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + content)
        elif kind == "p":
            out.append(content)
        elif kind in ("table", "mdtables"):
            out.append(content.rstrip())
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in content))
        elif kind == "code":
            out.append("```bash\n" + content + "\n```")
        elif kind == "img":
            path, alt = content
            out.append(f"![{alt}](figures/{path.name})")
        out.append("")
    return "\n".join(out)


_CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;
 max-width:1500px;margin:2em auto;padding:0 1.5em;line-height:1.45;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.4em;font-size:0.92em}
th,td{border:1px solid #ccc;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f2f2f2} tr.winner td{background:#e8f5e9}
code{background:#f4f4f4;padding:1px 4px;border-radius:3px}
pre{background:#f4f4f4;padding:0.8em;overflow-x:auto}
img{max-width:100%;height:auto;border:1px solid #eee}
h2{border-bottom:1px solid #ddd;padding-bottom:0.2em;margin-top:1.8em}
"""


def _inline(text: str) -> str:
    """Minimal inline Markdown -> HTML: `code`, **bold**, *emphasis*."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) >= 2:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        s = html.escape(part)
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
        s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)
        out.append(s)
    return "".join(out)


def _split_row(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|"):
        line = line[:-1]
    return [c.strip() for c in line.split("|")]


def markdown_table_to_html(text: str) -> str:
    """Pipe tables (with headings '#... ' between them) -> HTML; the winner row is shaded."""
    out, table = [], []

    def flush() -> None:
        if not table:
            return
        head, body = table[0], table[2:]
        h = "".join(f"<th>{_inline(c)}</th>" for c in _split_row(head))
        rows = []
        for r in body:
            cls = ' class="winner"' if "(winner)" in r else ""
            rows.append(f"<tr{cls}>" + "".join(f"<td>{_inline(c)}</td>"
                                               for c in _split_row(r)) + "</tr>")
        out.append(f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        table.clear()

    for line in text.splitlines():
        if line.strip().startswith("|"):
            table.append(line)
            continue
        flush()
        m = re.match(r"^(#{1,6})\s+(.*)", line)
        if m:
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


def render_html(blocks: list[tuple[str, Any]], title: str) -> str:
    body = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{_inline(content)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(content)}</p>")
        elif kind in ("table", "mdtables"):
            body.append(markdown_table_to_html(content))
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in content)
                        + "</ul>")
        elif kind == "code":
            body.append(f"<pre><code>{html.escape(content)}</code></pre>")
        elif kind == "img":
            path, alt = content
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(alt)}" '
                        f'src="data:image/png;base64,{data}"></figure>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
