"""Which run a command means: the run folder given, or the best trained run of a model on a dataset (yours,
else the shipped reference's), and for a run that holds results without weights, the command that trains it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from tinylm.config import RunConfig
from tinylm.errors import TinyLMError
from tinylm.models.registry import DEFAULT_MODEL, check_name, source_of
from tinylm.paths import results_dir
from tinylm.run_folders import (
    PICKLES,
    ResultsOnly,
    RunFolder,
    best_run,
    config_changes,
    find_runs,
    identity,
    read_config,
    read_metrics,
    reference_dir,
    saved_profile,
)
from tinylm.suite_file import load_suite_file, resolve_run


def resolve_run_dir(run_dir: str | None, model: str | None, dataset: str, results: str | None) -> Path:
    """The run directory given, or the best trained run of `model` (default transformer) on `dataset`, in your
    working folder or the shipped reference; a run without weights gets the command that trains it."""
    if run_dir:
        path = Path(run_dir)
        pickled = any((path / name).exists() for name in PICKLES)  # load_run refuses those, saying why
        if path.is_dir() and (path / "metrics.json").is_file() and not (path / "model.safetensors").is_file() \
                and not pickled:
            metrics = read_metrics(path)
            if metrics is not None and metrics.finished:
                raise _results_only(RunFolder(path, metrics, "reference" if _is_reference(path) else "yours"))
        return path
    try:
        return best_run(results_dir(results), check_name(model or DEFAULT_MODEL), dataset, reference_dir())
    except ResultsOnly as e:
        raise _results_only(e.run) from None


def _is_reference(path: Path) -> bool:
    ref = reference_dir()
    return ref is not None and ref.resolve() in path.resolve().parents


def duration(seconds: float) -> str:
    """Seconds as people say them: '40 s', '12.5 min', '3.1 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class ResultsOnlyRun(TinyLMError):
    """A run asked for holds results, not weights: the command that trains its model and dataset on this machine
    (`suggested`: its config, for a forecast), and a shipped run of the same model and dataset that has weights."""

    def __init__(self, run: RunFolder, command: str, suggested: RunConfig, shipped: Path | None):
        self.run, self.command, self.suggested, self.shipped = run, command, suggested, shipped
        super().__init__(self.message())

    def message(self, expected_seconds: float | None = None) -> str:
        """The one-line error, with the time the suggested training should take here where it was measured."""
        m = self.run.metrics
        text = f"{self.run.path} is {self.run.state}: it holds the results of a run, not its weights"
        if self.shipped is not None:
            text += (f"; the shipped run {self.shipped.name} of {m.model} on {m.dataset} has weights: "
                     f"tinylm generate {self.shipped}")
        expect = f" (expect ~{duration(expected_seconds)} here)" if expected_seconds is not None else ""
        return (f"{text}; to train {m.model} on {m.dataset} into your working folder: "
                f"{self.command}{expect}")


def _results_only(run: RunFolder) -> ResultsOnlyRun:
    shipped = [r for r in find_runs(None, reference_dir()) if r.finished and r.has_weights
               and r.metrics.model == run.metrics.model and r.metrics.dataset == run.metrics.dataset]
    best = min(shipped, key=lambda r: (r.metrics.selection_loss, str(r.path))).path if shipped else None
    command, suggested = command_here(run.path)
    return ResultsOnlyRun(run, command, suggested, best)


def command_here(run_dir: Path) -> tuple[str, RunConfig]:
    """The `tinylm train` command for a run's model and dataset on this machine, and its config: the run's own
    config (train_command), or, for a run trained on a GPU when this machine has none, the run of the same model
    and dataset in the first profile that trains on a CPU with a budget of tokens or steps."""
    cfg = read_config(run_dir)
    if not str(cfg.train.device).startswith("cuda") or torch.cuda.is_available():
        return train_command(run_dir), cfg
    suite = load_suite_file()
    for profile, prof in suite.profiles.items():
        if prof.flop_budgets or prof.sizes:
            continue  # a scaling profile trains many sizes of a model, none of them "the" run
        try:
            if cfg.model_name not in prof.datasets.get(cfg.data.label, []):
                continue
            here = resolve_run(cfg.model_name, cfg.data.label, suite=suite, profile=profile)
        except TinyLMError:
            continue
        if not str(here.train.device).startswith("cuda") and here.train.max_time is None:
            return f"tinylm train --model {cfg.model_name} --dataset {cfg.data.label} --profile {profile}", here
    return train_command(run_dir), cfg


def train_command(run_dir: Path) -> str:
    """The `tinylm train` command that trains the config saved in `run_dir` again (into your working folder)."""
    cfg = read_config(run_dir)
    suite = load_suite_file()
    claimed = saved_profile(run_dir)
    profiles = list(suite.profiles)
    # the claimed profile first, then any profile whose config is exactly the run's (a run trained with --set
    # overrides that a profile later adopted), else the claimed one with the differences as --set
    candidates = ([claimed] if claimed in profiles else []) + [p for p in profiles if p != claimed] + [None]
    source = source_of(cfg.model_name)
    named = source.spec if source is not None and source.origin != "entry point" else cfg.model_name
    words = ["tinylm", "train", "--model", named]
    words += ["--data", cfg.data.path, "--level", str(cfg.data.level)] if cfg.data.path is not None else \
        ["--dataset", cfg.data.label]

    def base_of(profile: str | None) -> RunConfig:
        if cfg.data.path is not None:
            return resolve_run(cfg.model_name, suite=suite, profile=profile, data=cfg.data)
        return resolve_run(cfg.model_name, cfg.data.label, suite=suite, profile=profile)

    exact = [p for p in candidates if p is not None and _resolves(base_of, p, cfg)]
    profile = exact[0] if exact else (claimed if claimed in profiles else None)
    base = base_of(profile)
    words += ["--profile", profile] if profile else []
    for section, key, _, value in config_changes(identity(base), identity(cfg)):
        words += ["--set", f"{section}.{key}={json.dumps(value)}"]  # JSON scalars are YAML too
    return " ".join(words)


def _resolves(base_of: Callable[[str | None], RunConfig], profile: str, cfg: RunConfig) -> bool:
    """Whether `profile` resolves to exactly `cfg` (a profile without this model or dataset does not)."""
    try:
        return identity(base_of(profile)) == identity(cfg)
    except TinyLMError:
        return False
