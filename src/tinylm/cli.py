"""The `tinylm` command: one entry point, subcommands mapped to plain functions.

    tinylm data download|info   get and describe datasets
    tinylm models               list models with parameters and FLOPs/token
    tinylm train                train one run
    tinylm suite                train the runs of a profile (skipping completed ones)
    tinylm baseline             the Kneser-Ney n-gram baseline of a dataset
    tinylm eval                 score a run on a split with the common protocol
    tinylm generate / chat      sample text from a run
    tinylm export               write a transformer run as a Hugging Face GPT-2 (--format hf)
    tinylm report               tables and figures from all runs
    tinylm bench                speed figures of this machine
    tinylm runs                 list run directories

Parsing, printing and exit codes live here; every decision is made by the package's functions. Model names,
ablation flags and dataset names come from the registries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from tinylm import distributed
from tinylm.api import find, load
from tinylm.config import DataConfig, RunConfig, TrainConfig
from tinylm.data import sources
from tinylm.data.corpus import describe_dataset, load_corpus
from tinylm.device import pick_device
from tinylm.errors import TinyLMError, UsageError, os_error_line
from tinylm.experiments.report import write_report
from tinylm.export import FORMATS, export_hf
from tinylm.fields import field_docs
from tinylm.generate.interactive import (
    Chat,
    check_sampling,
    describe,
    encode_prompt,
)
from tinylm.models.registry import DEFAULT_MODEL, MODELS, model_names
from tinylm.paths import Paths, results_dir
from tinylm.recorder import train_run
from tinylm.run_folders import find_runs, read_metrics, reference_dir, resume_config
from tinylm.run_lookup import duration
from tinylm.run_metrics import RunMetrics
from tinylm.speed import run_bench, score_snapshots, summary_lines, time_to
from tinylm.suite_file import SuiteFile, budget_resets, data_config, load_suite_file, model_rows, resolve_run
from tinylm.suite_plan import PlannedRun, ProfileLabels
from tinylm.suite_runner import SuiteResult, run_suite, train_baselines
from tinylm.tensorboard_log import LOGGERS, check_logs
from tinylm.training.evaluate import protocol_note
from tinylm.training.loop import Interrupted


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


def _at_least_one(text: str) -> int:
    value = _positive_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None


# ---------------------------------------------------------------------------------------------------------------
# shared options


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where datasets are stored (default ./data or $TINYLM_DATA_DIR)")
    p.add_argument("--mirror", help="local folder with the dataset files (default $TINYLM_DATA_MIRROR)")


#: TrainConfig fields with a flag of their own (help texts are the fields' docstrings), and the flag's type.
TRAIN_FLAGS = {"epochs": _number, "max_steps": int, "max_tokens": int, "max_flops": _number, "max_time": _number,
               "batch_size": int, "learning_rate": _number, "seed": int, "device": str, "precision": str,
               "compile": bool}


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


def train_values(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Training values given on the command line, and `--set` resets: a budget given there replaces the file's."""
    values = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k, None) is not None}
    return values, budget_resets(values)


# ---------------------------------------------------------------------------------------------------------------
# subcommands


def cmd_data(args: argparse.Namespace) -> int:
    if args.action == "download":
        names = list(sources.DATASETS) if args.name in (None, "all") else [args.name]
        for name in names:
            fetched = sources.fetch_dataset(name, args.data_dir, args.mirror, quiet=args.quiet)
            for _, (path, origin) in fetched.items():
                print(f"{path}  ok (sha256 verified; from {origin})")
        return 0

    names = list(sources.DATASETS) if args.name in (None, "all") else [args.name]
    suite = load_suite_file() if args.name not in (None, "all") else SuiteFile()
    for name in names:
        entry = data_config(suite, name) if name in suite.data else None  # e.g. wikitext2-10k
        base = entry.name if entry else sources.canonical_name(name)
        max_vocab = args.max_vocab if args.max_vocab is not None else (entry.max_vocab if entry else None)
        print("\n".join(describe_dataset(DataConfig(name=base, max_vocab=max_vocab), args.data_dir, args.mirror)))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    data, vocab, rows = model_rows(load_suite_file(args.config), args.dataset, args.model, args.set)
    header = f"{'model':<12} {'params':>12} {'fwd FLOPs/token':>16} {'train FLOPs/token':>18}"
    print(f"{header}  config ({data.label}, V={vocab})")
    for row in rows:
        print(f"{row.name:<12} {row.params:>12,} {row.flops_per_token:>16,.0f} {row.train_flops_per_token:>18,.0f}  "
              f"{row.settings}")
        for part, n in row.breakdown.items() if args.breakdown else ():
            print(f"{'':<14}{part:<20} {n:>12,}")
    return 0


