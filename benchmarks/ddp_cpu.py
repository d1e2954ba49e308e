"""Data-parallel cost on this CPU: `tinylm train --nproc 2` against one process.

Measures training seconds per token (metrics.json's train_seconds: the step loop, without evaluation) of the quick
Tiny Shakespeare transformer trained for the same STEPS in one process (all cores) and in 2 gloo processes (the
cores shared), the two alternated REPEATS times; the figure is the ratio of 2 processes over 1 (medians), and
whether every run reached the same test loss (the processes follow the single-process trajectory).

    python benchmarks/ddp_cpu.py [STEPS=300] [REPEATS=2]

Writes results/bench/ddp-cpu.json (every run's row and the ratio). Takes about 2 minutes on a 2-core CPU with the
defaults (four runs of about 15 s of training, each started as `tinylm train` in a process of its own).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 300
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 2
args = ["--quick", "--model", "transformer", "--max-steps", str(steps), "--set", "train.eval_interval=100000",
        "--set", "train.eval_tokens=4096", "--quiet", "--force"]
rows = []
with tempfile.TemporaryDirectory() as tmp:
    for i in range(repeats):
        for nproc in (1, 2):
            name = f"n{nproc}-{i}"
            cmd = [sys.executable, "-m", "tinylm.cli", "train", *args, "--results-dir", tmp, "--run-name", name]
            subprocess.run(cmd + (["--nproc", str(nproc)] if nproc > 1 else []), check=True,
                           stdout=subprocess.DEVNULL)
            m = json.loads((Path(tmp) / "runs" / name / "metrics.json").read_text())
            rows.append({"nproc": nproc, "repeat": i, "tokens": m["tokens_trained"], "seconds": m["train_seconds"],
                         "tokens_per_second": m["tokens_per_second"], "test_loss": m["test_loss"]})
            print(rows[-1], flush=True)
per_token = {n: statistics.median(r["seconds"] / r["tokens"] for r in rows if r["nproc"] == n) for n in (1, 2)}
report = {"benchmark": "ddp-cpu", "cores": os.cpu_count(), "steps": steps, "rows": rows,
          "seconds_per_token_ratio_2_over_1": per_token[2] / per_token[1],
          "same_test_loss": len({round(r["test_loss"], 5) for r in rows}) == 1}
out = Path("results/bench/ddp-cpu.json")
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(report, indent=1) + "\n")
print(f"2 processes / 1 process, training seconds per token: {report['seconds_per_token_ratio_2_over_1']:.3f} "
      f"-> {out}")
