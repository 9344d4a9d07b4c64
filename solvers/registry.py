"""Solver registry: built-ins plus third-party solvers from the entry-point group
``hessbench.solvers`` (each entry point names a :class:`hessbench.solvers.base.Solver` subclass)."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from hessbench.solvers.base import Solver

ENTRY_POINT_GROUP = "hessbench.solvers"

_BUILTIN = {
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


class UnknownSolverError(KeyError):
    """No solver is registered under this name."""

    def __str__(self) -> str:
        return str(self.args[0])


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Names of all registered solvers, built-ins first."""
    return list(_BUILTIN) + sorted(set(_plugins()) - set(_BUILTIN))


def solver_class(name: str) -> type[Solver]:
    """The Solver subclass registered under ``name``."""
    if name in _BUILTIN:
        module, attr = _BUILTIN[name].split(":")
        cls = getattr(importlib.import_module(module), attr)
    else:
        plugin = _plugins().get(name)
        if plugin is None:
            raise UnknownSolverError(
                f"unknown solver {name!r}; available: {', '.join(available())}")
        cls = plugin.load()
    if not (isinstance(cls, type) and issubclass(cls, Solver)):
        raise TypeError(f"solver {name!r} ({cls!r}) is not a subclass of solvers.Solver")
    return cls


def get(name: str, **options: Any) -> Solver:
    """An instance of the solver ``name`` configured with ``options`` (e.g. ``tol=1e-3``)."""
    return solver_class(name)(**options)
