"""Which stopping rule makes a self-stopped Lanczos answer right (issue 11, row 9)?

Two commands:

``rules``: replay candidate stopping rules on recorded Lanczos runs. Full-reorthogonalisation
Lanczos (``hessbench.solvers.kernels.lanczos_steps``) runs on diag(lambda) for exactly known
spectra (``quadratic``, ``quadratic-cluster``, or any ``NAME=FILE.npy`` of eigenvalues, e.g. the
dense spectrum of digits-mlp), from the standard normal start vectors of seeds 0..S-1, and
records the extreme Ritz pairs after every step. A Gaussian start is rotation invariant, so on
diag(lambda) the Ritz values have the same distribution as on Q diag(lambda) Q^T for any
orthogonal Q. Every rule is then replayed on the same runs: the share of stops more than 10 tol
off the truth at either end (relative error), and the median step (= data pass) of the stop
relative to the old rule. The rules, for theta an extreme Ritz value with residual r, Ritz gap
g to the next Ritz value, and r_n the residual of that neighbour:

- ``gap`` (the old rule): min(r, r^2/g) <= tol |theta|;
- ``residual`` (the rule kept, :func:`hessbench.solvers.kernels.converged`): r <= tol |theta|;
- ``safe-gap``: min(r, r^2/(g - r - r_n)) <= tol |theta| (r when g - r - r_n <= 0);
- ``gap+stable-f``: ``gap`` and |theta_j - theta_floor(f j)| <= tol |theta_j| (Ritz values at the
  ends are monotone, so the last (1 - f) j steps moved theta by at most tol |theta|);
- ``gap+r<=k``: ``gap`` and r <= k tol |theta|.

``table``: the old-vs-new table from two ``hessbench compare`` output folders (run records), per
problem x solver: self-stopped successes (converged and within 10 tol at both ends), wrong stops
(converged but more than 10 tol off), median data passes and their ratio. ``--published CSV``
fills problem x solver pairs missing from the old folder from a report's results.csv.

    python scripts/self_stop_study.py rules --seeds 100 --spectrum digits-mlp=mlp.npy
    python scripts/self_stop_study.py table /tmp/selfstop/old /tmp/selfstop/new -o table.md
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hessbench.backends.base import HVPOperator
from hessbench.problems.quadratic import cluster_spectrum, seed_spectrum
from hessbench.solvers.base import Run
from hessbench.solvers.kernels import lanczos_steps
from hessbench.solvers.result import Budget

SUCCESS = 10.0  # success threshold in units of tol (1% at tol = 1e-3)
BUILT_IN = {"quadratic": lambda: seed_spectrum(10_000),
            "quadratic-cluster": lambda: cluster_spectrum(10_000)}


class DiagonalOperator(HVPOperator):
    """v -> lambda * v: the Hessian diag(lambda) in its eigenbasis (NumPy, float64, N = 1)."""

    def __init__(self, eigenvalues: np.ndarray) -> None:
        super().__init__(len(eigenvalues), 1)
        self.eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
        self.dtype, self.device = np.float64, "cpu"

    def _matvec(self, v: np.ndarray, indices: np.ndarray | None) -> np.ndarray:
        return self.eigenvalues * v

    def asarray(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)


def record(eigenvalues: np.ndarray, seed: int, steps: int) -> np.ndarray:
    """Lanczos from seed's start vector: array (steps, 2 ends [max, min], 4) of
    (theta, r, Ritz gap g, neighbour residual r_n); after a breakdown the last row repeats."""
    op = DiagonalOperator(eigenvalues)
    run = Run(op, Budget())
    rows = []
    start = op.random_vector(np.random.default_rng(seed))
    for state in lanczos_steps(run, start, steps, publish=()):
        theta, last = state.theta, np.abs(state.beta * state.S[-1])
        row = []
        for i, nb in ((-1, -2), (0, 1)):
            many = len(theta) > 1
            row.append((theta[i], 0.0 if state.breakdown else last[i],
                        abs(theta[i] - theta[nb]) if many else 0.0,
                        last[nb] if many else np.inf))
        rows.append(row)
    rows += [rows[-1]] * (steps - len(rows))
    return np.asarray(rows)


def _gap_bound(r: np.ndarray, g: np.ndarray) -> np.ndarray:
    safe = np.where(g > 0, g, 1.0)
    return np.where(g > 0, np.minimum(r, r * r / safe), r)


def _stable(theta: np.ndarray, tol: float, f: float) -> np.ndarray:
    j = np.arange(1, len(theta) + 1)
    earlier = np.maximum(np.floor(f * j).astype(int), 1) - 1
    return (np.abs(theta - theta[earlier]) <= tol * np.abs(theta)) & (earlier < j - 1)


Rule = Callable[[np.ndarray, float], np.ndarray]
RULES: dict[str, Rule] = {
    "gap (old)": lambda e, tol: _gap_bound(e[:, 1], e[:, 2]) <= tol * np.abs(e[:, 0]),
    "residual (new)": lambda e, tol: e[:, 1] <= tol * np.abs(e[:, 0]),
    "safe-gap": lambda e, tol: _gap_bound(e[:, 1], e[:, 2] - e[:, 1] - e[:, 3])
    <= tol * np.abs(e[:, 0]),
    "gap+stable-0.8": lambda e, tol: RULES["gap (old)"](e, tol) & _stable(e[:, 0], tol, 0.8),
    "gap+stable-0.75": lambda e, tol: RULES["gap (old)"](e, tol) & _stable(e[:, 0], tol, 0.75),
    "gap+r<=2": lambda e, tol: RULES["gap (old)"](e, tol) & (e[:, 1] <= 2 * tol * np.abs(e[:, 0])),
    "gap+r<=3": lambda e, tol: RULES["gap (old)"](e, tol) & (e[:, 1] <= 3 * tol * np.abs(e[:, 0])),
}


def replay(runs: list[np.ndarray], truth: tuple[float, float], tol: float
           ) -> dict[str, tuple[int, int, float | None]]:
    """Per rule: (stops, wrong stops, median stop step) over the recorded runs."""
    out = {}
    for name, rule in RULES.items():
        stops, wrong = [], 0
        for t in runs:
            ok = rule(t[:, 0], tol) & rule(t[:, 1], tol)
            if not ok.any():
                continue
            j = int(np.argmax(ok))
            err = max(abs(t[j, e, 0] - truth[e]) / abs(truth[e]) for e in (0, 1))
            wrong += err > SUCCESS * tol
            stops.append(j + 1)
        out[name] = (len(stops), wrong, statistics.median(stops) if stops else None)
    return out


def cmd_rules(args: argparse.Namespace) -> None:
    spectra = {name: BUILT_IN[name]() for name in args.problems}
    for item in args.spectrum:
        name, _, path = item.partition("=")
        spectra[name] = np.load(path)
    lines = [f"Lanczos on diag(lambda), seeds 0-{args.seeds - 1}, at most {args.steps} steps, "
             f"tol={args.tol}; wrong = stopped more than {SUCCESS:g} tol off at either end", "",
             "| spectrum | rule | stopped | wrong | median steps | vs old |",
             "|---|---|---|---|---|---|"]
    for name, lam in spectra.items():
        runs = [record(lam, seed, args.steps) for seed in range(args.seeds)]
        result = replay(runs, (float(lam.max()), float(lam.min())), args.tol)
        old = result["gap (old)"][2]
        for rule, (stops, wrong, median) in result.items():
            ratio = f"{median / old:.2f}x" if median and old else "-"
            lines.append(f"| {name} | {rule} | {stops}/{args.seeds} | {wrong} | {median} | "
                         f"{ratio} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).write_text(text)


# -- the old-vs-new table -----------------------------------------------------------------------

Cell = dict[str, Any]


def _runs(folder: Path) -> dict[tuple[str, str], list[Cell]]:
    """(problem, solver) -> [{converged, error, passes}] from a folder of run records."""
    out: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("record_type") != "hessbench-run":
            continue
        errors = data.get("errors") or {}
        errs = [errors.get("rel_error_max"), errors.get("rel_error_min")]
        out[data["problem"], data["solver"]].append({
            "converged": bool(data.get("converged")), "passes": float(data["data_passes"]),
            "error": None if None in errs else max(errs)})
    return out


def _published(path: Path) -> dict[tuple[str, str], list[Cell]]:
    """The same from a report's results.csv (rows end=both, eps=0.01)."""
    out: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    with path.open() as f:
        for row in csv.DictReader(f):
            if row["end"] == "both" and float(row["eps"]) == 0.01:
                error = row["self_stopped_error"]
                out[row["problem"], row["solver"]].append({
                    "converged": row["converged"] == "True", "passes": float(row["passes_used"]),
                    "error": float(error) if error else None})
    return out


