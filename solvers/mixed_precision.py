"""Mixed-precision Lanczos: the Krylov iteration on reduced-precision products, the answer
certified with the operator's own products.

A reduced-precision product is H~(v) = H v + e(v) with ||e(v)|| about eps_p ||H v||
(bfloat16 autocast: eps_p ~ 1e-2 on the digits nets, 4e-2 on ResNet-20).
e is neither linear nor symmetric, so nothing that Lanczos computes from H~ alone bounds the
error of an eigenvalue of H. The solve therefore runs in three phases:

1. **Reduced.** Full-reorthogonalisation Lanczos (:func:`hessbench.solvers.kernels.lanczos_steps`)
   on ``op.reduced_precision(precision)`` from the seed's random vector, until its Ritz pairs
   pass the usual rule r~ <= tol |theta~| (r~ = beta |s_last|, a residual of H~ only), an
   invariant subspace, or ``max_steps``.
2. **Certify.** For each asked end, with x the unit reduced Ritz vector, one product y = H x of
   the operator itself (its dtype, e.g. float32), theta = x^T y (the Rayleigh quotient of H) and
   r = ||y - theta x||. Some eigenvalue of H lies within r of theta (H symmetric), so the solve
   reports ``converged`` if r <= tol |theta| for every asked end: the rule of
   :func:`hessbench.solvers.kernels.converged`, now on full-precision residuals.
3. **Refine** (``refine=True``, the default) the ends whose certificate failed:
   full-precision Lanczos from their reduced Ritz vector (x_min, x_max, or x_max + x_min when
   both failed), publishing those ends only, under the same rule with residuals of H itself,
   at most ``max_steps`` more steps; an end that passed keeps its certified pair. With
   ``refine=False`` the solve stops with status ``max_steps`` and a message quoting the
   failed certificate.

Measured (reports/cpu-precision, tol=1e-3): the certificate of lambda_max fails narrowly
(r/theta 2-5e-3 on the digits nets, 2e-2 on ResNet-20) and a few refining steps fix it; that
of lambda_min (|lambda_min| ~ 0.2-0.5% of lambda_max) fails by 60-230x, and refining takes
55% of the steps of a plain float32 ``lanczos`` solve, although the float32 Rayleigh quotient
of the bf16 Ritz vector is within 0.1-0.3% on the digits nets: r <= tol |theta| cannot see
that. On CPUs without bf16 instructions bf16 products are slower than float32 ones.

Every product, reduced or not, is charged to the operator's meter (the reduced operator
shares it), so data passes count all of them. The reduced operator is made and warmed up
(one product and the first-call strategy choice) at each solve, before its clock and meter
start, as the runner warms up the operator itself; the warm-up seconds are in the message.

An operator without reduced-precision products (the JAX and NumPy operators raise
``NotImplementedError``; a CPU torch operator refuses ``"tf32"``) is used as it is when
``fallback="full"`` (the default: phases 1-3 then run in full precision, as ``lanczos`` plus
one certifying product per end) and the message says so; ``fallback="error"`` raises
``ValueError`` instead. bfloat16 autocast leaves float64 arithmetic alone: reduce a float32
operator (its products are then certified in float32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from hessbench.backends.base import HVPOperator
from hessbench.solvers.base import WHICH, BudgetExhausted, Run, Solver
from hessbench.solvers.kernels import converged, dot, ends, lanczos_steps, norm
from hessbench.solvers.result import Budget, EigenResult

#: the reduced precisions an operator may offer (``HVPOperator.reduced_precision``)
PRECISIONS = ("bf16", "tf32")
FALLBACKS = ("full", "error")


@contextlib.contextmanager
def _products_of(run: Run, op: HVPOperator) -> Iterator[None]:
    """Inside, ``run.matvec`` multiplies by ``op`` (a reduced-precision copy sharing the run's
    meter, samples and process group, so budgets and costs are unchanged)."""
    own = run.op
    run.op = op
    try:
        yield
    finally:
        run.op = own


class MixedPrecisionLanczos(Solver):
    """Lanczos on reduced-precision (bf16, TF32) HVPs; Ritz pairs certified, and refined if
    need be, with the operator's own products (module docstring).

    Options: ``tol`` (r <= tol |theta| on full-precision residuals), ``max_steps`` (Krylov
    dimension cap of each Lanczos phase, default 500), ``precision`` (``"bf16"`` or
    ``"tf32"``), ``refine`` (continue in full precision after a failed certificate, default
    True), ``fallback`` (``"full"``: use an operator without that precision as it is;
    ``"error"``: raise).
    """

    name = "lanczos-mixed"
    accepts_start = True

    def __init__(self, tol: float = 1e-3, max_steps: int = 500, precision: str = "bf16",
                 refine: bool = True, fallback: str = "full") -> None:
        super().__init__(tol)
        if max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; "
                             f"got {precision!r}")
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {', '.join(FALLBACKS)}; got {fallback!r}")
        self.max_steps = max_steps
        self.precision = precision
        self.refine = refine
        self.fallback = fallback
        self._current: tuple[HVPOperator, str] | None = None

    # -- the reduced operator, prepared before the solve's clock starts ------------------------
    def reduced_operator(self, op: HVPOperator) -> tuple[HVPOperator, str]:
        """(the operator whose products drive the Krylov iteration, a note for the message):
        ``op.reduced_precision(precision)``, warmed up (one product on ``op.meter``), or
        ``op`` itself under ``fallback="full"`` when it has none."""
        try:
            reduced = op.reduced_precision(self.precision)
        except (NotImplementedError, ValueError) as err:
            if self.fallback == "error":
                raise ValueError(
                    f"lanczos-mixed: option precision={self.precision!r} is not available on "
                    f"{type(op).__name__} ({err}); use an operator that offers it (the torch "
                    "backend: bf16 on CPU or CUDA, tf32 on CUDA) or fallback='full' to run in "
                    "the operator's own precision") from err
            return op, (f"Krylov products in {_dtype(op)}, not {self.precision}: {err} "
                        "(fallback='full')")
        setup = reduced.warm_up()
        strategy = f", strategy {setup['strategy']}" if "strategy" in setup else ""
        return reduced, (f"Krylov products in {self.precision}{strategy} (warm-up "
                         f"{setup['seconds']:.3g} s, untimed)")

    def solve(self, op: HVPOperator, which: str = "both", seed: int = 0,
              budget: Budget | dict | None = None, progress: bool = False,
              start: Any = None) -> EigenResult:
        """As :meth:`Solver.solve`; the reduced operator is prepared first, untimed."""
        if isinstance(op, HVPOperator) and which in WHICH:
            self._current = self.reduced_operator(op)
        try:
            return super().solve(op, which=which, seed=seed, budget=budget, progress=progress,
                                 start=start)
        finally:
            self._current = None

    # -- the three phases ----------------------------------------------------------------------
    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        reduced, note = self._current or self.reduced_operator(run.op)
        try:
            return self._phases(run, ends(which), rng, reduced, note)
        except BudgetExhausted as stop:  # keep saying which products ran
            raise BudgetExhausted(f"{stop}; {note}") from None

    def _phases(self, run: Run, asked: tuple[str, ...], rng: np.random.Generator,
                reduced: HVPOperator, note: str) -> tuple[str, str]:
        full = _dtype(run.op)
        steps, state = 0, None
        with _products_of(run, reduced):
            for state in lanczos_steps(run, run.start_vector(rng), self.max_steps):
                steps = state.steps
                if state.breakdown or all(state.ritz[e].converged(self.tol) for e in asked):
                    break
        assert state is not None  # max_steps >= 1 and n >= 1
        vectors = {e: state.basis.combine(state.ritz[e].coeffs) for e in asked}
        certified = self._certify(run, vectors)
        failed = {e: r / abs(t) if t else float("inf") for e, (t, r) in certified.items()
                  if not converged(t, r, self.tol)}
        head = f"{note}; {steps} reduced steps"
        if not failed:
            ratios = ", ".join(f"{e} {r / abs(t):.2g}" if t else f"{e} 0"
                               for e, (t, r) in certified.items())
            return "converged", (f"{head}; Ritz pairs certified with {full} products: "
                                 f"r/|theta| {ratios} <= tol={self.tol}")
        bad = ", ".join(f"{e} r/|theta|={v:.2g}" for e, v in failed.items())
        if not self.refine:
            return "max_steps", (f"{head}; certificate with {full} products failed ({bad} > "
                                 f"tol={self.tol}); not refined (refine=False)")
        return self._refine(run, {e: vectors[e] for e in failed}, f"{head}; certificate "
                            f"with {full} products failed ({bad}); {full} Lanczos from the "
                            f"Ritz vector(s) of {' and '.join(failed)}")

    def _refine(self, run: Run, vectors: dict[str, Any], head: str) -> tuple[str, str]:
        """Full-precision Lanczos from the sum of the (unit) ``vectors`` of the ends that failed
        their certificate, publishing those ends only (the others keep their certificates),
        until they pass r <= tol |theta| (residuals of H itself) or ``max_steps``."""
        failed = tuple(vectors)
        start = None
        for v in vectors.values():
            start = v / norm(v) if start is None else start + v / norm(v)
        for state in lanczos_steps(run, start, self.max_steps, publish=failed):
            if state.breakdown:
                return "converged", (f"{head}: invariant subspace after {state.steps} steps, "
                                     "Ritz values exact")
            if all(state.ritz[e].converged(self.tol) for e in failed):
                return "converged", (f"{head}: residual below tol={self.tol} x |Ritz value| "
                                     f"after {state.steps} steps")
        return "max_steps", (f"{head}: no convergence in max_steps="
                             f"{min(self.max_steps, run.op.size)}")

    @staticmethod
    def _certify(run: Run, vectors: dict[str, Any]) -> dict[str, tuple[float, float]]:
        """For each end's vector x (normalised): y = H x by the operator itself, theta = x^T y,
        r = ||y - theta x||, published as that end's estimate (a trace row after each product).
        Returns {end: (theta, r)}."""
        out = {}
        for end, x in vectors.items():
            x = x / norm(x)
            y = run.matvec(x)
            theta = dot(x, y)
            r = norm(y - theta * x)
            run.estimate(end, theta, x, residual=r)
            run.record()
            out[end] = (theta, r)
        return out


def _dtype(op: HVPOperator) -> str:
    return str(getattr(op, "dtype", "full precision")).replace("torch.", "")
