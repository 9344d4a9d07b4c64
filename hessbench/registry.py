"""One registry mechanism for solvers, problems and backends.

A :class:`Registry` maps names to objects named by ``"module:attr"`` references: the built-ins
from an ordered table in code, third-party ones from an entry-point group (declared in a
plugin's ``pyproject.toml`` under ``[project.entry-points."<group>"]``). Both become
:class:`importlib.metadata.EntryPoint` objects and load through the same path, lazily (nothing
is imported until :meth:`Registry.load`). Built-ins come first, in their table's order, then
plugins sorted by name; a plugin cannot shadow a built-in. This module imports only the
standard library, so registries are cheap to import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

__all__ = ["Registry", "UnknownNameError"]


class UnknownNameError(KeyError):
    """No entry of this kind is registered under this name (message names the available ones)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


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
        """The object registered under ``name`` (imported now), validated."""
        obj = self.entry(name).load()
        if self._validate is not None:
            self._validate(name, obj)
        return obj

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.entries()

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r}, builtins={list(self._builtins)})"
