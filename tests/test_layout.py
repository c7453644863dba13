"""The package layout stays true: no import cycles, no reach into another package's private names,
imports flow down the pipeline, and the library never imports the CLI."""

from __future__ import annotations

import ast

import pytest

from tests._imports import (
    Edge,
    cycles,
    find_modules,
    import_edges,
    layer,
    package_of,
    private_imports,
    runtime_edges,
)
from tests.conftest import REPO

MODULES = find_modules(REPO)
EDGES = import_edges(MODULES)
PROBE = {m: p for m, p in MODULES.items() if m == "probe" or m.startswith("probe.")}


def test_no_import_cycles_except_lazy_imports_inside_one_package() -> None:
    assert cycles(sorted(PROBE), runtime_edges([e for e in EDGES if e.src in PROBE], PROBE)) == []


def test_no_module_imports_another_packages_private_names() -> None:
    assert private_imports(EDGES, MODULES) == []


def test_imports_flow_down_the_pipeline() -> None:
    up = sorted({f"{e.src} -> {e.dst}" for e in EDGES if not e.type_only and layer(e.dst) > layer(e.src)})
    assert up == []


def test_the_library_never_imports_the_cli_or_typer() -> None:
    for name, path in PROBE.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in ("cli", "typer") for n in names), f"{name}:{node.lineno}"


def test_every_module_belongs_to_a_layer() -> None:
    assert [m for m in MODULES if layer(m) < 0] == []


@pytest.mark.parametrize(
    ("edge", "bad"),
    [
        (Edge("probe.evaluate.data", "probe.sources._options", False, False, ("",), 1), True),
        (Edge("probe.sources.check", "probe.sources._base", False, False, ("",), 1), False),
        (Edge("probe.heads.multilabel", "probe.heads.knn", False, False, ("_vote_weights",), 1), False),
        (Edge("probe.finetune.run", "probe.evaluate.runners", False, False, ("_linear_params",), 1), True),
    ],
)
def test_the_private_rule_itself(edge: Edge, bad: bool) -> None:
    modules = {**MODULES}
    for m in (edge.src, edge.dst):
        modules.setdefault(m, REPO / "x.py")
    assert bool(private_imports([edge], modules)) is bad
    assert package_of("probe.sources", MODULES) == "probe.sources"


def test_a_cycle_is_found() -> None:
    assert cycles(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "a")]) == [["a", "b", "c"]]


def test_the_public_api_resolves_and_reading_a_store_needs_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, probe\n"
        "probe.open_store; probe.load_results; probe.PlanConfig; probe.StoreChoice; probe.SourceRequest\n"
        "assert 'torch' not in sys.modules, 'the probing side imported torch'\n"
        "missing = [n for n in probe.__all__ if getattr(probe, n, None) is None]\n"
        "assert not missing, missing\n"
        "import types, probe.extraction, probe.results, probe.store, probe.report\n"  # submodules loaded
        "shadowed = [n for n in probe.__all__ if isinstance(getattr(probe, n), types.ModuleType)]\n"
        "assert not shadowed, f'a submodule shadows an exported name: {shadowed}'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
