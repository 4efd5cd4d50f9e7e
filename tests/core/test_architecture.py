"""The house rules that keep Engage easy to live in, checked on the source: imports point one
way (no circles; the core never imports a feature package; engage never imports governance or
newsletters except the composition root), and no module grows past what one can read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engage", "governance", "newsletters")
FEATURES = (
    "engage.accounts",
    "engage.registries",
    "engage.topics",
    "engage.consent",
    "engage.rounds",
)
# The composition root and the command line wire the features together.
WIRING = {"engage.app", "engage.cli", "engage.wsgi", "engage.demo"}
MAX_LINES = 650  # "about 600": a module past this splits by sub-domain


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every Engage module ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in MODULES}
    return found


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _feature(module: str) -> str | None:
    return next((f for f in FEATURES if module == f or module.startswith(f + ".")), None)


def test_no_import_circles():
    """Strongly connected components of the module graph all have one member."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                circles.append(sorted(members))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert circles == []


def test_the_core_never_imports_a_feature_package():
    upward = sorted(
        (module, target)
        for module, targets in GRAPH.items()
        if module.startswith("engage.") and _feature(module) is None and module not in WIRING
        for target in targets
        if _feature(target) is not None
    )
    assert upward == []


def test_feature_packages_do_not_import_each_other_in_circles():
    edges = {
        (_feature(module), _feature(target))
        for module, targets in GRAPH.items()
        for target in targets
        if _feature(module) and _feature(target) and _feature(module) != _feature(target)
    }
    assert sorted((a, b) for a, b in edges if (b, a) in edges) == []


def test_engage_imports_governance_and_newsletters_only_from_the_composition_root():
    crossing = sorted(
        (module, target)
        for module, targets in GRAPH.items()
        if module.startswith("engage") and module not in {"engage.app", "engage.cli"}
        for target in targets
        if target.split(".")[0] in {"governance", "newsletters"}
    )
    assert crossing == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_readable(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it by sub-domain"
