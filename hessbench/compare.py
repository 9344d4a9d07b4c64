"""Run a grid of problems x solvers x seeds and summarise it.

Per (problem, solver) over seeds: median and interquartile range of the data passes and
seconds until the estimate reached relative error eps and stayed there (for lambda_max,
lambda_min and both), with how many seeds reached it at all; and the success rate of the
self-stopped answer: converged by the solver's own rule *and* within ``SUCCESS_EPS`` relative
error on every asked end. A run that raises is recorded with its error; the grid goes on.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tqdm.auto import tqdm

from hessbench.runner import EPSILONS, run_one, write_json

SUCCESS_EPS = 0.01


def run_grid(problems: Iterable[str], solvers: Iterable[str], seeds: Iterable[int],
             output: str | Path, progress: bool = True, **run_options: Any) -> list[dict]:
    """Run every combination, writing ``output/<problem>_<solver>_seed<k>.json``.

    Unknown problem or solver names raise before anything runs."""
    from hessbench import solvers as solver_registry
    from hessbench import problems as problem_registry

    problems, solvers, seeds = list(problems), list(solvers), list(seeds)
    for name in problems:
        problem_registry.get(name)
    for name in solvers:
        solver_registry.solver_class(name)
    out = Path(output)
    grid = [(p, s, k) for p in problems for s in solvers for k in seeds]
    records = []
    for problem, solver, seed in tqdm(grid, desc="compare", disable=not progress):
        path = out / f"{problem}_{solver}_seed{seed}.json"
        try:
            record = run_one(problem, solver, seed=seed, progress=False, **run_options)
        except Exception as err:  # noqa: BLE001 - one failing run must not lose the grid
            record = {"problem": problem, "solver": solver, "seed": seed, "status": "error",
                      "message": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc()}
        write_json(record, path)
        records.append(record)
    return records


def load_runs(directory: str | Path) -> list[dict]:
    """All run records (JSON files with a ``solver`` field) in a directory."""
    runs = []
    for path in sorted(Path(directory).glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "solver" in data and "problem" in data:
            runs.append(data)
    return runs


def _stats(values: list[float | None]) -> dict[str, Any]:
    reached = [v for v in values if v is not None]
    n = len(values)
    if 2 * len(reached) <= n - (n % 2 == 0) or not reached:  # median undefined: < half reached
        return {"median": None, "q1": None, "q3": None, "reached": len(reached), "runs": n}
    never = 1e300  # stands for "never reached" (infinite cost) without inf - inf in percentile
    filled = np.array([v if v is not None else never for v in values], dtype=float)
    q1, med, q3 = np.percentile(filled, [25, 50, 75])
    fix = lambda x: None if x >= never / 10 else float(x)  # noqa: E731
    return {"median": fix(med), "q1": fix(q1), "q3": fix(q3), "reached": len(reached), "runs": n}


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (problem, solver), solvers in registry order: cost-to-eps statistics and
    self-stopped success."""
    from hessbench import solvers as solver_registry

    order = {name: i for i, name in enumerate(solver_registry.available())}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in sorted(runs, key=lambda r: (order.get(r["solver"], len(order)), r["solver"])):
        groups.setdefault((r["problem"], r["solver"]), []).append(r)
    rows = []
    for (problem, solver), group in groups.items():
        ok = [r for r in group if r.get("status") != "error"]
        row: dict[str, Any] = {"problem": problem, "solver": solver, "seeds": len(group),
                               "errors": len(group) - len(ok)}
        for eps in EPSILONS:
            for end in ("max", "min", "both"):
                key = f"{end}@{eps:g}"
                for unit in ("data_passes", "seconds"):
                    row[f"{unit}:{key}"] = _stats(
                        [(r["cost_to_eps"][key] or {}).get(unit) for r in ok])
        row["converged"] = sum(bool(r.get("converged")) for r in ok)
        row["success"] = sum(_success(r) for r in ok)
        row["success_rate"] = row["success"] / len(group)
        row["median_passes_used"] = float(np.median([r["data_passes"] for r in ok])) \
            if ok else None
        rows.append(row)
    return rows


def _success(r: dict) -> bool:
    errs = [r["errors"][f"rel_error_{e}"] for e in ("max", "min")
            if r.get(f"lambda_{e}") is not None or r.get("which", "both") in ("both", e)]
    return bool(r.get("converged")) and all(e is not None and e <= SUCCESS_EPS for e in errs)


def _cell(s: dict[str, Any], spec: str) -> str:
    if s["median"] is None:
        return f"never ({s['reached']}/{s['runs']})" if s["reached"] == 0 else \
            f"{s['reached']}/{s['runs']} reached"
    text = f"{s['median']:{spec}} [{_f(s['q1'], spec)}–{_f(s['q3'], spec)}]"
    return text if s["reached"] == s["runs"] else f"{text} ({s['reached']}/{s['runs']})"


def _f(x: float | None, spec: str) -> str:
    return "inf" if x is None else format(x, spec)


def markdown_table(rows: list[dict], eps_list: tuple[float, ...] = EPSILONS) -> str:
    """Per problem: median [IQR] data passes and seconds to eps on both ends, success rate."""
    lines = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        part = [r for r in rows if r["problem"] == problem]
        best = _winner(part)
        lines += [f"### {problem}", "",
                  "| solver | " + " | ".join(
                      f"passes to {e:g}: max / min / both" for e in eps_list)
                  + " | seconds to 1%: both | self-stopped success |",
                  "|---" * (len(eps_list) + 3) + "|"]
        for r in part:
            cells = [" / ".join(_cell(r[f"data_passes:{end}@{e:g}"], ".3g")
                                for end in ("max", "min", "both")) for e in eps_list]
            name = f"**{r['solver']}** (winner)" if r["solver"] == best else r["solver"]
            lines.append(f"| {name} | " + " | ".join(cells)
                         + f" | {_cell(r['seconds:both@0.01'], '.3g')} | "
                         + f"{r['success']}/{r['seeds']} |")
        lines.append("")
    return "\n".join(lines)


def _winner(rows: list[dict]) -> str | None:
    """Least median data passes to 1% on both ends among solvers whose self-stopped answers
    succeeded for at least half the seeds."""
    eligible = [(r["data_passes:both@0.01"]["median"], r["solver"]) for r in rows
                if r["data_passes:both@0.01"]["median"] is not None
                and 2 * r["success"] >= r["seeds"]]
    return min(eligible)[1] if eligible else None


def write_summary(runs: list[dict], output: str | Path) -> str:
    rows = summarise(runs)
    table = markdown_table(rows)
    out = Path(output)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    (out / "summary.md").write_text(
        "# Comparison\n\nMedian [interquartile range] over seeds of the data passes until the "
        "estimate came within relative error eps of the reference and stayed there; "
        "(k/n) when only k of n seeds got there. Self-stopped success: converged by the "
        f"solver's own rule and within {SUCCESS_EPS:g} relative error on both ends.\n\n"
        + table)
    return table
