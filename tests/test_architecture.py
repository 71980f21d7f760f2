"""The package's shape, read from its source: wings in the order imports flow, no cycle, imports at
the top, small modules and short signatures, and a README map that names every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import vggrepro

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vggrepro"
#: (module, function) pairs allowed an import inside a function, and why
INNER_IMPORTS = {
    ("vggrepro.core.kernels", "aten_capability"): "the kernel paths are pinned before torch is imported",
    ("vggrepro.core.optional", "torchvision_or_none"): "the one guard of the optional torchvision",
    ("vggrepro.core.optional", "onnx_runtime_or_none"): "the one guard of onnx and onnxruntime (install.sh --real)",
}
MAX_LINES = 450
MAX_ARGS = 8


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}


def imported(name: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The package modules an import statement of module ``name`` reads (a name imported from a
    package counts as that submodule when there is one)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("vggrepro")]
    if node.level:
        package = name.split(".") if MODULES[name].name == "__init__.py" else name.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    elif (node.module or "").split(".")[0] == "vggrepro":
        base = node.module
    else:
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def edges() -> dict[str, set[str]]:
    graph = {}
    for name, tree in TREES.items():
        graph[name] = {
            t
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for t in imported(name, node)
            if t != name
        }
    return graph


def wing(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in vggrepro.WINGS) else None


def test_every_module_lives_in_a_wing():
    loose = [n for n in MODULES if n not in ("vggrepro", "vggrepro.__main__") and wing(n) not in vggrepro.WINGS]
    assert loose == []
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(vggrepro.WINGS)


def test_imports_flow_one_way_between_wings():
    order = {w: i for i, w in enumerate(vggrepro.WINGS)}
    upward = [
        (a, b)
        for a, targets in edges().items()
        for b in targets
        if wing(a) and wing(b) and order[wing(b)] > order[wing(a)]
    ]
    assert upward == []


def test_no_import_cycle():
    graph, state, cycles = edges(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_imports_are_at_the_top_but_the_optional_guards():
    inner = set()
    for name, tree in TREES.items():
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(fn)):
                    inner.add((name, fn.name))
    assert inner == set(INNER_IMPORTS)


def test_modules_are_short_and_signatures_narrow():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}
    wide = []
    for name, tree in TREES.items():
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = fn.args
                params = [
                    *a.posonlyargs,
                    *a.args,
                    *a.kwonlyargs,
                    *([a.vararg] if a.vararg else []),
                    *([a.kwarg] if a.kwarg else []),
                ]
                count = len([p for p in params if p.arg not in ("self", "cls")])
                if count > MAX_ARGS:
                    wide.append(f"{name}.{fn.name} ({count})")
    assert wide == []


def readme_map() -> dict[str, str]:
    """The rows of the README's "The package" table: wing folder or module path -> what it holds."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## The package", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(vggrepro[\w./]*)` \| (.+) \|$", section, re.M))


def test_the_readme_maps_every_module_and_nothing_else():
    files = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    wings = {f"vggrepro/{w}/" for w in vggrepro.WINGS}
    rows = readme_map()
    assert set(rows) == files | wings
    assert all(len(holds) > 20 for holds in rows.values())


@pytest.mark.parametrize("wing_name", vggrepro.WINGS)
def test_each_wing_says_what_it_holds(wing_name):
    doc = ast.get_docstring(TREES[f"vggrepro.{wing_name}"])
    assert doc and f"``{wing_name}``" in ast.get_docstring(TREES["vggrepro"])
