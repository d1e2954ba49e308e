"""The `tinylm` command: one entry point, subcommands mapped to plain functions.

    tinylm data download|info   get and describe datasets
    tinylm models               list models with parameters and FLOPs/token
    tinylm check-model          check that a model (yours too) keeps the contract of a fair comparison
    tinylm train                train one run
    tinylm suite                train the runs of a profile (skipping completed ones)
    tinylm baseline             the Kneser-Ney n-gram baseline of a dataset
    tinylm eval                 score a run on a split with the common protocol
    tinylm generate / chat      sample text from a run
    tinylm export               write a transformer or llama run as a Hugging Face model (--format hf)
    tinylm report               tables and figures from all runs
    tinylm bench                speed figures of this machine
    tinylm runs                 list run directories

Parsing and exit codes live here; each command's body is in `tinylm.commands` (imported when it runs), and every
decision is made by the package's functions. Model names, ablation flags and dataset names come from the
registries.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

from tinylm import distributed
from tinylm.commands import TRAIN_FLAGS, number, sweep_dest
from tinylm.config import TrainConfig
from tinylm.data import sources
from tinylm.errors import Interrupted, TinyLMError, os_error_line
from tinylm.export import FORMATS
from tinylm.fields import field_docs
from tinylm.models.plugins import is_spec
from tinylm.models.registry import DEFAULT_MODEL, MODELS, builtin_names, known_names, unknown_model
from tinylm.tensorboard_log import LOGGERS


def _command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """The function `name` of tinylm.commands.<module>, imported when the command runs: a command loads only what
    it uses (`tinylm train` never imports matplotlib, and refuses a run in use before it loads any data)."""
    return lambda args: getattr(importlib.import_module(f"tinylm.commands.{module}"), name)(args)


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line and exits with status 2."""

    def error(self, message: str) -> None:  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


MODEL_HELP = (f"{' | '.join(builtin_names())}, an installed plugin's name, or your own class as "
              "path/to/file.py:Class or package.module:Class")


def _model(text: str) -> str:
    """A model as named on the command line: checked (a plugin is loaded when the command runs)."""
    if text == "all" or is_spec(text) or text in known_names():
        return text
    raise argparse.ArgumentTypeError(str(unknown_model(text)))


def _at_least_one(text: str) -> int:
    value = _positive_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# ---------------------------------------------------------------------------------------------------------------
# shared options


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where datasets are stored (default ./data or $TINYLM_DATA_DIR)")
    p.add_argument("--mirror", help="local folder with the dataset files (default $TINYLM_DATA_MIRROR)")


def add_run_options(p: argparse.ArgumentParser) -> None:
    add_data_options(p)
    p.add_argument("--config", help="suite YAML (default configs/default.yaml)")
    p.add_argument("--results-dir", help="where runs are written (default ./results or $TINYLM_RESULTS_DIR)")
    docs = field_docs(TrainConfig)
    for name, kind in TRAIN_FLAGS.items():
        flags = ["--" + name.replace("_", "-")] + (["--lr"] if name == "learning_rate" else [])
        if kind is bool:
            p.add_argument(*flags, dest=name, action="store_true", default=None, help=docs.get(name))
        elif name == "precision":
            p.add_argument(*flags, dest=name, choices=["auto", "fp32", "bf16"], help=docs.get(name))
        else:
            p.add_argument(*flags, dest=name, type=kind, help=docs.get(name))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. model.n_layers=6 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--log", action="append", choices=list(LOGGERS), default=[],
                   help="also log to tensorboard (<run dir>/tensorboard; extra: pip install -e \".[tensorboard]\")")


# ---------------------------------------------------------------------------------------------------------------
# the parser: one small function per subcommand