def _resolve_from_args(args: argparse.Namespace, model: str, suite: SuiteFile, profile: str | None) -> RunConfig:
    values, sets = train_values(args)
    data = None
    if getattr(args, "data", None):
        path = Path(args.data).resolve()
        data = DataConfig(name=path.stem or "text", level=args.level, path=str(path))
    elif getattr(args, "level", None):
        raise UsageError("--level applies to --data files only; registered datasets have a fixed level")
    return resolve_run(model, args.dataset, suite=suite, profile=profile, train_values=values, data=data,
                       sets=sets + list(args.set or []))


def _print_result(m: RunMetrics, run_dir: Path, what: str) -> None:
    if not distributed.world().main:
        return
    tl, ppl, tps = m.test_loglik, m.test_perplexity, m.tokens_per_second
    quality = "no test score" if tl is None else f"test LL {tl:.4f} nats/token, ppl {ppl:.2f}"
    speed = f"{tps:,.0f} tok/s" if tps else "-"
    print(
        f"{what:<8} {m.model:<11} {m.dataset:<16} {quality}, {m.params or 0:,} params, "
        f"{m.train_flops or 0:.2e} FLOPs, {speed}, {m.train_seconds or 0:.0f} s -> {run_dir}"
    )


def announce(info: dict[str, Any]) -> None:
    """One line before training: what will be trained, and how long it should take here."""
    what = f"{info['tokens']:,} tokens ({info['steps']:,} steps of {info['batch_size']} x {info['seq_len']})" \
        if info["tokens"] is not None else f"{duration(info['max_time'])} of training (time budget)"
    start = f"resuming {info['model']} on {info['dataset']} at step {info['from_step']:,}" if info["from_step"] else \
        f"training {info['model']} on {info['dataset']}"
    total = info["train_seconds"] + info["eval_seconds"]
    print(f"{start}: {info['params']:,} params, {what}{', bf16 autocast' if info.get('bf16') else ''}; expect "
          f"~{duration(total)} here ({info['tokens_per_second']:,.0f} tokens/s measured for 2 s; "
          f"{duration(info['eval_seconds'])} of it evaluation)", flush=True)
    if info.get("bf16") and not info.get("bf16_native"):
        print("note: this run trains in bf16 autocast, which this machine has no native instructions for (AVX-512 "
              "bf16, AMX or a bf16 GPU), so it may train slower than fp32; --precision fp32 trains it in fp32 "
              "(a different run)", flush=True)


def _train_jobs(args: argparse.Namespace) -> list[tuple[RunConfig, dict[str, Any]]]:
    """The runs `tinylm train` asked for, as (config, train_run keywords), checked for every user mistake."""
    common = {"quiet": args.quiet, "snapshot_every": args.snapshot_every, "announce": announce,
              "logs": check_logs(args.log)}
    if args.resume:
        run_dir = Path(args.resume)
        if args.model or args.data or args.profile or args.quick or args.config:
            raise UsageError("--resume takes the saved config; drop --model, --data, --profile, --quick and --config")
        values, resets = train_values(args)
        asked = resume_config(run_dir, values, resets + list(args.set or []))
        return [(asked, {**common, "paths": Paths.of(run_dir.parent, args.data_dir, args.mirror), "resume": True,
                         "run_dir": run_dir, "profile": _saved_profile(run_dir)})]
    paths = Paths.of(args.results_dir, args.data_dir, args.mirror)
    suite = load_suite_file(args.config)
    labels = ProfileLabels(suite)
    models = model_names() if args.model == "all" else [args.model or DEFAULT_MODEL]
    jobs = []
    for model in models:
        cfg = _resolve_from_args(args, model, suite, _profile(args))
        jobs.append((cfg, {**common, "paths": paths, "run_name": args.run_name if len(models) == 1 else None,
                           "force": args.force, "profile": labels.label(cfg, _profile(args))}))
    return jobs


