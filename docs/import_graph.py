"""Print ttcrouter's module import graph and fail on an import cycle.

Run: python docs/import_graph.py   (exit 1 when a cycle exists)

Reads every module's top-level ``import`` statements (not the lazy ones inside functions)
and prints, per module, its line count, the first line of its docstring, what it imports
from the package and which modules import it. ``docs/architecture.md`` is written from it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "ttcrouter"


def modules(root: Path = ROOT) -> dict:
    """Module name -> path, for every ``.py`` file below ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _targets(name: str, path: Path, node: ast.ImportFrom, known: dict) -> set:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    if node.level:
        base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    found = set()
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.add(sub if sub in known else target)
    return {t for t in found if t in known and t != name}


def import_graph(root: Path = ROOT) -> dict:
    """Module name -> set of package modules it imports at module level."""
    known = modules(root)
    graph = {}
    for name, path in known.items():
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom):
                deps |= _targets(name, path, node, known)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in known and a.name != name}
        graph[name] = deps
    return graph


def find_cycles(graph: dict) -> list:
    """Every cycle met by a depth-first search, as lists of module names."""
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def main() -> int:
    known = modules()
    graph = import_graph()
    users = {m: set() for m in graph}
    for m, deps in graph.items():
        for d in deps:
            users[d].add(m)
    short = lambda names: ", ".join(sorted(n.removeprefix("ttcrouter.") for n in names))  # noqa: E731
    for name, path in known.items():
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        first = doc.splitlines()[0] if doc else "(no docstring)"
        print(f"{name} ({len(path.read_text().splitlines())} lines): {first}\n"
              f"    imports: {short(graph[name]) or '-'}\n    used by: {short(users[name]) or '-'}")
    cycles = find_cycles(graph)
    for c in cycles:
        print("cycle: " + " -> ".join(c), file=sys.stderr)
    print(f"{len(cycles)} import cycles", file=sys.stderr)
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
