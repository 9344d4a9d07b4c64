"""Watch the Hessian along a training run: λmax / λmin at each checkpoint, with error bars.

    monitor = HessianMonitor(model, torch.nn.functional.cross_entropy, (x, y), log_dir="runs/h")
    for epoch in range(epochs):
        train_one_epoch(model)
        record = monitor.step(epoch)        # a HessianRecord; also appended to the logs
    monitor.plot("hessian.png")

Each :meth:`step` builds a fresh hessbench operator at the current weights
(:class:`hessbench.backends.torch.HessianOperator`, or the JAX one for
:class:`hessbench.monitor_jax.JaxHessianMonitor`), runs the solver
and returns a frozen :class:`HessianRecord`. The residual r = ||Hx - θx|| of each unit Ritz
vector is its certified error bar: some eigenvalue of H lies in [θ - r, θ + r] (it cannot
certify that this eigenvalue is the extreme one). With ``certify=True`` (default) r is
recomputed from one full-data product per end after the solve (a Lanczos residual
β|s_last| is exact only in exact arithmetic); ``certify=False`` keeps the solver's own.

The model is left as it was: the operator copies the weights and restores the train/eval flags
(the monitor restores them too), and the step runs inside ``torch.random.fork_rng``, so torch's
global generator (drawn by a ``DataLoader``'s iterator, for instance) is untouched. Every random
choice of the solver comes from the step's own seed, ``step_seed(seed, epoch)``.

Logs (``log_dir``): ``hessian.jsonl`` (one JSON object per step) and ``hessian.csv`` (one row per
step, ``solver_options`` as JSON), both appended to; ``tensorboard=`` takes any object with
``add_scalar(tag, value, step)`` (a ``torch.utils.tensorboard.SummaryWriter``).
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from hessbench import solvers
from hessbench.backends.base import NonFiniteHVPError, to_numpy
from hessbench.errors import InputError
from hessbench.peers import ADAPTERS
from hessbench.monitor_record import CSV, FIELDS, JSONL, HessianRecord
from hessbench.solvers.result import Budget, EigenResult

WHICH = ("both", "max", "min")


def step_seed(seed: int, epoch: int) -> int:
    """The solve's seed at ``epoch``: a 32-bit integer from ``SeedSequence([seed, epoch])``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint32)[0])


