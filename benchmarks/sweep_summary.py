"""Summarise a sweep's results folder: one row per run, best on valid first.

Reads (measures nothing new): for every run under RESULTS_DIR/runs, what its config changes against the base run
named (as `tinylm.run_folders.config_changes` sees it), its full valid and test log-likelihood and their gap, best step,
steps, training FLOPs and device. Selection reads valid only; test sits beside it.

    python benchmarks/sweep_summary.py RESULTS_DIR BASE_RUN_NAME > summary.json

Prints the rows as JSON (`bash benchmarks/gpu.sh sweep` writes them to OUT/sweep-<set>.json). Takes about 5 seconds
on a 2-core CPU.
"""

import json
import sys
from pathlib import Path

from tinylm.run_folders import config_changes, identity, list_runs, read_config

root, base_name = Path(sys.argv[1]), sys.argv[2]
base = identity(read_config(root / "runs" / base_name))
rows = []
for run, m in list_runs(root):
    changes = config_changes(base, identity(read_config(run)))
    rows.append({"run": run.name, "changes": {f"{s}.{k}": new for s, k, _, new in changes},
                 "valid_loglik": round(m.valid_loglik, 4), "test_loglik": round(m.test_loglik, 4),
                 "gap": round(m.valid_loglik - m.test_loglik, 4), "best_step": m.best_step,
                 "steps": m.steps, "train_flops": m.train_flops, "device": m.device})
rows.sort(key=lambda r: -r["valid_loglik"])
print(json.dumps(rows, indent=1))
