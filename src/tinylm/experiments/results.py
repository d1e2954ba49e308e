"""Finished runs as the report reads them, and the best run per architecture and dataset."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tinylm.data.sources import dataset_order
from tinylm.models.registry import model_names
from tinylm.runs import FINISHED, list_runs, selection_loss


def dataset_key(name: str) -> tuple[int, str]:
    """Sort key: the registered datasets in registry order, then the rest by name."""
    return dataset_order(name)


def model_key(name: str) -> int:
    """Sort key: the registered models in registry order, then the rest."""
    names = model_names()
    return names.index(name) if name in names else len(names)


@dataclass
class Run:
    """A finished run: its directory, metrics, resolved config and history."""

    path: Path
    metrics: dict[str, Any]
    config: dict[str, Any]
    history: list[dict[str, Any]]

    @property
    def model(self) -> str:
        return self.metrics["model"]

    @property
    def dataset(self) -> str:
        return self.metrics["dataset"]

    def variant(self, axes: dict[str, str]) -> str:
        """The ablation setting of this run, e.g. 'n_layers=4'."""
        key = axes.get(self.model)
        return f"{key}={self.config.get('model', {}).get(key)}" if key else ""


def load_runs(results: Path) -> list[Run]:
    """Every finished run under results/runs, sorted by dataset, model and name."""
    runs = []
    for path, metrics in list_runs(results):
        if metrics.get("status") not in FINISHED or metrics.get("test_loglik") is None:
            continue
        try:
            config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            config = {}
        history = []
        if (path / "history.jsonl").is_file():
            for line in (path / "history.jsonl").read_text(encoding="utf-8").splitlines():
                try:
                    history.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        runs.append(Run(path, metrics, config, history))
    runs.sort(key=lambda r: (dataset_key(r.dataset), model_key(r.model), r.path.name))
    return runs


def best_runs(runs: list[Run]) -> dict[tuple[str, str], Run]:
    """(dataset, model) -> its best run by the one rule of `tinylm.runs.selection_loss` (full valid split)."""
    best: dict[tuple[str, str], Run] = {}
    for r in runs:
        key = (r.dataset, r.model)
        if key not in best or selection_loss(r.metrics) < selection_loss(best[key].metrics):
            best[key] = r
    return best