def _saved_profile(run_dir: Path) -> str | None:
    """The profile label a run was trained with (None if it has no metrics yet)."""
    metrics = read_metrics(run_dir)
    return None if metrics is None else metrics.profile


def cmd_train(args: argparse.Namespace) -> int:
    jobs = _train_jobs(args)
    if args.nproc is not None and distributed.world().size == 1:
        # Every mistake that can be found here is reported here, once, before any process starts.
        for cfg, kw in jobs:
            pick_device(cfg.train.device)
            distributed.check_batch(cfg.train.batch_size, args.nproc)
            load_corpus(cfg.data, kw["paths"].data, kw["paths"].mirror, quiet=args.quiet)  # downloads, tokenizes once
        return distributed.launch(args.nproc, args.argv)
    for cfg, kw in jobs:
        metrics, run_dir, what = train_run(cfg, **kw)
        _print_result(metrics, run_dir, what)
    return 0


def _profile(args: argparse.Namespace) -> str | None:
    return "quick" if getattr(args, "quick", False) else getattr(args, "profile", None)


def cmd_suite(args: argparse.Namespace) -> int:
    profile = "quick" if args.quick else args.profile
    axes = {name: {spec.sweep_field: getattr(args, _sweep_dest(name))} for name, spec in MODELS.items()
            if spec.sweep_flag and getattr(args, _sweep_dest(name), None)}
    only = args.only or ([args.model] if args.model and args.model != "all" else None)
    values, sets = train_values(args)
    paths = Paths.of(args.results_dir, args.data_dir, args.mirror)

    def planned(runs: list[PlannedRun]) -> None:
        print(f"suite '{profile}': {len(runs)} runs -> {paths.results / 'runs'}")
        if args.jobs > 1:
            print(f"{min(args.jobs, len(runs))} runs at a time, each in a process of its own")

    def finished(r: SuiteResult) -> None:
        _print_result(r.metrics, r.run_dir, f"[{r.index}/{r.of}] {r.what}")

    run_suite(load_suite_file(args.config), profile, only=only, datasets=args.dataset, axes=axes or None,
              train_values=values, sets=sets + list(args.set or []), paths=paths, jobs=args.jobs, quiet=args.quiet,
              logs=args.log, on_plan=planned, on_baseline=_print_baseline, on_result=finished, announce=announce)
    return 0


def _print_baseline(b: dict[str, Any]) -> None:
    print(f"baseline {b['model']:<15} {b['dataset']:<16} test LL {b['test_loglik']:.4f} nats/token, "
          f"ppl {b['test_perplexity']:.2f} ({b['seconds']:.1f} s)")


def cmd_baseline(args: argparse.Namespace) -> int:
    if args.order is not None and args.order < 2:
        raise UsageError(f"--order must be at least 2 (got {args.order})")
    suite = load_suite_file(args.config)
    datas, paths = [data_config(suite, d) for d in args.dataset], Paths.of(args.results_dir, args.data_dir, args.mirror)
    train_baselines(datas, paths, args.order, on_baseline=_print_baseline)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.snapshots:
        return _eval_snapshots(args)
    if args.target is not None:
        raise UsageError("--target applies with --snapshots only")
    run = load(args.run_dir)
    result = run.evaluate(args.split, stride=args.stride, device=args.device, data_dir=args.data_dir,
                          mirror=args.mirror)
    out = {"run": str(args.run_dir), "split": args.split, **result.as_dict(args.split), "stride": result.stride,
           "window": result.window}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.split}: loglik {result.loglik:.4f} nats/token, perplexity {result.perplexity:.3f}, "
              f"{result.bits:.4f} bits/token over {result.tokens:,} tokens (the first token of the split has no "
              f"context and is not scored)")
        print(protocol_note(run.model, result.window, result.stride))
    return 0


