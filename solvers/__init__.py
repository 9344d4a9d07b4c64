"""Backend-agnostic eigensolvers for the extreme eigenvalues of Hessian operators.

Solvers see flat vectors of whatever array type the operator uses (torch, JAX, NumPy) through
the Python array API; small dense work (tridiagonal eigenproblems) is float64 NumPy/SciPy.

    from hessbench import solvers
    solver = solvers.get("lanczos", tol=1e-3)
    result = solver.solve(op, which="both", seed=0, budget=solvers.Budget(max_passes=50))
"""

from hessbench.solvers.base import Solver
from hessbench.solvers.registry import (UnknownSolverError, available, get, options,
                                        solver_class)
from hessbench.solvers.result import Budget, EigenResult, TraceRow

__all__ = ["Budget", "EigenResult", "Solver", "TraceRow", "UnknownSolverError", "available",
           "get", "options", "solver_class"]
