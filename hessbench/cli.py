"""Command line: ``hessbench {problems,solvers,backends,reference,run,compare,demo,report}``."""

from __future__ import annotations

import argparse
import ast
import json
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from hessbench import backends
from hessbench import solvers
from hessbench import problems
from hessbench.records import RunRecord

DEMO_PROBLEMS = ("quadratic", "digits-mlp", "digits-cnn")
DEMO_SOLVERS = ("lanczos", "power", "arpack")


def _options(pairs: Sequence[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` pairs; values are Python literals where they parse, else strings."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: option {pair!r} is not of the form key=value")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _budget(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in (("max_passes", args.max_passes), ("max_seconds", args.max_seconds),
                              ("max_hvps", args.max_hvps)) if v is not None}


def cmd_problems(args: argparse.Namespace) -> int:
    for name in problems.available():
        print(f"{name:26s} {problems.get(name).description}")
        opts = ", ".join(f"{k}={v!r}" for k, v in problems.options(name).items())
        if opts:
            print(f"{'':26s} options: {opts}")
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    for name, entry in backends.REGISTRY.entries().items():
        kind = "built-in" if backends.REGISTRY.is_builtin(name) else "plugin"
        print(f"{name:26s} {kind}: {entry.value}")
    return 0


def cmd_solvers(args: argparse.Namespace) -> int:
    for name in solvers.available():
        doc = (solvers.solver_class(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:26s} {doc}")
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from hessbench.reference import compute_reference

    prob = problems.get(args.problem, **_options(args.problem_option))
    ref = compute_reference(prob, force_method=args.method)
    print(json.dumps(ref, indent=1))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from hessbench.runner import run_one

    record = run_one(args.problem, args.solver, backend=args.backend, seed=args.seed,
                     which=args.which, tol=args.tol, budget=_budget(args), dtype=args.dtype,
                     device=args.device, problem_options=_options(args.problem_option),
                     solver_options=_options(args.solver_option), progress=not args.quiet,
                     command=args.command_line)
    path = record.write(args.output)
    print(_table([record]))
    print(f"wrote {path}")
    return 0 if record.status != "failed" else 1


def _fmt(x: Any, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def _table(records: list[RunRecord]) -> str:
    head = (f"{'problem':18s} {'solver':9s} {'lambda_max':>11s} {'err':>8s} {'lambda_min':>11s} "
            f"{'err':>8s} {'passes':>7s} {'passes@1%':>9s} {'seconds':>8s}  status")
    lines = [head, "-" * len(head)]
    for r in records:
        e, c = r.errors, r.cost("both", 0.01)
        lines.append(
            f"{r.problem:18s} {r.solver:9s} {_fmt(r.lambda_max):>11s} "
            f"{_fmt(e.rel_error_max, '.1e'):>8s} {_fmt(r.lambda_min):>11s} "
            f"{_fmt(e.rel_error_min, '.1e'):>8s} {_fmt(r.data_passes, '.0f'):>7s} "
            f"{_fmt(c.data_passes, '.0f'):>9s} {_fmt(r.seconds, '.2f'):>8s}  {r.status}")
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    """The default job: every demo solver on the offline problems, one table."""
    from hessbench.reference import compute_reference
    from hessbench.runner import run_one

    out = Path(args.output)
    records = []
    for name in args.problems:
        ref = compute_reference(problems.get(name), progress=not args.quiet)
        print(f"{name}: reference ({ref['method']}) lambda_max={ref['lambda_max']:.6g} "
              f"lambda_min={ref['lambda_min']:.6g}", flush=True)
        for solver in args.solvers:
            record = run_one(name, solver, seed=args.seed, budget={"max_passes": args.max_passes},
                             progress=not args.quiet, command=args.command_line)
            record.write(out / f"{name}_{solver}_seed{args.seed}.json")
            records.append(record)
    print()
    print(_table(records))
    print(f"\nerr: relative error of the self-stopped answer; passes@1%: data passes until both "
          f"ends stayed within 1%; run records in {out}/")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from hessbench.compare import run_grid, write_summary
    from hessbench.seeds import parse_seeds

    runs = run_grid(args.problems, args.solvers, parse_seeds(args.seeds), args.output,
                    progress=not args.quiet, command=args.command_line, force=args.force,
                    backend=args.backend, tol=args.tol, budget=_budget(args), dtype=args.dtype,
                    device=args.device)
    print(write_summary(runs, args.output))
    failed = [r for r in runs if r.raised]
    for r in failed:
        print(f"error: {r.problem} {r.solver} seed {r.seed}: {r.message}", file=sys.stderr)
    print(f"{len(runs)} runs: {runs.reused} reused, {runs.ran} run; run records, summary.md, "
          f"summary.json and results.csv in {args.output}/")
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    import warnings

    from hessbench.records import RecordWarning
    from hessbench.report import build_report

    command = shlex.join(["hessbench", "report", args.run_dir, "--output", args.output]
                         + (["--asv-results", args.asv_results] if args.asv_results else [])
                         + (["--title", args.title] if args.title else []))
    with warnings.catch_warnings():  # a skipped record: one line "warning: skipped FILE: ..."
        warnings.simplefilter("always", RecordWarning)
        warnings.showwarning = lambda message, *_: print(f"warning: {message}", file=sys.stderr)
        written = build_report(args.run_dir, args.output, asv_results=args.asv_results,
                               title=args.title, command=command, strict=args.strict)
    print(f"wrote {written['readme']}, {written['html']}, {written['csv']} and "
          f"{len(written['figures'])} figure(s) in {Path(args.output) / 'figures'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hessbench", description="Benchmark of eigensolvers for extreme eigenvalues of "
        "neural-network loss Hessians.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("problems", help="list problems").set_defaults(func=cmd_problems)
    sub.add_parser("solvers", help="list solvers").set_defaults(func=cmd_solvers)
    sub.add_parser("backends", help="list backends").set_defaults(func=cmd_backends)

    p = sub.add_parser("reference", help="compute and cache the reference eigenvalues")
    p.add_argument("-p", "--problem", required=True)
    p.add_argument("--method", choices=("exact", "dense", "lanczos"))
    p.add_argument("--problem-option", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("run", help="run one solver on one problem, write a JSON record")
    p.add_argument("-p", "--problem", required=True)
    p.add_argument("-s", "--solver", required=True)
    p.add_argument("--backend", default="torch", help="see: hessbench backends")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--which", choices=("both", "max", "min"), default="both")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--max-passes", type=float)
    p.add_argument("--max-seconds", type=float)
    p.add_argument("--max-hvps", type=int)
    p.add_argument("--dtype", choices=("float32", "float64"))
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: where the model is)")
    p.add_argument("--problem-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--solver-option", action="append", metavar="KEY=VALUE")
    p.add_argument("-o", "--output", required=True, help="JSON file to write")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compare", help="run problems x solvers x seeds, write a summary")
    p.add_argument("--problems", nargs="+", required=True)
    p.add_argument("--solvers", nargs="+", required=True)
    p.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 0,3,7")
    p.add_argument("--backend", default="torch", help="see: hessbench backends")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--max-passes", type=float, default=1000)
    p.add_argument("--max-seconds", type=float)
    p.add_argument("--max-hvps", type=int)
    p.add_argument("--dtype", choices=("float32", "float64"))
    p.add_argument("--device")
    p.add_argument("-o", "--output", required=True, help="folder for run records and summary")
    p.add_argument("--force", action="store_true",
                   help="rerun every run (default: reuse the runs already recorded in the "
                   "output folder with the same problem, solver, options, backend, seed, "
                   "budget, dtype, device and hessbench version)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("demo", help="default job: offline problems x solvers, one table")
    p.add_argument("--problems", nargs="+", default=list(DEMO_PROBLEMS))
    p.add_argument("--solvers", nargs="+", default=list(DEMO_SOLVERS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-passes", type=float, default=2000)
    p.add_argument("-o", "--output", default="results/demo")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="publishable report (README.md, index.html, figures) "
                       "of the run records written by compare")
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder of run records (JSON)")
    p.add_argument("-o", "--output", required=True, help="report folder, e.g. reports/NAME/")
    p.add_argument("--asv-results", metavar="PATH",
                   help="also tabulate the latest asv values from this folder (.asv/results)")
    p.add_argument("--title", help="report title (default: from the problems)")
    p.add_argument("--strict", action="store_true",
                   help="fail on a file of RUN_DIR that is not a readable run record (default: "
                   "skip it with a warning naming it)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = ["hessbench", *argv]  # recorded in run records as the command
    try:
        return args.func(args)
    except (KeyError, ValueError, FileNotFoundError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"hessbench: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
