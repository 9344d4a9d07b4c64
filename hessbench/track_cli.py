"""``hessbench track``: the Hessian's extremes at every checkpoint of a trajectory problem
(a problem with options ``checkpoint`` and ``checkpoints``, e.g. ``digits-mlp-trajectory``),
through :class:`hessbench.monitor.HessianMonitor`: one record per checkpoint in
``OUT/hessian.jsonl`` and ``OUT/hessian.csv`` (with ``--seeds``, in ``OUT/seed-K/`` per seed),
and with ``--plot`` the history figure.

Each checkpoint is scored against its certified reference
(:func:`hessbench.reference.compute_reference` with ``cheapest=True``, cached per checkpoint;
``--no-reference`` skips them): ``OUT/tracking.json`` holds one
:class:`hessbench.tracking.TrackingSummary` per seed (total data passes and seconds, the worst
relative error of each end, success = converged and both ends within 1% at every checkpoint)
and the per-checkpoint rows; the summaries are printed as a table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hessbench.cli_args import key_values, seed_arg
from hessbench.errors import InputError

if TYPE_CHECKING:
    from hessbench.tracking import CheckpointScore, TrackingSummary


def track(problem: str, *, checkpoints: list[int] | None = None, log_dir: Any = None,
          solver: str = "lanczos", tol: float = 1e-3, seed: int = 0, which: str = "both",
          budget: Any = None, dtype: str | None = None, device: str | None = None,
          problem_options: dict[str, Any] | None = None,
          solver_options: dict[str, Any] | None = None, warm_start: bool = False,
          progress: bool = False) -> list[Any]:
    """Monitor records (epoch = checkpoint index) for ``checkpoints`` (default: all) of the
    trajectory problem ``problem``; everything is checked before any training."""
    import torch

    from hessbench import problems
    from hessbench.monitor import HessianMonitor

    opts = dict(problem_options or {})
    known = problems.options(problem)
    if "checkpoint" not in known or "checkpoints" not in known:
        raise InputError(f"problem {problem!r} is not a trajectory problem (it has no options "
                         "checkpoint and checkpoints); e.g. digits-mlp-trajectory")
    if "checkpoint" in opts:
        raise InputError("give the checkpoints to track with --checkpoints, not as a problem "
                         "option")
    count = int(opts.get("checkpoints", known["checkpoints"]))
    todo = list(range(count)) if checkpoints is None else list(checkpoints)
    bad = [k for k in todo if not 0 <= k < count]
    if bad:
        raise InputError(f"checkpoints {bad} out of range: {problem} has checkpoints "
                         f"0-{count - 1}")
    first = problems.get(problem, checkpoint=todo[0], **opts)  # checks the options
    torch_dtype = getattr(torch, dtype or first.dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise InputError(f"unknown dtype {dtype!r}; use float32 or float64")
    parts = first.torch_parts(progress=progress)
    monitor = HessianMonitor(parts.model, parts.loss_fn, (parts.inputs, parts.targets),
                             solver=solver, tol=tol, seed=seed, which=which, budget=budget,
                             log_dir=log_dir, solver_options=solver_options,
                             warm_start=warm_start, progress=progress,
                             batch_size=parts.batch_size, dtype=torch_dtype, device=device)
    for k in todo:
        if k != todo[0]:
            parts = problems.get(problem, checkpoint=k, **opts).torch_parts(progress=progress)
            monitor.model = parts.model  # same architecture and data, next checkpoint
        monitor.step(k)
    return monitor.history


def references(problem: str, checkpoints: list[int], problem_options: dict[str, Any] | None,
               progress: bool = False) -> dict[int, dict[str, Any]]:
    """The certified reference of each checkpoint (``compute_reference(cheapest=True)``:
    cached per checkpoint problem, verified when loaded)."""
    from hessbench import problems
    from hessbench.reference import compute_reference

    return {k: compute_reference(problems.get(problem, checkpoint=k, **(problem_options or {})),
                                 progress=progress, cheapest=True)
            for k in checkpoints}


def track_seeds(problem: str, seeds: list[int] | None, output: Any, *,
                checkpoints: list[int] | None = None, reference: bool = True,
                solver: str = "lanczos", tol: float = 1e-3, which: str = "both",
                warm_start: bool = False, problem_options: dict[str, Any] | None = None,
                solver_options: dict[str, Any] | None = None, seed: int = 0,
                progress: bool = False, **options: Any
                ) -> tuple[list[TrackingSummary], list[CheckpointScore], dict[int, list[Any]]]:
    """:func:`track` for each of ``seeds`` (logs in ``output/seed-K/``, which must hold no log
    yet), or with ``seeds=None`` for ``seed`` alone (logs in ``output``, appended to); scores
    every checkpoint against its reference (unless ``reference=False``) and writes
    ``output/tracking.json``. Returns (summaries, per-checkpoint rows, seed -> records);
    ``options``: budget, dtype, device (as :func:`track`)."""
    from hessbench import problems
    from hessbench.monitor_record import JSONL
    from hessbench.tracking import TRACKING, score, summarise, write_tracking

    out = Path(output)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a folder")
    runs = [seed] if seeds is None else list(seeds)
    dirs = {s: out if seeds is None else out / f"seed-{s}" for s in runs}
    if seeds is not None:
        taken = [str(d / JSONL) for d in dirs.values() if (d / JSONL).exists()]
        if taken:
            raise InputError(f"{', '.join(taken)} already exist(s): give a new output folder "
                             "(monitor logs are appended to, and would mix two runs)")
    opts = dict(problem_options or {})
    known = problems.options(problem) if problem in problems.available() else {}
    count = int(opts.get("checkpoints", known.get("checkpoints", 0)) or 0)
    records: dict[int, list[Any]] = {}
    for s in runs:
        records[s] = track(problem, checkpoints=checkpoints, log_dir=dirs[s], solver=solver,
                           tol=tol, seed=s, which=which, warm_start=warm_start,
                           problem_options=opts, solver_options=solver_options,
                           progress=progress, **options)
    done = [r.epoch for r in records[runs[0]]]
    refs = references(problem, done, opts, progress) if reference else None
    rows, summaries = [], []
    for s in runs:
        part = score(problem, records[s], refs, warm_start=warm_start, seed=s)
        rows += part
        summaries.append(summarise(part, which=which, tol=tol))
    settings = {"problem": problem, "problem_options": opts, "checkpoints": done,
                "of_checkpoints": count, "solver": solver, "solver_options": solver_options or {},
                "tol": tol, "which": which, "warm_start": warm_start, "seeds": runs,
                "logs": {str(s): str(d.relative_to(out)) if d != out else "."
                         for s, d in dirs.items()},
                **{k: v for k, v in options.items() if v is not None}}
    write_tracking(out / TRACKING, summaries, rows, settings, refs)
    return summaries, rows, records


def cmd_track(args: argparse.Namespace) -> int:
    from hessbench.seeds import parse_seeds
    from hessbench.tracking import TRACKING, format_table

    budget = {k: v for k, v in (("max_passes", args.max_passes),
                                ("max_seconds", args.max_seconds)) if v is not None}
    try:
        checkpoints = None if args.checkpoints is None else parse_seeds(args.checkpoints)
    except ValueError as err:
        raise InputError(str(err).replace("seeds", "checkpoints")) from None
    seeds = None if args.seeds is None else parse_seeds(args.seeds)
    out = Path(args.output)
    summaries, _, records = track_seeds(
        args.problem, seeds, out, checkpoints=checkpoints, reference=not args.no_reference,
        solver=args.solver, tol=args.tol, seed=args.seed or 0, which=args.which,
        budget=budget or None, dtype=args.dtype, device=args.device,
        problem_options=key_values(args.problem_option, "--problem-option"),
        solver_options=key_values(args.solver_option, "--solver-option"),
        warm_start=args.warm_start, progress=not args.quiet)
    if args.plot:
        from hessbench.monitor_plot import plot_history

        plot_history(next(iter(records.values())), args.plot)
    if not args.quiet:
        logs = out / "hessian.jsonl" if seeds is None else out / "seed-K" / "hessian.jsonl"
        print(format_table(summaries))
        print(f"wrote {logs} ({len(next(iter(records.values())))} checkpoints"
              + (f", {len(records)} seeds" if seeds is not None else "") + f"), "
              f"{out / TRACKING}" + (f" and {args.plot}" if args.plot else ""))
    return 0


def add_track_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "track", help="λmax/λmin at every checkpoint of a trajectory problem, scored against "
        "each checkpoint's certified reference (hessian.jsonl, hessian.csv, tracking.json)",
        description="Run a solver at every checkpoint of a trajectory problem "
        "(digits-mlp-trajectory, digits-cnn-trajectory, synthetic-cifar-resnet20-trajectory) "
        "through the Hessian monitor and score each checkpoint against its certified reference "
        "(compute_reference(cheapest=True), cached per checkpoint). Writes DIR/hessian.jsonl "
        "and DIR/hessian.csv (with --seeds: DIR/seed-K/ per seed), and DIR/tracking.json: per "
        "seed the total data passes and seconds of the solves over the run, the largest "
        "relative error of each end over the checkpoints, and success (at every checkpoint the "
        "solver stopped by its own rule and each asked end is within 1% of the reference); "
        "plus every checkpoint's estimates, references, errors and cost. Prints the summaries "
        "as a table (one line per seed, then the mean over seeds).")
    p.add_argument("-p", "--problem", default="digits-mlp-trajectory")
    p.add_argument("--problem-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--checkpoints", metavar="LIST", help="checkpoints to track, e.g. 0-19 or "
                   "0,5,19 (default: all)")
    p.add_argument("-s", "--solver", default="lanczos")
    p.add_argument("--solver-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--tol", type=float, default=1e-3)
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=seed_arg, help="monitor seed of a single run (default "
                       "0): logs in DIR itself, appended to")
    seeds.add_argument("--seeds", metavar="LIST", help="monitor seeds, e.g. 0-4 or 0,2,5: one "
                       "run per seed, logs in DIR/seed-K/ (which must be new)")
    p.add_argument("--which", default="both", choices=("both", "max", "min"))
    p.add_argument("--max-passes", type=float)
    p.add_argument("--max-seconds", type=float)
    p.add_argument("--dtype", choices=("float32", "float64"))
    p.add_argument("--device")
    p.add_argument("--warm-start", action="store_true",
                   help="start each solve from the previous checkpoint's Ritz vectors")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the references (no errors, success not scored)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output folder (hessian.jsonl, hessian.csv, tracking.json)")
    p.add_argument("--plot", metavar="PNG",
                   help="also write the history figure (of the first seed)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_track)
    return p
