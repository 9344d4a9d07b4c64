"""Registry of named benchmark problems: ``available()``, ``get(name, **options)``."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from hessbench.problems.base import Problem, TorchProblemParts
from hessbench.problems.nets import cifar_problem, digits_cnn, digits_mlp
from hessbench.problems.quadratic import QuadraticProblem, quadratic

_REGISTRY: dict[str, Callable[..., Problem]] = {
    "quadratic-small": lambda n=200, num_samples=1_000, **kw: quadratic(
        "quadratic-small", n, num_samples, **kw),
    "quadratic": lambda n=10_000, num_samples=10_000, **kw: quadratic(
        "quadratic", n, num_samples, **kw),
    "quadratic-1m": lambda n=1_000_000, num_samples=50_000, **kw: quadratic(
        "quadratic-1m", n, num_samples, **kw),
    "digits-mlp": digits_mlp,
    "digits-cnn": digits_cnn,
    "synthetic-cifar-resnet20": lambda subset=256, epochs=30, seed=0: cifar_problem(
        "synthetic-cifar-resnet20", "resnet20", subset=subset, synthetic=True, epochs=epochs,
        seed=seed),
    "cifar10-resnet20": lambda subset=None, epochs=15, data_dir=None, download=False, seed=0:
        cifar_problem("cifar10-resnet20", "resnet20", subset=subset, synthetic=False, epochs=epochs,
                      data_dir=data_dir, download=download, seed=seed),
    "cifar10-resnet18": lambda subset=None, epochs=10, data_dir=None, download=False, seed=0:
        cifar_problem("cifar10-resnet18", "resnet18", subset=subset, synthetic=False, epochs=epochs,
                      data_dir=data_dir, download=download, seed=seed),
}


class UnknownProblemError(KeyError):
    """No problem is registered under this name."""

    def __str__(self) -> str:
        return str(self.args[0])


def available() -> list[str]:
    return list(_REGISTRY)


def options(name: str) -> dict[str, Any]:
    """The options a problem takes, with their defaults."""
    factory = _factory(name)
    return {k: p.default for k, p in inspect.signature(factory).parameters.items()
            if p.kind is p.POSITIONAL_OR_KEYWORD}


def _factory(name: str) -> Callable[..., Problem]:
    if name not in _REGISTRY:
        raise UnknownProblemError(
            f"unknown problem {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def get(name: str, **opts: Any) -> Problem:
    """The problem ``name``, with options overriding its defaults (see :func:`options`)."""
    factory = _factory(name)
    allowed = set(inspect.signature(factory).parameters) - {"kw"}
    if name.startswith("quadratic"):
        allowed |= {"noise", "rank", "seed"}
    unknown = set(opts) - allowed
    if unknown:
        raise ValueError(f"problem {name!r} has no option(s) {sorted(unknown)}; "
                         f"its options: {sorted(allowed)}")
    return factory(**opts)


__all__ = ["Problem", "QuadraticProblem", "TorchProblemParts", "UnknownProblemError",
           "available", "get", "options"]
