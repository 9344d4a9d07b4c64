"""Seconds-first report: seconds to both ends within 1%, self-stopped, per problem and solver,
next to the HVP / gradient ratios; writes ``reports/cpu-seconds/README.md`` and ``data.json``.

For every problem x solver x seed it runs ``hessbench compare`` (float32, one torch thread set
here, the operator's default ``auto`` strategy, warm-up untimed) and then, per problem and
solver, reports over the seeds: the median and interquartile range of the self-stopped
seconds, median data passes, the success rate (both ends' self-stopped answers within 1% of
the certified reference), the median seconds until both ends stayed within 1% (from the
trace), and the strategy the operator chose. The ratios come from
:func:`hessbench.speed.time_passes` (``scripts/hvp_ratio.py``), measured in the same run.

    python scripts/cpu_seconds.py                      # digits-mlp, digits-cnn; 5 seeds
    python scripts/cpu_seconds.py --problems synthetic-cifar-resnet20 --solvers lanczos
    python scripts/cpu_seconds.py --skip-runs          # rebuild the report from records

Block-solver studies (``scripts/block_study.py -o reports/cpu-seconds/block_study_NAME.json``)
found in the output folder are rendered below, under "Block solvers", with their settings; a
``findings.md`` there (the reader's summary, written by a person) is put above the tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

DEFAULT_PROBLEMS = ("digits-mlp", "digits-cnn")
DEFAULT_SOLVERS = ("lanczos", "block-lanczos", "lobpcg")
EPS = 0.01


def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def summarise(records: list[Any]) -> dict[str, Any]:
    """Per-(problem, solver) figures over seeds (see the module docstring)."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in records:
        groups.setdefault((r.problem, r.solver), []).append(r)
    out = {}
    for (problem, solver), rs in sorted(groups.items()):
        ok = [r for r in rs if r.seconds is not None]
        seconds = sorted(r.seconds for r in ok)
        q1, med, q3 = _quartiles(seconds) if seconds else (None, None, None)
        success = [r.converged and (r.answer_error("both") or 1.0) <= EPS for r in rs]
        reach = [r.cost("both", EPS).seconds for r in ok]
        reached = [x for x in reach if x is not None]
        warm = [r.warmup.get("seconds") for r in ok if getattr(r, "warmup", None)]
        chosen = sorted({str(r.warmup.get("strategy")) for r in ok
                         if getattr(r, "warmup", None) and r.warmup.get("strategy")})
        out[f"{problem}/{solver}"] = {
            "problem": problem, "solver": solver, "runs": len(rs),
            "seconds_median": med, "seconds_q1": q1, "seconds_q3": q3,
            "data_passes_median": statistics.median(r.data_passes for r in ok) if ok else None,
            "success_rate": sum(success) / len(rs),
            "seconds_to_1pct_median": statistics.median(reached) if reached else None,
            "reached_1pct": len(reached),
            "warmup_seconds_median": statistics.median(warm) if warm else None,
            "strategy": ", ".join(chosen) or "-",
            "solver_options": ok[0].solver_options if ok else {},
        }
    return out


