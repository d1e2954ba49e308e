"""torch.compile against eager on a CPU core: the full profile's Tiny Shakespeare training step.

Times the trainer's own step (`tinylm.speed.train_speed`: forward, backward, clipping and AdamW on random batches
of the dataset's shape) of each named model as the full profile trains it on Tiny Shakespeare, eager and with
train.compile, on one thread: the median of REPEATS timings of STEPS steps after three warm-up steps, whose seconds
(compiled, mostly the compile) are reported too. With --pair, two copies run at once pinned to cores 0 and 1, as
the profile trains two runs side by side on 2 cores, and each copy's figures are reported.

    python benchmarks/cpu_compile.py [--models mamba llama transformer] [--steps 5] [--repeats 3] [--pair]

Prints one JSON record (a row per model and copy: eager and compiled ms a step, their ratio, both warm-ups'
seconds). Takes about 5 minutes on 2 CPU cores with the defaults, most of it compiling mamba; inductor needs a C++
compiler (without one the compiled step falls back to eager, with a warning). On an Intel Xeon with AMX,
2026-12-04: mamba 1.20x alone and 1.22x side by side, llama 0.96-0.97x, the transformer 0.94-0.97x
(benchmarks/logs/cpu-compile-2026-12-04.json); on an AMD EPYC, mamba 1.14x alone
(benchmarks/logs/cpu-amd-mamba-compiled-2026-12-04.json).
"""

import argparse
import json
import os
import subprocess
import sys

import torch

from tinylm.device import cap_threads, cpu_name
from tinylm.speed import train_speed


def time_model(name: str, steps: int, repeats: int) -> dict:
    """Eager and compiled ms a step of the full profile's Tiny Shakespeare `name`, on one thread."""
    row: dict = {"model": name}
    for compiled in (False, True):
        speed = train_speed(name, "tinyshakespeare", "fp32", steps, repeats, "cpu", compile=compiled, profile="full")
        key = "compiled" if compiled else "eager"
        row["batch"], row["context"] = speed["batch_size"], speed["seq_len"]
        row[f"{key}_ms"] = round(speed["batch_size"] * speed["seq_len"] / speed["tokens_per_second"]["median"] * 1e3, 1)
        row[f"{key}_warmup_seconds"] = round(speed["warmup_seconds"], 1)
    row["speedup"] = round(row["eager_ms"] / row["compiled_ms"], 3)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["mamba", "llama", "transformer"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pair", action="store_true", help="two copies at once, on cores 0 and 1")
    p.add_argument("--copy", type=int, help=argparse.SUPPRESS)  # a copy started by --pair
    args = p.parse_args()
    cap_threads(1)
    if args.pair:
        cmd = [sys.executable, __file__, "--models", *args.models, "--steps", str(args.steps), "--repeats",
               str(args.repeats)]
        procs = [subprocess.Popen(["taskset", "-c", str(core), *cmd, "--copy", str(core)], stdout=subprocess.PIPE,
                                  text=True) for core in (0, 1)]
        rows = [row for proc in procs for row in json.loads(proc.communicate()[0])["rows"]]
    else:
        rows = [dict(time_model(name, args.steps, args.repeats), copy=args.copy or 0) for name in args.models]
    record = {"what": "training ms a step, eager and torch.compile, one thread", "pair": args.pair or None,
              "cpu": cpu_name(), "torch": torch.__version__,
              "cores_seen": os.cpu_count(), "rows": rows}
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
