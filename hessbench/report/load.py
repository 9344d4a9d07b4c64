"""Reading what a report folds in besides run records: HVP throughput measurements
(``throughput.json``) and asv results.

``throughput.json`` (written e.g. by ``scripts/hvp_throughput.py --json``) is a JSON list of
measurements, or an object whose ``"results"`` key is that list (and ``"command"`` the command
that measured them); each measurement has ``problem``, ``backend``, ``dtype``, ``batch_size``
and ``samples_per_second`` (samples of the HVP per second of wall clock), and optionally
``device`` (other keys are ignored).

asv results (e.g. ``.asv/results``): the latest value of every benchmark and parameter
combination, read with asv's own ``asv.results`` module (needs ``asv`` installed).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hessbench.errors import InputError, UserError

THROUGHPUT_FILE = "throughput.json"
THROUGHPUT_KEYS = ("problem", "backend", "dtype", "batch_size", "samples_per_second")


@dataclass(frozen=True)
class ThroughputMeasurement:
    """One HVP throughput measurement: samples of the product per second of wall clock."""

    problem: str
    backend: str
    dtype: str
    batch_size: int
    samples_per_second: float
    device: str | None = None


def load_throughput(run_dir: str | Path) -> tuple[list[ThroughputMeasurement], str | None]:
    """The measurements of ``RUN_DIR/throughput.json`` (see module docstring) and the command
    recorded with them (its ``"command"`` key), or ([], None)."""
    path = Path(run_dir) / THROUGHPUT_FILE
    if not path.exists():
        return [], None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err}); fix or remove it") from err
    command = data.get("command") if isinstance(data, dict) else None
    if isinstance(data, dict):
        data = data.get("results", [])
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of measurements or {{'results': [...]}}")
    rows = []
    for i, m in enumerate(data):
        missing = [k for k in THROUGHPUT_KEYS if not isinstance(m, dict) or k not in m]
        if missing:
            raise InputError(f"{path}: measurement {i} lacks {missing}; each needs "
                             f"{', '.join(THROUGHPUT_KEYS)}")
        rows.append(ThroughputMeasurement(
            problem=str(m["problem"]), backend=str(m["backend"]), dtype=str(m["dtype"]),
            batch_size=int(m["batch_size"]), samples_per_second=float(m["samples_per_second"]),
            device=m.get("device")))
    return rows, command


def load_asv_results(results_dir: str | Path) -> list[dict[str, Any]]:
    """Latest value of every asv benchmark (per machine) and parameter combination, read with
    ``asv.results``. Rows: benchmark, machine, commit, params (dict), value, unit, type."""
    try:
        from asv import results as asv_results
        from asv import util as asv_util
    except ImportError as err:
        raise UserError("--asv-results needs asv, which is not installed: "
                        "pip install 'hessbench[bench]'") from err
    results_dir = str(results_dir)
    if not os.path.isdir(results_dir):
        raise InputError(f"no asv results folder {results_dir}: give the folder asv writes "
                         "results to (e.g. .asv/results)")
    meta: dict[str, Any] = {}
    bench_json = os.path.join(results_dir, "benchmarks.json")
    if os.path.exists(bench_json):
        meta = asv_util.load_json(bench_json, api_version=2)
    # the latest value per (benchmark, machine, parameter combination); a skipped (NaN) value
    # does not hide an older measured one
    latest: dict[tuple, dict[str, Any]] = {}
    for res in asv_results.iter_results(results_dir):
        machine = res.params.get("machine", "?")
        for key in res.get_all_result_keys():
            when = (res.started_at or {}).get(key) or res.date or 0
            params = res.get_result_params(key) or []
            values = res.get_result_value(key, params)
            info = meta.get(key, {}) if isinstance(meta, dict) else {}
            names = info.get("param_names") or [f"p{i}" for i in range(len(params))]
            combos = list(itertools.product(*params)) if params else [()]
            if not isinstance(values, list):
                values = [values]
            for combo, value in zip(combos, values):
                skipped = isinstance(value, float) and math.isnan(value)
                slot = (key, machine, combo)
                old = latest.get(slot)
                if old is not None and (when < old["when"] or (skipped and not old["skipped"])):
                    continue
                latest[slot] = {
                    "when": when, "skipped": skipped, "benchmark": key, "machine": machine,
                    "commit": (res.commit_hash or "")[:8],
                    "params": {n: _unquote(v) for n, v in zip(names, combo)},
                    "value": value, "unit": info.get("unit", ""),
                    "type": info.get("type", key.rsplit(".", 1)[-1].split("_")[0])}
    rows = []
    for slot in sorted(latest, key=lambda s: (s[0], s[1])):  # stable: params in asv's order
        row = dict(latest[slot])
        del row["when"], row["skipped"]
        rows.append(row)
    return rows


def _unquote(v: Any) -> Any:
    if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        return v[1:-1]
    return v
