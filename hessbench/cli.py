"""Command line: ``hessbench {problems,solvers,backends,reference,run,compare,demo,report,
density,plot-history,track}``."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Sequence

from hessbench import backends
from hessbench import solvers
from hessbench import problems
from hessbench.density_cli import add_density_parser
from hessbench.errors import UserError
from hessbench.history_cli import add_plot_history_parser
from hessbench.records import RunRecord
from hessbench.registry import format_options
from hessbench.cli_args import (THREADS_HELP, devices_arg, key_values, seed_arg, threads_arg,
                                use_threads_arg)
from hessbench.solvers.registry import options as solver_options
from hessbench.track_cli import add_track_parser
from hessbench.validate import check_grid, check_output_dir, check_output_file

DEMO_PROBLEMS = ("quadratic", "digits-mlp", "digits-cnn")
DEMO_SOLVERS = ("lanczos", "power", "arpack")
#: slow baselines that run to their step limit on the digits problems (power: 2 x 1,000
#: steps, ~95 of a cached demo's 130 s): the demo gives them a smaller data-pass budget
DEMO_BASELINES = ("power",)
DEMO_BASELINE_PASSES = 200.0
DEVICES_HELP = ("JAX backend: shard each product over all (or K) devices of --device's kind; "
                "the torch backend scales over processes: torchrun --nproc-per-node K -m "
                "hessbench ...")
STRATEGY_HELP = ("how the operator computes Hessian-vector products (torch: auto, "
                 "forward-over-reverse, reverse-over-reverse, compiled; jax: auto, "
                 "forward-over-reverse, linearized); default auto: timed on the first chunk")
_seed, _devices, _threads = seed_arg, devices_arg, threads_arg
_use_threads, _options = use_threads_arg, key_values


def _budget(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in (("max_passes", args.max_passes), ("max_seconds", args.max_seconds),
                              ("max_hvps", args.max_hvps)) if v is not None}


_MARKUP = re.compile(r":[\w:]+:`(~?)([^`<]*?)(?:\s*<[^>]*>)?`|``(.+?)``|`([^`]+)`"
                     r"|\*\*?([^*]+)\*\*?")
_SENTENCE_END = re.compile(r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<=[.!?])\s+(?=[A-Z(])")


def _plain(match: re.Match[str]) -> str:
    tilde, target, *text = match.groups()
    if target is not None:  # :role:`~a.b.C` -> C, :role:`a.b.C` -> a.b.C
        return target.rsplit(".", 1)[-1] if tilde else target
    return next(t for t in text if t is not None)


def summary_line(doc: str | None) -> str:
    """The first sentence of a docstring, whole, without reStructuredText markup (``x``,
    :class:`x`, *x*) and on one line."""
    paragraph = " ".join((doc or "").strip().split("\n\n")[0].split())
    plain = _MARKUP.sub(_plain, paragraph)
    return _SENTENCE_END.split(plain, maxsplit=1)[0]


def _entry(name: str, text: str, options: dict[str, Any] | None) -> None:
    print(f"{name:26s} {text}")
    if options:
        print(f"{'':26s} options: {format_options(options)}")


def cmd_problems(args: argparse.Namespace) -> int:
    for name in problems.available():
        try:
            _entry(name, problems.get(name).description, problems.options(name))
        except UserError as err:  # e.g. a plugin whose optional dependency is missing
            _entry(name, f"unavailable: {err}", None)
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    for name, entry in backends.REGISTRY.entries().items():
        kind = "built-in" if backends.REGISTRY.is_builtin(name) else "plugin"
        print(f"{name:26s} {kind}: {entry.value}")
    return 0


def cmd_solvers(args: argparse.Namespace) -> int:
    for name in solvers.available():
        try:
            _entry(name, summary_line(solvers.solver_class(name).__doc__), solver_options(name))
        except UserError as err:  # e.g. a plugin whose optional dependency is missing
            _entry(name, f"unavailable: {err}", None)
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from hessbench.reference import compute_reference

    prob = problems.get(args.problem, **_options(args.problem_option, "--problem-option"))
    ref = compute_reference(prob, force_method=args.method)
    print(json.dumps(ref, indent=1))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from hessbench.distributed import is_main, start
    from hessbench.runner import run_one

    output = check_output_file(args.output)  # before the run: a bad path must not lose it
    group, device = start(args.backend, args.device)  # under torchrun: the process group
    _use_threads(args, is_main(group))
    record = run_one(args.problem, args.solver, backend=args.backend, seed=args.seed,
                     which=args.which, tol=args.tol, budget=_budget(args), dtype=args.dtype,
                     device=device, devices=args.devices, strategy=args.strategy,
                     problem_options=_options(args.problem_option, "--problem-option"),
                     solver_options=_options(args.solver_option, "--solver-option"),
                     progress=not args.quiet, command=args.command_line, process_group=group)
    if not is_main(group):  # rank 0 writes the one record
        return 0 if record.status != "failed" else 1
    path = record.write(output)
    print(_table([record]))
    print(f"wrote {path}")
    return 0 if record.status != "failed" else 1


def _fmt(x: Any, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def _status(r: RunRecord) -> str:
    """The status, with the limits of a budget that stopped the run (``budget (200 passes)``)."""
    if r.status != "budget" or not r.budget:
        return r.status
    units = {"max_passes": "passes", "max_seconds": "s", "max_hvps": "HVPs"}
    return f"budget ({', '.join(f'{v:g} {units.get(k, k)}' for k, v in r.budget.items())})"


def _table(records: list[RunRecord]) -> str:
    """One line per run: answers, their relative errors, data passes, seconds of the solve
    and, apart, of the untimed warm-up before it."""
    head = (f"{'problem':18s} {'solver':9s} {'lambda_max':>11s} {'err':>8s} {'lambda_min':>11s} "
            f"{'err':>8s} {'passes':>7s} {'passes@1%':>9s} {'seconds':>8s} {'warm-up s':>9s}"
            "  status")
    lines = [head, "-" * len(head)]
    for r in records:
        e, c = r.errors, r.cost("both", 0.01)
        lines.append(
            f"{r.problem:18s} {r.solver:9s} {_fmt(r.lambda_max):>11s} "
            f"{_fmt(e.rel_error_max, '.1e'):>8s} {_fmt(r.lambda_min):>11s} "
            f"{_fmt(e.rel_error_min, '.1e'):>8s} {_fmt(r.data_passes, '.0f'):>7s} "
            f"{_fmt(c.data_passes, '.0f'):>9s} {_fmt(r.seconds, '.2f'):>8s} "
            f"{_fmt(r.warmup_seconds, '.2f'):>9s}  {_status(r)}")
    return "\n".join(lines)


def _demo_budget(solver: str, args: argparse.Namespace) -> dict[str, Any]:
    """The demo's budget for ``solver``: ``--max-passes``, and at most ``--baseline-passes``
    for the slow baselines (:data:`DEMO_BASELINES`)."""
    passes = args.max_passes
    if solver in DEMO_BASELINES:
        passes = min(passes, args.baseline_passes)
    return {"max_passes": passes}


def _reference_line(name: str, ref: dict[str, Any]) -> str:
    """``name: reference (method) lambda_max=... lambda_min=...`` and, unless exact, the
    relative error bound its residuals certify (some eigenvalue within r of each value)."""
    line = (f"{name}: reference ({ref['method']}) lambda_max={ref['lambda_max']:.6g} "
            f"lambda_min={ref['lambda_min']:.6g}")
    if ref["method"] == "exact":
        return line
    bound = max(abs(float(ref.get(f"residual_{e}") or 0.0)) / abs(ref[f"lambda_{e}"])
                for e in ("max", "min"))
    return f"{line}, residuals within {bound:.1e} x |lambda|"


def cmd_demo(args: argparse.Namespace) -> int:
    """The default job: the demo solvers on the offline problems, one table."""
    from hessbench.reference import compute_reference
    from hessbench.runner import run_one

    check_grid(args.problems, args.solvers, [args.seed],  # every name, before any work
               budget={"max_passes": args.max_passes})
    baselines = [s for s in args.solvers if s in DEMO_BASELINES]
    if baselines:
        check_grid(args.problems, baselines, [args.seed],
                   budget={"max_passes": args.baseline_passes})
    out = check_output_dir(args.output)
    _use_threads(args)
    records = []
    for name in args.problems:
        ref = compute_reference(problems.get(name), progress=not args.quiet, cheapest=True)
        print(_reference_line(name, ref), flush=True)
        for solver in args.solvers:
            record = run_one(name, solver, seed=args.seed, budget=_demo_budget(solver, args),
                             progress=not args.quiet, command=args.command_line,
                             cheapest_reference=True)
            record.write(out / f"{name}_{solver}_seed{args.seed}.json")
            records.append(record)
    print()
    print(_table(records))
    print("\nerr: relative error of the self-stopped answer; passes@1%: data passes until both "
          "ends stayed within 1%; seconds: the solve; warm-up s: the untimed first products "
          "before it (one-off setup); budget (N passes): stopped there, not converged.")
    if baselines and args.baseline_passes < args.max_passes:
        print(f"{', '.join(baselines)}: a baseline given at most {args.baseline_passes:g} data "
              f"passes in the demo (--baseline-passes; the others {args.max_passes:g}).")
    print(f"References: exact, or certified (dense float64, or float64 Lanczos from two seeds "
          f"with computed residual bounds, shown above). Run records in {out}/")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from hessbench.compare import run_grid, write_summary
    from hessbench.distributed import is_main, start
    from hessbench.seeds import parse_seeds

    seeds = parse_seeds(args.seeds)
    group, device = start(args.backend, args.device)  # under torchrun: the process group
    _use_threads(args, is_main(group))
    runs = run_grid(args.problems, args.solvers, seeds, args.output,
                    progress=not args.quiet, command=args.command_line, force=args.force,
                    backend=args.backend, tol=args.tol, budget=_budget(args), dtype=args.dtype,
                    device=device, devices=args.devices, process_group=group,
                    strategy=args.strategy)
    failed = [r for r in runs if r.raised]
    if not is_main(group):  # rank 0 writes the summary
        return 1 if failed else 0
    print(write_summary(runs, args.output))
    for r in failed:
        print(f"error: {r.problem} {r.solver} seed {r.seed}: {r.message}", file=sys.stderr)
    print(f"{len(runs)} runs: {runs.reused} reused, {runs.ran} run; run records, summary.md, "
          f"summary.json and results.csv in {args.output}/")
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from hessbench.report import build_report
    from hessbench.report.tracking import cmd_tracking_report, is_tracking_dir

    if is_tracking_dir(args.run_dir):
        return cmd_tracking_report(args, command=shlex.join(
            ["hessbench", "report", args.run_dir, "--output", args.output]
            + (["--title", args.title] if args.title else [])))

    command = shlex.join(["hessbench", "report", args.run_dir, "--output", args.output]
                         + (["--asv-results", args.asv_results] if args.asv_results else [])
                         + (["--title", args.title] if args.title else []))
    written = build_report(args.run_dir, args.output, asv_results=args.asv_results,
                           title=args.title, command=command, strict=args.strict)
    print(f"wrote {written['readme']}, {written['html']}, {written['csv']} and "
          f"{len(written['figures'])} figure(s) in {Path(args.output) / 'figures'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hessbench", description="Benchmark of eigensolvers for extreme eigenvalues of "
        "neural-network loss Hessians.")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (give it before the command)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("problems", help="list problems and their options").set_defaults(
        func=cmd_problems)
    sub.add_parser("solvers", help="list solvers and their options").set_defaults(
        func=cmd_solvers)
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
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--which", choices=("both", "max", "min"), default="both")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--max-passes", type=float)
    p.add_argument("--max-seconds", type=float)
    p.add_argument("--max-hvps", type=int)
    p.add_argument("--dtype", choices=("float32", "float64"))
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: where the model is)")
    p.add_argument("--devices", type=_devices, help=DEVICES_HELP)
    p.add_argument("--strategy", help=STRATEGY_HELP)
    p.add_argument("--problem-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--solver-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--threads", type=_threads, default="auto", help=THREADS_HELP)
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
    p.add_argument("--devices", type=_devices, help=DEVICES_HELP)
    p.add_argument("--strategy", help=STRATEGY_HELP)
    p.add_argument("--threads", type=_threads, default="auto", help=THREADS_HELP)
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
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--max-passes", type=float, default=2000)
    p.add_argument("--baseline-passes", type=float, default=DEMO_BASELINE_PASSES,
                   help=f"data-pass budget of the slow baselines ({', '.join(DEMO_BASELINES)}; "
                   f"default {DEMO_BASELINE_PASSES:g})")
    p.add_argument("--threads", type=_threads, default="auto", help=THREADS_HELP)
    p.add_argument("-o", "--output", default="results/demo")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="publishable report (README.md, index.html, figures) "
                       "of the run records written by compare")
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder of run records (JSON), or of "
                   "hessbench track outputs (tracking.json)")
    p.add_argument("-o", "--output", required=True, help="report folder, e.g. reports/NAME/")
    p.add_argument("--asv-results", metavar="PATH",
                   help="also tabulate the latest asv values from this folder (.asv/results)")
    p.add_argument("--title", help="report title (default: from the problems)")
    p.add_argument("--strict", action="store_true",
                   help="fail on a file of RUN_DIR that is not a readable run record (default: "
                   "skip it with a warning naming it)")
    p.set_defaults(func=cmd_report)
    add_density_parser(sub)
    add_plot_history_parser(sub)
    add_track_parser(sub)
    return parser


def _interrupted(args: argparse.Namespace, err: KeyboardInterrupt) -> str:
    """The one line printed on Ctrl-C: the command's own (``compare``'s says what it kept),
    else what is kept."""
    if str(err):
        return str(err)
    if args.command == "demo":
        return f"interrupted: the run records finished so far are kept in {args.output}/"
    if args.command == "run":
        return f"interrupted: nothing was written to {args.output}"
    return "interrupted"


def _one_line_warnings() -> None:
    """Show hessbench's own warnings (a cache entry moved aside and rebuilt, a record skipped)
    as one line each, ``warning: ...``, every time; other warnings keep Python's format."""
    from hessbench.files import CacheWarning
    from hessbench.records import RecordWarning

    ours = (CacheWarning, RecordWarning)
    default = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if issubclass(category, ours):
            print(f"warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    for category in ours:
        warnings.simplefilter("always", category)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command inside the error boundary: a :class:`UserError` is one line
    ``error: ...`` and exit status 2 (``--debug``: with its traceback); Ctrl-C one line and
    130; anything else is a bug and keeps its traceback."""
    try:
        with warnings.catch_warnings():
            _one_line_warnings()
            code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside main, not at exit
        return code
    except UserError as err:
        if args.debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        if args.debug:
            traceback.print_exc()
        print(_interrupted(args, err), file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """``hessbench ...``; returns the exit status (argparse errors exit 2 through SystemExit).
    Output cut short by a closed pipe (``hessbench solvers | head -1``) ends quietly."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.command_line = ["hessbench", *argv]  # recorded in run records as the command
        return _dispatch(args)
    except BrokenPipeError:
        # the reader went away: send what is left to devnull so the exit flush cannot fail
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
