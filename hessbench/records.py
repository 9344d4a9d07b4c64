"""Typed, versioned run records: what one solve of one problem by one solver produced.

A :class:`RunRecord` is written as one JSON file (``RunRecord.write``) and read back with
:func:`read_record` / :func:`load_runs`. Errors of the self-stopped answer are relative,
``|lambda_hat - lambda| / |lambda|``, and scaled, ``|lambda_hat - lambda| / |lambda_max|``;
costs are in data passes (samples touched by HVPs / N), wall-clock seconds and HVP calls.

Schema versions: 1 was the untyped dict of hessbench 0.1 (convert with
``scripts/convert_run_records.py``); 2 is this module.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hessbench.solvers.kernels import ends
from hessbench.solvers.result import TraceRow

SCHEMA_VERSION = 2
RECORD_TYPE = "hessbench-run"
#: the ends a cost-to-eps is measured for: each end alone, and both together
END_GROUPS = ("max", "min", "both")
#: relative errors at which the cost to reach (and stay within) them is recorded
EPSILONS = (0.1, 0.01)
#: a self-stopped answer succeeds when converged by the solver's own rule and within this
#: relative error on every asked end
SUCCESS_EPS = 0.01


class RecordError(ValueError):
    """A file is not a run record of the schema this version reads."""


@dataclass(frozen=True)
class Reference:
    """Certified extreme eigenvalues of the problem and how they were obtained."""

    lambda_max: float
    lambda_min: float
    method: str

    def value(self, end: str) -> float:
        return self.lambda_max if end == "max" else self.lambda_min


@dataclass(frozen=True)
class CostToEps:
    """Cost at the first trace row from which every estimate of ``end`` ("max", "min" or
    "both") stayed within relative error ``eps`` of the reference; all None if never."""

    end: str
    eps: float
    data_passes: float | None = None
    seconds: float | None = None
    hvp_calls: int | None = None

    @property
    def reached(self) -> bool:
        return self.data_passes is not None


@dataclass(frozen=True)
class AnswerErrors:
    """Relative and lambda_max-scaled errors of the self-stopped answer (None: no answer)."""

    rel_error_max: float | None = None
    rel_error_min: float | None = None
    scaled_error_max: float | None = None
    scaled_error_min: float | None = None

    def relative(self, end: str) -> float | None:
        return self.rel_error_max if end == "max" else self.rel_error_min


@dataclass
class RunRecord:
    """One solve: the setup (problem, solver with its effective options, backend, seed,
    budget, dtype, device, threads, versions, command), the self-stopped answer, its errors,
    the cost to each eps and the trace. A run that raised has ``status="error"``, the error in
    ``message`` and ``traceback``, and no answer."""

    problem: str
    solver: str
    seed: int
    backend: str = "torch"
    which: str = "both"
    solver_options: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    problem_description: str = ""
    problem_config: dict[str, Any] = field(default_factory=dict)
    problem_key: str = ""
    synthetic: bool = False
    dtype: str | None = None
    device: str | None = None
    threads: int | None = None
    parameters: int | None = None
    num_samples: int | None = None
    host: str | None = None
    platform: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    status: str = "error"
    message: str = ""
    traceback: str | None = None
    converged: bool = False
    lambda_max: float | None = None
    lambda_min: float | None = None
    residual_max: float | None = None
    residual_min: float | None = None
    data_passes: float | None = None
    hvp_calls: int | None = None
    seconds: float | None = None
    reference: Reference | None = None
    errors: AnswerErrors = field(default_factory=AnswerErrors)
    cost_to_eps: list[CostToEps] = field(default_factory=list)
    trace: list[TraceRow] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    record_type: str = RECORD_TYPE

    @property
    def raised(self) -> bool:
        """The run raised an exception (no answer)."""
        return self.status == "error"

    def asked_ends(self) -> tuple[str, ...]:
        return ends(self.which)

    def cost(self, end: str, eps: float) -> CostToEps:
        """The cost to reach ``eps`` on ``end`` ("max", "min", "both"); unreached if absent."""
        for c in self.cost_to_eps:
            if c.end == end and c.eps == eps:
                return c
        return CostToEps(end, eps)

    def answer_error(self, end: str) -> float | None:
        """Relative error of the self-stopped answer at ``end`` ("both": the larger over the
        asked ends); None if an asked end has no answer."""
        errs = [self.errors.relative(e) for e in (self.asked_ends() if end == "both" else (end,))]
        return None if any(e is None for e in errs) else max(errs)

    def succeeded(self, end: str = "both", eps: float = SUCCESS_EPS) -> bool:
        """Converged by the solver's own rule and within ``eps`` at ``end`` ("both": every
        asked end)."""
        error = self.answer_error(end)
        return not self.raised and self.converged and error is not None and error <= eps

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str | Path | None = None) -> RunRecord:
        where = f"{source}: " if source is not None else ""
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            hint = (" (an untyped record of hessbench 0.1: convert it with "
                    "python3 scripts/convert_run_records.py)" if version is None else "")
            raise RecordError(f"{where}run record schema version {version}, this hessbench "
                              f"reads version {SCHEMA_VERSION}{hint}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise RecordError(f"{where}unknown run record field(s) {sorted(unknown)}")
        values = dict(data)
        if values.get("reference") is not None:
            values["reference"] = Reference(**values["reference"])
        values["errors"] = AnswerErrors(**(values.get("errors") or {}))
        values["cost_to_eps"] = [CostToEps(**c) for c in values.get("cost_to_eps") or []]
        values["trace"] = [TraceRow(**row) for row in values.get("trace") or []]
        return cls(**values)

    def write(self, path: str | Path) -> Path:
        """Write the record as JSON, atomically (a temporary file in the same folder, then
        renamed), so a reader never sees half a record."""
        return write_json(self.to_json(), path)


def write_json(data: Any, path: str | Path) -> Path:
    """Write JSON atomically (NaN and inf are refused: they are not JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def is_run_record(data: Any) -> bool:
    """A JSON object that is a run record of any schema version (version 1 had no type tag,
    but always a problem and a solver)."""
    return isinstance(data, dict) and (data.get("record_type") == RECORD_TYPE
                                       or ("problem" in data and "solver" in data))


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON ({err})") from err


def read_record(path: str | Path) -> RunRecord:
    path = Path(path)
    data = _json(path)
    if not is_run_record(data):
        raise RecordError(f"{path}: not a hessbench run record")
    return RunRecord.from_json(data, source=path)


def load_runs(directory: str | Path) -> list[RunRecord]:
    """Every run record (``*.json`` with a run record's fields) in ``directory``, by file name;
    other JSON files (summaries, throughput measurements) are skipped."""
    runs = []
    for path in sorted(Path(directory).glob("*.json")):
        data = _json(path)
        if is_run_record(data):
            runs.append(RunRecord.from_json(data, source=path))
    return runs