class _MonitorBase:
    backend = ""

    def __init__(self, *, solver: str, tol: float, budget: Any, which: str, warm_start: bool,
                 warm_start_noise: float, log_dir: Any, seed: int, tensorboard: Any,
                 progress: bool, solver_options: dict[str, Any] | None,
                 certify: bool) -> None:
        if which not in WHICH:
            raise InputError(f"which must be one of {WHICH}, got {which!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {seed!r}")
        try:
            self.budget = Budget.coerce(budget)
        except (TypeError, ValueError) as err:
            raise InputError(f"bad budget: {err}") from None
        try:
            self.solver = solvers.get(solver, tol=tol, **(solver_options or {}))
        except (TypeError, ValueError) as err:
            raise InputError(str(err)) from None
        if warm_start and not self.solver.accepts_start:
            takers = [n for n in solvers.available() if n not in ADAPTERS
                      and getattr(solvers.solver_class(n), "accepts_start", False)]
            raise InputError(f"warm_start=True needs a solver that takes a start vector "
                             f"({', '.join(takers)}), got {solver!r}")
        if not 0 <= warm_start_noise < 1e6:
            raise InputError(f"warm_start_noise must be >= 0, got {warm_start_noise}")
        if tensorboard is not None and not callable(getattr(tensorboard, "add_scalar", None)):
            raise InputError("tensorboard must have add_scalar(tag, value, step) "
                             f"(a SummaryWriter), got {type(tensorboard).__name__}")
        self.which, self.seed, self.warm_start = which, int(seed), warm_start
        self.certify = bool(certify)
        self.warm_start_noise = warm_start_noise
        self.tensorboard, self.progress = tensorboard, progress
        self.log_dir = None if log_dir is None else Path(log_dir)
        if self.log_dir is not None:
            if self.log_dir.exists() and not self.log_dir.is_dir():
                raise InputError(f"log_dir {self.log_dir} exists and is not a folder")
            self.log_dir.mkdir(parents=True, exist_ok=True)
        self.history: list[HessianRecord] = []
        self.last_result: EigenResult | None = None
        self.last_start: np.ndarray | None = None  # the warm start vector of the last step
        self._vectors: dict[str, np.ndarray] = {}

    # -- one step -----------------------------------------------------------------------------
    def _step(self, epoch: int, build: Callable[[], Any]) -> HessianRecord:
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise InputError(f"epoch must be a non-negative integer, got {epoch!r}")
        epoch, seed = int(epoch), step_seed(self.seed, int(epoch))
        t0 = time.perf_counter()
        op = build()
        self.last_start = None
        if self.warm_start and self._vectors:
            self.last_start = self._start_vector(op.size, seed)
        warm = self.last_start is not None
        result = self.solver.solve(op, which=self.which, seed=seed, budget=self.budget,
                                   start=self.last_start)
        residuals = {e: getattr(result, f"residual_{e}") for e in ("max", "min")}
        if self.certify:
            residuals.update(_residuals(op, result))
        step_seconds = time.perf_counter() - t0
        self._vectors = {e: _unit(getattr(result, f"vector_{e}"))
                         for e in ("max", "min") if getattr(result, f"vector_{e}") is not None}
        record = HessianRecord(
            epoch=epoch, lambda_max=_float(result.lambda_max), lambda_min=_float(result.lambda_min),
            residual_max=_float(residuals["max"]), residual_min=_float(residuals["min"]),
            converged=bool(result.converged), status=result.status,
            data_passes=float(result.data_passes), hvp_calls=int(result.hvp_calls),
            seconds=float(result.seconds), operator_passes=float(op.meter.data_passes),
            step_seconds=step_seconds, solver=self.solver.name,
            solver_options=dict(self.solver.options()), which=self.which, seed=seed,
            warm_started=warm, certified=self.certify, backend=self.backend,
            parameters=int(op.size),
            num_samples=int(op.num_samples), message=result.message)
        self.last_result = result
        self.history.append(record)
        self._log(record)
        return record

    def _start_vector(self, size: int, seed: int) -> np.ndarray:
        """The sum of the previous unit Ritz vectors plus a random unit vector times
        ``warm_start_noise`` (drawn from the step's seed), normalised."""
        prev = [v for v in self._vectors.values() if v.shape == (size,)]
        if not prev:
            raise InputError(f"warm start: the previous Ritz vectors do not have the operator's "
                             f"size {size} (did the parameters change?)")
        q = _unit(np.sum(prev, axis=0))
        noise = np.random.default_rng([seed, 1]).standard_normal(size)
        return _unit(q + self.warm_start_noise * _unit(noise))

    def _log(self, record: HessianRecord) -> None:
        if self.log_dir is not None:
            data = record.to_json()
            with open(self.log_dir / JSONL, "a", encoding="utf-8") as f:
                f.write(json.dumps(data) + "\n")
            csv_path = self.log_dir / CSV
            new = not csv_path.exists() or csv_path.stat().st_size == 0
            with open(csv_path, "a", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=FIELDS)
                if new:
                    writer.writeheader()
                writer.writerow({**data, "solver_options": json.dumps(data["solver_options"])})
        if self.tensorboard is not None:
            for name in ("lambda_max", "lambda_min", "residual_max", "residual_min",
                         "data_passes", "seconds"):
                value = getattr(record, name)
                if value is not None:
                    self.tensorboard.add_scalar(f"hessian/{name}", value, record.epoch)
        if self.progress:
            print(f"hessian epoch {record.epoch}: lambda_max={record.lambda_max} "
                  f"lambda_min={record.lambda_min} {record.status} "
                  f"{record.data_passes:.0f} passes {record.seconds:.2f} s", file=sys.stderr)

    def plot(self, path: Any) -> Path:
        """λmax, λmin (error bars) and the cost per epoch of this monitor's steps, as a PNG."""
        from hessbench.monitor_plot import plot_history

        return plot_history(self.history, path)


