"""Baseline: SciPy's ARPACK (implicitly restarted Lanczos, ``eigsh``) on full-data HVPs.

``which="both"`` asks ARPACK for one eigenvalue at each end of one Krylov space (``BE``, k=2);
``max``/``min`` ask for the largest/smallest algebraic one (``LA``/``SA``, k=1). ARPACK's own
test is |theta - lambda| <= tol * |theta| on its Ritz estimates. Every matvec is counted here
(ARPACK's restarts hide the true count). Vectors cross to float64 NumPy on each product: that
is inherent to ARPACK. ARPACK exposes no estimates mid-run, so trace rows carry none until the
last.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from hessbench.solvers.base import Run, Solver
from hessbench.solvers.kernels import ends, to_numpy


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
        try:
            values, vectors = eigsh(lin, k=k, which=mode, tol=self.tol, v0=v0, ncv=self.ncv)
            status, message = "converged", "ARPACK converged"
        except ArpackNoConvergence as err:
            values, vectors = err.eigenvalues, err.eigenvectors
            status, message = "max_steps", f"ARPACK: {err}"
        order = np.argsort(values)
        values, vectors = values[order], vectors[:, order]
        if len(values):
            for end, i in (("min", 0), ("max", -1)):
                if end in ends(which):
                    run.estimate(end, values[i], op.asarray(vectors[:, i]))
            run.record()
        return status, message
