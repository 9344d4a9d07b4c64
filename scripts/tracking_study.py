"""Tracking study (issue 15): does warm-starting Lanczos from the previous checkpoint's Ritz
vectors cut the cost of tracking λmax / λmin along a training run, and is every checkpoint
still right?

For each trajectory problem (default ``digits-mlp-trajectory`` and ``digits-cnn-trajectory``,
20 checkpoints each) it runs ``hessbench track`` cold and with ``--warm-start`` for the seeds
(default 0-4), each into ``RUNS/<problem>-<cold|warm>/`` (``tracking.json``, ``seed-K/``
monitor logs), then writes the report (:func:`hessbench.report.tracking.build_tracking_report`):
``OUT/README.md``, ``OUT/data.json``, ``OUT/figures/``. Runs already present (their
``tracking.json`` exists) are kept, so an interrupted study resumes; ``--report-only`` only
rebuilds the report.

    OMP_NUM_THREADS=1 python scripts/tracking_study.py -o reports/cpu-tracking
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from hessbench.report.blocks import Paragraph
from hessbench.report.tracking import build_tracking_report
from hessbench.seeds import parse_seeds
from hessbench.track_cli import track_seeds
from hessbench.tracking import TRACKING, format_table

PROBLEMS = ("digits-mlp-trajectory", "digits-cnn-trajectory")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", default="reports/cpu-tracking", help="report folder")
    p.add_argument("--runs", help="folder of the track runs (default OUTPUT/runs)")
    p.add_argument("-p", "--problems", nargs="+", default=list(PROBLEMS))
    p.add_argument("--problem-option", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to every problem (e.g. checkpoints=3 for a quick test)")
    p.add_argument("-s", "--solver", default="lanczos")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.output)
    runs = Path(args.runs) if args.runs else out / "runs"
    opts = dict(kv.split("=", 1) for kv in args.problem_option)
    opts = {k: int(v) for k, v in opts.items()}
    seeds = parse_seeds(args.seeds)
    t0 = time.perf_counter()
    if not args.report_only:
        for problem in args.problems:
            for warm in (False, True):
                folder = runs / f"{problem}-{'warm' if warm else 'cold'}"
                if (folder / TRACKING).exists():
                    continue
                t = time.perf_counter()
                summaries, _, _ = track_seeds(problem, seeds, folder, solver=args.solver,
                                              tol=args.tol, warm_start=warm,
                                              problem_options=opts, progress=False)
                if not args.quiet:
                    print(format_table(summaries), flush=True)
                    print(f"[{time.perf_counter() - t:.0f} s] {folder}", flush=True)
    command = (f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python "
               f"scripts/tracking_study.py -o {args.output} -p {' '.join(args.problems)} "
               f"-s {args.solver} --tol {args.tol} --seeds {args.seeds}"
               + "".join(f" --problem-option {kv}" for kv in args.problem_option)
               + "\n# one run of it by hand:\nhessbench track -p digits-mlp-trajectory -s "
               f"{args.solver} --warm-start --seeds {args.seeds} -o /tmp/track-warm")
    import torch

    intro = [Paragraph(
        f"`hessbench track` runs `{args.solver}` (tol {args.tol:g}, both ends, certified "
        "residuals) at every checkpoint of each trajectory problem (checkpoints evenly spaced "
        "along one seeded training run, 0 = initialisation), cold (a random start vector per "
        "checkpoint) and warm (`--warm-start`: the previous checkpoint's two Ritz vectors "
        "summed, plus 0.1 x a random unit vector), for seeds "
        f"{args.seeds}; each checkpoint is scored against its certified reference. Machine: "
        f"{platform.machine()} CPU, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')}, "
        f"torch {torch.__version__}, Python {platform.python_version()}; the CPU was shared "
        "with other jobs, so seconds are noisier than data passes.")]
    written = build_tracking_report(runs, out, intro=intro, command=command)
    if not args.quiet:
        print(f"wrote {written['readme']} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
