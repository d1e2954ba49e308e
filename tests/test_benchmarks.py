"""benchmarks/ stays re-runnable and documented: every script says how long it takes, is listed in
benchmarks/README.md and docs/benchmarks.md, compiles (or passes `bash -n`) and imports only names the package
still has; every record in benchmarks/logs/ is indexed; no run tarballs and no issue numbers. Reads files only (no
training, no torch import)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
LOGS = BENCH / "logs"
SCRIPTS = sorted([*BENCH.glob("*.py"), *BENCH.glob("*.sh")])
PY = [s for s in SCRIPTS if s.suffix == ".py"]
SH = [s for s in SCRIPTS if s.suffix == ".sh"]
DURATION = re.compile(r"\btakes about \d[\d.,]*(?: to \d[\d.,]*)?\s+(?:seconds?|minutes?|hours?)\b", re.IGNORECASE)
"""The convention: a script's description says "takes about N seconds/minutes/hours" (a range "N to M" allowed)."""
ISSUE = re.compile(r"issue ?#?[0-9]+", re.IGNORECASE)


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def description(script: Path) -> str:
    """The module docstring of a .py script, or the header comment of a .sh script (its leading # lines)."""
    text = script.read_text(encoding="utf-8")
    if script.suffix == ".py":
        return ast.get_docstring(ast.parse(text)) or ""
    header = []
    for line in text.splitlines()[1:]:  # after the #! line
        if not line.startswith("#"):
            break
        header.append(re.sub(r"^# ?", "", line))
    return "\n".join(header)


def test_there_are_scripts_to_check():
    assert PY and SH


@pytest.mark.parametrize("script", SCRIPTS, ids=ids(SCRIPTS))
def test_every_script_says_how_long_it_takes(script):
    assert DURATION.search(description(script)), f"{script.name}: say 'takes about N minutes' (or seconds) up top"


@pytest.mark.parametrize("script", PY, ids=ids(PY))
def test_every_python_script_shows_its_command(script):
    assert f"python benchmarks/{script.name}" in description(script)


def test_every_task_of_the_gpu_script_says_how_long_it_takes():
    script = BENCH / "gpu.sh"
    tasks = re.search(r'^TASKS="([^"]+)"', script.read_text(encoding="utf-8"), re.MULTILINE).group(1).split()
    said, current = {}, None  # an entry: "  tests    The CUDA-only tests ...", then lines indented deeper
    for line in description(script).splitlines():
        if entry := re.match(r"  (\w+) {2,}\S", line):
            current = entry.group(1)
            said[current] = line
        elif current and re.match(r" {3,}\S", line):
            said[current] += "\n" + line
        else:
            current = None
    assert tasks
    for task in tasks:
        assert task in said, f"gpu.sh: the header has no entry for its task '{task}'"
        assert DURATION.search(said[task]), f"gpu.sh: the '{task}' entry does not say how long it takes"


def test_the_gpu_script_refuses_an_unknown_task_before_running_anything(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "WORK": str(tmp_path / "work"), "DEVICE": "cpu"}
    done = subprocess.run(["bash", str(BENCH / "gpu.sh"), "tests", "no-such-task"], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "no-such-task" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("page", [BENCH / "README.md", REPO / "docs" / "benchmarks.md"], ids=["README", "docs"])
def test_every_script_is_listed(page):
    text = page.read_text(encoding="utf-8")
    missing = [s.name for s in SCRIPTS if s.name not in text]
    assert not missing, f"{page.relative_to(REPO)} does not list {missing}"


def test_every_record_in_the_logs_is_indexed():
    index = (LOGS / "README.md").read_text(encoding="utf-8")
    records = [p.name for p in LOGS.iterdir() if p.name != "README.md"]
    assert records
    assert not [r for r in records if f"`{r}`" not in index]


def test_the_logs_index_lists_only_records_that_exist():
    entries = re.findall(r"^- `([^`]+)`", (LOGS / "README.md").read_text(encoding="utf-8"), re.MULTILINE)
    assert entries
    assert not [e for e in entries if not (LOGS / e).is_file()]


def test_no_run_tarballs_under_benchmarks():
    archives = [p for p in BENCH.rglob("*") if p.name.endswith((".tgz", ".tar", ".tar.gz", ".zip"))]
    assert not archives, f"run tarballs belong in $OUT, not in git: {archives}"


def test_nothing_in_benchmarks_or_its_docs_page_names_an_issue_number():
    files = [p for p in BENCH.rglob("*") if p.is_file()] + [REPO / "docs" / "benchmarks.md"]
    hits = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in files
            for m in ISSUE.finditer(p.read_text(encoding="utf-8", errors="replace"))]
    assert not hits


@pytest.mark.parametrize("script", PY, ids=ids(PY))
def test_every_python_script_compiles(script):
    compile(script.read_text(encoding="utf-8"), str(script), "exec")


@pytest.mark.parametrize("script", SH, ids=ids(SH))
def test_every_shell_script_passes_bash_n(script):
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def top_level_names(module: Path) -> set[str]:
    """Names a module defines or imports at its top level (what `from module import name` can find)."""
    names = set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def module_file(name: str) -> Path | None:
    base = REPO / "src" / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@pytest.mark.parametrize("script", PY, ids=ids(PY))
def test_every_tinylm_name_a_benchmark_imports_exists(script):
    """Read from the source (no import): a module or name the package renamed fails here, not on a GPU."""
    wrong = []
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tinylm":
            module = module_file(node.module)
            if module is None:
                wrong.append(node.module)
                continue
            for alias in node.names:
                if alias.name not in top_level_names(module) and module_file(f"{node.module}.{alias.name}") is None:
                    wrong.append(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            wrong += [a.name for a in node.names if a.name.startswith("tinylm") and module_file(a.name) is None]
    assert not wrong, f"{script.name} imports what src/tinylm no longer has: {wrong}"
