"""Adaptive softmax against the full softmax on a word-level training step.

Measures training tokens/s (forward, backward and AdamW step, as the trainer runs them) and the analytic training
FLOPs per token of the full profile's word-level transformer body (d=128, 4 layers, context 64, batch 32) with the
full head and with the adaptive head (default cutoffs from the training counts), on the same random batches of the
real training split, the two alternated REPEATS times in one process (the median is reported).

    python benchmarks/adaptive_head.py [STEPS=20] [REPEATS=3] [DATASET=wikitext2]

Writes results/bench/adaptive-head-<dataset>.json (both heads' medians, the speedup, every timed row) and prints it
without the rows. Takes about 2 minutes on a 2-core CPU with the defaults, most of it the full head's steps.
`tinylm bench` times the same pair on PTB and WikiText-2 among its figures.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch

from tinylm.data.corpus import load_corpus, sample_batch
from tinylm.models.registry import build_model
from tinylm.suite_file import load_suite_file, resolve_run
from tinylm.training.optim import make_optimizer

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
dataset = sys.argv[3] if len(sys.argv) > 3 else "wikitext2"
cfg = resolve_run("transformer", dataset, suite=load_suite_file(), profile="full")
corpus = load_corpus(cfg.data, quiet=True)
counts = corpus.train_counts()
B, T = cfg.train.batch_size, cfg.model.context_length
models = {}
for head in ("full", "adaptive"):
    torch.manual_seed(0)
    model_cfg = cfg.model_config(corpus.tokenizer.vocab_size, counts if head == "adaptive" else None)
    model_cfg.head = head
    models[head] = build_model("transformer", model_cfg).train()


def rate(model: torch.nn.Module) -> float:
    """Training tokens/s over `steps` steps (after one warm-up step)."""
    optimizer = make_optimizer(model, cfg.train, torch.device("cpu"))
    generator = torch.Generator().manual_seed(1)
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        x, y = sample_batch(corpus.splits["train"], B, T, generator)
        model(x, targets=y).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * B * T / (time.perf_counter() - start)


rows = [{"head": h, "repeat": i, "tokens_per_second": rate(m)} for i in range(repeats) for h, m in models.items()]
out = {"dataset": dataset, "vocab_size": corpus.tokenizer.vocab_size, "batch_size": B, "context_length": T,
       "steps": steps, "threads": torch.get_num_threads(), "torch": torch.__version__,
       "cutoffs": models["adaptive"].head.cutoffs, "tail_shares": models["adaptive"].head.tail_shares}
for h, m in models.items():
    out[h] = {"params": m.num_params(), "train_flops_per_token": m.flops_per_token(training=True, seq_len=T),
              "tokens_per_second": statistics.median(r["tokens_per_second"] for r in rows if r["head"] == h)}
out["speedup"] = out["adaptive"]["tokens_per_second"] / out["full"]["tokens_per_second"]
out["rows"] = rows
path = Path("results/bench") / f"adaptive-head-{dataset}.json"
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(out, indent=1))
print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))
