"""torch.compile against eager on a CPU core: the full profile's Tiny Shakespeare training step.

Builds each named model as the full profile trains it on Tiny Shakespeare (its size, batch and context), and times
the training step (forward, backward and AdamW step, as the trainer runs them) on random batches, eager and wrapped
in torch.compile, on one thread: STEPS steps after two warm-up steps (the median is reported), and the first
compiled step's seconds (the compile). With --pair, two copies run at once pinned to cores 0 and 1, as the profile
trains two runs side by side on 2 cores, and each copy's figures are reported.

    python benchmarks/cpu_compile.py [--models mamba llama transformer] [--steps 5] [--pair]

Prints one JSON record (a row per model and copy: eager and compiled ms a step, their ratio, the compile's
seconds). Takes about 5 minutes on 2 CPU cores with the defaults, most of it compiling mamba; inductor needs a C++
compiler. On an Intel Xeon with AMX, 2026-12-04: mamba 1.24x alone and 1.24-1.25x side by side, llama 0.93x and
0.96-0.97x, the transformer 0.94x and 0.90x (benchmarks/logs/cpu-compile-2026-12-04.json).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from tinylm.device import cpu_name
from tinylm.models.registry import build_model
from tinylm.suite_file import load_suite_file, resolve_run
from tinylm.training.optim import make_optimizer

VOCAB = 65  # Tiny Shakespeare's characters: the step's cost does not depend on which they are


def time_model(name: str, steps: int) -> dict:
    """Eager and compiled ms a step of the full profile's Tiny Shakespeare `name`, on this process's one thread."""
    cfg = resolve_run(name, "tinyshakespeare", suite=load_suite_file(), profile="full")
    B, T = cfg.train.batch_size, cfg.model.context_length
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, VOCAB, (B, T), generator=g), torch.randint(0, VOCAB, (B, T), generator=g)
    row: dict = {"model": name, "batch": B, "context": T}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = build_model(name, cfg.model_config(VOCAB, None)).train()
        optimizer = make_optimizer(model, cfg.train, torch.device("cpu"))
        forward = torch.compile(model) if compiled else model

        def step() -> None:
            loss = forward(x, targets=y).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        start = time.perf_counter()
        step()
        first = time.perf_counter() - start
        step()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        key = "compiled" if compiled else "eager"
        row[f"{key}_ms"] = round(statistics.median(times) * 1000, 1)
        if compiled:
            row["compile_seconds"] = round(first, 1)
    row["speedup"] = round(row["eager_ms"] / row["compiled_ms"], 3)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["mamba", "llama", "transformer"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--pair", action="store_true", help="two copies at once, on cores 0 and 1")
    p.add_argument("--copy", type=int, help=argparse.SUPPRESS)  # a copy started by --pair
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.pair:
        cmd = [sys.executable, __file__, "--models", *args.models, "--steps", str(args.steps)]
        procs = [subprocess.Popen(["taskset", "-c", str(core), *cmd, "--copy", str(core)], stdout=subprocess.PIPE,
                                  text=True) for core in (0, 1)]
        rows = [row for proc in procs for row in json.loads(proc.communicate()[0])["rows"]]
    else:
        rows = [dict(time_model(name, args.steps), copy=args.copy or 0) for name in args.models]
    record = {"what": "training ms a step, eager and torch.compile, one thread", "pair": args.pair or None,
              "cpu": cpu_name(), "torch": torch.__version__,
              "cores_seen": os.cpu_count(), "rows": rows}
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
