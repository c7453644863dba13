"""The import graph of the ``probe`` and ``cli`` packages, parsed from the source (nothing is imported).

``python -m tests._imports [ROOT]`` prints the figures the layout test keeps true: modules, edges,
edges that climb the pipeline, cycles, and imports of another package's private names.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Pipeline layers, lowest first: a module may import its own layer or lower ones.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("probe.errors", "probe.provenance", "probe.runtime", "probe.atomic"),
    ("probe.sources", "probe.backbones", "probe.store", "probe.store_check", "probe.store_url"),
    (
        "probe.extraction",
        "probe.extract_loop",
        "probe.distributed",
        "probe.heads",
        "probe.metrics",
        "probe.results",
        "probe.setups",
    ),
    ("probe.evaluate",),
    ("probe.finetune", "probe.report"),
    ("probe.demo", "probe.study", "probe"),
    ("cli",),
)


@dataclass(frozen=True)
class Edge:
    """One import statement's dependency of module ``src`` on module ``dst``."""

    src: str
    dst: str
    lazy: bool  # inside a function (runs on first use, not at import)
    type_only: bool  # under ``if TYPE_CHECKING:`` (never runs)
    names: tuple[str, ...]  # names taken with ``from dst import ...`` ("" for plain imports)
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str, modules: dict[str, Path]) -> str:
    """The package a module belongs to (a package's ``__init__`` belongs to the package itself)."""
    return module if modules[module].name == "__init__.py" else module.rpartition(".")[0]


def find_modules(root: Path, packages: tuple[str, ...] = ("probe", "cli")) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _walk(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Import nodes with (lazy, type_only)."""

    def visit(node: ast.AST, lazy: bool, type_only: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, lazy, type_only
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from visit(child, True, type_only)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from visit(child, lazy, True)
            else:
                yield from visit(child, lazy, type_only)

    yield from visit(tree, False, False)


def import_edges(modules: dict[str, Path]) -> list[Edge]:
    """Every dependency between modules of ``modules`` (``from pkg import submodule`` → the submodule)."""
    edges: list[Edge] = []
    for src, path in modules.items():
        for node, lazy, type_only in _walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [(alias.name, "") for alias in node.names]
            elif node.level == 0 and node.module:
                targets = []
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    targets.append((sub, "") if sub in modules else (node.module, alias.name))
            else:
                continue
            for target, name in targets:
                dst = _resolve(target, modules)
                if dst and dst != src:
                    edges.append(Edge(src, dst, lazy, type_only, (name,), node.lineno))
    return edges


def layer(module: str) -> int:
    best, level = -1, -1
    for i, group in enumerate(LAYERS):
        for prefix in group:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    return level


def cycles(nodes: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for a, b in edges:
        graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in nodes:
        if v not in index:
            strong(v)
    return out


def runtime_edges(edges: list[Edge], modules: dict[str, Path]) -> list[tuple[str, str]]:
    """Edges that count for cycles: run-time imports, except lazy ones inside one package."""
    return sorted(
        {
            (e.src, e.dst)
            for e in edges
            if not e.type_only and not (e.lazy and package_of(e.src, modules) == package_of(e.dst, modules))
        }
    )


def private_imports(edges: list[Edge], modules: dict[str, Path]) -> list[str]:
    """Imports of a ``_private`` module or name that belongs to another package."""
    bad = []
    for e in edges:
        src_pkg, dst_pkg = package_of(e.src, modules), package_of(e.dst, modules)
        parts = e.dst.split(".")
        for i, part in enumerate(parts):  # a _private module (or package) is private to the package holding it
            if part.startswith("_") and not part.startswith("__") and src_pkg != ".".join(parts[:i]):
                bad.append(f"{e.src}:{e.line} imports private module {e.dst}")
                break
        for name in e.names:
            if name.startswith("_") and src_pkg != dst_pkg:
                bad.append(f"{e.src}:{e.line} imports private name {e.dst}.{name}")
    return bad


def figures(root: Path) -> dict[str, object]:
    modules = find_modules(root, ("probe",))
    edges = [e for e in import_edges(modules) if not e.type_only]
    pairs = sorted({(e.src, e.dst) for e in edges})
    climbing = sorted({(a, b) for a, b in pairs if layer(b) > layer(a)})
    every = sorted({(e.src, e.dst) for e in import_edges(modules)})  # type-only imports too
    tangled = [set(c) for c in cycles(sorted(modules), every)]
    back = [(a, b) for a, b in every if any(a in c and b in c for c in tangled)]
    sizes = sorted(((len(p.read_text().splitlines()), m) for m, p in modules.items()), reverse=True)
    return {
        "modules": len(modules),
        "edges": len(pairs),
        "edges_climbing_the_pipeline": climbing,
        "edges_inside_cycles_of_any_kind": len(back),
        "cycles_runtime": cycles(sorted(modules), runtime_edges(import_edges(modules), modules)),
        "cycles_including_lazy": cycles(sorted(modules), pairs),
        "private_imports": private_imports(import_edges(modules), modules),
        "largest_modules": sizes[:8],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(figures(Path(sys.argv[1] if len(sys.argv) > 1 else ".")), indent=1))
