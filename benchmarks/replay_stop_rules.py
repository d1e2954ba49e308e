"""Replay runs' validation curves under other stop rules, without training.

Measures, for each run folder given and each rule PATIENCE:MAX_DECAYS (train.early_stopping_patience and
train.plateau_max_decays; 0: off), where the run would have stopped, how many minutes of training that is, how much
best valid loss it would lose against what the run kept, and whether the report would mark it still improving. The
trainer's own rule decides (TrainState.record_valid); the replay is exact for rules that only end a run sooner: its
curve up to the stop is the one it had. This is how the full profile's PTB and WikiText-2 stop rules were chosen.

    python benchmarks/replay_stop_rules.py results/reference/runs/wikitext2-* --rules 5:0 3:4 3:3 3:2

Prints one JSON line per run (writes no file). Takes about 5 seconds on a 2-core CPU (reading history.jsonl).
"""

import argparse
import dataclasses
import json
from pathlib import Path

from tinylm.config import TrainConfig
from tinylm.experiments.results import STILL_IMPROVING
from tinylm.run_folders import read_config
from tinylm.training.trainer import TrainState

parser = argparse.ArgumentParser()
parser.add_argument("runs", nargs="+", type=Path)
parser.add_argument("--rules", nargs="+", default=["5:0", "3:4", "3:3", "3:2"],
                    help="PATIENCE:MAX_DECAYS pairs (0: off)")
args = parser.parse_args()

def replay(rows: list[dict], t: TrainConfig) -> tuple[list[dict], TrainState]:
    """The evaluations a run with train config `t` would have made of these, and its state at the last."""
    state, seen = TrainState(), []
    for r in rows:
        state.step = r["step"]
        state.record_valid(r["valid_loss"], t)
        seen.append(r)
        if state.stopped_early:
            break
    return seen, state


for run in args.runs:
    cfg = read_config(run)
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text(encoding="utf-8").splitlines() if line]
    rows = [r for r in rows if isinstance(r.get("valid_loss"), (int, float))]
    kept = replay(rows, cfg.train)[1].best_valid  # the run's own rule: the best it kept
    out = {"run": run.name, "minutes": round(rows[-1]["seconds"] / 60, 1), "best": kept}
    for rule in args.rules:
        patience, decays = (int(x) for x in rule.split(":"))
        t = dataclasses.replace(cfg.train, early_stopping_patience=patience, plateau_max_decays=decays)
        seen, state = replay(rows, t)
        cut = 0.9 * seen[-1]["step"]
        gain = min(r["valid_loss"] for r in seen if r["step"] <= cut) - state.best_valid
        out[rule] = {"minutes": round(seen[-1]["seconds"] / 60, 1), "best_lost": round(state.best_valid - kept, 4),
                     "still_improving": gain > STILL_IMPROVING}
    print(json.dumps(out))
