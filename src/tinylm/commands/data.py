"""`tinylm data`, `tinylm models` and `tinylm check-model`: datasets, model sizes and the models' contract."""

from __future__ import annotations

import argparse
import math

from tinylm.commands import data_from_args
from tinylm.config import DataConfig
from tinylm.data import sources
from tinylm.data.corpus import describe_dataset
from tinylm.model_check import check_model
from tinylm.paths import Paths
from tinylm.suite_file import SuiteFile, data_config, load_suite_file, model_rows


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
        split = entry.split if entry else "standard"
        print("\n".join(describe_dataset(DataConfig(name=base, max_vocab=max_vocab, split=split), args.data_dir,
                                          args.mirror)))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    data, vocab, rows = model_rows(load_suite_file(args.config), args.dataset, args.model, args.set)
    header = f"{'model':<12} {'params':>12} {'fwd FLOPs/token':>16} {'train FLOPs/token':>18}"
    print(f"{header}  config ({data.label}, V={vocab})")
    for row in rows:
        if row.problem:
            print(f"{row.name:<12} {'-':>12} {'-':>16} {'-':>18}  not with these settings: {row.problem}")
            print(f"{'':<14}from {row.source}")
            continue
        flops = [f"{f:,.0f}" if math.isfinite(f) else "unknown"
                 for f in (row.flops_per_token, row.train_flops_per_token)]
        print(f"{row.name:<12} {row.params:>12,} {flops[0]:>16} {flops[1]:>18}  {row.settings}")
        if row.source != "built in":
            print(f"{'':<14}from {row.source}")
        for part, n in row.breakdown.items() if args.breakdown else ():
            print(f"{'':<14}{part:<20} {n:>12,}")
    return 0


def cmd_check_model(args: argparse.Namespace) -> int:
    data = data_from_args(args)
    print(f"checking {args.model} on {data.label if data else args.dataset} (CPU, fp32, its default size; --set "
          "changes it)", flush=True)
    checks = check_model(args.model, args.dataset, data=data, sets=args.set, suite=load_suite_file(args.config),
                         paths=Paths.of(None, args.data_dir, args.mirror),
                         on_check=lambda c: print(c.line(), flush=True))
    failed = [c.name for c in checks if c.status == "FAIL"]
    if failed:
        print(f"{len(failed)} of {len(checks)} checks failed ({', '.join(failed)}): the model is not yet comparable "
              "with the others; fix what each line says")
        return 1
    print(f"all {len(checks)} checks passed or do not apply: the model keeps the bench's contract")
    return 0