def _summary(cells: list[Cell], tol: float) -> tuple[str, str, float | None]:
    right = sum(c["converged"] and c["error"] is not None and c["error"] <= SUCCESS * tol
                for c in cells)
    wrong = sum(c["converged"] and (c["error"] is None or c["error"] > SUCCESS * tol)
                for c in cells)
    median = statistics.median(c["passes"] for c in cells) if cells else None
    return f"{right}/{len(cells)}", str(wrong), median


def cmd_table(args: argparse.Namespace) -> None:
    old, new = _runs(Path(args.old)), _runs(Path(args.new))
    for extra in args.new_extra:
        new.update(_runs(Path(extra)))
    for extra in args.old_extra:
        old.update(_runs(Path(extra)))
    published = _published(Path(args.published)) if args.published else {}
    lines = [f"Self-stopped success = converged by the solver's own rule and within {SUCCESS:g} "
             f"tol (tol={args.tol}) of the exact/reference value at both ends; wrong = "
             "converged but further off; passes = median data passes used (all runs).", "",
             "| problem | solver | success old | success new | wrong old | wrong new | "
             "passes old | passes new | ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(set(old) | set(new) | set(published), key=lambda k: (k[0], k[1])):
        old_cells, note = old.get(key), ""
        if old_cells is None and key in published:
            old_cells, note = published[key], " (published)"
        o = _summary(old_cells or [], args.tol)
        n = _summary(new.get(key, []), args.tol)
        ratio = f"{n[2] / o[2]:.2f}" if o[2] and n[2] else "-"
        passes = [f"{x[2]:.1f}" if x[2] is not None else "-" for x in (o, n)]
        lines.append(f"| {key[0]} | {key[1]} | {o[0]}{note} | {n[0]} | {o[1]} | {n[1]} | "
                     f"{passes[0]} | {passes[1]} | {ratio} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(required=True)
    rules = sub.add_parser("rules", help="replay candidate rules on recorded Lanczos runs")
    rules.add_argument("--problems", nargs="*", default=list(BUILT_IN), choices=list(BUILT_IN))
    rules.add_argument("--spectrum", nargs="*", default=[], metavar="NAME=FILE.npy")
    rules.add_argument("--seeds", type=int, default=100)
    rules.add_argument("--steps", type=int, default=300)
    rules.add_argument("--tol", type=float, default=1e-3)
    rules.add_argument("-o", "--output")
    rules.set_defaults(func=cmd_rules)
    table = sub.add_parser("table", help="old-vs-new table from two compare folders")
    table.add_argument("old")
    table.add_argument("new")
    table.add_argument("--old-extra", nargs="*", default=[], help="more old-rule folders")
    table.add_argument("--new-extra", nargs="*", default=[], help="more new-rule folders")
    table.add_argument("--published", help="a report's results.csv for missing old cells")
    table.add_argument("--tol", type=float, default=1e-3)
    table.add_argument("-o", "--output")
    table.set_defaults(func=cmd_table)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
