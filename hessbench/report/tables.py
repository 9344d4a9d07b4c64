"""The report's tables, as structured :class:`hessbench.report.blocks.Table` blocks computed
from the summary rows (:mod:`hessbench.summary`) and the long table (:mod:`hessbench.long_table`).

Cells show the median [interquartile range] over seeds of a cost to eps; "(k/n)" when only k of
n seeds got there, "never" when none did, "k/n reached" when too few did for a median. The
winner of a (problem, backend) group (:func:`hessbench.summary.winner`) is shown in bold,
marked "(winner)" and highlighted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from hessbench.long_table import ResultRow
from hessbench.records import END_GROUPS, EPSILONS
from hessbench.report.blocks import Block, Heading, Table
from hessbench.report.load import ThroughputMeasurement
from hessbench.summary import Stats, SummaryRow, groups, winner


def cell(s: Stats, spec: str) -> str:
    """Median [q1–q3] (k/n), or why there is no median."""
    if s.median is None:
        return f"never ({s.reached}/{s.runs})" if s.reached == 0 else \
            f"{s.reached}/{s.runs} reached"
    text = f"{s.median:{spec}} [{_num(s.q1, spec)}–{_num(s.q3, spec)}]"
    return text if s.reached == s.runs else f"{text} ({s.reached}/{s.runs})"


def _num(x: float | None, spec: str) -> str:
    return "inf" if x is None else format(x, spec)


def group_label(problem: str, backend: str, several_backends: bool) -> str:
    """The problem's name, with its backend when the rows come from several backends."""
    return f"{problem} [{backend}]" if several_backends else problem


def several_backends(rows: Sequence[SummaryRow]) -> bool:
    """Whether runs that did not raise came from more than one backend."""
    return len({r.backend for r in rows if r.errors < r.seeds}) > 1


def _solver_cell(row: SummaryRow, best: str | None) -> str:
    return f"**{row.solver}** (winner)" if row.solver == best else row.solver


def _tables(rows: Sequence[SummaryRow], level: int, header: list[str], cells: Any
            ) -> list[Block]:
    """Per (problem, backend) group: a heading and a table, one row per solver."""
    several = several_backends(rows)
    out: list[Block] = []
    for problem, backend, part in groups(rows):
        best = winner(part)
        out.append(Heading(level, group_label(problem, backend, several)))
        out.append(Table(header, [[_solver_cell(r, best)] + cells(r) for r in part],
                         [r.solver == best for r in part]))
    return out


WARMUP_HEADER = "warm-up s (median)"


def warmup_cell(row: SummaryRow) -> str:
    """Median seconds of the untimed warm-up before each solve ("-": not recorded)."""
    return "-" if row.median_warmup_seconds is None else f"{row.median_warmup_seconds:.3g}"


def passes_tables(rows: Sequence[SummaryRow], level: int = 4,
                  eps_list: Sequence[float] = EPSILONS) -> list[Block]:
    """Data passes to each eps on max / min / both, seconds to 1% on both, success, and the
    warm-up's seconds (apart: not in any seconds figure)."""
    header = (["solver"] + [f"passes to {e:g}: max / min / both" for e in eps_list]
              + ["seconds to 1%: both", "self-stopped success", WARMUP_HEADER])
    return _tables(rows, level, header, lambda r: [
        " / ".join(cell(r.stats("data_passes", end, e), ".3g") for end in END_GROUPS)
        for e in eps_list] + [cell(r.stats("seconds", "both", 0.01), ".3g"),
                              f"{r.success}/{r.seeds}", warmup_cell(r)])


def seconds_tables(rows: Sequence[SummaryRow], level: int = 4) -> list[Block]:
    """Seconds to each eps on max / min / both, and the warm-up's seconds apart."""
    header = (["solver"] + [f"seconds to {e:g}: max / min / both" for e in EPSILONS]
              + [WARMUP_HEADER])
    return _tables(rows, level, header, lambda r: [
        " / ".join(cell(r.stats("seconds", end, e), ".3g") for end in END_GROUPS)
        for e in EPSILONS] + [warmup_cell(r)])


