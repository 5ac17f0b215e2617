"""The import contract: dependencies run one way, and no module imports itself round a circle.

devices/, clients/ and loadtest/ may import server/ and actors/ (devices/ and
loadtest/ the client library too); server/ may import actors/; actors/
imports nothing of ours but actors/. Every import
counts, wherever it stands in a file (a function's body, ``TYPE_CHECKING``):
a circle hidden in a function is still a circle. Read from the source with
the standard library's ``ast``, so it runs anywhere the tests run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("actors", "server", "devices", "clients", "loadtest")
#: what each top-level package may import of ours, besides itself
MAY_IMPORT = {
    "actors": set(),
    "server": {"actors"},
    "devices": {"server", "actors", "clients"},
    "clients": {"server", "actors"},
    "loadtest": {"server", "actors", "clients", "devices"},
}


def project_modules() -> dict[str, Path]:
    """Every module of ours by dotted name (a package by its ``__init__``)."""
    if not (ROOT / "actors" / "__init__.py").exists():
        raise RuntimeError(f"{ROOT} is not the project's root")
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that module ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a.b import c` imports the module a.b.c when there is one, else a.b
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports."""
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that runs against the layers, as ``importer -> imported``."""
    wrong = []
    for name, targets in sorted(graph.items()):
        top = name.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other != top and other not in MAY_IMPORT[top]:
                wrong.append(f"{name} -> {target}")
    return wrong


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_dependencies_run_one_way_down():
    assert layer_violations(import_graph()) == []


def test_no_module_imports_itself_round_a_circle():
    assert circles(import_graph()) == []


def test_the_contract_reads_the_whole_tree():
    graph = import_graph()
    assert {"actors.orders.domain", "server.app", "devices.gate_agent"} <= set(graph)
    assert "server.storage.orders" in graph["server.wiring"] or any(
        "server.storage" in target for target in graph["server.wiring"]
    )
    assert "actors.tickets.rules" in graph["devices.offline"]


def test_the_contract_sees_a_planted_violation_and_a_planted_circle():
    graph = {"actors.a": {"server.b"}, "server.b": {"actors.a"}, "devices.c": {"server.b"}}
    assert layer_violations(graph) == ["actors.a -> server.b"]
    assert circles(graph) == [["actors.a", "server.b"]]


if __name__ == "__main__":  # a list to work from: python tests/test_layers.py (at the root)
    ROOT = Path.cwd()
    graph = import_graph()
    for line in layer_violations(graph):
        print("layer:", line)
    for group in circles(graph):
        print("circle:", " ".join(group))
