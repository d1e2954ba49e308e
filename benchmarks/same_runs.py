"""Are short runs of every architecture bit-identical across a change of the code? (a refactor's check)

Trains the same 50-step runs (every model on Tiny Shakespeare, the transformer and the LSTM on PTB, with the
quick profile's settings) through the real CLI, one after the other, and records for each run: its id, its
metrics (times and provenance left out), a digest of its history (times left out), of its best weights, of its
resume state and of its sample. `--write` keeps the record; `--check` compares a new one with it, field by field.

    python benchmarks/same_runs.py --write before.json     # on the old code
    python benchmarks/same_runs.py --check before.json     # on the new code: "identical" or what differs

Takes about 2 minutes on 2 CPU cores. Runs go to a temporary folder; nothing of yours is touched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open

RUNS = [("tinyshakespeare", m) for m in ("linear", "mlp", "attention", "transformer", "lstm")] + [
    ("ptb", "transformer"), ("ptb", "lstm")]
ARGS = ["--quick", "--max-steps", "50", "--set", "train.eval_interval=20", "--set", "train.eval_tokens=4096",
        "--quiet"]
VOLATILE = ("seconds", "second", "time", "updated", "git_commit")
"""Metric and history keys that measure the clock or the checkout, not the run."""


def _stable(row: dict) -> dict:
    return {k: v for k, v in row.items() if not any(word in k for word in VOLATILE)}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def _checkpoint(path: Path) -> str:
    """A digest of a resume checkpoint's tensors and metadata, less its clock (the state's seconds)."""
    if not path.is_file():
        return "missing"
    digest = hashlib.sha256()
    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["json"])
        meta["state"] = _stable(meta["state"])
        digest.update(json.dumps(meta, sort_keys=True).encode())
        for key in sorted(f.keys()):
            digest.update(key.encode() + f.get_tensor(key).flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def record(results: Path) -> dict[str, dict]:
    """Train every run of RUNS under `results` and describe each."""
    out = {}
    env = {**os.environ, "TINYLM_RESULTS_DIR": str(results)}
    for dataset, model in RUNS:
        subprocess.run([sys.executable, "-m", "tinylm.cli", "train", "--model", model, "--dataset", dataset, *ARGS],
                       check=True, env=env, stdout=subprocess.DEVNULL)
    for run in sorted((results / "runs").iterdir()):
        metrics = json.loads((run / "metrics.json").read_text())
        history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
        out[run.name] = {
            "metrics": _stable(metrics),
            "history": hashlib.sha256(json.dumps([_stable(h) for h in history]).encode()).hexdigest(),
            "weights": _sha(run / "model.safetensors"),
            "last": _checkpoint(run / "last" / "checkpoint.safetensors"),
            "samples": _sha(run / "samples.txt"),
        }
    return out


def differences(old: dict, new: dict) -> list[str]:
    """What differs between two records, one line each."""
    lines = [f"run {name} only in the {'old' if name in old else 'new'} record" for name in sorted(set(old) ^ set(new))]
    for name in sorted(set(old) & set(new)):
        for key in old[name]:
            if old[name][key] != new[name].get(key):
                lines.append(f"{name}: {key} differs")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", metavar="JSON", help="keep the record of this code's runs")
    group.add_argument("--check", metavar="JSON", help="compare this code's runs with a kept record")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        new = record(Path(tmp))
    if args.write:
        Path(args.write).write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.write}: {len(new)} runs")
        return 0
    diff = differences(json.loads(Path(args.check).read_text()), new)
    print("\n".join(diff) if diff else f"identical: {len(new)} runs (metrics, history, weights, resume state, samples)")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
