"""No import cycles between hessbench's modules.

Every module of the package (``hessbench``, ``hessbench.problems``, ``hessbench.solvers``,
``hessbench.backends``: wherever their files live) is parsed with :mod:`ast`; each ``import``
of a hessbench module, at module level or inside a function or class, is an edge. An import of
``pkg.mod`` is an edge to ``pkg.mod`` only (not to ``pkg``'s ``__init__``, which Python runs
first but which is not what the importing module depends on); ``from pkg import name`` is an
edge to ``pkg.name`` where that is a module, else to ``pkg``. Imports under ``if
TYPE_CHECKING:`` never run and are not edges; neither are "module:attr" strings that a
registry loads lazily.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

ROOT = "hessbench"


def _spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, str | None]]:
    """``(target, name)`` for every import that runs: ``import target`` gives ``(target,
    None)``, ``from target import name`` gives ``(target, name)`` (relative ones resolved)."""
    out: list[tuple[str, str | None]] = []
    package = module if is_package else module.rpartition(".")[0]
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            out.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.extend((base, alias.name) for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return out


def import_graph(root: str = ROOT) -> dict[str, set[str]]:
    """``{module: {hessbench modules it imports}}`` for every module reachable in ``root``."""
    files: dict[str, tuple[Path, bool]] = {}
    graph: dict[str, set[str]] = {}
    todo = [root]

    def locate(name: str) -> bool:
        if name in files:
            return True
        spec = _spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return False
        is_package = spec.submodule_search_locations is not None
        files[name] = (Path(spec.origin), is_package)
        todo.append(name)
        if is_package:
            for info in pkgutil.iter_modules(list(spec.submodule_search_locations)):
                locate(f"{name}.{info.name}")
        return True

    locate(root)
    while todo:
        module = todo.pop()
        if module in graph:
            continue
        path, is_package = files[module]
        tree = ast.parse(path.read_text(), filename=str(path))
        edges = set()
        for target, name in _imports(tree, module, is_package):
            if target != root and not target.startswith(root + "."):
                continue
            if name is not None and name != "*" and locate(f"{target}.{name}"):
                edges.add(f"{target}.{name}")
            elif locate(target):
                edges.add(target)
        edges.discard(module)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]``, or None if the graph is acyclic."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {node: WHITE for node in graph}
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        path = [start]
        iters = [iter(sorted(graph[start]))]
        colour[start] = GREY
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = BLACK
                iters.pop()
            elif colour.get(nxt, BLACK) == GREY:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt) == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                iters.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"a"}, "a": {"b"}, "b": {"a", "c"}, "c": set()}) == ["a", "b", "a"]


def test_the_import_parser_sees_function_level_and_relative_imports():
    src = ("import hessbench.cache\n"
           "from . import seeds\n"
           "from .problems.base import Problem\n"
           "def f():\n    from hessbench import solvers\n"
           "if TYPE_CHECKING:\n    from hessbench import report\n")
    found = _imports(ast.parse(src), "hessbench.x", is_package=False)
    assert sorted(found, key=str) == sorted([
        ("hessbench.cache", None), ("hessbench", "seeds"), ("hessbench.problems.base", "Problem"),
        ("hessbench", "solvers")], key=str)


def test_the_graph_covers_the_whole_package():
    graph = import_graph()
    for module in ("hessbench.cli", "hessbench.jax_models", "hessbench.problems.quadratic",
                   "hessbench.solvers.registry", "hessbench.solvers.lanczos",
                   "hessbench.backends.torch", "hessbench.registry"):
        assert module in graph, module
    assert "hessbench.solvers" in graph["hessbench.cli"]  # from hessbench import solvers
    assert "hessbench" not in graph["hessbench.cli"]
    assert "hessbench.backends.base" in graph["hessbench.solvers.base"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