def _eval_snapshots(args: argparse.Namespace) -> int:
    if args.stride is not None:
        raise UsageError("--stride does not apply with --snapshots (they are scored by the standard protocol)")
    split, paths = args.split, Paths.of(data=args.data_dir, mirror=args.mirror)
    rows = score_snapshots(args.run_dir, split, paths, pick_device(args.device))
    hit = time_to(rows, args.target, split) if args.target is not None else None
    if args.json:
        print(json.dumps({"run": str(args.run_dir), "split": split, "snapshots": rows, "target": args.target,
                          "first_at_target": hit}))
        return 0
    print(f"{'step':>8} {'tokens':>12} {'train s':>8} {split + ' LL':>10}")
    for r in rows:
        print(f"{r['step']:>8,} {r['tokens']:>12,} {r['seconds']:>8.1f} {r[f'{split}_loglik']:>10.4f}")
    if args.target is not None:
        print(f"{args.target} reached after {hit['seconds']:.1f} s of training (step {hit['step']:,})" if hit
              else f"{args.target} not reached by any snapshot")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    check_sampling(args.temperature, args.top_k, args.top_p, args.length, args.seed)
    run = load(args.run_dir, model=None if args.run_dir else args.model, dataset=args.dataset,
               results=args.results_dir)
    encode_prompt(run, args.prompt, warn=lambda message: None)  # a prompt it cannot read fails first
    seed = "random" if args.seed is None else args.seed
    print(f"tinylm generate: {describe(run, args.temperature, args.top_k, args.top_p, args.length)}, "
          f"seed {seed}", file=sys.stderr)
    for i in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {i + 1}")
        seed = None if args.seed is None else args.seed + i
        run.generate(args.prompt, args.length, args.temperature, args.top_k, args.top_p, seed,
                     use_cache=not args.no_cache, stream=sys.stdout)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    check_sampling(args.temperature, args.top_k, args.top_p, args.length)
    run_dir = find(args.run_dir, model=None if args.run_dir else args.model, dataset=args.dataset,
                   results=args.results_dir)
    chat = Chat(str(run_dir), None, args.dataset, args.results_dir, temperature=args.temperature,
                top_k=args.top_k, top_p=args.top_p, length=args.length)
    return chat.loop()


