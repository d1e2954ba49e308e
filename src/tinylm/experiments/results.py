"""Finished runs as the report reads them, and the best run per architecture and dataset."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tinylm.data.sources import DATASETS, dataset_order, registered_base
from tinylm.errors import TinyLMError, TinyLMWarning
from tinylm.models.registry import model_names
from tinylm.run_folders import RunFolder, find_runs, read_config
from tinylm.run_metrics import RunMetrics
from tinylm.suite_file import SuiteFile
from tinylm.suite_plan import ADHOC, ProfileLabels


def dataset_key(name: str) -> tuple[int, str]:
    """Sort key: the registered datasets in registry order, then the rest by name."""
    return dataset_order(name)


def model_key(name: str) -> int:
    """Sort key: the registered models in registry order, then the rest."""
    names = model_names()
    return names.index(name) if name in names else len(names)


STILL_IMPROVING = 0.01
"""Nats/token of valid gain over the last tenth of training above which a run is marked *still improving*."""
MARK = "†"
"""The mark of a still-improving run in tables and figures."""


@dataclass
class ReportRow:
    """A finished run as the report sees it."""

    path: Path
    metrics: RunMetrics
    config: dict[str, Any]
    history: list[dict[str, Any]]
    source: str = "reference"
    """"reference" (shipped) or "yours" (the working folder)."""
    profile: str = ADHOC
    """The profile whose unchanged suite trains exactly this config, else "adhoc"."""
    model_config: Any = None
    """The model's config as the run was built from it, every field filled (`config` holds only the ones set)."""

    @property
    def model(self) -> str:
        return self.metrics.model

    @property
    def dataset(self) -> str:
        return self.metrics.dataset

    @property
    def reproduction(self) -> bool:
        """Trained on a split that selects on its own evaluation text (data.split nanogpt): never a headline."""
        return (self.config.get("data") or {}).get("split", "standard") != "standard"

    @property
    def on_gpu(self) -> bool:
        """Trained on an accelerator: its time budgets are not comparable with CPU runs (never mixed in one figure,
        but for the scaling fits, whose FLOP budgets are: the GPU extension adds budgets to the CPU ones)."""
        return not (self.metrics.device or "cpu").startswith("cpu")

    def variant(self, axes: dict[str, str]) -> str:
        """The ablation setting of this run and its FLOP budget if it had one, e.g. 'n_heads=4, 1.2e+14 FLOPs'."""
        key = axes.get(self.model)
        parts = [f"{key}={self.model_field(key)}"] if key else []
        budget = self.config.get("train", {}).get("max_flops")
        if isinstance(budget, (int, float)):
            parts.append(f"{budget:.3g} FLOPs")
        return ", ".join(parts)

    def model_field(self, key: str) -> Any:
        """A model config field as the run trained with it, its default included."""
        return getattr(self.model_config, key, self.config.get("model", {}).get(key))

    def label(self, axes: dict[str, str]) -> str:
        """A readable name: 'transformer n_layers=6 (full)'."""
        variant = self.variant(axes)
        return f"{self.model}{' ' + variant if variant else ''} ({self.profile})"

    def epochs(self) -> float | None:
        """Passes over the training split (registered datasets only)."""
        base = registered_base(self.dataset)
        tokens = self.metrics.tokens_trained
        if base is None or tokens is None:
            return None
        return tokens / DATASETS[base].split_tokens[0]

    @cached_property
    def last_tenth_gain(self) -> float | None:
        """How much the valid log-likelihood (the subset scored while training) rose over the last tenth of the
        run's steps: best valid loss up to 90% of the steps minus the best over all; None without an evaluation in
        the first 90% to compare with."""
        rows = [(h["step"], h["valid_loss"]) for h in self.history
                if isinstance(h.get("step"), (int, float)) and isinstance(h.get("valid_loss"), (int, float))]
        if not rows:
            return None
        cut = 0.9 * max(step for step, _ in rows)
        before = [loss for step, loss in rows if step <= cut]
        return min(before) - min(loss for _, loss in rows) if before else None

    @cached_property
    def still_improving(self) -> bool:
        """Its valid log-likelihood rose by more than STILL_IMPROVING nats over the last tenth of training: its
        budget, not its architecture, set where it ended."""
        gain = self.last_tenth_gain
        return gain is not None and gain > STILL_IMPROVING


def _read_history(path: Path) -> list[dict[str, Any]]:
    """The evaluation rows of history.jsonl up to the first damaged line (curves are drawn from what is readable)."""
    history = []
    try:
        text = (path / "history.jsonl").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        if not isinstance(row, dict):
            break
        history.append(row)
    return history


def _as_run(found: RunFolder, labels: ProfileLabels) -> ReportRow | None:
    """The report's view of a run, or None (with a warning naming it) if its config.yaml cannot be read."""
    try:
        cfg = read_config(found.path)
    except TinyLMError as e:
        warnings.warn(f"skipped {found.path}: {e}", TinyLMWarning, stacklevel=2)
        return None
    profile = labels.label(cfg, found.metrics.profile)
    return ReportRow(found.path, found.metrics, cfg.to_dict(), _read_history(found.path), found.source, profile,
                     cfg.model)


def load_runs(working: Path | None, reference: Path | None, suite: SuiteFile) -> list[ReportRow]:
    """Every finished run of your working folder and of the shipped reference, each labelled with its source and
    its profile (by the suite file), sorted by dataset, model and name."""
    found = find_runs(working, reference)
    labels = ProfileLabels(suite)  # each profile planned once per model and dataset, for all the runs
    runs = [r for f in found if f.finished and f.metrics.test_loglik is not None
            for r in [_as_run(f, labels)] if r is not None]
    runs.sort(key=lambda r: (dataset_key(r.dataset), model_key(r.model), r.path.name, r.source))
    return runs


def best_runs(runs: list[ReportRow]) -> dict[tuple[str, str], ReportRow]:
    """(dataset, model) -> its best run by the one rule of `RunMetrics.selection_loss` (full valid split)."""
    best: dict[tuple[str, str], ReportRow] = {}
    for r in runs:
        key = (r.dataset, r.model)
        if key not in best or r.metrics.selection_loss < best[key].metrics.selection_loss:
            best[key] = r
    return best
