"""HVP operators: the Hessian of a mean loss over N samples as a linear operator on flat vectors.

Every backend subclasses :class:`hessbench.backends.base.HVPOperator`, which validates shapes,
checks that each HVP is finite and charges every HVP to a
:class:`hessbench.backends.base.CostMeter`.
Backends import lazily: ``import hessbench.backends.torch`` or ``import hessbench.backends.jax``.

The backends a problem builds its operator on (``Problem.operator(backend)``) are registered
like solvers and problems (:class:`hessbench.registry.Registry`): built-ins below, plugins from
the entry-point group ``hessbench.backends``. Each entry is an operator factory
``factory(parts, *, dtype, device) -> HVPOperator`` of a problem's
:class:`hessbench.problems.TorchProblemParts` (trained torch model, loss, data, batch size).
"""

from __future__ import annotations

from typing import Any, Callable

from hessbench.backends.base import CostMeter, HVPOperator, NonFiniteHVPError
from hessbench.registry import Registry, UnknownNameError

__all__ = ["BUILTINS", "CostMeter", "ENTRY_POINT_GROUP", "HVPOperator", "NonFiniteHVPError",
           "OperatorFactory", "REGISTRY", "UnknownBackendError", "available", "operator_factory"]

ENTRY_POINT_GROUP = "hessbench.backends"

#: the built-in backends, in listing order: name -> "module:factory" (as a plugin's entry point)
BUILTINS = {
    "torch": "hessbench.problems.base:torch_operator",
    "jax": "hessbench.jax_models:operator_from_parts",
}

OperatorFactory = Callable[..., HVPOperator]


class UnknownBackendError(UnknownNameError):
    """No backend is registered under this name (a user error; a ``KeyError`` and a
    ``ValueError`` too, as every :class:`hessbench.registry.UnknownNameError`)."""


def _check_factory(name: str, obj: Any) -> None:
    if not callable(obj):
        raise TypeError(f"backend {name!r} ({obj!r}) is not an operator factory "
                        "factory(parts, *, dtype, device) -> HVPOperator")


REGISTRY = Registry("backend", ENTRY_POINT_GROUP, BUILTINS, validate=_check_factory,
                    error=UnknownBackendError)


def available() -> list[str]:
    """Names of all registered backends, built-ins first."""
    return REGISTRY.available()


def operator_factory(name: str) -> OperatorFactory:
    """The operator factory of backend ``name`` (importing its module, e.g. JAX, now). Raises
    :class:`UnknownBackendError` for an unknown name and
    :class:`hessbench.registry.MissingDependencyError` (naming the extra to install, e.g.
    ``pip install 'hessbench[jax]'``) when the backend's optional dependency is missing."""
    return REGISTRY.load(name)
