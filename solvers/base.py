"""Base class of all solvers and the bookkeeping shared by every solve."""

from __future__ import annotations

import abc
import inspect
import time
from typing import Any, ClassVar

import numpy as np
from tqdm.auto import tqdm

from hessbench.backends.base import HVPOperator, NonFiniteHVPError, to_numpy
from hessbench.solvers.kernels import ends
from hessbench.solvers.result import Budget, EigenResult, TraceRow

WHICH = ("both", "max", "min")


class BudgetExhausted(Exception):
    """Raised inside a solve when a budget limit is reached."""


class Run:
    """Bookkeeping of one solve: cost since the start, budget checks, trace, best estimates.

    Solvers call :meth:`matvec` / :meth:`matmat` (which refuse work once the budget is spent),
    :meth:`record` after each step, and :meth:`estimate` to publish their current answer.
    """

    def __init__(self, op: HVPOperator, budget: Budget, progress: bool = False,
                 label: str = "") -> None:
        self.op, self.budget = op, budget
        show = progress and op.is_main_process  # one bar per job, on rank 0 of a group
        self._bar = tqdm(desc=label, unit="step", leave=False) if show else None
        self._samples0, self._calls0 = op.meter.snapshot()
        op.synchronize()
        self._t0 = time.perf_counter()
        self.trace: list[TraceRow] = []
        self.lam: dict[str, float | None] = {"max": None, "min": None}
        self.vec: dict[str, Any] = {"max": None, "min": None}
        self.res: dict[str, float | None] = {"max": None, "min": None}
        self.start: Any = None  # the caller's start vector (Solver.solve(start=)), unit norm

    def start_vector(self, rng: np.random.Generator) -> Any:
        """The caller's start vector if one was given, else a random one from ``rng``."""
        return self.op.random_vector(rng) if self.start is None else self.start

    # cost since the start of this solve
    @property
    def samples(self) -> int:
        return self.op.meter.samples - self._samples0

    @property
    def hvp_calls(self) -> int:
        return self.op.meter.hvp_calls - self._calls0

    @property
    def data_passes(self) -> float:
        return self.samples / self.op.num_samples

    def seconds(self) -> float:
        self.op.synchronize()
        return time.perf_counter() - self._t0

    def check_budget(self, samples: int = 0, vectors: int = 1) -> None:
        """Raise BudgetExhausted if spending ``vectors`` x ``samples`` more would pass a limit."""
        b = self.budget
        if b.max_hvps is not None and self.hvp_calls + vectors > b.max_hvps:
            raise BudgetExhausted(f"HVP budget of {b.max_hvps} reached")
        passes = (self.samples + samples * vectors) / self.op.num_samples
        if b.max_passes is not None and passes > b.max_passes * (1 + 1e-12):
            raise BudgetExhausted(f"data-pass budget of {b.max_passes} reached")
        if b.max_seconds is not None and self.op.decide(self.seconds() > b.max_seconds):
            raise BudgetExhausted(f"time budget of {b.max_seconds} s reached")

    def matvec(self, v: Any, indices: np.ndarray | None = None) -> Any:
        self.check_budget(self.op.num_samples if indices is None else len(indices))
        return self.op.matvec(v, indices)

    def matmat(self, V: Any, indices: np.ndarray | None = None) -> Any:
        self.check_budget(self.op.num_samples if indices is None else len(indices), V.shape[1])
        return self.op.matmat(V, indices)

    def estimate(self, end: str, value: float, vector: Any = None,
                 residual: float | None = None) -> None:
        """Publish the current estimate for end ``"max"`` or ``"min"``.

        ``vector`` may be a zero-argument callable, evaluated once when the solve ends.
        """
        self.lam[end] = float(value)
        if vector is not None:
            self.vec[end] = vector
        self.res[end] = None if residual is None else float(residual)

    def record(self) -> None:
        """Append a trace row with the current cost and estimates."""
        self.trace.append(TraceRow(
            step=len(self.trace), seconds=self.seconds(), data_passes=self.data_passes,
            hvp_calls=self.hvp_calls, lambda_max=self.lam["max"], lambda_min=self.lam["min"],
            residual_max=self.res["max"], residual_min=self.res["min"]))
        if self._bar is not None:
            self._bar.update()
            self._bar.set_postfix(passes=f"{self.data_passes:.3g}", max=self.lam["max"],
                                  min=self.lam["min"], refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class Solver(abc.ABC):
    """A stochastic or deterministic eigensolver for the extreme eigenvalues of an HVP operator.

    Subclasses set ``name`` and implement ``_solve(run, which, rng)``, which publishes estimates
    through ``run.estimate`` and returns ``(status, message)`` with status ``"converged"`` or
    ``"max_steps"``. The base class validates input, runs the solve, turns a spent budget or a
    non-finite HVP into an unconverged result that keeps the last estimates, and times it.
    Options are keyword arguments of the constructor, each stored as the instance attribute of
    the same name (:meth:`options` reads them back); ``tol`` is the relative tolerance of the
    solver's own stopping rule (default 1e-3).
    """

    name: ClassVar[str] = ""
    #: whether :meth:`solve` takes ``start=`` (solvers that draw one start vector and use
    #: ``Run.start_vector``)
    accepts_start: ClassVar[bool] = False

    def __init__(self, tol: float = 1e-3) -> None:
        if not 0 < tol < 1:
            raise ValueError(f"tol must be in (0, 1), got {tol}")
        self.tol = tol

    def options(self) -> dict[str, Any]:
        """The effective options of this instance, defaults included: for each keyword
        parameter of the constructor, the instance attribute of the same name (so
        ``type(s)(**s.options())`` configures the same solver)."""
        params = inspect.signature(type(self).__init__).parameters
        names = [name for name, p in list(params.items())[1:]
                 if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        missing = [name for name in names if not hasattr(self, name)]
        if missing:
            raise AttributeError(f"{type(self).__name__} does not store the constructor "
                                 f"option(s) {missing} as attributes of the same name")
        return {name: getattr(self, name) for name in names}

    def solve(self, op: HVPOperator, which: str = "both", seed: int = 0,
              budget: Budget | dict | None = None, progress: bool = False,
              start: Any = None) -> EigenResult:
        """Estimate lambda_max and/or lambda_min (largest / smallest algebraic) of ``op``.

        Args:
            op: an :class:`hessbench.backends.base.HVPOperator`.
            which: ``"both"``, ``"max"`` or ``"min"``.
            seed: seeds every random choice (start vectors, mini-batches).
            budget: a :class:`Budget` (or dict of its fields) limiting passes, seconds, HVPs.
            progress: show a progress bar (one tick per solver step; on the operator's
                main process only, when its products span several processes).
            start: a start vector of ``op.size`` entries (any array, nonzero, finite) instead
                of a random one, e.g. a previous solve's Ritz vectors plus noise (a warm
                start); only for solvers with ``accepts_start`` (``ValueError`` otherwise).
        """
        if which not in WHICH:
            raise ValueError(f"which must be one of {WHICH}, got {which!r}")
        if not isinstance(op, HVPOperator):
            raise TypeError(f"op must be an HVPOperator, not {type(op).__name__}")
        unit = None if start is None else self._check_start(op, start)
        run = Run(op, Budget.coerce(budget), progress, label=self.name)
        run.start = unit
        rng = np.random.default_rng(seed)
        try:
            status, message = self._solve(run, which, rng)
        except BudgetExhausted as stop:
            status, message = "budget", str(stop)
        except NonFiniteHVPError as err:
            status, message = "failed", f"stopped: {err}"
        finally:
            run.close()
        vectors = {e: v() if callable(v) else v for e, v in run.vec.items()}
        seconds = run.seconds()
        asked = ends(which)
        if status == "converged" and any(run.lam[e] is None for e in asked):
            status, message = "failed", "solver reported convergence without an estimate"
        return EigenResult(
            solver=self.name, which=which,
            lambda_max=run.lam["max"] if "max" in asked else None,
            lambda_min=run.lam["min"] if "min" in asked else None,
            converged=status == "converged", status=status, message=message,
            hvp_calls=run.hvp_calls, data_passes=run.data_passes, seconds=seconds,
            vector_max=vectors["max"] if "max" in asked else None,
            vector_min=vectors["min"] if "min" in asked else None,
            residual_max=run.res["max"] if "max" in asked else None,
            residual_min=run.res["min"] if "min" in asked else None,
            trace=run.trace)

    def _check_start(self, op: HVPOperator, start: Any) -> Any:
        """``start`` as the operator's array of unit norm; ``ValueError`` naming the problem."""
        if not self.accepts_start:
            raise ValueError(f"solver {self.name!r} takes no start vector; solvers that do: "
                             "those with accepts_start (lanczos, thick-restart-lanczos, "
                             "lanczos-mixed, power)")
        x = np.asarray(to_numpy(start), dtype=np.float64)
        if x.shape != (op.size,):
            raise ValueError(f"start must have shape ({op.size},), got {x.shape}")
        norm = float(np.linalg.norm(x))
        if not np.isfinite(norm) or norm == 0:
            raise ValueError("start must be finite and nonzero")
        return op.asarray(x / norm)

    @abc.abstractmethod
    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]: ...
