"""Convert run records of schema version 1 (the untyped dicts of hessbench 0.1) to the typed
records of :mod:`hessbench.records` (version 2), once.

    python3 scripts/convert_run_records.py OLD_DIR NEW_DIR

Every ``*.json`` run record of OLD_DIR is written to NEW_DIR (other JSON files, such as
``throughput.json``, are copied; ``summary.json`` is dropped: ``compare`` and ``report``
recompute it). What version 1 lacked is filled as follows: ``solver_options`` become the
effective options (the recorded ones over the constructor's defaults, as this hessbench
defines them); ``threads`` stays unknown (None); the command string is split into its
arguments, with the program (``.../hessbench`` or ``.../hessbench/cli.py``) named ``hessbench``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hessbench import solvers
from hessbench.records import (AnswerErrors, CostToEps, Reference, RunRecord, is_run_record,
                               SCHEMA_VERSION)
from hessbench.solvers.result import TraceRow

V2_ONLY = {"threads", "traceback", "schema_version", "record_type"}


def effective_options(solver: str, recorded: dict[str, Any]) -> dict[str, Any]:
    """The recorded options over the solver's constructor defaults (recorded ones if the
    solver is not registered here or rejects them)."""
    try:
        return solvers.get(solver, **recorded).options()
    except (KeyError, TypeError, ValueError):
        return dict(recorded)


def command_args(command: str | list[str] | None) -> list[str]:
    if not command:
        return []
    args = shlex.split(command) if isinstance(command, str) else list(command)
    program = Path(args[0])
    if program.name == "hessbench" or (program.name == "cli.py"
                                       and program.parent.name == "hessbench"):
        args[0] = "hessbench"
    return args


def convert(old: dict[str, Any]) -> RunRecord:
    """A version-1 record as a typed version-2 record."""
    if old.get("schema_version") == SCHEMA_VERSION:
        return RunRecord.from_json(old)
    base = {k: old[k] for k in ("problem", "solver", "seed") if k in old}
    copied = ("backend", "which", "budget", "problem_description", "problem_config",
              "problem_key", "synthetic", "dtype", "device", "parameters", "num_samples",
              "host", "platform", "versions", "status", "message", "traceback", "converged",
              "lambda_max", "lambda_min", "residual_max", "residual_min", "data_passes",
              "hvp_calls", "seconds")
    values = {k: old[k] for k in copied if old.get(k) is not None}
    costs = []
    for key, hit in (old.get("cost_to_eps") or {}).items():
        end, eps = key.split("@")
        costs.append(CostToEps(end, float(eps), **(hit or {})))
    ref = old.get("reference")
    return RunRecord(
        **base, **values,
        solver_options=effective_options(old["solver"], old.get("solver_options") or {})
        if old.get("status") != "error" else dict(old.get("solver_options") or {}),
        command=command_args(old.get("command")),
        reference=Reference(**{k: ref[k] for k in ("lambda_max", "lambda_min", "method")})
        if ref else None,
        errors=AnswerErrors(**(old.get("errors") or {})),
        cost_to_eps=costs,
        trace=[TraceRow(**row) for row in old.get("trace") or []])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old_dir", type=Path)
    parser.add_argument("new_dir", type=Path)
    args = parser.parse_args(argv)
    if not args.old_dir.is_dir():
        parser.error(f"OLD_DIR {args.old_dir} is not a folder")
    if args.new_dir.resolve() == args.old_dir.resolve():
        parser.error("NEW_DIR must differ from OLD_DIR (the old records are kept)")
    converted = copied = 0
    for path in sorted(args.old_dir.glob("*.json")):
        data = json.loads(path.read_text())
        if is_run_record(data):
            convert(data).write(args.new_dir / path.name)
            converted += 1
        elif path.name != "summary.json":
            args.new_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, args.new_dir / path.name)
            copied += 1
    print(f"converted {converted} run record(s), copied {copied} other file(s) to "
          f"{args.new_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
