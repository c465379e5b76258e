"""The package's structure, read from its imports (lazy ones and ``if TYPE_CHECKING`` ones included): no import
cycle; ``brgm.core`` imports nothing above it (no plugin, no CLI, no top-level module); a plugin imports neither
the plugin manager nor the registry, nor loads the plugin manager when imported; the kernel never runs an import
of ``brgm.core.io``."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "brgm"
#: the parts of brgm.core that read and write files: the rest of core (the kernel) never imports them
IO_LAYER = ("brgm.core.io", "brgm.core.pipeline", "brgm.core.items")
#: the kernel modules that load the plugin manager when imported, and so are not for plugins to import
LOADS_PLUGINS = ("brgm.core.plugins", "brgm.core.compose")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = modules()


def _within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


class Imports(ast.NodeVisitor):
    """Every brgm module a module imports, anywhere in its body, by when the import runs: ``"load"`` (when the
    module is imported), ``"call"`` (inside a function) or ``"type"`` (under ``if TYPE_CHECKING:``: never)."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.found: dict[str, set[str]] = {"load": set(), "call": set(), "type": set()}
        self.when = "load"

    def _visit_as(self, when: str, nodes: list[ast.stmt]) -> None:
        outer, self.when = self.when, when
        for child in nodes:
            self.visit(child)
        self.when = outer

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            self._visit_as("type", node.body)
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._visit_as("type" if self.when == "type" else "call", node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        self.found[self.when].update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            package = self.module.split(".")
            if MODULES[self.module].name != "__init__.py":
                package.pop()
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, *([node.module] if node.module else [])])
        for alias in node.names:
            self.found[self.when].add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)


def _imports() -> dict[str, dict[str, set[str]]]:
    found = {}
    for name, path in MODULES.items():
        visitor = Imports(name)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        found[name] = {
            when: {t for t in targets if t in MODULES and t != name}
            for when, targets in visitor.found.items()
        }
    return found


IMPORTS = _imports()


def graph(*whens: str) -> dict[str, set[str]]:
    """Module -> the brgm modules it imports at the given times."""
    return {name: set().union(*(found[when] for when in whens)) for name, found in IMPORTS.items()}


def _packages_above(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


#: every import, lazy and ``TYPE_CHECKING`` ones included: the dependencies, for cycles and layers
GRAPH = graph("load", "call", "type")
#: the imports that run (``TYPE_CHECKING`` ones excepted)
RUNTIME = graph("load", "call")
#: what importing a module runs at once: its module-level imports and the packages above each (importing
#: ``a.b.c`` runs ``a`` and ``a.b`` first)
AT_IMPORT = {
    name: (targets | {p for t in targets for p in _packages_above(t)}) - {name}
    for name, targets in graph("load").items()
}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_import_graph_is_read() -> None:
    assert {"brgm.core.pipeline", "brgm.core.io.formats.dicom", "brgm.cli.app"} <= set(GRAPH)
    assert "brgm.core.io" in GRAPH["brgm.core.pipeline"]  # `from brgm.core import io`
    assert "brgm.core.io.files" in IMPORTS["brgm.core.io"]["load"]
    assert "brgm.core.plugins" in IMPORTS["brgm.core.io"]["call"]  # imported on use, inside a function
    assert "brgm.core.checkpoints" in IMPORTS["brgm.core.hookspecs"]["type"]  # under `if TYPE_CHECKING:`
    assert "brgm.core.checkpoints" in GRAPH["brgm.core.hookspecs"]
    assert "brgm.core.checkpoints" not in RUNTIME["brgm.core.hookspecs"]
    # `from brgm.core.io.files import ...` runs the package brgm.core.io first
    assert {"brgm.core.io.files", "brgm.core.io"} <= AT_IMPORT["brgm.plugins.generators.checkpoints.native"]


def test_no_import_cycle() -> None:
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_kernel_imports_nothing_above_it() -> None:
    """No plugin, no CLI, no top-level module (``brgm``, ``brgm.metrics``, ...): the kernel's contracts and
    machinery stand on their own (the default plugins are named as strings and imported by the plugin manager)."""
    offending = {
        (source, target)
        for source, targets in GRAPH.items()
        if _within(source, "brgm.core")
        for target in targets
        if not _within(target, "brgm.core")
    }
    assert not offending


@pytest.mark.parametrize("forbidden", ["brgm.core.plugins", "brgm.core.registry", "brgm.cli"])
def test_plugins_import_neither_the_plugin_manager_nor_the_registry(forbidden: str) -> None:
    offending = {
        (source, target)
        for source, targets in GRAPH.items()
        if _within(source, "brgm.plugins")
        for target in targets
        if _within(target, forbidden)
    }
    assert not offending


def _reached(edges: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module reachable from ``start`` -> the module it is first reached from (breadth first, so that the
    chains back to ``start`` are shortest)."""
    parent = {start: start}
    todo = collections.deque([start])
    while todo:
        node = todo.popleft()
        for child in sorted(edges[node]):
            if child not in parent:
                parent[child] = node
                todo.append(child)
    return parent


def test_importing_a_plugin_or_a_contract_does_not_load_the_plugin_manager() -> None:
    """The plugin manager imports the default plugins when it is imported: a plugin that loads it on its own import
    is registered half-built (no hooks yet), and brgm stays without its components for the whole process. So no
    plugin, and no kernel module a plugin may import (all but :data:`LOADS_PLUGINS`), loads it."""
    chains = []
    for source in MODULES:
        if not _within(source, ("brgm.plugins", "brgm.core")) or source in LOADS_PLUGINS:
            continue
        parent = _reached(AT_IMPORT, source)
        if "brgm.core.plugins" in parent:
            chain = ["brgm.core.plugins"]
            while chain[-1] != source:
                chain.append(parent[chain[-1]])
            chains.append(" -> ".join(reversed(chain)))
    assert not chains


def test_the_kernel_never_imports_the_io_layer() -> None:
    # over the imports that run: brgm.core.hookspecs names FileFormat (brgm.core.io.formats) for a type only
    offending = {
        (source, target)
        for source, targets in RUNTIME.items()
        if _within(source, "brgm.core") and not _within(source, IO_LAYER)
        for target in targets
        if _within(target, IO_LAYER)
    }
    assert not offending