def cmd_export(args: argparse.Namespace) -> int:
    out = export_hf(args.run_dir, args.out_dir, force=args.force)
    print(f"wrote {out}: a transformers GPT-2 (config.json, model.safetensors) and its tokenizer; load them with "
          f"GPT2LMHeadModel.from_pretrained('{out}') and AutoTokenizer.from_pretrained('{out}')")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    reference = reference_dir()
    if args.reference or args.update_readme:
        if reference is None:
            raise UsageError("no shipped reference results here (results/reference/runs); run from a checkout of "
                             "tinylm, or drop --reference to report on your own runs")
        readme = Path(args.readme) if args.readme else reference.parent.parent / "README.md"
        paths = write_report(reference, None, reference, readme=readme, figures=not args.no_figures,
                             profile=args.profile, config=args.config)
    else:
        working = results_dir(args.results_dir)
        paths = write_report(working, working, reference, figures=not args.no_figures, profile=args.profile,
                             config=args.config)
    print(f"wrote {paths[1]} ({len(paths)} files, figures under {paths[1].parent / 'figures'})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    def progress(what: str) -> None:  # one line, overwritten on a terminal; nothing in logs
        if sys.stderr.isatty():
            print(f"  measuring {what} ...".ljust(79)[:79], end="\r", file=sys.stderr, flush=True)

    report, path = run_bench(Paths.of(args.results_dir, args.data_dir, args.mirror), quick=args.quick,
                             only=args.only, precision=args.precision, repeats=args.repeats, device=args.device,
                             time_target=args.time_to_target, profile=args.profile, progress=progress)
    if sys.stderr.isatty():
        print(" " * 79, end="\r", file=sys.stderr, flush=True)
    print("\n".join(summary_lines(report)))
    print(f"wrote {path}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    found = find_runs(results_dir(args.results_dir), reference_dir())
    if not any(r.source == "yours" for r in found):
        print("no runs of yours yet; train one with: tinylm train --quick")
    for r in found:
        tl = r.metrics.test_loglik
        print(f"{r.path.name:<40} {r.source:<10} {r.state:<35} test LL {'-' if tl is None else f'{tl:.4f}'}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# the parser: one small function per subcommand


def _sweep_dest(model: str) -> str:
    return f"sweep_{model}"


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
    p.set_defaults(func=cmd_data)


def _add_models(sub: Any) -> None:
    p = sub.add_parser("models", help="list models with parameters and FLOPs per token")
    p.add_argument("--dataset", default="tinyshakespeare", help="whose vocabulary and per-dataset settings to use")
    p.add_argument("--model", choices=model_names(), help="only this model (default: every model)")
    p.add_argument("--config", help="suite YAML (default configs/default.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. model.n_layers=6 (repeatable)")
    p.add_argument("--breakdown", action="store_true", help="parameters per module")
    p.set_defaults(func=cmd_models)


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train one model (or --model all)")
    p.add_argument("--model", choices=[*model_names(), "all"], help=f"default: {DEFAULT_MODEL}")
    p.add_argument("--dataset", default="tinyshakespeare", help=" | ".join(sources.DATASETS))
    p.add_argument("--data", help="a user text file (split 80/10/10) or a folder with train/valid/test.txt")
    p.add_argument("--level", choices=["char", "word"], help="tokenization of --data")
    p.add_argument("--profile", help="take budgets from a profile of the suite file (quick, full, ...)")
    p.add_argument("--quick", action="store_true", help="the quick profile: minutes on a laptop CPU")
    p.add_argument("--run-name", help="name of the run directory (default <dataset>-<model>-<config digest>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its last checkpoint")
    p.add_argument("--force", action="store_true", help="train again even if a complete run exists")
    p.add_argument("--snapshot-every", type=_number, metavar="SECONDS",
                   help="also save the weights every SECONDS of training (score them with `tinylm eval --snapshots`)")
    p.add_argument("--nproc", type=_positive_int, metavar="N",
                   help="data-parallel training in N processes on this machine (runs torchrun; gloo on CPU, NCCL on "
                        "CUDA, one GPU each); the global batch is split among them")
    add_run_options(p)
    p.set_defaults(func=cmd_train)


def _add_suite(sub: Any) -> None:
    p = sub.add_parser("suite", help="train every run of a profile, skipping completed runs")
    p.add_argument("--profile", default="full", help="quick | full | isoflop | ... (default full)")
    p.add_argument("--quick", action="store_true", help="same as --profile quick")
    p.add_argument("--only", nargs="+", choices=model_names(), help="only these models")
    p.add_argument("--model", choices=[*model_names(), "all"], help="only this model (all: every model)")
    p.add_argument("--dataset", nargs="+", help="only (or also) these datasets")
    p.add_argument("--jobs", type=int, default=1,
                   help="train this many runs at once, each in a process of its own (CPU cores shared out; default 1)")
    for name, spec in MODELS.items():
        if spec.sweep_flag:
            p.add_argument(spec.sweep_flag, dest=_sweep_dest(name), nargs="+", type=int,
                           help=f"{name} ablation: values of {spec.sweep_field}")
    add_run_options(p)
    p.set_defaults(func=cmd_suite)


def _add_baseline(sub: Any) -> None:
    p = sub.add_parser("baseline", help="the Kneser-Ney n-gram baseline of a dataset (seconds)")
    p.add_argument("--dataset", nargs="+", default=["tinyshakespeare"], help="datasets (default tinyshakespeare)")
    p.add_argument("--order", type=int, help="n-gram order (default 7 for characters, 5 for words)")
    p.add_argument("--results-dir", help="your working folder (default ./results or $TINYLM_RESULTS_DIR)")
    p.add_argument("--config", help="suite YAML (default configs/default.yaml)")
    add_data_options(p)
    p.set_defaults(func=cmd_baseline)


def _add_eval(sub: Any) -> None:
    p = sub.add_parser("eval", help="score a run on a split (every token once)")
    p.add_argument("run_dir", help="a run directory (results/runs/<run>)")
    p.add_argument("--split", choices=list(sources.SPLITS)[::-1], default="test", help="which split (default test)")
    p.add_argument("--stride", type=int, help="protocol stride (default: half the context; 512 for window models)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--snapshots", action="store_true", help="score every weight snapshot of the run (--snapshot-every)")
    p.add_argument("--target", type=_number, help="with --snapshots: report the first one at this log-likelihood")
    add_data_options(p)
    p.set_defaults(func=cmd_eval)


def _add_sampling(sub: Any, name: str) -> None:
    text = "sample text from a trained run" if name == "generate" else "interactive prompt"
    p = sub.add_parser(name, help=text)
    p.add_argument("run_dir", nargs="?", help="a run directory (or use --model/--dataset)")
    p.add_argument("--model", choices=model_names(), help="use the best run of this model")
    p.add_argument("--dataset", default="tinyshakespeare", help="with --model: the dataset of the run")
    p.add_argument("--results-dir", help="your working folder (default ./results or $TINYLM_RESULTS_DIR)")
    p.add_argument("--temperature", type=_number, default=0.8, help="0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens")
    p.add_argument("--top-p", type=_number, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--length", type=int, default=200, help="tokens to generate (characters or words)")
    if name == "generate":
        p.add_argument("--prompt", default="", help="text to continue (default: the model's start token)")
        p.add_argument("--seed", type=int, help="seed for a reproducible sample")
        p.add_argument("--num-samples", type=_positive_int, default=1, help="samples to draw (seeds seed, seed+1, ...)")
        p.add_argument("--no-cache", action="store_true", help="recompute the window at every step")
    p.set_defaults(func=cmd_generate if name == "generate" else cmd_chat)


def _add_export(sub: Any) -> None:
    p = sub.add_parser("export", help="write a trained transformer as a Hugging Face transformers GPT-2")
    p.add_argument("run_dir", help="a transformer run directory (results/runs/<run>)")
    p.add_argument("out_dir", help="the folder to write: new or empty (or --force)")
    p.add_argument("--format", choices=FORMATS, default="hf",
                   help="hf: a transformers GPT-2 checkpoint with its tokenizer (the default and only format)")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it is not empty")
    p.set_defaults(func=cmd_export)


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
    p.set_defaults(func=cmd_report)


def _add_bench(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure this machine: matmul peak, training, evaluation, generation")
    p.add_argument("--results-dir", help="your working folder (default ./results or $TINYLM_RESULTS_DIR)")
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke test)")
    p.add_argument("--only", nargs="+", choices=model_names(), help="only these models' training speed")
    p.add_argument("--precision", choices=["fp32", "bf16", "both"],
                   help="default: both where bf16 is native (AMX, AVX-512 bf16, GPU), else fp32")
    p.add_argument("--time-to-target", action=argparse.BooleanOptionalAction, default=None,
                   help="train the sprint profile (5 min) for the time to -1.77 on test (default: on unless --quick)")
    p.add_argument("--repeats", type=_at_least_one, default=5, help="repeats per figure (the median is reported)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--profile", help="instead: every run of this suite profile (e.g. full) in fp32 against bf16, on "
                                     "its own data (the precision each run should train in here)")
    add_data_options(p)
    p.set_defaults(func=cmd_bench)


def _add_runs(sub: Any) -> None:
    p = sub.add_parser("runs", help="list your runs and the shipped ones, with what can be done with each")
    p.add_argument("--results-dir", help="your working folder (default ./results or $TINYLM_RESULTS_DIR)")
    p.set_defaults(func=cmd_runs)


def build_parser() -> Parser:
    """The `tinylm` argument parser with every subcommand."""
    parser = Parser(prog="tinylm", description="A lab bench for tiny language models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for add in (_add_data, _add_models, _add_train, _add_suite, _add_baseline, _add_eval):
        add(sub)
    _add_sampling(sub, "generate")
    _add_sampling(sub, "chat")
    for add in (_add_export, _add_report, _add_bench, _add_runs):
        add(sub)
    return parser


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
