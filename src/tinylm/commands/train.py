"""`tinylm train`, `suite` and `baseline`: what they train, and what they print."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tinylm import distributed
from tinylm.commands import data_from_args, sweep_dest, train_values
from tinylm.config import RunConfig
from tinylm.data.corpus import load_corpus
from tinylm.device import pick_device
from tinylm.errors import UsageError
from tinylm.models.registry import DEFAULT_MODEL, MODELS, builtin_names, check_name
from tinylm.paths import Paths
from tinylm.ray_pool import RayOptions
from tinylm.recorder import train_run
from tinylm.run_folders import resume_config, saved_profile
from tinylm.run_lookup import duration
from tinylm.run_metrics import RunMetrics
from tinylm.suite_file import SuiteFile, data_config, load_suite_file, resolve_run
from tinylm.suite_plan import PlannedRun, ProfileLabels
from tinylm.suite_runner import SuiteResult, run_suite, train_baselines
from tinylm.tensorboard_log import check_logs


def _resolve_from_args(args: argparse.Namespace, model: str, suite: SuiteFile, profile: str | None) -> RunConfig:
    values, sets = train_values(args)
    return resolve_run(model, args.dataset, suite=suite, profile=profile, train_values=values,
                       data=data_from_args(args), sets=sets + list(args.set or []))


def _print_result(m: RunMetrics, run_dir: Path, what: str) -> None:
    if not distributed.world().main:
        return
    tl, ppl, tps = m.test_loglik, m.test_perplexity, m.tokens_per_second
    quality = "no test score" if tl is None else f"test LL {tl:.4f} nats/token, ppl {ppl:.2f}"
    speed = f"{tps:,.0f} tok/s" if tps else "-"
    print(
        f"{what:<8} {m.model:<11} {m.dataset:<16} {quality}, {m.params or 0:,} params, "
        f"{f'{m.train_flops:.2e}' if m.train_flops else 'unknown'} FLOPs, {speed}, "
        f"{m.train_seconds or 0:.0f} s -> {run_dir}"
    )


def announce(info: dict[str, Any]) -> None:
    """One line once the first steps are timed: what is trained, and how long it should take here."""
    what = f"{info['tokens']:,} tokens ({info['steps']:,} steps of {info['batch_size']} x {info['seq_len']})" \
        if info["tokens"] is not None else f"{duration(info['max_time'])} of training (time budget)"
    start = f"resuming {info['model']} on {info['dataset']} at step {info['from_step']:,}" if info["from_step"] else \
        f"training {info['model']} on {info['dataset']}"
    total = info["train_seconds"] + info["eval_seconds"]
    print(f"{start}: {info['params']:,} params, {what}{', bf16 autocast' if info.get('bf16') else ''}; expect "
          f"~{duration(total)} here ({info['tokens_per_second']:,.0f} tokens/s measured on {info['measured']}; "
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
                         "run_dir": run_dir, "profile": saved_profile(run_dir)})]
    paths = Paths.of(args.results_dir, args.data_dir, args.mirror)
    suite = load_suite_file(args.config)
    labels = ProfileLabels(suite)
    models = builtin_names() if args.model == "all" else [check_name(args.model or DEFAULT_MODEL)]
    jobs = []
    for model in models:
        cfg = _resolve_from_args(args, model, suite, _profile(args))
        jobs.append((cfg, {**common, "paths": paths, "run_name": args.run_name if len(models) == 1 else None,
                           "force": args.force, "profile": labels.label(cfg, _profile(args))}))
    return jobs


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
    axes = {name: {spec.sweep_field: getattr(args, sweep_dest(name))} for name, spec in MODELS.items()
            if spec.sweep_flag and getattr(args, sweep_dest(name), None)}
    only = args.only or ([args.model] if args.model and args.model != "all" else None)
    only = [check_name(m) for m in only] if only else None
    values, sets = train_values(args)
    paths = Paths.of(args.results_dir, args.data_dir, args.mirror)

    ray = ray_options(args)

    def planned(runs: list[PlannedRun]) -> None:
        print(f"suite '{profile}': {len(runs)} runs -> {paths.results / 'runs'}")
        if ray is not None:
            print(f"each run a Ray task with {ray.cpus_per_run:g} CPUs and {ray.gpus_per_run:g} GPUs "
                  f"(run folders: {ray.results})")
        elif args.jobs > 1:
            print(f"{min(args.jobs, len(runs))} runs at a time, each in a process of its own")

    def finished(r: SuiteResult) -> None:
        _print_result(r.metrics, r.run_dir, f"[{r.index}/{r.of}] {r.what}")

    run_suite(load_suite_file(args.config), profile, only=only, datasets=args.dataset, axes=axes or None,
              train_values=values, sets=sets + list(args.set or []), paths=paths, jobs=args.jobs, ray=ray,
              quiet=args.quiet, logs=args.log, on_plan=planned, on_baseline=_print_baseline, on_result=finished,
              announce=announce)
    return 0


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    """--backend ray's options, checked; None for the processes backend (which refuses the Ray-only options)."""
    given = {"--address": args.address, "--cpus-per-run": args.cpus_per_run, "--gpus-per-run": args.gpus_per_run,
             "--ray-results": args.ray_results, "--ray-weights": args.ray_weights or None}
    if args.backend != "ray":
        named = [flag for flag, value in given.items() if value is not None]
        if named:
            raise UsageError(f"{named[0]} only applies with --backend ray")
        return None
    if args.jobs != 1:
        raise UsageError("--jobs is for --backend processes; with --backend ray, Ray runs as many at once as the "
                         "cluster's resources allow (see --cpus-per-run)")
    options = RayOptions(args.address, args.cpus_per_run if args.cpus_per_run is not None else 1,
                         args.gpus_per_run or 0, args.ray_results or "shared", args.ray_weights)
    options.check()
    return options


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
