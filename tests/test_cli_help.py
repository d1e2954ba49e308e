"""`--help` works for the command and every subcommand (found from the parser), and usage errors are one line."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinylm.cli import build_parser, main


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path below `parser`, e.g. ("data",), ("data", "download"), ("train",)."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((*path, name))
                out += subcommands(sub, (*path, name))
    return out


COMMANDS = subcommands(build_parser())
GROUPS = [c for c in COMMANDS if any(len(d) > len(c) and d[: len(c)] == c for d in COMMANDS)]  # e.g. ("data",)


def help_of(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code in (0, None), f"{argv} --help exited with {exc.value.code}"
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def test_the_parser_has_subcommands_including_nested_ones():
    assert len([c for c in COMMANDS if len(c) == 1]) >= 5
    assert ("data", "download") in COMMANDS and ("data", "info") in COMMANDS
    assert len(set(COMMANDS)) == len(COMMANDS)


def test_top_level_help(capsys):
    out = help_of(capsys, [])
    assert out.startswith("usage: tinylm")
    for (name,) in [c for c in COMMANDS if len(c) == 1]:
        assert name in out, f"{name} is missing from tinylm --help"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_subcommand_help(capsys, command):
    out = help_of(capsys, list(command))
    first = out.splitlines()[0]
    assert first.startswith("usage: tinylm " + " ".join(command)), first
    assert "--help" in out


@pytest.mark.parametrize("command", GROUPS, ids=" ".join)
def test_nested_help_lists_its_actions(capsys, command):
    out = help_of(capsys, list(command))
    for child in [d[-1] for d in COMMANDS if len(d) == len(command) + 1 and d[: len(command)] == command]:
        assert child in out


def test_unknown_subcommand_is_a_one_line_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "no-such-command" in lines[0] and "--help" in lines[0]
    assert lines[0].startswith("tinylm: error:")


def test_missing_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "--help" in capsys.readouterr().err


def test_installed_console_script_prints_help():
    """The `tinylm` entry point of the installed package (next to this Python, else on PATH)."""
    script = Path(sys.executable).with_name("tinylm")
    exe = str(script) if script.is_file() else shutil.which("tinylm")
    assert exe, "the tinylm console script is not installed (pip install -e .)"
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tinylm")


def test_training_flags_are_documented_by_the_config_fields(capsys):
    """The help of --max-flops etc. is TrainConfig's field docstring, not a second copy written by hand."""
    from tinylm.config import TrainConfig
    from tinylm.fields import field_docs

    out = " ".join(help_of(capsys, ["train"]).split())
    for name in ("max_flops", "batch_size", "learning_rate"):
        assert field_docs(TrainConfig)[name] in out


def test_every_option_has_a_description():
    """A user reading --help learns what each option does."""
    missing = []

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), ("tinylm",))
    assert not missing, missing
