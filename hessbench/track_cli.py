"""``hessbench track``: the Hessian's extremes at every checkpoint of a trajectory problem
(a problem with options ``checkpoint`` and ``checkpoints``, e.g. ``digits-mlp-trajectory``),
through :class:`hessbench.monitor.HessianMonitor`: one record per checkpoint in
``OUT/hessian.jsonl`` and ``OUT/hessian.csv``, and with ``--plot`` the history figure."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hessbench.cli_args import key_values, seed_arg
from hessbench.errors import InputError


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


def cmd_track(args: argparse.Namespace) -> int:
    from hessbench.seeds import parse_seeds

    budget = {k: v for k, v in (("max_passes", args.max_passes),
                                ("max_seconds", args.max_seconds)) if v is not None}
    try:
        checkpoints = None if args.checkpoints is None else parse_seeds(args.checkpoints)
    except ValueError as err:
        raise InputError(str(err).replace("seeds", "checkpoints")) from None
    out = Path(args.output)
    records = track(args.problem, checkpoints=checkpoints, log_dir=out, solver=args.solver,
                    tol=args.tol, seed=args.seed, which=args.which, budget=budget or None,
                    dtype=args.dtype, device=args.device,
                    problem_options=key_values(args.problem_option, "--problem-option"),
                    solver_options=key_values(args.solver_option, "--solver-option"),
                    warm_start=args.warm_start, progress=not args.quiet)
    if args.plot:
        from hessbench.monitor_plot import plot_history

        plot_history(records, args.plot)
    if not args.quiet:
        print(f"wrote {out / 'hessian.jsonl'} ({len(records)} checkpoints)"
              + (f" and {args.plot}" if args.plot else ""))
    return 0


def add_track_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("track", help="λmax/λmin at every checkpoint of a trajectory "
                              "problem (hessian.jsonl, hessian.csv)")
    p.add_argument("-p", "--problem", default="digits-mlp-trajectory")
    p.add_argument("--problem-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--checkpoints", metavar="LIST", help="checkpoints to track, e.g. 0-19 or "
                   "0,5,19 (default: all)")
    p.add_argument("-s", "--solver", default="lanczos")
    p.add_argument("--solver-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--which", default="both", choices=("both", "max", "min"))
    p.add_argument("--max-passes", type=float)
    p.add_argument("--max-seconds", type=float)
    p.add_argument("--dtype", choices=("float32", "float64"))
    p.add_argument("--device")
    p.add_argument("--warm-start", action="store_true",
                   help="start each solve from the previous checkpoint's Ritz vectors")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="log folder (hessian.jsonl, hessian.csv; appended to)")
    p.add_argument("--plot", metavar="PNG", help="also write the history figure")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_track)
    return p