def self_stopped_tables(long_rows: Sequence[ResultRow], rows: Sequence[SummaryRow],
                        level: int = 4) -> list[Block]:
    """Success, statuses, passes used and median final relative errors per solver."""
    first = EPSILONS[0]

    def cells(row: SummaryRow) -> list[str]:
        mine = [r for r in long_rows if (r.problem, r.backend, r.solver)
                == (row.problem, row.backend, row.solver) and r.eps == first]
        statuses = Counter(r.status for r in mine if r.end == "both")
        errs = {e: [r.self_stopped_error for r in mine if r.end == e and r.status != "error"
                    and r.self_stopped_error is not None] for e in ("max", "min")}
        med = {e: (f"{np.median(v):.2e}" if v else "-") for e, v in errs.items()}
        used = "-" if row.median_passes_used is None else f"{row.median_passes_used:.3g}"
        return [f"{row.success}/{row.seeds}", f"{row.success_rate:.0%}",
                ", ".join(f"{k} {v}" for k, v in statuses.most_common()), used,
                med["max"], med["min"]]

    header = ["solver", "success", "success rate", "statuses", "passes used (median)",
              "rel. error λmax (median)", "rel. error λmin (median)"]
    return _tables(rows, level, header, cells)


def throughput_table(measurements: Sequence[ThroughputMeasurement]) -> Table:
    body = [[m.problem, m.backend, m.dtype, str(m.batch_size), f"{m.samples_per_second:.4g}",
             m.device or "-"]
            for m in sorted(measurements,
                            key=lambda m: (m.problem, m.backend, m.dtype, m.batch_size))]
    return Table(["problem", "backend", "dtype", "batch size", "samples/s", "device"], body)


def _fmt_asv(value: Any, unit: str) -> str:
    if value is None:
        return "failed"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    v = float(value)
    if unit == "seconds":
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
            if v >= scale or scale == 1e-9:
                return f"{v / scale:.3g} {name}"
    if unit == "bytes":
        return f"{v / 2**20:.1f} MiB"
    return f"{v:.3g}"


_METHOD_ORDER = ("passes_to_10pct_max", "passes_to_10pct_min", "passes_to_1pct_max",
                 "passes_to_1pct_min", "passes_to_1pct_both", "passes_self_stopped",
                 "rel_error_max", "rel_error_min")


def _short(method: str) -> str:
    """'track_passes_to_1pct_max' -> 'passes_to_1pct_max' (time_/peakmem_ prefixes stay)."""
    return method[len("track_"):] if method.startswith("track_") else method


def _families(methods: list[str]) -> str:
    """['passes_a', 'passes_b', 'x'] -> 'passes_*, x'."""
    heads = Counter(m.split("_")[0] for m in methods)
    out = []
    for m in methods:
        head = m.split("_")[0]
        name = f"{head}_*" if heads[head] > 1 else m
        if name not in out:
            out.append(name)
    return ", ".join(out)


def _method_order(method: str) -> tuple[int, str]:
    short = _short(method)
    return (_METHOD_ORDER.index(short) if short in _METHOD_ORDER else len(_METHOD_ORDER), short)


def asv_tables(rows: list[dict[str, Any]]) -> list[tuple[str, Table]]:
    """Tables of asv values with their captions: one per benchmark class and machine, a row
    per parameter combination with a value, a column per benchmark method."""
    out = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        cls = r["benchmark"].rsplit(".", 1)[0]
        groups.setdefault((cls, r["machine"]), []).append(r)
    for (cls, machine), group in groups.items():
        methods = list(dict.fromkeys(r["benchmark"].rsplit(".", 1)[1] for r in group))
        names = list(dict.fromkeys(n for r in group for n in r["params"]))
        table: dict[tuple, dict[str, str]] = {}
        for r in group:
            value = r["value"]
            if value is not None and isinstance(value, float) and math.isnan(value):
                continue  # skipped here (n/a)
            combo = tuple(r["params"].get(n, "") for n in names)
            table.setdefault(combo, {})[r["benchmark"].rsplit(".", 1)[1]] = \
                _fmt_asv(value, r["unit"])
        if not table:
            continue
        units = {r["benchmark"].rsplit(".", 1)[1]: r["unit"] for r in group}
        methods.sort(key=_method_order)
        head = names + [_short(m) for m in methods]
        body = [[str(c) for c in combo] + [vals.get(m, "n/a") for m in methods]
                for combo, vals in table.items()]
        by_unit: dict[str, list[str]] = {}
        for m in methods:
            if units.get(m) and units[m] not in ("seconds", "bytes"):
                by_unit.setdefault(units[m], []).append(_short(m))
        commits = sorted({r["commit"] for r in group if r["commit"]})
        caption = f"`{cls}` on {machine}" + (f", commit {', '.join(commits)}" if commits else "")
        if by_unit:
            caption += " (" + "; ".join(f"{_families(ms)} in {u}" for u, ms in by_unit.items()) \
                + ")"
        out.append((caption, Table(head, body)))
    return out
