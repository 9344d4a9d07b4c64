"""``hessbench plot-history LOG -o fig.png``: plot a Hessian monitor's log
(:mod:`hessbench.monitor`): λmax and λmin against epoch with their certified error bars, and
the cost per epoch. ``LOG`` is ``hessian.jsonl`` or the monitor's ``log_dir``."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_plot_history(args: argparse.Namespace) -> int:
    from hessbench.monitor_plot import plot_history, read_history

    records = read_history(args.log)
    out = plot_history(records, args.output)
    if not args.quiet:
        print(f"wrote {out} ({len(records)} steps, epochs {min(r.epoch for r in records)}-"
              f"{max(r.epoch for r in records)})")
    return 0


def add_plot_history_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("plot-history", help="plot a Hessian monitor's log "
                              "(λmax, λmin with error bars, cost per epoch)")
    p.add_argument("log", metavar="LOG", help="hessian.jsonl or the monitor's log_dir")
    p.add_argument("-o", "--output", default="hessian_history.png", metavar="PNG",
                   help="figure to write (default: hessian_history.png)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=cmd_plot_history)
    return p
