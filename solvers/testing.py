"""Conformance kit for solvers: ``check_solver(MySolver)``, in the manner of scikit-learn's
``check_estimator``.

Every check runs the solver class on small dense problems with exactly known spectra (n <= 100,
a :class:`hessbench.backends.dense.DenseOperator` standing for ``NUM_SAMPLES`` = 64 samples that all have
the same Hessian, so mini-batch products are exact and stochastic solvers can converge too) and
raises ``AssertionError`` naming the solver, the check and what was wrong. The whole kit takes a
few seconds for a Krylov solver.

Usage::

    from hessbench.solvers.testing import check_solver
    check_solver(MySolver)                  # all checks; one AssertionError lists every failure
    check_solver(MySolver, max_steps=5000)  # further constructor options (the kit sets ``tol``)

or one pytest test per check::

    import pytest
    from hessbench.solvers.testing import checks

    @pytest.mark.parametrize("name, check", list(checks(MySolver)))
    def test_conformance(name, check):
        check()

The solver is built as ``solver_class(tol=..., **options)``. Checks (``CHECKS`` maps each name
to its function ``check(solver_class, **options)``):

- ``check_bad_input``: ``tol`` of 0 or 1.5 -> ``ValueError``; ``which="largest"`` ->
  ``ValueError`` mentioning "which"; a plain matrix instead of an operator -> ``TypeError``.
- ``check_result_contract``: for ``which`` in "both", "max", "min" on a spectrum with
  |lambda_min| > lambda_max: an :class:`EigenResult` with typed fields (floats or None), the ends
  not asked for None, the asked ends set, a known status with ``converged == (status ==
  "converged")``, ``hvp_calls`` / ``data_passes`` equal to what the operator's meter charged,
  ``seconds >= 0``; a converged answer must be right (see below).
- ``check_known_spectra``: ``which="both"`` on the three ``SPECTRA`` under ``max_hvps=3000``
  with ``tol=1e-4``: a converged answer must be within ``RTOL_CONVERGED`` (50 tol + 1e-6) of the
  truth, relative to max(|lambda|, 1e-3 max|lambda|); returned vectors must be unit vectors whose
  Rayleigh quotient x^T A x matches the returned value just as closely; status "failed" is
  not allowed, and the solver must converge on at least one of the problems (otherwise the
  accuracy checks would be vacuous; the spectra have wide gaps at both ends, so faithful
  methods need tens to a few hundred HVPs).
- ``check_trace``: a list of :class:`TraceRow` (non-empty when HVPs were made) with increasing
  ``step``, non-decreasing ``seconds``, ``data_passes``, ``hvp_calls``, estimates floats or None;
  the last row is recorded after the last HVP (its cost and estimates equal the result's).
- ``check_budget``: ``{"max_hvps": 5}`` and ``{"max_passes": 3}`` stop the solve with status
  "budget" within the limit; ``Budget(max_seconds=...)`` is honoured.
- ``check_seeding``: the same seed gives identical lambda_max, lambda_min and cost (hvp_calls
  and data_passes), from the same instance twice and from a new instance, on ``RESTARTING``
  (lambda_min at the edge of a dense bulk, where restarted methods such as ARPACK restart and
  may draw new random vectors mid-run: those draws must come from the seed too).
- ``check_non_finite_hvp``: an operator that returns NaN after k good products gives status
  "failed" with "NaN" in the message; no exception escapes.
- ``check_array_types``: on a torch operator vectors come back as torch tensors and the values
  match the NumPy run.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

from hessbench.backends.base import HVPOperator
from hessbench.backends.dense import DenseOperator
from hessbench.solvers.base import Solver
from hessbench.solvers.kernels import ends
from hessbench.solvers.result import Budget, EigenResult, TraceRow

__all__ = ["CHECKS", "GENEROUS_BUDGET", "KnownSpectrum", "NUM_SAMPLES", "RESTARTING",
           "RTOL_CONVERGED", "SPECTRA", "STATUSES", "TOL", "check_array_types", "check_bad_input",
           "check_budget", "check_known_spectra", "check_non_finite_hvp", "check_result_contract",
           "check_seeding", "check_solver", "check_trace", "checks"]

TOL = 1e-4
"""The ``tol`` every check passes to the constructor (except where it must not converge)."""
RTOL_CONVERGED = 50 * TOL + 1e-6
"""Largest relative error allowed for an answer the solver calls converged."""
NUM_SAMPLES = 64
"""Samples N of every test operator (all with the same Hessian: mini-batch HVPs are exact)."""
GENEROUS_BUDGET = Budget(max_hvps=3000)
"""The budget of runs that should finish on their own."""
STATUSES = ("converged", "budget", "max_steps", "failed")
_TIGHT_TOL = 1e-8  # for runs that must not converge before a budget stops them
_SEED_MATRIX = 20240611


@dataclass(frozen=True)
class KnownSpectrum:
    """A symmetric test matrix Q diag(eigenvalues) Q^T with a fixed random orthogonal Q."""

    name: str
    eigenvalues: tuple[float, ...]

    @property
    def lambda_max(self) -> float:
        return max(self.eigenvalues)

    @property
    def lambda_min(self) -> float:
        return min(self.eigenvalues)

    @property
    def size(self) -> int:
        return len(self.eigenvalues)

    def truth(self, end: str) -> float:
        return self.lambda_max if end == "max" else self.lambda_min

    def scale(self, end: str) -> float:
        """What errors at ``end`` are relative to: max(|lambda|, 1e-3 * max |eigenvalue|)."""
        radius = max(abs(self.lambda_max), abs(self.lambda_min))
        return max(abs(self.truth(end)), 1e-3 * radius)

    def matrix(self) -> np.ndarray:
        """The float64 NumPy matrix (built once, shared, read-only)."""
        return _matrix(self.eigenvalues)

    def operator(self, array: str = "numpy") -> DenseOperator:
        """A fresh operator (new cost meter) on NumPy or torch (``array="torch"``) arrays."""
        A = self.matrix()
        if array == "torch":
            import torch

            A = torch.tensor(A)
        return DenseOperator(A, num_samples=NUM_SAMPLES)


@functools.lru_cache(maxsize=None)
def _matrix(eigenvalues: tuple[float, ...]) -> np.ndarray:
    lam = np.asarray(eigenvalues, dtype=np.float64)
    rng = np.random.default_rng(_SEED_MATRIX)
    Q, _ = np.linalg.qr(rng.standard_normal((len(lam), len(lam))))
    A = (Q * lam) @ Q.T
    A = (A + A.T) / 2
    A.flags.writeable = False  # shared by all checks
    return A


def _spectrum(name: str, *parts: Any) -> KnownSpectrum:
    lam = np.sort(np.concatenate([np.atleast_1d(np.asarray(p, dtype=np.float64))
                                  for p in parts]))[::-1]
    return KnownSpectrum(name, tuple(float(x) for x in lam))


SPECTRA: tuple[KnownSpectrum, ...] = (
    # lambda_min tiny next to lambda_max; relative gaps 0.4 at the top, 0.06 at the bottom
    _spectrum("indefinite (lambda_min=-0.1 near 0, lambda_max=10)",
              [10.0, 6.0, 3.0], np.linspace(0.5, 1.0, 96), [-0.1]),
    # relative gaps 0.22 at the top, 0.11 at the bottom
    _spectrum("positive definite (lambda_max=5, lambda_min=0.5)",
              [5.0], np.linspace(1.0, 4.0, 78), [0.5]),
    # a largest-magnitude answer (-6) is not lambda_max; relative gaps 0.125 and 0.625
    _spectrum("|lambda_min| > lambda_max (lambda_max=2, lambda_min=-6)",
              [2.0], np.linspace(-1.0, 1.0, 58), [-6.0]),
)
"""The problems with known spectra: indefinite with lambda_min near 0, positive definite, and
|lambda_min| > lambda_max."""
INDEFINITE, POSITIVE, NEGATIVE_DOMINANT = SPECTRA
RESTARTING = _spectrum("lambda_min at the edge of a dense bulk (lambda_max=100, lambda_min=-0.5)",
                       [100.0, 50.0, 20.0, 10.0], np.linspace(-0.5, 2.0, 56))
"""The seeding check's problem: ARPACK (default ncv=20) restarts on it and draws new random
vectors mid-run; without a seeded generator its cost differed between runs (54 or 69 HVPs)."""


# -- plumbing ---------------------------------------------------------------------------------

class _Failure(Exception):
    """A check failed; the message says what was wrong."""


def _label(solver_class: type) -> str:
    name = getattr(solver_class, "name", "")
    return f"{name!r} ({solver_class.__module__}.{solver_class.__qualname__})"


def _validate(solver_class: Any, options: dict[str, Any]) -> None:
    if not (isinstance(solver_class, type) and issubclass(solver_class, Solver)):
        what = "an instance" if isinstance(solver_class, Solver) else repr(solver_class)
        raise TypeError(f"check_solver takes a subclass of solvers.Solver (the class, not an "
                        f"instance), got {what}")
    if "tol" in options:
        raise TypeError("the conformance checks set tol themselves; do not pass it as an option")


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x, dtype=np.float64)


def _is_float(x: Any) -> bool:
    return isinstance(x, Real) and not isinstance(x, (bool, Integral))


class _Context:
    """What one check needs: the solver class and options, and helpers that raise _Failure."""

    def __init__(self, solver_class: type[Solver], options: dict[str, Any]) -> None:
        self.cls, self.options = solver_class, options

    def require(self, ok: Any, what: str | Callable[[], str]) -> None:
        if not ok:
            raise _Failure(what() if callable(what) else what)

    def make(self, tol: float = TOL) -> Solver:
        try:
            return self.cls(tol=tol, **self.options)
        except Exception as err:
            raise _Failure(f"{self.cls.__name__}(tol={tol}, **{self.options!r}) raised "
                           f"{type(err).__name__}: {err}") from err

    def solve(self, solver: Solver, op: HVPOperator, where: str, **kwargs: Any) -> EigenResult:
        """``solver.solve(op, **kwargs)``; fails unless it returns an EigenResult."""
        try:
            result = solver.solve(op, **kwargs)
        except Exception as err:
            raise _Failure(f"{where}: solve raised {type(err).__name__}: {err}") from err
        self.require(isinstance(result, EigenResult),
                     lambda: f"{where}: solve returned {type(result).__name__}, not EigenResult")
        return result


def _check(body: Callable[[_Context], None]) -> Callable[..., None]:
    """Turn ``body(ctx)`` into the public ``check_x(solver_class, **options)``."""

    @functools.wraps(body)
    def check(solver_class: type[Solver], **options: Any) -> None:
        _validate(solver_class, options)
        try:
            body(_Context(solver_class, options))
        except _Failure as failure:
            raise AssertionError(
                f"solver {_label(solver_class)} failed {body.__name__}: {failure}") from None
        except Exception as err:  # the solver broke the kit's own bookkeeping
            raise AssertionError(
                f"solver {_label(solver_class)} failed {body.__name__}: unexpected "
                f"{type(err).__name__}: {err}") from err

    check.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("solver_class", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("options", inspect.Parameter.VAR_KEYWORD)])
    return check


def _where(spectrum: KnownSpectrum, which: str, seed: int, extra: str = "") -> str:
    return f"on {spectrum.name} with which={which!r}, seed={seed}{extra}"


def _require_accurate(c: _Context, result: EigenResult, spectrum: KnownSpectrum,
                      where: str) -> None:
    """A converged result's asked ends are within RTOL_CONVERGED; vectors are unit Ritz vectors
    with matching Rayleigh quotients."""
    A = spectrum.matrix()
    for end in ends(result.which):
        value = getattr(result, f"lambda_{end}")
        vector = getattr(result, f"vector_{end}")
        if vector is not None:
            x = _to_numpy(vector)
            c.require(x.shape == (spectrum.size,),
                      f"{where}: vector_{end} has shape {x.shape}, expected ({spectrum.size},)")
            nrm = float(np.linalg.norm(x))
            c.require(abs(nrm - 1) <= 1e-6,
                      f"{where}: vector_{end} is not a unit vector (norm {nrm:.9g})")
        if not result.converged:
            continue
        truth, scale = spectrum.truth(end), spectrum.scale(end)
        err = abs(value - truth) / scale
        c.require(err <= RTOL_CONVERGED, lambda: (
            f"{where}: claims converged (status {result.status!r}) but lambda_{end}={value!r} "
            f"while the true lambda_{end} is {truth:g} (relative error {err:.2e} > "
            f"{RTOL_CONVERGED:.2e} = 50*tol + 1e-6; lambda_max/lambda_min are the largest/"
            f"smallest ALGEBRAIC eigenvalues)"))
        if vector is not None:
            rq = float(x @ (A @ x))
            c.require(abs(rq - value) / scale <= RTOL_CONVERGED, lambda: (
                f"{where}: the Rayleigh quotient x^T A x = {rq!r} of vector_{end} does not "
                f"match lambda_{end}={value!r}"))


def _require_contract(c: _Context, result: EigenResult, solver: Solver, which: str,
                      meter_delta: tuple[int, int], num_samples: int, where: str) -> None:
    c.require(isinstance(solver.name, str) and solver.name,
              f"the class attribute name is {solver.name!r}: set it to the registered name")
    c.require(result.solver == solver.name,
              f"{where}: result.solver is {result.solver!r}, expected {solver.name!r}")
    c.require(result.which == which, f"{where}: result.which is {result.which!r}")
    c.require(result.status in STATUSES,
              f"{where}: status {result.status!r} is not one of {STATUSES}")
    c.require(isinstance(result.converged, bool)
              and result.converged == (result.status == "converged"),
              f"{where}: converged={result.converged!r} with status {result.status!r}")
    c.require(isinstance(result.message, str), f"{where}: message is not a str")
    for end in ("max", "min"):
        asked = end in ends(which)
        for field in (f"lambda_{end}", f"residual_{end}"):
            value = getattr(result, field)
            c.require(value is None or _is_float(value),
                      f"{where}: {field} is {type(value).__name__}, expected float or None")
            if not asked:
                c.require(value is None, f"{where}: {field}={value!r} for an end not asked for")
        value = getattr(result, f"lambda_{end}")
        if asked:
            c.require(value is not None, f"{where}: lambda_{end} is None although asked for "
                      f"(status {result.status!r}: {result.message})")
            c.require(math.isfinite(value), f"{where}: lambda_{end}={value!r} is not finite")
        residual = getattr(result, f"residual_{end}")
        c.require(residual is None or residual >= 0,
                  f"{where}: residual_{end}={residual!r} is negative")
        c.require(asked or getattr(result, f"vector_{end}") is None,
                  f"{where}: vector_{end} is set for an end not asked for")
    c.require(result.status != "failed",
              f"{where}: status 'failed' on a well-posed problem: {result.message}")
    samples, calls = meter_delta
    c.require(isinstance(result.hvp_calls, Integral) and not isinstance(result.hvp_calls, bool),
              f"{where}: hvp_calls is {type(result.hvp_calls).__name__}, expected int")
    c.require(result.hvp_calls == calls, f"{where}: hvp_calls={result.hvp_calls} but the "
              f"operator's meter counted {calls} HVPs")
    c.require(_is_float(result.data_passes)
              and math.isclose(result.data_passes, samples / num_samples, rel_tol=1e-12,
                               abs_tol=1e-12),
              f"{where}: data_passes={result.data_passes!r} but the operator's meter counted "
              f"{samples} samples = {samples / num_samples:g} passes")
    c.require(_is_float(result.seconds) and math.isfinite(result.seconds)
              and result.seconds >= 0, f"{where}: seconds={result.seconds!r}")
    c.require(isinstance(result.trace, list), f"{where}: trace is not a list")


def _require_trace(c: _Context, result: EigenResult, where: str) -> None:
    trace = result.trace
    c.require(isinstance(trace, list), f"{where}: trace is {type(trace).__name__}, not a list")
    if result.hvp_calls > 0:
        c.require(trace, f"{where}: the trace is empty after {result.hvp_calls} HVPs: call "
                  "run.record() after every step")
    previous = None
    for i, row in enumerate(trace):
        c.require(isinstance(row, TraceRow), f"{where}: trace[{i}] is {type(row).__name__}, "
                  "not TraceRow")
        for field in ("lambda_max", "lambda_min", "residual_max", "residual_min"):
            value = getattr(row, field)
            c.require(value is None or _is_float(value), f"{where}: trace[{i}].{field} is "
                      f"{type(value).__name__}, expected float or None")
        c.require(_is_float(row.seconds) and row.seconds >= 0,
                  f"{where}: trace[{i}].seconds={row.seconds!r}")
        if previous is not None:
            c.require(row.step > previous.step, f"{where}: trace steps not increasing "
                      f"({previous.step} then {row.step} at row {i})")
            for field in ("seconds", "data_passes", "hvp_calls"):
                a, b = getattr(previous, field), getattr(row, field)
                c.require(b >= a, f"{where}: trace {field} decreases from {a!r} to {b!r} at "
                          f"row {i}")
        previous = row
    if not trace:
        return
    last = trace[-1]
    c.require(last.hvp_calls == result.hvp_calls and last.data_passes == result.data_passes,
              f"{where}: the last trace row has hvp_calls={last.hvp_calls}, data_passes="
              f"{last.data_passes!r} but the result has hvp_calls={result.hvp_calls}, "
              f"data_passes={result.data_passes!r}: call run.record() after the last HVP")
    c.require(last.seconds <= result.seconds, f"{where}: the last trace row has seconds="
              f"{last.seconds!r} > result.seconds={result.seconds!r}")
    for end in ends(result.which):
        value, in_row = getattr(result, f"lambda_{end}"), getattr(last, f"lambda_{end}")
        c.require(in_row == value, f"{where}: the last trace row has lambda_{end}={in_row!r} "
                  f"but the result has {value!r}: call run.record() after the last "
                  "run.estimate()")


def _metered_solve(c: _Context, solver: Solver, spectrum: KnownSpectrum, which: str, seed: int,
                   budget: Any = None, array: str = "numpy", extra: str = ""
                   ) -> tuple[EigenResult, tuple[int, int], str]:
    op = spectrum.operator(array)
    where = _where(spectrum, which, seed, extra)
    s0, h0 = op.meter.snapshot()
    result = c.solve(solver, op, where, which=which, seed=seed,
                     budget=GENEROUS_BUDGET if budget is None else budget)
    s1, h1 = op.meter.snapshot()
    return result, (s1 - s0, h1 - h0), where


# -- the checks -------------------------------------------------------------------------------

@_check
def check_bad_input(c: _Context) -> None:
    """Invalid ``tol``, ``which`` and operator arguments raise ValueError / TypeError."""
    for tol in (0, 1.5):
        try:
            c.cls(tol=tol, **c.options)
        except ValueError:
            pass
        except Exception as err:
            raise _Failure(f"tol={tol} raised {type(err).__name__} ({err}), expected "
                           "ValueError") from err
        else:
            raise _Failure(f"tol={tol} was accepted; tol must lie in (0, 1) (ValueError)")
    solver = c.make()
    op = INDEFINITE.operator()
    try:
        solver.solve(op, which="largest")
    except ValueError as err:
        c.require("which" in str(err), f"which='largest' raised ValueError without mentioning "
                  f"'which': {err}")
    except Exception as err:
        raise _Failure(f"which='largest' raised {type(err).__name__} ({err}), expected "
                       "ValueError") from err
    else:
        raise _Failure("which='largest' was accepted (expected ValueError)")
    try:
        solver.solve(INDEFINITE.matrix())
    except TypeError:
        pass
    except Exception as err:
        raise _Failure(f"a NumPy matrix as operator raised {type(err).__name__} ({err}), "
                       "expected TypeError") from err
    else:
        raise _Failure("a NumPy matrix was accepted as operator (expected TypeError)")


@_check
def check_result_contract(c: _Context) -> None:
    """EigenResult fields, ``which`` semantics, costs matching the meter, statuses."""
    for which in ("both", "max", "min"):
        solver = c.make()
        result, delta, where = _metered_solve(c, solver, NEGATIVE_DOMINANT, which, seed=0)
        _require_contract(c, result, solver, which, delta, NUM_SAMPLES, where)
        _require_accurate(c, result, NEGATIVE_DOMINANT, where)


@_check
def check_known_spectra(c: _Context) -> None:
    """Converged answers on known spectra are right (algebraic ends, Rayleigh quotients)."""
    converged, statuses = [], []
    for seed, spectrum in enumerate(SPECTRA):
        solver = c.make()
        result, delta, where = _metered_solve(c, solver, spectrum, "both", seed)
        _require_contract(c, result, solver, "both", delta, NUM_SAMPLES, where)
        _require_accurate(c, result, spectrum, where)
        converged.append(result.converged)
        statuses.append(f"{spectrum.name}: {result.status} ({result.message})")
    c.require(any(converged), lambda: "converged on none of the known spectra within "
              f"{GENEROUS_BUDGET}, tol={TOL}: " + "; ".join(statuses))


@_check
def check_trace(c: _Context) -> None:
    """Trace rows are ordered, cumulative, and end with the result's cost and estimates."""
    runs = [(INDEFINITE, "both", None, ""), (NEGATIVE_DOMINANT, "min", None, ""),
            (POSITIVE, "max", None, ""), (INDEFINITE, "both", {"max_hvps": 7},
                                          ", budget max_hvps=7")]
    for spectrum, which, budget, extra in runs:
        solver = c.make(TOL if budget is None else _TIGHT_TOL)
        result, _, where = _metered_solve(c, solver, spectrum, which, 0, budget, extra=extra)
        c.require(budget is not None or result.trace,
                  f"{where}: the trace is empty: call run.record() after every step")
        _require_trace(c, result, where)


