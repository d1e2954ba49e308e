"""`tinylm eval`, `generate`, `chat` and `export`: what a trained run does."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinylm.api import find, load
from tinylm.device import pick_device
from tinylm.errors import UsageError
from tinylm.export import check_exportable, export_hf
from tinylm.generate.interactive import (
    Chat,
    check_sampling,
    describe,
    encode_prompt,
)
from tinylm.paths import Paths
from tinylm.speed import score_snapshots, time_to
from tinylm.training.evaluate import protocol_note


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
    target = check_exportable(Path(args.run_dir))
    out = export_hf(args.run_dir, args.out_dir, force=args.force)
    print(f"wrote {out}: a transformers {target.label} (config.json, model.safetensors) and its tokenizer; load them "
          f"with {target.model_class}.from_pretrained('{out}') and AutoTokenizer.from_pretrained('{out}')")
    return 0
