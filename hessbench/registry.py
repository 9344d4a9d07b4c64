"""One registry mechanism for solvers, problems and backends.

A :class:`Registry` maps names to objects named by ``"module:attr"`` references: the built-ins
from an ordered table in code, third-party ones from an entry-point group (declared in a
plugin's ``pyproject.toml`` under ``[project.entry-points."<group>"]``). Both become
:class:`importlib.metadata.EntryPoint` objects and load through the same path, lazily (nothing
is imported until :meth:`Registry.load`). Built-ins come first, in their table's order, then
plugins sorted by name; a plugin cannot shadow a built-in. An entry whose module needs an
optional dependency that is not installed (e.g. ``jax``) raises :class:`MissingDependencyError`
naming the extra to install.

An entry's options are the keyword parameters of what it names (a solver's constructor, a
problem's factory): :func:`option_defaults` reads them with their defaults, and
:func:`configure` checks given options against them (:func:`check_options`: unknown names, and
types from the annotations) before calling it, raising :class:`OptionError`.

This module imports only the standard library (and :mod:`hessbench.errors`), so registries are
cheap to import.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, requires
from typing import Any

from hessbench.errors import InputError, UserError

__all__ = ["MissingDependencyError", "OptionError", "Registry", "UnknownNameError", "accepts",
           "check_options", "configure", "format_options", "install_hint", "option_defaults"]

_OPTION_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_SEQUENCES = {"Sequence", "list", "List", "tuple", "Tuple", "Iterable", "Collection"}


class UnknownNameError(InputError, KeyError):
    """No entry of this kind is registered under this name (message names the available ones).
    A user error (one line on the command line); also a ``KeyError`` and a ``ValueError``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class OptionError(InputError, TypeError):
    """An unknown option, a value of the wrong type or a value the solver or problem refuses
    (also a ``TypeError``, as Python's own error for an unknown keyword argument)."""


class MissingDependencyError(InputError, ModuleNotFoundError):
    """The entry needs an optional dependency that is not installed (the message says what to
    install); also a ``ModuleNotFoundError``."""


_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*).*;\s*extra\s*==\s*[\"']([^\"']+)[\"']")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def install_hint(module: str | None) -> str | None:
    """``pip install 'hessbench[EXTRA]'`` for a module that one of hessbench's optional extras
    provides (e.g. ``jax`` -> ``hessbench[jax]``), else None. The ``test`` extra is named only
    where no other extra provides the module."""
    if not module:
        return None
    try:
        declared = requires("hessbench") or []
    except PackageNotFoundError:
        return None
    wanted = _normal(module.split(".")[0])
    extras = [m.group(2) for m in map(_REQUIREMENT.match, declared)
              if m and _normal(m.group(1)) == wanted]
    extras.sort(key=lambda extra: extra == "test")
    return f"pip install 'hessbench[{extras[0]}]'" if extras else None


class Registry:
    """Named, lazily loaded entries of one kind: ``available()``, ``load(name)``.

    ``builtins``: ordered ``{name: "module:attr"}``; ``group``: the entry-point group of
    plugins; ``validate(name, obj)`` raises (e.g. ``TypeError``) if a loaded object is not of
    this kind; ``error``: the :class:`UnknownNameError` subclass raised for unknown names.
    Plugins are looked up with :func:`importlib.metadata.entry_points` on every call (so a
    package installed while the process runs is found).
    """

    def __init__(self, kind: str, group: str, builtins: Mapping[str, str], *,
                 validate: Callable[[str, Any], None] | None = None,
                 error: type[UnknownNameError] = UnknownNameError) -> None:
        self.kind, self.group, self.error = kind, group, error
        self._builtins = {name: EntryPoint(name, value, group) for name, value in builtins.items()}
        self._validate = validate

    def _plugins(self) -> dict[str, EntryPoint]:
        found = entry_points(group=self.group)
        return {ep.name: ep for ep in found if ep.name not in self._builtins}

    def entries(self) -> dict[str, EntryPoint]:
        """``{name: entry point}``, built-ins first in their listed order, then plugins sorted."""
        plugins = self._plugins()
        return {**self._builtins, **{name: plugins[name] for name in sorted(plugins)}}

    def available(self) -> list[str]:
        """Names of every registered entry, built-ins first."""
        return list(self.entries())

    def is_builtin(self, name: str) -> bool:
        return name in self._builtins

    def entry(self, name: str) -> EntryPoint:
        """The entry point of ``name``; raises ``self.error`` naming the available ones."""
        ep = self._builtins.get(name) or self._plugins().get(name)
        if ep is None:
            raise self.error(f"unknown {self.kind} {name!r}; available: "
                             f"{', '.join(self.available())}")
        return ep

    def load(self, name: str) -> Any:
        """The object registered under ``name`` (imported now), validated. A missing optional
        dependency of hessbench raises :class:`MissingDependencyError` naming the extra."""
        entry = self.entry(name)
        try:
            obj = entry.load()
        except ModuleNotFoundError as err:
            hint = install_hint(err.name)
            if hint is None:
                raise
            raise MissingDependencyError(
                f"{self.kind} {name!r} needs the Python package {err.name!r}, which is not "
                f"installed: {hint}") from err
        if self._validate is not None:
            self._validate(name, obj)
        return obj

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.entries()

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r}, builtins={list(self._builtins)})"


