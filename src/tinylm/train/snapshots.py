"""Score a run's weight snapshots (saved with `--snapshot-every`) on a split, after the fact.

This measures how fast a run got somewhere (e.g. the time to a test log-likelihood); it is a benchmark, not model
selection: the run's own best weights are still chosen on the validation split only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tinylm.errors import TinyLMError
from tinylm.runs import load_run, load_run_corpus
from tinylm.train.checkpoint import atomic_write_json, load_tensors
from tinylm.train.evaluate import evaluate


def score_snapshots(
    run_dir: str | Path,
    split: str = "test",
    data_dir: str | Path | None = None,
    mirror: str | Path | None = None,
    device: torch.device | None = None,
) -> list[dict[str, Any]]:
    """Every snapshot's step, tokens, FLOPs, training seconds and log-likelihood on `split`, in order of step.

    Also written to <run>/snapshots.json.
    """
    run_dir = Path(run_dir)
    paths = sorted((run_dir / "snapshots").glob("step*.safetensors"))
    if not paths:
        raise TinyLMError(f"{run_dir} has no snapshots; train with --snapshot-every SECONDS to save them")
    run = load_run(run_dir)
    corpus = load_run_corpus(run, data_dir, mirror)
    device = device or torch.device("cpu")
    model = run.model.to(device)
    tokens = corpus.tensor(split)
    rows = []
    for path in paths:
        tensors, meta = load_tensors(path)
        model.load_weights(tensors)
        result = evaluate(model, tokens, batch_size=64, device=device)
        rows.append({**meta, f"{split}_loglik": result.loglik, f"{split}_perplexity": result.perplexity})
    atomic_write_json(run_dir / "snapshots.json", {"split": split, "snapshots": rows})
    return rows


def time_to(rows: list[dict[str, Any]], target: float, split: str = "test") -> dict[str, Any] | None:
    """The first snapshot whose log-likelihood on `split` reaches `target` (nats/token), or None."""
    return next((r for r in rows if r[f"{split}_loglik"] >= target), None)