@_check
def check_budget(c: _Context) -> None:
    """Budgets stop the solve, unconverged, within their limits."""
    for budget, key in (({"max_hvps": 5}, "max_hvps"), ({"max_passes": 3}, "max_passes"),
                        (Budget(max_seconds=60.0, max_hvps=5), "max_hvps"),
                        (Budget(max_seconds=1e-6), "max_seconds")):
        solver = c.make(_TIGHT_TOL)
        result, delta, where = _metered_solve(c, solver, INDEFINITE, "both", 0, budget,
                                              extra=f", tol={_TIGHT_TOL}, budget {budget}")
        c.require(result.status == "budget" and not result.converged,
                  f"{where}: status {result.status!r}, converged={result.converged}, expected "
                  f"'budget' and not converged ({result.message})")
        c.require(isinstance(result.message, str) and result.message,
                  f"{where}: status 'budget' with an empty message")
        c.require(result.hvp_calls == delta[1],
                  f"{where}: hvp_calls={result.hvp_calls}, the meter counted {delta[1]}")
        if key == "max_hvps":
            c.require(result.hvp_calls <= 5, f"{where}: {result.hvp_calls} HVPs > 5")
        if key == "max_passes":
            c.require(result.data_passes <= 3 + 1e-9,
                      f"{where}: {result.data_passes!r} data passes > 3")


