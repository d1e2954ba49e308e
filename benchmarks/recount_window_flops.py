"""Recount train_flops of window-model runs (linear, mlp) written before the adaptive-head commit (4e39d09), which
charged them for the k - 1 context positions fed before the scored ones; today a step counts only what it computes
(tinylm.training.trainer.Plan). The run's own steps and today's Plan give train_flops and the `flops` of every
history row; runs whose budget was in FLOPs are only listed (their budget bought fewer tokens than today's count
would: train them again). Seconds on a CPU; prints what it changes, --dry-run changes nothing:

    python benchmarks/recount_window_flops.py results/reference [--dry-run] [--mirror DIR]
"""

import argparse
import json
from pathlib import Path

from tinylm.data.corpus import load_corpus
from tinylm.io import atomic_write_json, atomic_write_text
from tinylm.models import build_model
from tinylm.runs import list_runs, read_config
from tinylm.training.trainer import Plan

parser = argparse.ArgumentParser()
parser.add_argument("root", type=Path)
parser.add_argument("--dry-run", action="store_true")
parser.add_argument("--mirror", default=None)
args = parser.parse_args()

corpora = {}
for run, m in list_runs(args.root):
    cfg = read_config(run)
    if cfg.model_name not in ("linear", "mlp"):
        continue
    if cfg.data.name not in corpora:
        corpora[cfg.data.name] = load_corpus(cfg.data, mirror=args.mirror, quiet=True)
    corpus = corpora[cfg.data.name]
    counts = corpus.train_counts() if cfg.model.head == "adaptive" else None
    model = build_model(cfg.model_name, cfg.model_config(corpus.tokenizer.vocab_size, counts))
    plan = Plan.make(cfg, model, len(corpus.splits["train"]))
    flops = m["steps"] * plan.flops_per_step
    if abs(m["train_flops"] / flops - 1) < 1e-6:
        continue
    if cfg.train.max_flops is not None:
        print(f"{run.name}: FLOP budget spent by the old count ({m['train_flops']:.3e} now {flops:.3e}): train again")
        continue
    print(f"{run.name}: train_flops {m['train_flops']:.4e} -> {flops:.4e} (x{flops / m['train_flops']:.3f})")
    if args.dry_run:
        continue
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text(encoding="utf-8").splitlines() if line]
    for row in rows:
        if isinstance(row.get("step"), int) and "flops" in row:
            row["flops"] = row["step"] * plan.flops_per_step
    atomic_write_text(run / "history.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    atomic_write_json(run / "metrics.json", {**m, "train_flops": flops})
