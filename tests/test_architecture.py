"""The package's structure, read from its imports (lazy ones included, ``if TYPE_CHECKING`` blocks excepted):
no import cycle; ``brgm.core`` never imports the CLI or a plugin; the kernel never imports ``brgm.core.io``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "brgm"
#: the parts of brgm.core that read and write files: the rest of core (the kernel) never imports them
IO_LAYER = ("brgm.core.io", "brgm.core.pipeline", "brgm.core.items")


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
    """Every brgm module a module imports, anywhere in its body, except under ``if TYPE_CHECKING:``."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            package = self.module.split(".")
            if MODULES[self.module].name != "__init__.py":
                package.pop()
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, *([node.module] if node.module else [])])
        for alias in node.names:
            self.found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)


def graph() -> dict[str, set[str]]:
    edges = {}
    for name, path in MODULES.items():
        visitor = Imports(name)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        edges[name] = {target for target in visitor.found if target in MODULES and target != name}
    return edges


GRAPH = graph()


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
    assert "brgm.core.io.files" in GRAPH["brgm.core.io"]


def test_no_import_cycle() -> None:
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("brgm.core", "brgm.cli"),
        ("brgm.core", "brgm.plugins"),
        ("brgm.plugins", "brgm.cli"),
    ],
)
def test_layers_do_not_import_upwards(importer: str, forbidden: str) -> None:
    offending = {
        (source, target)
        for source, targets in GRAPH.items()
        if _within(source, importer)
        for target in targets
        if _within(target, forbidden)
    }
    assert not offending


def test_the_kernel_never_imports_the_io_layer() -> None:
    offending = {
        (source, target)
        for source, targets in GRAPH.items()
        if _within(source, "brgm.core") and not _within(source, IO_LAYER)
        for target in targets
        if _within(target, IO_LAYER)
    }
    assert not offending
