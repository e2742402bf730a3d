"""The shape of the source tree, read with `ast` (no imports): functions stay short, the layers
import downward only (hmm → models → probes → experiments), and no two modules import each other,
not even through an import inside a function (a runtime circle). `if TYPE_CHECKING:` imports are
for type checkers only and do not count, nor do the imports inside the process classes' methods
(GHMM, HMM): they hand on to msp, information, fractal and spec (`p.msp()`, `p.optimal_loss()`:
the notebook API)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hmm", "models", "probes", "experiments")
LAYER = {name: depth for depth, name in enumerate(PACKAGES)}
MAX_FUNCTION_LINES = 60


def _sources(*roots: str) -> list[Path]:
    return sorted(p for root in roots for p in (ROOT / root).rglob("*.py"))


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# module -> the classes whose methods hand on to other modules (the process classes' notebook API)
HANDS_ON = {"hmm.process": ("GHMM", "HMM")}


def _runtime_imports(tree: ast.Module, hands_on: tuple[str, ...] = ()) -> set[str]:
    """Modules of ours imported anywhere in the file except under `if TYPE_CHECKING:` and inside
    the classes `hands_on`."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
        if isinstance(node, ast.ClassDef) and node.name in hands_on:
            skip |= {id(n) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in _sources(*PACKAGES)}
    graph = {}
    for name, path in modules.items():
        imported = _runtime_imports(ast.parse(path.read_text()), HANDS_ON.get(name, ()))
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def test_no_function_is_longer_than_60_lines():
    long = set()
    for path in _sources(*PACKAGES, "benchmarks"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long.add(f"{path.relative_to(ROOT)}:{node.name}")
    assert sorted(long) == []


def test_layers_import_downward_only():
    upward = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if LAYER[target.split(".")[0]] > LAYER[module.split(".")[0]]
    ]
    assert upward == []


def test_no_import_circle_between_modules():
    graph = _graph()
    circles = []

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph[module]):
            if target in path:
                circles.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in done:
                visit(target, path + [target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert circles == []
