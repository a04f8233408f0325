"""The layout rules of docs/architecture.md, checked on the source tree."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("import_graph", ROOT / "docs" / "import_graph.py")
import_graph = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_graph)

MODULES = import_graph.modules()
#: "about 500 lines" (issue 13): a module past this has grown a second job
MAX_LINES = 520


def test_no_import_cycle():
    assert import_graph.find_cycles(import_graph.import_graph()) == []


def test_find_cycles_finds_one():
    assert import_graph.find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_has_one_job_and_a_bounded_size(name):
    path = MODULES[name]
    text = path.read_text()
    if path.name == "_version.py":
        return
    doc = ast.get_docstring(ast.parse(text))
    assert doc, f"{path} has no docstring naming its job"
    assert len(text.splitlines()) <= MAX_LINES, f"{path} is over {MAX_LINES} lines"


def _package_imports(tree, name, path, *, top_level):
    nodes = tree.body if top_level else [n for n in ast.walk(tree)
                                         if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    found = []
    for node in nodes:
        for sub in ([node] if top_level else ast.walk(node)):
            if isinstance(sub, ast.ImportFrom) and (sub.level or (sub.module or "").startswith("ttcrouter")):
                found.append(sub)
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_imported_across_modules(name):
    tree = ast.parse(MODULES[name].read_text())
    private = [f"{n.module}.{a.name}" for n in _package_imports(tree, name, MODULES[name], top_level=True)
               for a in n.names if a.name.startswith("_") and a.name not in ("__version__",)
               and not (n.module or "").startswith("_")]
    # a module's own private helper module (``_lazy``, ``_version``) is imported as a module
    assert private == [], f"{name} imports private names: {private}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_package_import_inside_functions(name):
    tree = ast.parse(MODULES[name].read_text())
    inner = _package_imports(tree, name, MODULES[name], top_level=False)
    assert inner == [], (f"{name} imports package modules inside functions (line "
                         f"{[n.lineno for n in inner]}); import them at module level")


def test_import_ttcrouter_stays_light():
    code = ("import sys, ttcrouter, ttcrouter.cli, ttcrouter.executors; "
            "heavy = [m for m in ('vllm', 'torch', 'sklearn', 'pandas', 'transformers') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