@_check
def check_seeding(c: _Context) -> None:
    """The same seed gives the same answer and cost (same instance twice, and a new one)."""
    where = _where(RESTARTING, "both", 7)
    solver = c.make()
    runs = [c.solve(solver, RESTARTING.operator(), where, which="both", seed=7,
                    budget=GENEROUS_BUDGET) for _ in range(2)]
    runs.append(c.solve(c.make(), RESTARTING.operator(), f"{where}, new instance",
                        which="both", seed=7, budget=GENEROUS_BUDGET))
    got = [(r.lambda_max, r.lambda_min, r.hvp_calls, r.data_passes) for r in runs]
    hint = ("draw every random choice, including those of a library the solver calls (e.g. "
            "eigsh(rng=...)), from the rng passed to _solve")
    c.require(got[0] == got[1], f"{where}: the same instance gave (lambda_max, lambda_min, "
              f"hvp_calls, data_passes) = {got[0]} then {got[1]}: {hint}")
    c.require(got[0] == got[2], f"{where}: a new instance gave {got[2]} instead of {got[0]}: "
              f"{hint}")


class _NaNAfter(DenseOperator):
    """Exact products for the first ``good`` vectors, then NaN."""

    def __init__(self, matrix: Any, good: int) -> None:
        super().__init__(matrix, num_samples=NUM_SAMPLES)
        self.left = good

    def _spoil(self, out: Any, vectors: int) -> Any:
        self.left -= vectors
        return out if self.left >= 0 else out * float("nan")

    def _matvec(self, v: Any, indices: np.ndarray | None) -> Any:
        return self._spoil(super()._matvec(v, indices), 1)

    def _matmat(self, V: Any, indices: np.ndarray | None) -> Any:
        return self._spoil(super()._matmat(V, indices), V.shape[1])


