"""Solver registry: the built-ins below plus third-party solvers from the entry-point group
``hessbench.solvers`` (each entry point names a :class:`hessbench.solvers.base.Solver` subclass).
The mechanism is :class:`hessbench.registry.Registry`, shared with problems and backends."""

from __future__ import annotations

from typing import Any

from hessbench.registry import Registry, UnknownNameError
from hessbench.solvers.base import Solver

ENTRY_POINT_GROUP = "hessbench.solvers"

#: the built-in solvers, in listing order: name -> "module:Class" (as a plugin's entry point)
BUILTINS = {
    "lanczos": "hessbench.solvers.lanczos:Lanczos",
    "power": "hessbench.solvers.power:PowerIteration",
    "arpack": "hessbench.solvers.arpack:Arpack",
    "stochastic-power": "hessbench.solvers.stochastic_power:StochasticPower",
    "momentum-power": "hessbench.solvers.momentum_power:MomentumPower",
    "oja": "hessbench.solvers.oja:Oja",
    "vr-pca": "hessbench.solvers.vr_pca:VRPCA",
    "increasing-batch-power": "hessbench.solvers.increasing_batch:IncreasingBatchPower",
    "thick-restart-lanczos": "hessbench.solvers.thick_restart:ThickRestartLanczos",
    "lobpcg": "hessbench.solvers.lobpcg:LOBPCG",
    "chebyshev": "hessbench.solvers.chebyshev:ChebyshevFilter",
    "block-lanczos": "hessbench.solvers.block_lanczos:BlockLanczos",
    "multifidelity-lanczos": "hessbench.solvers.multifidelity:MultifidelityLanczos",
}


class UnknownSolverError(UnknownNameError):
    """No solver is registered under this name."""


def _check_solver(name: str, obj: Any) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Solver)):
        raise TypeError(f"solver {name!r} ({obj!r}) is not a subclass of "
                        "hessbench.solvers.Solver")


REGISTRY = Registry("solver", ENTRY_POINT_GROUP, BUILTINS, validate=_check_solver,
                    error=UnknownSolverError)


def available() -> list[str]:
    """Names of all registered solvers, built-ins first."""
    return REGISTRY.available()


def solver_class(name: str) -> type[Solver]:
    """The Solver subclass registered under ``name``."""
    return REGISTRY.load(name)


def get(name: str, **options: Any) -> Solver:
    """An instance of the solver ``name`` configured with ``options`` (e.g. ``tol=1e-3``)."""
    return solver_class(name)(**options)