def _add_data(sub: Any) -> None:
    p = sub.add_parser("data", help="download or describe datasets")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    dsub.required = True
    names = " | ".join([*sources.DATASETS, "all"])
    for action, text in (("download", "fetch and verify dataset files"), ("info", "files, token counts, vocabulary")):
        q = dsub.add_parser(action, help=text)
        q.add_argument("name", nargs="?", default="all", help=names)
        add_data_options(q)
        q.add_argument("--quiet", action="store_true", help="no progress bar")
        if action == "info":
            q.add_argument("--max-vocab", type=int, help="cap the word vocabulary")
    p.set_defaults(func=_command("data", "cmd_data"))


def _add_models(sub: Any) -> None:
    p = sub.add_parser("models", help="list models with parameters and FLOPs per token")
    p.add_argument("--dataset", default="tinyshakespeare", help="whose vocabulary and per-dataset settings to use")
    p.add_argument("--model", type=_model, help=f"only this model (default: every model): {MODEL_HELP}")
    p.add_argument("--config", help="suite YAML (default configs/default.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. model.n_layers=6 (repeatable)")
    p.add_argument("--breakdown", action="store_true", help="parameters per module")
    p.set_defaults(func=_command("data", "cmd_models"))


def _add_check_model(sub: Any) -> None:
    p = sub.add_parser("check-model", help="check that a model keeps the contract of a fair comparison")
    p.add_argument("model", type=_model, metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--dataset", default="tinyshakespeare", help="whose text and vocabulary to check it on")
    p.add_argument("--data", help="or a text file of yours (split 80/10/10)")
    p.add_argument("--level", choices=["char", "word"], help="tokenization of --data")
    p.add_argument("--config", help="suite YAML (default configs/default.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. model.n_layers=2 (repeatable)")
    add_data_options(p)
    p.set_defaults(func=_command("data", "cmd_check_model"))


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train one model (or --model all)")
    p.add_argument("--model", type=_model, help=f"{MODEL_HELP}, or all (the built-in ones); default: {DEFAULT_MODEL}")
    p.add_argument("--dataset", default="tinyshakespeare", help=" | ".join(sources.DATASETS))
    p.add_argument("--data", help="a user text file (split 80/10/10) or a folder with train/valid/test.txt")
    p.add_argument("--level", choices=["char", "word"], help="tokenization of --data")
    p.add_argument("--profile", help="take budgets from a profile of the suite file (quick, full, ...)")
    p.add_argument("--quick", action="store_true", help="the quick profile: minutes on a laptop CPU")
    p.add_argument("--run-name", help="name of the run directory (default <dataset>-<model>-<config digest>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its last checkpoint")
    p.add_argument("--force", action="store_true", help="train again even if a complete run exists")
    p.add_argument("--snapshot-every", type=number, metavar="SECONDS",
                   help="also save the weights every SECONDS of training (score them with `tinylm eval --snapshots`)")
    p.add_argument("--nproc", type=_positive_int, metavar="N",
                   help="data-parallel training in N processes on this machine (runs torchrun; gloo on CPU, NCCL on "
                        "CUDA, one GPU each); the global batch is split among them")
    add_run_options(p)
    p.set_defaults(func=_command("train", "cmd_train"))


def _add_suite(sub: Any) -> None:
    p = sub.add_parser("suite", help="train every run of a profile, skipping completed runs")
    p.add_argument("--profile", default="full", help="quick | full | isoflop | ... (default full)")
    p.add_argument("--quick", action="store_true", help="same as --profile quick")
    p.add_argument("--only", nargs="+", type=_model, help="only these models")
    p.add_argument("--model", type=_model, help="only this model (all: every model)")
    p.add_argument("--dataset", nargs="+", help="only (or also) these datasets")
    p.add_argument("--jobs", type=int, default=1,
                   help="train this many runs at once, each in a process of its own (CPU cores shared out; default 1)")
    ray = p.add_argument_group("Ray (--backend ray: each run a task on a Ray cluster; pip install -e '.[ray]')")
    ray.add_argument("--backend", choices=["processes", "ray"], default="processes",
                     help="processes: this machine, --jobs at a time (default); ray: a Ray cluster")
    ray.add_argument("--address", help="auto (a cluster started with `ray start`) or ray://HOST:PORT; default: a "
                     "Ray instance on this machine for this suite")
    ray.add_argument("--cpus-per-run", type=float, help="CPUs each run reserves and trains with (default 1)")
    ray.add_argument("--gpus-per-run", type=float, help="GPUs each run reserves, e.g. 0.25: four runs share a card "
                     "(default 0)")
    ray.add_argument("--ray-results", choices=["shared", "returned"],
                     help="shared: every node writes into --results-dir, which all of them see (default); "
                     "returned: each task sends its run folder back and this machine writes it")
    ray.add_argument("--ray-weights", action="store_true",
                     help="with --ray-results returned: bring each run's weights back too")
    for name, spec in MODELS.items():
        if spec.sweep_flag:
            p.add_argument(spec.sweep_flag, dest=sweep_dest(name), nargs="+", type=int,
                           help=f"{name} ablation: values of {spec.sweep_field}")
    add_run_options(p)
    p.set_defaults(func=_command("train", "cmd_suite"))


def _add_baseline(sub: Any) -> None:
    p = sub.add_parser("baseline", help="the Kneser-Ney n-gram baseline of a dataset (seconds)")
    p.add_argument("--dataset", nargs="+", default=["tinyshakespeare"], help="datasets (default tinyshakespeare)")
    p.add_argument("--order", type=int, help="n-gram order (default 7 for characters, 5 for words)")
    p.add_argument("--results-dir", help="your working folder (default ./results or $TINYLM_RESULTS_DIR)")
    p.add_argument("--config", help="suite YAML (default configs/default.yaml)")
    add_data_options(p)
    p.set_defaults(func=_command("train", "cmd_baseline"))


def _add_eval(sub: Any) -> None:
    p = sub.add_parser("eval", help="score a run on a split (every token once)")
    p.add_argument("run_dir", help="a run directory (results/runs/<run>)")
    p.add_argument("--split", choices=list(sources.SPLITS)[::-1], default="test", help="which split (default test)")
    p.add_argument("--stride", type=int, help="protocol stride (default: half the context; 512 for window models)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--snapshots", action="store_true", help="score every weight snapshot of the run (--snapshot-every)")
    p.add_argument("--target", type=number, help="with --snapshots: report the first one at this log-likelihood")
    add_data_options(p)
    p.set_defaults(func=_command("score", "cmd_eval"))


def _add_sampling(sub: Any, name: str) -> None:
    text = "sample text from a trained run" if name == "generate" else "interactive prompt"
    p = sub.add_parser(name, help=text)
    p.add_argument("run_dir", nargs="?", help="a run directory (or use --model/--dataset)")
    p.add_argument("--model", type=_model, help="use the best run of this model")
    p.add_argument("--dataset", default="tinyshakespeare", help="with --model: the dataset of the run")
    p.add_argument("--results-dir", help="your working folder (default ./results or $TINYLM_RESULTS_DIR)")
    p.add_argument("--temperature", type=number, default=0.8, help="0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens")
    p.add_argument("--top-p", type=number, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--length", type=int, default=200, help="tokens to generate (characters or words)")
    if name == "generate":
        p.add_argument("--prompt", default="", help="text to continue (default: the model's start token)")
        p.add_argument("--seed", type=int, help="seed for a reproducible sample")
        p.add_argument("--num-samples", type=_positive_int, default=1, help="samples to draw (seeds seed, seed+1, ...)")
        p.add_argument("--no-cache", action="store_true", help="recompute the window at every step")
    p.set_defaults(func=_command("score", "cmd_generate") if name == "generate" else _command("score", "cmd_chat"))


def _add_export(sub: Any) -> None:
    p = sub.add_parser("export", help="write a trained transformer or llama as a Hugging Face GPT-2 or Llama")
    p.add_argument("run_dir", help="a transformer or llama run directory (results/runs/<run>)")
    p.add_argument("out_dir", help="the folder to write: new or empty (or --force)")
    p.add_argument("--format", choices=FORMATS, default="hf",
                   help="hf: a transformers GPT-2 or Llama checkpoint with its tokenizer (the default and only format)")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it is not empty")
    p.set_defaults(func=_command("score", "cmd_export"))


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="tables and figures: your runs beside the shipped ones (or the shipped alone)")
    p.add_argument("--results-dir", help="your working folder (default ./results or $TINYLM_RESULTS_DIR)")
    p.add_argument("--reference", action="store_true",
                   help="regenerate the shipped report (results/reference and the README table) from the shipped runs")
    p.add_argument("--update-readme", action="store_true", help="same as --reference")
    p.add_argument("--readme", help="the README to update with --reference (default: the checkout's README.md)")
    p.add_argument("--config", help="suite YAML (default configs/default.yaml): profiles, ablations, targets")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--profile", help="headline runs: this profile's (default: full where such runs exist, else all)")
    p.set_defaults(func=_command("report", "cmd_report"))


def _add_bench(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure this machine: matmul peak, training, evaluation, generation")
    p.add_argument("--results-dir", help="your working folder (default ./results or $TINYLM_RESULTS_DIR)")
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke test)")
    p.add_argument("--only", nargs="+", type=_model, help="only these models' training speed")
    p.add_argument("--precision", choices=["fp32", "bf16", "both"],
                   help="default: both where bf16 is native (AMX, AVX-512 bf16, GPU), else fp32")
    p.add_argument("--time-to-target", action=argparse.BooleanOptionalAction, default=None,
                   help="train the sprint profile (5 min) for the time to -1.77 on test (default: on unless --quick)")
    p.add_argument("--repeats", type=_at_least_one, default=5, help="repeats per figure (the median is reported)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--profile", help="instead: every run of this suite profile (e.g. full) in fp32 against bf16, on "
                                     "its own data (the precision each run should train in here)")
    add_data_options(p)
    p.set_defaults(func=_command("report", "cmd_bench"))


def _add_runs(sub: Any) -> None:
    p = sub.add_parser("runs", help="list your runs and the shipped ones, with what can be done with each")
    p.add_argument("--results-dir", help="your working folder (default ./results or $TINYLM_RESULTS_DIR)")
    p.set_defaults(func=_command("report", "cmd_runs"))


def build_parser() -> Parser:
    """The `tinylm` argument parser with every subcommand."""
    parser = Parser(prog="tinylm", description="A lab bench for tiny language models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for add in (_add_data, _add_models, _add_check_model, _add_train, _add_suite, _add_baseline, _add_eval):
        add(sub)
    _add_sampling(sub, "generate")
    _add_sampling(sub, "chat")
    for add in (_add_export, _add_report, _add_bench, _add_runs, _add_serve):
        add(sub)
    return parser


def _add_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="the playground: a local web page comparing runs token by token")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--results-dir", help="your working folder (default ./results or $TINYLM_RESULTS_DIR)")
    p.add_argument("--device", default="cpu", help="where the models score and sample (default cpu)")
    add_data_options(p)
    p.set_defaults(func=_command("serve", "cmd_serve"))


def _warning_line(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    print(f"tinylm: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user mistakes print one line and exit non-zero."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _warning_line
    try:
        return args.func(args)
    except Interrupted as e:
        if distributed.world().main:
            print(f"\n{e}", file=sys.stderr)
            print(f"resume with: tinylm train --resume {e.run_dir}", file=sys.stderr)
        return e.exit_code
    except TinyLMError as e:
        print(f"tinylm {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os._exit(0)
    except RuntimeError as e:
        w = distributed.world()
        if w.size == 1 or not any(k in str(e) for k in ("gloo", "NCCL", "Connection", "closed")):
            raise
        print(f"tinylm {args.command}: error: process {w.rank} of {w.size} stopped because another one failed "
              "(its message is above)", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"tinylm {args.command}: error: {os_error_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