@_check
def check_non_finite_hvp(c: _Context) -> None:
    """A NaN HVP ends the solve with status "failed" (message mentions NaN), no exception."""
    for good in (5, 0):
        op = _NaNAfter(INDEFINITE.matrix(), good)
        where = _where(INDEFINITE, "both", 0, f", NaN after {good} good HVPs")
        result = c.solve(c.make(_TIGHT_TOL), op, where, which="both", seed=0,
                         budget=GENEROUS_BUDGET)
        c.require(result.status == "failed" and not result.converged,
                  f"{where}: status {result.status!r}, converged={result.converged}, expected "
                  f"'failed' ({result.message})")
        c.require("NaN" in result.message,
                  f"{where}: the message does not mention NaN: {result.message!r}")


@_check
def check_array_types(c: _Context) -> None:
    """Vectors come back in the operator's array type; torch and NumPy runs agree."""
    import torch

    spectrum = INDEFINITE
    results = {}
    for array, kind in (("numpy", np.ndarray), ("torch", torch.Tensor)):
        solver = c.make()
        result, delta, where = _metered_solve(c, solver, spectrum, "both", 0, array=array,
                                              extra=f", {array} operator")
        _require_contract(c, result, solver, "both", delta, NUM_SAMPLES, where)
        for end in ("max", "min"):
            vector = getattr(result, f"vector_{end}")
            c.require(vector is None or isinstance(vector, kind), lambda: (
                f"{where}: vector_{end} is {type(vector).__module__}.{type(vector).__name__}, "
                f"expected {kind.__module__}.{kind.__name__} like the operator"))
        _require_accurate(c, result, spectrum, where)
        results[array] = result
    a, b = results["numpy"], results["torch"]
    if a.converged and b.converged:
        for end in ("max", "min"):
            x, y = getattr(a, f"lambda_{end}"), getattr(b, f"lambda_{end}")
            c.require(abs(x - y) <= RTOL_CONVERGED * spectrum.scale(end),
                      f"{_where(spectrum, 'both', 0)}: lambda_{end} is {x!r} on NumPy but "
                      f"{y!r} on torch")


CHECKS: dict[str, Callable[..., None]] = {check.__name__: check for check in (
    check_bad_input, check_result_contract, check_known_spectra, check_trace, check_budget,
    check_seeding, check_non_finite_hvp, check_array_types)}
"""Every check by name; each is called as ``check(solver_class, **options)``."""


def checks(solver_class: type[Solver], **options: Any
           ) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yield ``(name, check)`` for every conformance check; ``check()`` runs it on
    ``solver_class(tol=..., **options)`` and raises AssertionError if it fails."""
    _validate(solver_class, options)
    for name, check in CHECKS.items():
        yield name, functools.partial(check, solver_class, **options)


def check_solver(solver_class: type[Solver], **options: Any) -> None:
    """Run every conformance check on ``solver_class`` (built as ``solver_class(tol=...,
    **options)``); raise one AssertionError listing every failed check, or return None.

    See the module docstring for what each check asserts.
    """
    failures = []
    for _, check in checks(solver_class, **options):
        try:
            check()
        except AssertionError as err:
            failures.append(str(err))
    if failures:
        raise AssertionError(f"solver {_label(solver_class)} failed {len(failures)} of "
                             f"{len(CHECKS)} conformance checks:\n- " + "\n- ".join(failures))
