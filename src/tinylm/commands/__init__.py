"""The bodies of the `tinylm` subcommands, one module per group, each imported only when its command runs (so
`tinylm train` never loads matplotlib); `tinylm.cli` parses the command line and calls them. What the parser and the
commands share lives here."""

from __future__ import annotations

import argparse
from typing import Any

from tinylm.data.config import DataConfig
from tinylm.errors import UsageError
from tinylm.suite_file import budget_resets


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None


#: TrainConfig fields with a flag of their own (help texts are the fields' docstrings), and the flag's type.
TRAIN_FLAGS = {"epochs": number, "max_steps": int, "max_tokens": int, "max_flops": number, "max_time": number,
               "batch_size": int, "learning_rate": number, "seed": int, "device": str, "precision": str,
               "compile": bool}


def sweep_dest(model: str) -> str:
    return f"sweep_{model}"


def data_from_args(args: argparse.Namespace) -> DataConfig | None:
    """The data section of `--data FILE --level L`, or None for a registered dataset (`--level` alone is refused)."""
    if getattr(args, "data", None):
        return DataConfig.text(args.data, args.level)
    if getattr(args, "level", None):
        raise UsageError("--level applies to --data files only; registered datasets have a fixed level")
    return None


def train_values(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Training values given on the command line, and `--set` resets: a budget given there replaces the file's."""
    values = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k, None) is not None}
    return values, budget_resets(values)
