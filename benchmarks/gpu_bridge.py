"""The same scaling run on the CPU and on the GPU, and what the GPU extension's larger batch costs.

The report fits the `scaling-gpu` profile's budgets together with the CPU's `scaling` ones, so the GPU (fp32 with
TF32 products) must give the CPU's numbers for the CPU's config, and the extension's 4x batch should be measured
where both exist. This measures the valid and test loss of the compute-optimal transformers of the CPU's largest
budget (3e12 FLOPs, one per dataset) trained again on DEVICE at the CPU's batch (16) and at the extension's (64):

    python benchmarks/gpu_bridge.py OUT [DEVICE=cuda] [FLOPS]   # FLOPS: a smaller budget, to test it on a CPU
    python benchmarks/gpu_bridge.py OUT DEVICE - scaling-gpu "LABEL" 16   # one run of that profile at batch 16

The second form measures the batch's effect at the extension's own budgets: a run the suite trained at batch 64
(LABEL as `tinylm suite` prints it, e.g. "ptb lstm embed_dim=192, hidden_dim=192 flops=3e+13"), again at batch 16.

Writes OUT/bridge.json (or OUT/bridge-<label>.json), one row per run, and the runs under OUT/bridge/runs/.
`bash benchmarks/gpu.sh scaling` runs the first form beside the suite. Takes about 3 minutes on an H100 (the four
runs' training: 32, 9, 89 and 20 s), a run of the second form 1 to 4 minutes; about 1 minute on a 2-core CPU with
FLOPS=1e10.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

from tinylm.paths import Paths
from tinylm.recorder import train_run
from tinylm.suite_file import load_suite_file
from tinylm.suite_plan import plan

PICKS = ["tinyshakespeare transformer embed_dim=48, n_layers=2 flops=3e+12",
         "ptb transformer embed_dim=32, n_layers=2 flops=3e+12"]
"""The size nearest N* at 3e12 FLOPs on each dataset (66k and 388k parameters)."""


def main(out: Path, device: str, flops: float | None, profile: str = "scaling", picks: list[str] = PICKS,
         batches: tuple[int, ...] = (16, 64), name: str = "bridge.json") -> None:
    planned = {r.label: r.config for r in plan(load_suite_file(), profile)}
    rows = []
    for label in picks:
        cfg = planned[label]
        for batch in batches:
            train = dataclasses.replace(cfg.train, device=device, batch_size=batch,
                                        max_flops=flops or cfg.train.max_flops)
            metrics, _, _ = train_run(dataclasses.replace(cfg, train=train), Paths.of(out / "bridge"), quiet=True)
            rows.append({"profile": profile, "run": label, "batch_size": batch,
                         "valid_loss": metrics.valid_loss, "test_loss": metrics.test_loss, "steps": metrics.steps,
                         "train_seconds": metrics.train_seconds, "device": metrics.device, "run_id": metrics.run_id})
            print(json.dumps(rows[-1]), flush=True)
    (out / name).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    budget = float(args[2]) if len(args) > 2 and args[2] != "-" else None
    if len(args) > 3:
        main(Path(args[0]), args[1], budget, args[3], [args[4]], (int(args[5]),),
             f"bridge-{re.sub(r'[^A-Za-z0-9_.-]', '', args[4].replace(' ', '_'))}.json")
    else:
        main(Path(args[0]), args[1] if len(args) > 1 else "cuda", budget)
