"""hessbench's solvers beside the tools users run today (PyHessian, hessian-eigenthings,
curvlinops + eigsh; adapters in ``hessbench.peers``): writes ``reports/cpu-vs-peers/README.md``
and ``data.json``.

For every problem x solver x seed it runs ``hessbench compare`` (:func:`hessbench.compare.run_grid`:
the problem's dtype, one torch thread set here, a budget of ``--max-passes`` data passes, the
operator warmed up untimed), then reports per problem and solver over the seeds: median data
passes and seconds of the self-stopped answer (every HVP a peer makes is charged, one full-data
product = one pass), the median relative error on each end (``unsupported`` where the solver has
no routine for that end, ``failed`` where it raised), the success rate (converged by its own rule
and both ends within 1%), and the median over seeds of seconds over the seconds of hessbench's
best solver on that problem from the same seed (of ``--ours``: highest success rate, then fewest
median seconds). Runs are interleaved, seed by seed, every solver in turn.

    python scripts/peers_report.py                  # quadratic, digits-mlp, digits-cnn; 5 seeds
    python scripts/peers_report.py --problems quadratic-small --seeds 0 --solvers pyhessian-power
    python scripts/peers_report.py --skip-runs           # rebuild the report from the records
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

DEFAULT_PROBLEMS = ("quadratic", "digits-mlp", "digits-cnn")
DEFAULT_OURS = ("lanczos", "block-lanczos")
EPS = 0.01


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _error(records: list[Any], end: str) -> str | float | None:
    errs = [r.errors.relative(end) for r in records]
    found = [e for e in errs if e is not None]
    if found:
        return statistics.median(found)
    if any(f"λ{end}: unsupported" in r.message for r in records):
        return "unsupported"
    if all(r.raised or r.status == "failed" for r in records):
        return "failed"
    return "no answer"  # e.g. stopped by the budget before this end was found


def _paired(groups: dict[tuple[str, str], list[Any]], problem: str, solver: str,
            base: str | None) -> float | None:
    """Median over seeds of the seconds of ``solver`` / those of ``base`` from the same seed."""
    base_seconds = {r.seed: r.seconds for r in groups.get((problem, base), []) if r.seconds}
    return _median([r.seconds / base_seconds[r.seed] for r in groups[(problem, solver)]
                    if r.seconds is not None and r.seed in base_seconds])


def summarise(records: list[Any], ours: list[str]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in records:
        groups.setdefault((r.problem, r.solver), []).append(r)
    rows = []
    for (problem, solver), rs in groups.items():
        ok = [r for r in rs if not r.raised]
        statuses: dict[str, int] = {}
        for r in rs:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        rows.append({
            "problem": problem, "solver": solver, "runs": len(rs), "ours": solver in ours,
            "statuses": statuses,
            "data_passes_median": _median([r.data_passes for r in ok if r.data_passes is not None]),
            "seconds_median": _median([r.seconds for r in ok if r.seconds is not None]),
            "error_max": _error(rs, "max"), "error_min": _error(rs, "min"),
            "success_rate": sum(r.succeeded("both", EPS) for r in rs) / len(rs),
            "message": next((r.message for r in rs if r.message), ""),
            "solver_options": ok[0].solver_options if ok else {}})
    for problem in {row["problem"] for row in rows}:
        mine = [row for row in rows if row["problem"] == problem and row["ours"]
                and row["seconds_median"] is not None]
        best = min(mine, key=lambda row: (-row["success_rate"], row["seconds_median"]),
                   default=None)
        for row in rows:
            if row["problem"] == problem:
                row["best_ours"] = best["solver"] if best else None
                row["seconds_ratio"] = _paired(groups, problem, row["solver"],
                                               best["solver"] if best else None)
                row["seconds_vs_first"] = _paired(groups, problem, row["solver"], ours[0])
    order = {name: i for i, name in enumerate(ours)}
    rows.sort(key=lambda row: (row["problem"], not row["ours"],
                               order.get(row["solver"], 0), row["solver"]))
    return rows


def _f(x: Any, spec: str = ".3g") -> str:
    if isinstance(x, str):
        return x
    return "-" if x is None else format(x, spec)


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    peers = ", ".join(f"{k} {v}" for k, v in meta["peer_versions"].items())
    lines = [
        "# hessbench beside the tools users run today (CPU)", "",
        f"Machine: {meta['platform']}, {meta['threads']} torch thread(s), load average at start "
        f"{meta['load']} (shared machine: seconds are noisy); hessbench {meta['version']}, torch {meta['torch']}; peers: {peers}. "
        f"Seeds {meta['seeds']}; budget {meta['max_passes']} data passes per run. Report: "
        f"`{meta['command']}`; runs: "
        + ", ".join(f"`{c}`" for c in meta.get("run_commands", [])) + ".", "",
        "Every Hessian-vector product a peer makes is charged in data passes like hessbench's "
        "own (one full-data product = one pass; curvlinops' determinism probe included). "
        "Passes and seconds: the self-stopped answer (median over seeds; a run stopped by the "
        "budget counts at the budget). Error: median relative error |λ̂ − λ| / |λ| of each end "
        "against the certified reference; `unsupported`: the peer has no routine for that "
        "end; `failed`: it raised; `no answer`: the budget stopped it before that end. Success: converged by its own rule and both ends within 1%. "
        "Seconds ratio: median over seeds of the run's seconds / those of hessbench's best "
        "solver on the problem (marked *) from the same seed, and the same against the first "
        "of ours (the recommended solver); the runs are interleaved (per "
        "seed, every solver in turn), so that paired runs share the machine's load.", "",
        "| problem | solver | passes | seconds | error λmax | error λmin | success "
        f"| seconds / best | seconds / `{meta['first']}` | statuses |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        star = " *" if r["solver"] == r.get("best_ours") else ""
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
        lines.append(
            f"| {r['problem']} | `{r['solver']}`{star} | {_f(r['data_passes_median'], '.1f')} | "
            f"{_f(r['seconds_median'])} | {_f(r['error_max'], '.2e')} | "
            f"{_f(r['error_min'], '.2e')} | {r['success_rate']:.0%} | "
            f"{_f(r['seconds_ratio'], '.2f')} | {_f(r.get('seconds_vs_first'), '.2f')} | "
            f"{statuses} |")
    lines += ["", "## Settings", "",
              "Names without a suffix run the peer as a user gets it (its defaults); `-careful` "
              "names are the settings a careful user would choose; `-shifted` and `-shimmed` "
              "are ours, built on the peer's products; `-ragged` hands hessian-eigenthings "
              "the operator's batches with a ragged last one, which its equal-weight average "
              "gets wrong. Each module of `hessbench.peers` documents its settings.", ""]
    seen = set()
    for r in rows:
        if r["solver"] not in seen:
            seen.add(r["solver"])
            lines.append(f"- `{r['solver']}`: `{json.dumps(r['solver_options'])}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", nargs="+", default=list(DEFAULT_PROBLEMS))
    p.add_argument("--solvers", nargs="+", default=None,
                   help="peer adapters (default: every one installed)")
    p.add_argument("--ours", nargs="+", default=list(DEFAULT_OURS))
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-passes", type=float, default=300.0)
    p.add_argument("--runs", type=Path, default=Path("results/cpu-vs-peers"))
    p.add_argument("--out", type=Path, default=Path("reports/cpu-vs-peers"))
    p.add_argument("--skip-runs", action="store_true", help="report the records in --runs")
    args = p.parse_args(argv)

    import torch

    from hessbench import solvers
    from hessbench.compare import run_grid
    from hessbench.peers import ADAPTERS, PINS
    from hessbench.peers._counting import peer_version
    from hessbench.records import read_record
    from hessbench.report.render import with_findings
    from hessbench.runner import versions
    from hessbench.seeds import parse_seeds

    torch.set_num_threads(args.threads)
    peers = args.solvers
    if peers is None:
        peers = []
        for name in ADAPTERS:
            try:
                solvers.solver_class(name)
                peers.append(name)
            except ImportError as err:
                print(f"skipping {name}: {err}", file=sys.stderr)
    names = [*args.ours, *[s for s in peers if s not in args.ours]]
    command = shlex.join(["python", "scripts/peers_report.py", *(argv or sys.argv[1:])])
    meta = {"platform": platform.platform(), "threads": args.threads,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "version": versions().get("hessbench"), "torch": torch.__version__,
            "seeds": args.seeds, "max_passes": args.max_passes, "command": command,
            "peer_versions": {d: peer_version(d) for d in PINS}, "first": args.ours[0]}
    old_path = args.out / "data.json"
    if args.skip_runs and old_path.exists():  # the setting of the runs reported
        meta = {**json.loads(old_path.read_text())["meta"], "first": args.ours[0]}
    if not args.skip_runs:
        for problem in args.problems:  # interleaved: paired seconds share the load
            for seed in parse_seeds(args.seeds):
                run_grid([problem], names, [seed], args.runs, progress=False,
                         budget={"max_passes": args.max_passes}, command=command.split())
                print(f"{problem} seed {seed}: {len(names)} solvers done", file=sys.stderr)
    records = [read_record(f) for f in sorted(args.runs.glob("*.json"))
               if f.name != "summary.json" and "_seed" in f.name]
    records = [r for r in records if r.problem in args.problems and r.solver in names]
    meta["run_commands"] = sorted({" ".join(r.command) for r in records if r.command})
    rows = summarise(records, list(args.ours))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data.json").write_text(json.dumps(
        {"meta": meta, "versions": versions(), "peer_versions": meta["peer_versions"],
         "rows": rows}, indent=1))
    text = with_findings(render(rows, meta), args.out)
    (args.out / "README.md").write_text(text)
    print(text)
    print(f"wrote {args.out}/README.md and data.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
