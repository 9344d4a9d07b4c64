"""Solver registry: the built-ins below plus third-party solvers from the entry-point group
``hessbench.solvers`` (each entry point names a :class:`hessbench.solvers.base.Solver` subclass).
The mechanism is :class:`hessbench.registry.Registry`, shared with problems and backends."""

from __future__ import annotations

from typing import Any

from hessbench.registry import Registry, UnknownNameError, configure, option_defaults
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
    "lanczos-mixed": "hessbench.solvers.mixed_precision:MixedPrecisionLanczos",
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


def options(name: str) -> dict[str, Any]:
    """The options solver ``name`` takes, with their defaults (its constructor's keyword
    parameters), e.g. ``{"tol": 0.001, "max_steps": 500}``."""
    return option_defaults(solver_class(name))


def get(name: str, **options: Any) -> Solver:
    """An instance of the solver ``name`` configured with ``options`` (e.g. ``tol=1e-3``).

    Options are checked against the constructor's signature first
    (:func:`hessbench.registry.check_options`): an unknown option, a value of the wrong type or
    a value the solver refuses raises :class:`hessbench.registry.OptionError` (a ``TypeError``
    and a ``ValueError``) naming the solver and the option."""
    return configure(f"solver {name!r}", solver_class(name), options)
