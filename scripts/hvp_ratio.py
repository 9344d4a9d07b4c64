"""Seconds of a full-data HVP against a gradient pass, per strategy, measured side by side.

For each problem it times, interleaved over rounds (medians): a gradient pass, an HVP pass by
every strategy of the PyTorch operator (forward-over-reverse, reverse-over-reverse, compiled)
and by the default ``auto`` choice, and ``matmat`` per vector for blocks of k vectors; then
prints HVP / gradient and block-per-vector / single-product ratios and writes them as JSON
(:class:`hessbench.speed.PassTimes`). The target of issue 13 is HVP / gradient <= 3 with the
default strategy (float32, one thread).

    python scripts/hvp_ratio.py                                   # the three CPU problems
    python scripts/hvp_ratio.py --problems digits-mlp --rounds 9 --json out.json
    python scripts/hvp_ratio.py --chunk 0                         # the problems' own chunks

The thread count is set by the script (``--threads``, default 1: torch's default spins on a
busy machine). Compilation is one-off work, reported as warm-up seconds, not in the ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

DEFAULT_PROBLEMS = ("digits-mlp", "digits-cnn", "synthetic-cifar-resnet20")


def table(results: list) -> str:
    names = ["auto", "forward-over-reverse", "reverse-over-reverse", "compiled"]
    head = (f"{'problem':26s} {'grad s':>8s} " + " ".join(f"{n[:12]:>12s}" for n in names)
            + f" {'auto chose':>22s} " + " ".join(f"{'k=' + k:>6s}" for k in
                                                  results[0].block_per_vector))
    lines = ["HVP pass / gradient pass (median); blocks: seconds per vector / one product",
             head, "-" * len(head)]
    for r in results:
        cells = [f"{r.hvp_over_gradient[n]:12.2f}" if n in r.hvp_over_gradient else
                 f"{'-':>12s}" for n in names]
        lines.append(f"{r.problem:26s} {r.gradient_seconds:8.4f} " + " ".join(cells)
                     + f" {r.chosen:>22s} "
                     + " ".join(f"{x:6.2f}" for x in r.block_per_vector.values()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", nargs="+", default=list(DEFAULT_PROBLEMS))
    p.add_argument("--chunk", type=int, default=128,
                   help="samples per chunk for every pass (0: each problem's own; default 128)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--device", default=None)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--blocks", type=int, nargs="*", default=[4, 8])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--strategies", nargs="+", default=None,
                   help="strategies to time besides auto (default: all)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)

    import torch

    from hessbench.backends.torch_hvp import STRATEGIES
    from hessbench.runner import versions
    from hessbench.speed import time_passes

    torch.set_num_threads(args.threads)
    print(f"torch threads: {args.threads} (set by this script)", file=sys.stderr)
    results = []
    for name in args.problems:
        r = time_passes(name, chunk=args.chunk or None, dtype=args.dtype, device=args.device,
                        strategies=args.strategies or STRATEGIES, blocks=args.blocks,
                        rounds=args.rounds)
        for strategy, err in r.errors.items():
            print(f"{name}: {strategy} did not run: {err}", file=sys.stderr)
        print(f"{name}: warm-up s " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                r.warmup_seconds.items()), file=sys.stderr)
        results.append(r)
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(
            {"command": ["python", "scripts/hvp_ratio.py", *(argv or sys.argv[1:])],
             "versions": versions(), "platform": platform.platform(),
             "results": [r.as_dict() for r in results]}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