class HessianMonitor(_MonitorBase):
    """λmax / λmin of a PyTorch model's full-data loss Hessian at each :meth:`step`.

    ``model``, ``loss_fn``, ``data`` and ``**operator_options`` (``batch_size``, ``device``,
    ``dtype``, ``params``, ``eval_mode``, ``check_deterministic``, ``strategy``, ...) are those of
    :class:`hessbench.backends.torch.HessianOperator`; ``solver``, ``tol`` and
    ``solver_options`` of ``hessbench.solvers.get``; ``budget`` a ``Budget`` or dict per solve.
    ``warm_start=True`` (solvers with ``accepts_start``) starts each solve after the first from
    the previous Ritz vectors plus ``warm_start_noise`` times a random unit vector.
    """

    backend = "torch"

    def __init__(self, model: Any, loss_fn: Callable[..., Any], data: Any, *,
                 solver: str = "lanczos", tol: float = 1e-3, budget: Any = None,
                 which: str = "both", warm_start: bool = False, log_dir: Any = None,
                 seed: int = 0, tensorboard: Any = None, progress: bool = False,
                 solver_options: dict[str, Any] | None = None, warm_start_noise: float = 0.1,
                 certify: bool = True, **operator_options: Any) -> None:
        import torch

        from hessbench.backends.torch import HessianOperator

        if not isinstance(model, torch.nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise InputError("loss_fn must be callable: loss_fn(outputs, targets)")
        _check_options(HessianOperator, operator_options, ("model", "loss_fn", "data"))
        super().__init__(solver=solver, tol=tol, budget=budget, which=which,
                         warm_start=warm_start, warm_start_noise=warm_start_noise,
                         log_dir=log_dir, seed=seed, tensorboard=tensorboard,
                         progress=progress, solver_options=solver_options, certify=certify)
        self.model, self.loss_fn, self.data = model, loss_fn, data
        self.operator_options = operator_options

    def step(self, epoch: int) -> HessianRecord:
        """Compute the asked ends at the model's current weights; log and return the record."""
        from hessbench.backends.torch import HessianOperator

        def build() -> Any:
            return HessianOperator(self.model, self.loss_fn, self.data, **self.operator_options)

        with _untouched(self.model):
            return self._step(epoch, build)


def _check_options(cls: type, options: dict[str, Any], positional: tuple[str, ...]) -> None:
    valid = [n for n in inspect.signature(cls.__init__).parameters
             if n not in ("self", *positional)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InputError(f"unknown option(s) {unknown} for {cls.__module__}.{cls.__name__}; "
                         f"its options: {', '.join(valid)} (monitor options: solver, tol, "
                         "budget, which, warm_start, log_dir, seed, tensorboard, progress, "
                         "solver_options, warm_start_noise, certify)")


@contextlib.contextmanager
def _untouched(model: Any) -> Iterator[None]:
    """Restore every module's train/eval flag and torch's global RNG state(s) afterwards."""
    import torch

    modes = [(m, m.training) for m in model.modules()]
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        for m, training in modes:
            m.training = training


def _residuals(op: Any, result: EigenResult) -> dict[str, float | None]:
    """||H x - θ x|| of each returned unit Ritz vector, from one full-data ``matmat``
    (charged to ``op.meter``: part of ``operator_passes``, not of the solve's passes)."""
    pairs = [(e, getattr(result, f"lambda_{e}"), getattr(result, f"vector_{e}"))
             for e in ("max", "min")]
    pairs = [(e, lam, _unit(v)) for e, lam, v in pairs if lam is not None and v is not None]
    if not pairs:
        return {}
    X = np.stack([v for _, _, v in pairs], axis=1)
    try:
        HX = np.asarray(to_numpy(op.matmat(op.asarray(X))), dtype=np.float64)
    except NonFiniteHVPError:
        return {e: float("nan") for e, _, _ in pairs}
    return {e: float(np.linalg.norm(HX[:, j] - lam * X[:, j]))
            for j, (e, lam, _) in enumerate(pairs)}


def _unit(v: Any) -> np.ndarray:
    a = np.asarray(to_numpy(v), dtype=np.float64).reshape(-1)
    n = float(np.linalg.norm(a))
    return a / n if n > 0 else a


def _float(x: Any) -> float | None:
    return None if x is None else float(x)
