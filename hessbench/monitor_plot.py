"""Read a Hessian monitor's log and plot it (``monitor.plot(path)``, ``hessbench plot-history``).

The figure has three panels sharing the epoch axis: λmax and λmin, each on its own y axis (so
a λmin near 0 stays readable next to a large λmax; symmetric-log when an end's values span
more than two decades) with its certified error bar ± r (r =
||Hx - θx||: an eigenvalue lies within r of θ; unconverged steps drawn hollow), and the cost
of each step: the solve's data passes (left axis) and seconds (right axis).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from hessbench.errors import InputError
from hessbench.monitor_record import JSONL, HessianRecord


def read_history(path: Any) -> list[HessianRecord]:
    """The records of ``hessian.jsonl`` (or of a log folder holding it), in file order;
    :class:`InputError` naming the file and line of anything unreadable."""
    path = Path(path)
    if path.is_dir():
        path = path / JSONL
    if not path.is_file():
        raise InputError(f"no monitor log at {path}: give hessian.jsonl or the monitor's "
                         "log_dir")
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise InputError("not a JSON object")
                records.append(HessianRecord.from_json(data))
            except (ValueError, TypeError) as err:
                raise InputError(f"{path}, line {number}: {err}") from None
    if not records:
        raise InputError(f"{path} holds no records")
    return records


def plot_history(history: Sequence[HessianRecord] | Any, path: Any) -> Path:
    """Write the three-panel PNG for ``history`` (records, or a log path) to ``path``."""
    from hessbench.report.extras import require

    records = read_history(history) if isinstance(history, (str, Path)) else list(history)
    if not records:
        raise InputError("nothing to plot: the monitor has no steps yet")
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    records = sorted(records, key=lambda r: r.epoch)
    epochs = [r.epoch for r in records]
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(7, 9), constrained_layout=True)
    for ax, end, color in ((axes[0], "max", "#1f77b4"), (axes[1], "min", "#d62728")):
        pts = [(r.epoch, getattr(r, f"lambda_{end}"), getattr(r, f"residual_{end}") or 0.0,
                r.converged) for r in records if getattr(r, f"lambda_{end}") is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=color, lw=1)
            for filled in (True, False):
                sel = [p for p in pts if p[3] == filled]
                if sel:
                    ax.errorbar([p[0] for p in sel], [p[1] for p in sel],
                                yerr=[p[2] for p in sel], fmt="o", color=color, capsize=3,
                                mfc=color if filled else "white",
                                label="converged" if filled else "not converged")
            ax.legend(loc="best", fontsize=8)
            mags = [abs(p[1]) for p in pts if p[1] != 0]
            if mags and max(mags) > 100 * min(mags):  # keep values near 0 readable
                ax.set_yscale("symlog", linthresh=min(mags))
        else:
            ax.text(0.5, 0.5, f"λ{end} not computed", ha="center", transform=ax.transAxes)
        if end == "min":
            ax.axhline(0.0, color="grey", lw=0.8, ls=":")
        ax.set_ylabel(f"λ{end} (± residual)")
        ax.grid(alpha=0.3)
    axes[0].set_title(f"Hessian extremes along training ({records[-1].solver}, "
                      f"tol {records[-1].solver_options.get('tol', '?')})")
    cost = axes[2]
    cost.bar(epochs, [r.data_passes for r in records], color="#7f7f7f", alpha=0.6,
             label="data passes")
    cost.set_ylabel("data passes (solve)")
    secs = cost.twinx()
    secs.plot(epochs, [r.seconds for r in records], "o-", color="#2ca02c", label="seconds")
    secs.set_ylabel("seconds (solve)")
    cost.set_xlabel("epoch")
    cost.xaxis.set_major_locator(MaxNLocator(integer=True))
    cost.grid(alpha=0.3)
    handles = cost.get_legend_handles_labels()
    more = secs.get_legend_handles_labels()
    cost.legend(handles[0] + more[0], handles[1] + more[1], loc="best", fontsize=8)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
