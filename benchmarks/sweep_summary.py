"""One JSON row per run of a sweep folder: what its config changes against the first run named, its full valid and
test log-likelihood and their gap, best on valid first. Seconds on a CPU:

    python benchmarks/sweep_summary.py RUNS_DIR BASE_RUN_NAME > summary.json
"""

import json
import sys
from pathlib import Path

import yaml


def flat(run: Path) -> dict:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    return {f"{section}.{k}": v for section in ("model", "train") for k, v in cfg[section].items()}


runs_dir, base_name = Path(sys.argv[1]), sys.argv[2]
base = flat(runs_dir / base_name)
rows = []
for run in sorted(p for p in runs_dir.iterdir() if (p / "metrics.json").exists()):
    m, cfg = json.loads((run / "metrics.json").read_text()), flat(run)
    rows.append({"run": run.name, "changes": {k: v for k, v in cfg.items() if base.get(k) != v},
                 "valid_loglik": round(m["valid_loglik"], 4), "test_loglik": round(m["test_loglik"], 4),
                 "gap": round(m["valid_loglik"] - m["test_loglik"], 4), "best_step": m["best_step"],
                 "steps": m["steps"], "train_flops": m["train_flops"], "device": m["device"]})
rows.sort(key=lambda r: -r["valid_loglik"])
print(json.dumps(rows, indent=1))
