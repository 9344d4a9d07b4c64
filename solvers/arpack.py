"""Baseline: SciPy's ARPACK (implicitly restarted Lanczos, ``eigsh``) on full-data HVPs.

``which="both"`` asks ARPACK for one eigenvalue at each end of one Krylov space (``BE``, k=2);
``max``/``min`` ask for the largest/smallest algebraic one (``LA``/``SA``, k=1). ARPACK's own
test is |theta - lambda| <= tol * |theta| on its Ritz estimates. Every matvec is counted here
(ARPACK's restarts hide the true count). Vectors cross to float64 NumPy on each product: that
is inherent to ARPACK. ARPACK exposes no estimates mid-run, so trace rows carry none until the
last.

Reproducibility: ARPACK draws fresh random vectors during a run (when a restart asks for a new
start direction), not only the start vector v0. Where ``eigsh`` takes ``rng=`` (SciPy >= 1.17)
those draws come from a generator spawned from the run's seed, so the same seed gives the same
values *and* the same number of HVPs. Older SciPy draws them from ARPACK's own state: values
agree to ``tol`` but the cost can differ from run to run; the result message then says
"not reproducible".
"""

from __future__ import annotations

import inspect

import numpy as np
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import ends, to_numpy

#: whether this SciPy's ``eigsh`` takes ``rng=`` (its restarts are then seeded by the run)
SEEDED_RESTARTS = "rng" in inspect.signature(eigsh).parameters
_UNSEEDED = (" (not reproducible: this SciPy's eigsh has no rng=, so ARPACK's restarts draw "
             "from its own random state and the cost can differ between runs of one seed)")


class Arpack(Solver):
    """SciPy ARPACK eigsh baseline (implicitly restarted Lanczos). Options: ``tol``, ``ncv``."""

    name = "arpack"

    def __init__(self, tol: float = 1e-3, ncv: int | None = None) -> None:
        super().__init__(tol)
        self.ncv = ncv

    def _solve(self, run: Run, which: str, rng: np.random.Generator) -> tuple[str, str]:
        op = run.op
        k, mode = {"both": (2, "BE"), "max": (1, "LA"), "min": (1, "SA")}[which]
        if op.size <= k:
            raise ValueError(f"arpack needs more than {k} parameters, the operator has {op.size}")

        def matvec(x: np.ndarray) -> np.ndarray:
            y = run.matvec(op.asarray(np.ravel(x)))
            run.record()
            return to_numpy(y).astype(np.float64)

        lin = LinearOperator((op.size, op.size), matvec=matvec, dtype=np.float64)
        v0 = rng.standard_normal(op.size)
        seeded = {"rng": rng.spawn(1)[0]} if SEEDED_RESTARTS else {}
        try:
            values, vectors = eigsh(lin, k=k, which=mode, tol=self.tol, v0=v0, ncv=self.ncv,
                                    **seeded)
            status, message = "converged", "ARPACK converged"
        except ArpackNoConvergence as err:
            values, vectors = err.eigenvalues, err.eigenvectors
            status, message = "max_steps", f"ARPACK: {err}"
        if not SEEDED_RESTARTS:
            message += _UNSEEDED
        order = np.argsort(values)
        values, vectors = values[order], vectors[:, order]
        if len(values):
            for end, i in (("min", 0), ("max", -1)):
                if end in ends(which):
                    run.estimate(end, values[i], op.asarray(vectors[:, i]))
            run.record()
        return status, message
