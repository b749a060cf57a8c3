"""The package layers are a contract (pyproject.toml [tool.importlinter]): kept, acyclic, and able to fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_layer_contract_is_kept():
    done = _lint(ROOT, ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or modules importing themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.find_modules_directly_imported_by(module):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1 or module in graph.find_modules_directly_imported_by(module):
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles_also_inside_functions():
    graph = grimp.build_graph("trixai", cache_dir=None)  # grimp reads every import statement, nested ones too
    assert _cycles(graph) == []


def test_a_planted_upward_import_is_refused(tmp_path):
    """A copy of the package whose core imports a task inside a function: lint-imports must refuse it."""
    shutil.copytree(ROOT / "trixai", tmp_path / "trixai", ignore=shutil.ignore_patterns("__pycache__", "conf"))
    planted = tmp_path / "trixai" / "core" / "kinds.py"
    planted.write_text(planted.read_text() + "\n\ndef _planted():\n    from trixai.tasks import train  # noqa\n")
    done = _lint(tmp_path, tmp_path)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "BROKEN" in done.stdout and "trixai.core.kinds -> trixai.tasks.train" in done.stdout