def _f(x: Any, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


def block_studies(folder: Path) -> list[str]:
    """The Markdown of each ``block_study_*.json`` in ``folder`` (paired seconds vs lanczos)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from block_study import markdown

    lines = []
    for path in sorted(folder.glob("block_study_*.json")):
        result = json.loads(path.read_text())
        s = result["settings"]
        chunks = s["batch_size"] or "the problem's batch size"
        how = f"chunks of {chunks}, strategy {s['strategy'] or 'auto (the default)'}"
        lines += [f"## Block solvers: {how} (`{path.name}`)", "", markdown(result), ""]
    return lines


def render(rows: dict[str, Any], ratios: list[dict[str, Any]], meta: dict[str, Any],
           blocks: list[str] | None = None) -> str:
    lines = [
        "# Seconds to both ends within 1% on this CPU", "",
        f"Machine: {meta['platform']}, {meta['threads']} torch thread(s) (set by the script), "
        f"float32, load average at start {meta['load']}; hessbench {meta['version']}, torch "
        f"{meta['torch']}. Seeds {meta['seeds']}. Command: `{meta['command']}`.", "",
        "Self-stopped seconds: wall time of the solve with the solver's own stopping rule "
        "(tol 1e-3), the operator warmed up first (untimed: strategy choice, first calls); "
        "success: converged and both ends within 1% of the certified reference; seconds to "
        "1%: until both estimates stayed within 1% (from the trace).", "",
        "| problem | solver | self-stopped s, median [IQR] | passes | success | s to 1% "
        "| warm-up s | HVP strategy |",
        "|---|---|---|---|---|---|---|---|"]
    for r in rows.values():
        lines.append(
            f"| {r['problem']} | {r['solver']} | {_f(r['seconds_median'])} "
            f"[{_f(r['seconds_q1'])}, {_f(r['seconds_q3'])}] | "
            f"{_f(r['data_passes_median'], '.0f')} | {r['success_rate']:.0%} | "
            f"{_f(r['seconds_to_1pct_median'])} | {_f(r['warmup_seconds_median'])} | "
            f"{r['strategy']} |")
    if ratios:
        lines += ["", "## Seconds per pass", "",
                  "HVP pass / gradient pass (medians, interleaved rounds, chunks of 128; "
                  "`auto` is the default), and block `matmat` seconds per vector / one "
                  "product:", "",
                  "| problem | gradient s | auto | forward-over-reverse | reverse-over-reverse "
                  "| compiled | auto chose | k=4 | k=8 |", "|---|---|---|---|---|---|---|---|---|"]
        for t in ratios:
            h = t["hvp_over_gradient"]
            b = t["block_per_vector"]
            lines.append(
                f"| {t['problem']} | {t['gradient_seconds']:.4f} | " + " | ".join(
                    _f(h.get(k), ".2f") for k in ("auto", "forward-over-reverse",
                                                  "reverse-over-reverse", "compiled"))
                + f" | {t['chosen']} | {_f(b.get('4'), '.2f')} | {_f(b.get('8'), '.2f')} |")
        for t in ratios:
            warm = t.get("warmup_seconds", {})
            if t.get("command") or warm.get("compiled"):
                lines.append("")
                lines.append(
                    f"{t['problem']}: {t.get('rounds', '?')} rounds"
                    + (f", measured apart by `{t['command']}`" if t.get("command") else "")
                    + (f"; one-off warm-up (first call and compilation) of the compiled "
                       f"product {warm['compiled']:.0f} s" if warm.get("compiled") else "")
                    + (f", of `auto` {warm['auto']:.0f} s (choosing the single and the block "
                       f"strategies, compiling each)" if warm.get("auto", 0) >= 10 else "")
                    + ".")
    if blocks:
        lines += ["", *blocks]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", nargs="+", default=list(DEFAULT_PROBLEMS))
    p.add_argument("--solvers", nargs="+", default=list(DEFAULT_SOLVERS))
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=Path, default=Path("results/cpu-seconds"),
                   help="folder of run records (compare's output; reused when unchanged)")
    p.add_argument("--out", type=Path, default=Path("reports/cpu-seconds"))
    p.add_argument("--ratio-rounds", type=int, default=5)
    p.add_argument("--no-ratios", action="store_true",
                   help="skip the HVP/gradient timing (keep the ratios of --out's data.json)")
    p.add_argument("--add-ratios", nargs="+", type=Path, default=[], metavar="JSON",
                   help="also tabulate ratios measured by scripts/hvp_ratio.py --json (e.g. "
                   "the ResNet-20, too slow to time here)")
    p.add_argument("--skip-runs", action="store_true",
                   help="report the records in --runs (with the setting in --out's data.json)")
    args = p.parse_args(argv)

    import os

    import torch

    from hessbench.compare import run_grid
    from hessbench.records import read_record
    from hessbench.report.render import with_findings
    from hessbench.runner import versions
    from hessbench.seeds import parse_seeds
    from hessbench.speed import time_passes

    torch.set_num_threads(args.threads)
    command = shlex.join(["python", "scripts/cpu_seconds.py", *(argv or sys.argv[1:])])
    meta = {"platform": platform.platform(), "threads": args.threads,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "version": versions().get("hessbench"), "torch": torch.__version__,
            "seeds": args.seeds, "command": command}
    if not args.skip_runs:
        run_grid(args.problems, args.solvers, parse_seeds(args.seeds), args.runs,
                 dtype="float32", command=command.split())
    records = [read_record(f) for f in sorted(args.runs.glob("*.json"))
               if f.name not in ("summary.json",)]
    records = [r for r in records if r.problem in args.problems and r.solver in args.solvers]
    rows = summarise(records)
    old_path = args.out / "data.json"
    old = json.loads(old_path.read_text()) if old_path.exists() else {}
    if args.skip_runs and old.get("meta"):
        meta = old["meta"]  # the setting of the runs reported, not of this rebuild
    ratios = old.get("ratios", []) if args.no_ratios else [
        time_passes(name, chunk=128, dtype="float32", rounds=args.ratio_rounds).as_dict()
        for name in args.problems]
    measured = {t["problem"] for t in ratios}
    for path in args.add_ratios:
        extra = json.loads(path.read_text())
        ratios += [dict(t, command=shlex.join(extra.get("command", [])))
                   for t in extra["results"] if t["problem"] not in measured]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data.json").write_text(json.dumps(
        {"meta": meta, "versions": versions(), "rows": rows, "ratios": ratios}, indent=1))
    text = with_findings(render(rows, ratios, meta, block_studies(args.out)), args.out)
    (args.out / "README.md").write_text(text)
    print(text)
    print(f"wrote {args.out}/README.md and data.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