# -- options: the keyword parameters of an entry (a solver class, a problem factory) ----------
def _parameters(target: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], bool]:
    params = inspect.signature(target).parameters.values()
    options = {p.name: p for p in params if p.kind in _OPTION_KINDS}
    return options, any(p.kind is p.VAR_KEYWORD for p in params)


def option_defaults(target: Callable[..., Any]) -> dict[str, Any]:
    """``{option: default}`` of a solver class or problem factory (``inspect.Parameter.empty``
    for an option without a default)."""
    return {name: p.default for name, p in _parameters(target)[0].items()}


def format_options(defaults: Mapping[str, Any]) -> str:
    """``tol=0.001, max_steps=500``: options with their defaults, as listings show them."""
    return ", ".join(name if value is inspect.Parameter.empty else f"{name}={value!r}"
                     for name, value in defaults.items()) or "(none)"


def _annotation(annotation: Any) -> str | None:
    """The annotation as written (``int | None``), or None where there is none."""
    if annotation is inspect.Parameter.empty:
        return None
    text = annotation if isinstance(annotation, str) else (
        annotation.__name__ if isinstance(annotation, type) else str(annotation))
    return re.sub(r"\b(typing|collections\.abc|builtins|pathlib|os)\.", "", text).strip()


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char == "[") - (char == "]")
        if char == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def accepts(value: Any, annotation: str) -> bool:
    """Whether ``value`` fits the annotation text (builtin scalars, None, unions, Optional,
    sequences, Callable, Literal); an int fits float; a type this check does not know fits
    (the constructor checks it)."""
    alternatives = _split(annotation, "|")
    if len(alternatives) > 1:
        return any(accepts(value, alt) for alt in alternatives)
    head, bracket, rest = annotation.strip().partition("[")
    head = head.strip()
    args = [a.strip() for a in _split(rest[:rest.rfind("]")], ",")] if bracket else []
    if head in ("None", "NoneType"):
        return value is None
    if head == "Optional":
        return value is None or accepts(value, args[0])
    if head == "Union":
        return any(accepts(value, arg) for arg in args)
    if head == "bool":
        return isinstance(value, bool)
    if head in ("int", "float", "complex"):
        kinds = {"int": (int,), "float": (int, float), "complex": (int, float, complex)}[head]
        return isinstance(value, kinds) and not isinstance(value, bool)
    if head == "str":
        return isinstance(value, str)
    if head in ("Path", "PathLike"):
        return isinstance(value, (str, os.PathLike))
    if head in _SEQUENCES:
        if not isinstance(value, (list, tuple)):
            return False
        if head in ("tuple", "Tuple") and args and args[-1] != "...":
            return len(value) == len(args) and all(map(accepts, value, args))
        return not args or all(accepts(item, args[0]) for item in value)
    if head in ("dict", "Dict", "Mapping"):
        return isinstance(value, dict)
    if head == "Callable":
        return callable(value)
    if head == "Literal":
        try:
            return value in ast.literal_eval(f"[{rest[:rest.rfind(']')]}]")
        except (ValueError, SyntaxError):
            return True
    return True


def check_options(what: str, target: Callable[..., Any], given: Mapping[str, Any]) -> None:
    """Check ``given`` options against the keyword parameters of ``target`` (a solver class or a
    problem factory; ``what`` names it, e.g. ``"solver 'lanczos'"``): an unknown option lists
    the valid ones with their defaults; a wrong type names the option and the expected type."""
    params, takes_any = _parameters(target)
    defaults = {name: p.default for name, p in params.items()}
    unknown = [name for name in given if name not in params]
    if unknown and not takes_any:
        names = ", ".join(map(repr, unknown))
        raise OptionError(f"{what} has no option {names}; its options: "
                          f"{format_options(defaults)}")
    missing = [name for name, p in params.items() if p.default is p.empty and name not in given]
    if missing:
        raise OptionError(f"{what} needs the option(s) {', '.join(missing)}")
    for name, value in given.items():
        param = params.get(name)
        expected = None if param is None else _annotation(param.annotation)
        if expected is not None and not accepts(value, expected):
            example = ("" if param.default is param.empty or param.default is None
                       else f"; e.g. {name}={param.default!r}")
            raise OptionError(f"{what}: option {name} must be {expected}, got {value!r} "
                              f"({type(value).__name__}){example}")


def configure(what: str, target: Callable[..., Any], options: Mapping[str, Any]) -> Any:
    """``target(**options)`` after :func:`check_options`; a ``ValueError`` of ``target`` (a value
    it refuses, e.g. ``tol=2``) becomes an :class:`OptionError` naming ``what``."""
    check_options(what, target, options)
    try:
        return target(**options)
    except UserError:
        raise
    except ValueError as err:
        raise OptionError(f"{what}: {err}") from err
