"""Registry of named benchmark problems: ``available()``, ``options(name)``,
``get(name, **options)``.

Each problem is a factory function whose keyword parameters, with their defaults, are the
problem's options. Built-ins are listed below; third-party problems come from the entry-point
group ``hessbench.problems`` (see :class:`hessbench.registry.Registry`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from hessbench.problems.base import Problem, TorchProblemParts
from hessbench.problems.quadratic import QuadraticProblem
from hessbench.registry import Registry, UnknownNameError, configure, option_defaults

ENTRY_POINT_GROUP = "hessbench.problems"

#: the built-in problems, in listing order: name -> "module:factory" (as a plugin's entry point)
BUILTINS = {
    "quadratic-small": "hessbench.problems.quadratic:quadratic_small",
    "quadratic": "hessbench.problems.quadratic:quadratic_10k",
    "quadratic-cluster": "hessbench.problems.quadratic:quadratic_cluster",
    "quadratic-1m": "hessbench.problems.quadratic:quadratic_1m",
    "digits-mlp": "hessbench.problems.nets:digits_mlp",
    "digits-cnn": "hessbench.problems.nets:digits_cnn",
    "synthetic-cifar-resnet20": "hessbench.problems.nets:synthetic_cifar_resnet20",
    "cifar10-resnet20": "hessbench.problems.nets:cifar10_resnet20",
    "cifar10-resnet18": "hessbench.problems.nets:cifar10_resnet18",
    "digits-mlp-trajectory": "hessbench.problems.trajectory:digits_mlp_trajectory",
    "digits-cnn-trajectory": "hessbench.problems.trajectory:digits_cnn_trajectory",
    "synthetic-cifar-resnet20-trajectory":
        "hessbench.problems.trajectory:synthetic_cifar_resnet20_trajectory",
}

_OPTION_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class UnknownProblemError(UnknownNameError):
    """No problem is registered under this name."""


def _check_factory(name: str, obj: Any) -> None:
    """A problem factory: callable, every parameter a keyword option with a default."""
    try:
        params = inspect.signature(obj).parameters.values() if callable(obj) else None
    except (TypeError, ValueError):
        params = None
    if params is None:
        raise TypeError(f"problem {name!r} ({obj!r}) is not a factory function")
    bad = [p.name for p in params if p.kind not in _OPTION_KINDS or p.default is p.empty]
    if bad:
        raise TypeError(f"problem {name!r}: factory parameters {bad} must be keyword options "
                        "with defaults (no *args, **kwargs or required arguments)")


REGISTRY = Registry("problem", ENTRY_POINT_GROUP, BUILTINS, validate=_check_factory,
                    error=UnknownProblemError)


def available() -> list[str]:
    """Names of all registered problems, built-ins first."""
    return REGISTRY.available()


def factory(name: str) -> Callable[..., Problem]:
    """The factory function of problem ``name``."""
    return REGISTRY.load(name)


def options(name: str) -> dict[str, Any]:
    """The options problem ``name`` takes, with their defaults (its factory's signature)."""
    return option_defaults(factory(name))


def get(name: str, **opts: Any) -> Problem:
    """The problem ``name``, with options overriding its defaults (see :func:`options`).

    Options are checked against the factory's signature first
    (:func:`hessbench.registry.check_options`): an unknown option, a value of the wrong type or
    a value the factory refuses raises :class:`hessbench.registry.OptionError` (a ``TypeError``
    and a ``ValueError``) naming the problem and the option. Building a problem trains nothing
    (training is lazy, in :meth:`Problem.torch_parts`)."""
    problem = configure(f"problem {name!r}", factory(name), opts)
    if not isinstance(problem, Problem):
        raise TypeError(f"problem {name!r}: factory returned {type(problem).__name__}, "
                        "not a hessbench.problems.Problem")
    return problem


__all__ = ["BUILTINS", "ENTRY_POINT_GROUP", "Problem", "QuadraticProblem", "REGISTRY",
           "TorchProblemParts", "UnknownProblemError", "available", "factory", "get", "options"]
