"""Typed, versioned run records: what one solve of one problem by one solver produced.

A :class:`RunRecord` is written as one JSON file (``RunRecord.write``) and read back with
:func:`read_record` / :func:`load_runs`. Errors of the self-stopped answer are relative,
``|lambda_hat - lambda| / |lambda|``, and scaled, ``|lambda_hat - lambda| / |lambda_max|``;
costs are in data passes (samples touched by HVPs / N), wall-clock seconds and HVP calls.

Schema versions: 1 was the untyped dict of hessbench 0.1 (convert with
``scripts/convert_run_records.py``); 2 is this module. Reading checks every field's type
(a malformed record raises :class:`RecordError` naming its file); ``load_runs(strict=False)``
skips such files with a :class:`RecordWarning` each instead. Writing goes through
:func:`hessbench.files.atomic_write` and refuses to replace a symbolic link or a non-regular
file (device, folder) at the target.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hessbench.errors import InputError
from hessbench.files import atomic_write
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
#: ``RunRecord.requested_device`` of a run that asked for no device (it ran where the model is)
DEFAULT_DEVICE = "default"


class RecordError(InputError):
    """A file is not a run record of the schema this version reads (an :class:`InputError`,
    so also a ``ValueError``); the message names the file."""


class RecordWarning(UserWarning):
    """A file was skipped because it is not a readable run record (``load_runs(strict=False)``)."""


def device_request(device: str | None) -> str:
    """What ``RunRecord.requested_device`` holds for a run asked to run on ``device``
    (:data:`DEFAULT_DEVICE` for None)."""
    return device or DEFAULT_DEVICE


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
    ``message`` and ``traceback``, and no answer.

    ``device`` describes where the products ran (e.g. ``"cpu (x86_64, 1 threads)"``);
    ``requested_device`` is the device the run asked for, as given (``"cuda:1"``;
    :data:`DEFAULT_DEVICE` when none), which ``compare`` matches to reuse a run; it is ``""``
    in records written before it was recorded (such runs are rerun, not guessed).
    ``processes`` and ``devices`` say how many processes (torchrun ranks) and devices (over all
    processes) computed each product together (1 and 1 on one device).

    ``seconds`` (and the trace's) are the solve's alone. ``warmup`` is the operator's untimed
    warm-up just before the solve (:meth:`hessbench.backends.base.HVPOperator.warm_up`):
    ``seconds`` (wall seconds), ``block`` (the block width warmed up, or None) and the
    operator's product setup; ``{}`` in records written before it was recorded. It is an
    outcome, not part of a run's identity (``compare`` reuses a run whatever it holds)."""

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
    requested_device: str = ""
    threads: int | None = None
    processes: int = 1
    devices: int = 1
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
    warmup: dict[str, Any] = field(default_factory=dict)
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

    @property
    def warmup_seconds(self) -> float | None:
        """Wall seconds of the untimed warm-up before the solve (None: not recorded)."""
        value = self.warmup.get("seconds")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else None

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
        """The record of a JSON object; :class:`RecordError` (naming ``source``) if it is not a
        run record of this schema version or a field has the wrong type."""
        where = f"{source}: " if source is not None else ""
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            hint = (" (an untyped record of hessbench 0.1: convert it with "
                    "python3 scripts/convert_run_records.py)" if version is None else "")
            raise RecordError(f"{where}run record schema version {version}, this hessbench "
                              f"reads version {SCHEMA_VERSION}{hint}")
        values = _checked(cls, data, where, "run record")
        if values.get("reference") is not None:
            values["reference"] = Reference(**_checked(Reference, values["reference"], where,
                                                       "reference"))
        values["errors"] = AnswerErrors(**_checked(AnswerErrors, values.get("errors") or {},
                                                   where, "errors"))
        values["cost_to_eps"] = [CostToEps(**_checked(CostToEps, c, where, "cost_to_eps entry"))
                                 for c in values.get("cost_to_eps") or []]
        values["trace"] = [TraceRow(**_checked(TraceRow, row, where, "trace row"))
                           for row in values.get("trace") or []]
        return cls(**values)

    def write(self, path: str | Path) -> Path:
        """Write the record as JSON, atomically (:func:`hessbench.files.atomic_write`), so a
        reader never sees half a record. Refuses (:class:`InputError` naming the path) to
        replace a symbolic link or a non-regular file such as ``/dev/null``."""
        return write_json(self.to_json(), path)


