"""Docs that cannot rot: the README is a front page, the MkDocs site builds in strict mode, every `tinylm` command
that the README and the docs show is accepted by the real CLI parser, and their Python blocks run as written."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest

from tinylm.cli import build_parser
from tinylm.data.sources import DATASETS
from tinylm.experiments.report import README_END, README_START
from tinylm.run_metrics import FIELDS
from tinylm.suite_file import load_suite_file

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHELL = {"", "bash", "sh", "shell", "console", "text"}
WRAPPERS = {"scripts/train.py": ["suite", "--dataset", "tinyshakespeare"], "scripts/generate.py": ["generate"],
            "scripts/interactive.py": ["chat"]}


def _shell_lines(block: str) -> list[str]:
    """The lines of a shell block, continuation lines (ending in a backslash) joined."""
    return block.replace("\\\n", " ").splitlines()


def _inline_spans(text: str) -> list[str]:
    """Inline code spans outside fenced blocks."""
    return re.findall(r"`([^`\n]+)`", FENCE.sub("", text))


def tinylm_argv(command: str) -> list[str] | None:
    """The argument list `tinylm` would get from a command line as the docs show it, else None (not a command of
    tinylm's: another program, a Python expression, or a usage pattern with [optional] parts)."""
    command = command.strip().removeprefix("$ ")
    if any(mark in command for mark in ("[", "…", "...", "|", "<<")):
        return None  # usage syntax ([--flag], a | b), not a command line
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    if "&&" in words:
        words = words[words.index("&&") + 1:]
    if words[:1] == ["tinylm"]:
        return words[1:] or None  # the program's name alone
    if "tinylm.cli" in words and "-m" in words:
        return words[words.index("tinylm.cli") + 1:]
    if words[:1] == ["python"] and len(words) > 1 and words[1] in WRAPPERS:
        return WRAPPERS[words[1]] + words[2:]
    return None


def shown_commands() -> list[tuple[str, str]]:
    """(page, command) for every `tinylm` command in a shell block or an inline code span of the README and docs."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        lines = [line for lang, block in FENCE.findall(text) if lang in SHELL for line in _shell_lines(block)]
        for command in lines + _inline_spans(text):
            if tinylm_argv(command) is not None:
                found.append((page.relative_to(REPO).as_posix(), command.strip()))
    return found


class _Refused(Exception):
    pass


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()

    def refuse(message: str) -> None:
        raise _Refused(message)

    for action in parser._subparsers._group_actions:  # every subcommand's parser reports instead of exiting
        for sub in action.choices.values():
            sub.error = refuse
            for subaction in sub._subparsers._group_actions if sub._subparsers else []:
                for leaf in subaction.choices.values():
                    leaf.error = refuse
    parser.error = refuse
    return parser.parse_args(argv)


def test_the_readme_is_a_front_page_with_the_figure_and_the_generated_findings():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    generated = text.split(README_START)[1].split(README_END)[0]
    assert "results/reference/figures/headline.png" in generated and (REPO / "results" / "reference" / "figures" /
                                                                     "headline.png").is_file()
    findings = generated.split("### What we found")[1].split("###")[0]
    bullets = [line for line in findings.splitlines() if line.startswith("- ")]
    assert 4 <= len(bullets) <= 6
    for page in re.findall(r"\]\((docs/[\w.-]+\.md)", text):
        assert (REPO / page).is_file(), page


def test_every_command_shown_in_the_readme_and_the_docs_is_accepted_by_the_cli():
    suite = load_suite_file()
    profiles, datasets = set(suite.profiles), set(DATASETS) | set(suite.data)
    commands = shown_commands()
    pages = {page for page, _ in commands}
    assert len(commands) >= 60 and {"README.md", "docs/quickstart.md", "docs/training.md"} <= pages
    wrong = []
    for page, command in commands:
        argv = tinylm_argv(command)
        try:
            args = _parse(argv)
        except _Refused as e:
            wrong.append(f"{page}: {command}: {e}")
            continue
        own_suite = getattr(args, "config", None) is not None  # its profiles and datasets are the user's
        named = [args.profile] if getattr(args, "profile", None) and not own_suite else []
        if any(p not in profiles for p in named):
            wrong.append(f"{page}: {command}: no profile {named}")
        shown = None if own_suite else getattr(args, "dataset", None)
        for ds in [shown] if isinstance(shown, str) else shown or []:
            if ds not in datasets:
                wrong.append(f"{page}: {command}: no dataset '{ds}'")
    assert not wrong, "\n".join(wrong)


def test_the_command_check_refuses_what_the_cli_refuses():
    for command in ("tinylm train --model gpt", "tinylm trian --quick", "tinylm suite --proflie quick",
                    "tinylm generate --prompt"):
        with pytest.raises(_Refused):
            _parse(tinylm_argv(command))
    assert tinylm_argv("pip install -e . && tinylm train --quick  # a comment") == ["train", "--quick"]
    assert tinylm_argv("python scripts/generate.py --model mlp") == ["generate", "--model", "mlp"]
    assert tinylm_argv("tinylm train [--model M]") is None and tinylm_argv("tinylm.load(model='mlp')") is None


def test_every_subcommand_has_its_page_in_the_docs():
    docs = "\n".join(p.read_text(encoding="utf-8") for p in PAGES if p.parent.name == "docs")
    parser = build_parser()
    (action,) = parser._subparsers._group_actions
    missing = [name for name in action.choices if f"tinylm {name}" not in docs]
    assert not missing


def test_every_python_block_in_the_docs_is_valid_python():
    for page in PAGES:
        for lang, block in FENCE.findall(page.read_text(encoding="utf-8")):
            if lang == "python":
                compile(block, str(page), "exec")


def python_blocks(page: Path) -> list[str]:
    return [block for lang, block in FENCE.findall(page.read_text(encoding="utf-8")) if lang == "python"]


@pytest.mark.slow
def test_the_python_blocks_of_the_readme_and_the_api_page_run_as_written(monkeypatch, mirror, data_dir, capsys):
    monkeypatch.setenv("TINYLM_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("TINYLM_DATA_DIR", str(data_dir))
    for page in (REPO / "README.md", REPO / "docs" / "api.md"):
        blocks = python_blocks(page)
        assert blocks, page
        namespace: dict = {}
        for block in blocks:
            exec(compile(block, str(page), "exec"), namespace)  # noqa: S102 - the docs' own code
    out = capsys.readouterr().out
    assert "Run(transformer on tinyshakespeare" in out and "ROMEO:" in out
    assert "unknown key 'n_layer'" in out


@pytest.mark.slow
def test_the_docs_build_in_strict_mode(tmp_path):
    exe = shutil.which("mkdocs")
    assert exe, "mkdocs is missing: install the dev extra (pip install -e '.[dev]')"
    out = subprocess.run([exe, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    site = tmp_path / "site"
    results = (site / "results" / "index.html").read_text(encoding="utf-8")
    assert "figures/headline.png" in results and (site / "figures" / "headline.png").is_file()
    layers = (site / "architecture" / "index.html").read_text(encoding="utf-8")
    contract = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    for module in (m.strip() for layer in contract["layers"] for m in layer.split("|")):
        assert f"<code>{module.removeprefix('tinylm.')}</code>" in layers, module
    assert "<code>quick</code>" in (site / "suite" / "index.html").read_text(encoding="utf-8")
    training = (site / "training" / "index.html").read_text(encoding="utf-8")
    assert all(f"<td><code>{key}</code></td>" in training for key in FIELDS)  # metrics.json, from RunMetrics
    assert "tinylm.api.train" in (site / "api" / "index.html").read_text(encoding="utf-8")