_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "None": (type(None),),
    "dict": (dict,), "list": (list,), "Any": (object,), "Reference": (dict,),
    "AnswerErrors": (dict,)}


def _checked(cls: type, data: Any, where: str, what: str) -> dict[str, Any]:
    """``data`` as the keyword arguments of dataclass ``cls``: a JSON object with only its
    fields, each of its annotated type (checked one level deep: ``dict``, ``list``, scalars)."""
    if not isinstance(data, dict):
        raise RecordError(f"{where}malformed {what}: expected a JSON object, got "
                          f"{type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise RecordError(f"{where}unknown {what} field(s) {sorted(unknown)}")
    missing = [name for name, f in known.items() if name not in data
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise RecordError(f"{where}malformed {what}: field(s) {missing} missing")
    for name, value in data.items():
        names = [part.strip().split("[")[0] for part in str(known[name].type).split("|")]
        allowed = tuple(t for n in names for t in _TYPES.get(n, (object,)))
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise RecordError(f"{where}malformed {what}: field {name!r} is {value!r}, expected "
                              f"{known[name].type}")
    return dict(data)


def check_output_file(path: str | Path) -> Path:
    """``path`` if a file can be written there by replacing it: nothing there yet or a regular
    file; :class:`InputError` naming it for a symbolic link or a non-regular file (a device
    such as ``/dev/null``, a folder, a pipe), which writing would silently replace."""
    path = Path(path)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return path
    except NotADirectoryError:
        raise InputError(f"cannot write {path}: a parent of it is a file, not a folder; "
                         "choose another output path") from None
    if stat.S_ISLNK(mode):
        raise InputError(f"{path} is a symbolic link (to {os.readlink(path)}); hessbench "
                         "replaces its output files and will not replace a link: give the real "
                         "path or another file name")
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise InputError(f"{path} is {kind}; hessbench writes a new file there by replacing "
                         "it: give a file name that is new or a regular file")
    return path


def prepare_output_folder(output: str | Path) -> Path:
    """Create the output folder ``output`` (of run records, a summary, a report) if needed and
    check that it is a folder, not a file or a symbolic link, that files can be written in;
    :class:`InputError` naming it if not. Returns its path."""
    out = Path(output)
    if out.is_symlink():
        raise InputError(f"output folder {out} is a symbolic link (to {out.resolve()}): give "
                         "the real folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} exists and is not a folder: give a new or "
                         "existing folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise InputError(f"cannot write in the output folder {out} ({err.strerror or err}): "
                         "give a folder you can write to") from err
    return out


def write_json(data: Any, path: str | Path) -> Path:
    """Write JSON atomically (NaN and inf are refused: they are not JSON); refuses to replace a
    symbolic link or non-regular file (:func:`check_output_file`)."""
    text = json.dumps(data, indent=1, allow_nan=False)
    return atomic_write(check_output_file(path), text)


def is_run_record(data: Any) -> bool:
    """A JSON object that is a run record of any schema version (version 1 had no type tag,
    but always a problem and a solver)."""
    return isinstance(data, dict) and (data.get("record_type") == RECORD_TYPE
                                       or ("problem" in data and "solver" in data))


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(f"{path}: not valid JSON ({err})") from err
    except OSError as err:
        raise RecordError(f"{path}: cannot be read ({err.strerror or err})") from err


def read_record(path: str | Path) -> RunRecord:
    """The run record in the JSON file ``path``; :class:`RecordError` naming it if it is not
    one (invalid JSON, another kind of file, another schema version, a malformed field)."""
    path = Path(path)
    data = _json(path)
    if not is_run_record(data):
        raise RecordError(f"{path}: not a hessbench run record")
    return RunRecord.from_json(data, source=path)


def load_runs(directory: str | Path, strict: bool = True) -> list[RunRecord]:
    """Every run record (``*.json`` with a run record's fields) in ``directory``, by file name;
    other JSON files (summaries, throughput measurements) are skipped. A file that is not a
    readable run record of this schema (invalid JSON, a malformed or old record) raises
    :class:`RecordError` naming it, or with ``strict=False`` is skipped with a
    :class:`RecordWarning` naming it (one per file)."""
    runs = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            data = _json(path)
            if is_run_record(data):
                runs.append(RunRecord.from_json(data, source=path))
        except RecordError as err:
            if strict:
                raise
            warnings.warn(f"skipped {err}", RecordWarning, stacklevel=2)
    return runs
