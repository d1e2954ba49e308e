"""Plan the experiment suite of a profile (which model, dataset and ablation value to train), and say which profile
a run belongs to."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tinylm.config import RunConfig
from tinylm.data.sources import canonical_name
from tinylm.errors import TinyLMError, UsageError
from tinylm.models.registry import MODELS, builtin_names
from tinylm.run_folders import config_digest
from tinylm.suite_file import Profile, SuiteFile, data_config, resolve_run


@dataclass
class PlannedRun:
    """One planned run and what it varies."""

    config: RunConfig
    label: str


Variant = tuple[dict[str, Any], list[str], str]


def _variants(ds: str, model: str, prof: Profile, ablate: set[str], ablations: dict[str, Any]) -> list[Variant]:
    """(model values, --set overrides, label) of every run of a model on a dataset: its ablation values or sizes,
    each crossed with the FLOP budgets."""
    variants: list[Variant] = [({}, [], "default")]
    sizes = prof.sizes_of(model, ds)
    if sizes:
        variants = [(dict(size), [], ", ".join(f"{k}={v}" for k, v in size.items())) for size in sizes]
    elif ds in ablate and ablations.get(model):
        (name, values), = ablations[model].items()
        variants = [({name: v}, [], f"{name}={v}") for v in values]
    budgets = prof.budgets(model, ds)
    if budgets:
        windows = _size_windows(prof.sizes_per_budget, len(variants), budgets) if sizes else None
        variants = [(mv, s + ["train.epochs=null", "train.max_tokens=null", f"train.max_flops={b}"],
                     f"{label} flops={b:.0e}")
                    for i, b in enumerate(budgets)
                    for mv, s, label in (variants[windows[i]] if windows else variants)]
    return variants


def _size_windows(width: int | None, n_sizes: int, budgets: list[float]) -> list[slice] | None:
    """Which sizes each budget trains (budgets ascending): all of them, or with `sizes_per_budget: w` a window of
    w consecutive sizes of the ladder that slides from the smallest (lowest budget) to the largest (highest) in
    proportion to log C, so every budget samples sizes around its own compute-optimal one instead of the whole
    ladder (budgets spaced evenly in log C move it by the same number of rungs each)."""
    if width is None:
        return None
    slack = n_sizes - width
    span = math.log(budgets[-1] / budgets[0])
    starts = [round(slack * math.log(b / budgets[0]) / span) if span > 0 else slack // 2 for b in budgets]
    return [slice(s, s + width) for s in starts]


def _planned(suite: SuiteFile, prof: Profile, by_dataset: dict[str, list[str]], ablate: set[str],
             ablations: dict[str, Any], train_values: dict[str, Any] | None,
             sets: list[str] | None) -> list[PlannedRun]:
    """The runs of `by_dataset` ({dataset: [models]}) by a profile's recipe; one planned twice is an error."""
    runs: list[PlannedRun] = []
    seen: dict[str, str] = {}
    for ds, models in by_dataset.items():
        for model in models:
            for model_values, extra_sets, label in _variants(ds, model, prof, ablate, ablations):
                cfg = resolve_run(model, ds, suite=suite, profile=prof.name, model_values=model_values,
                                  train_values=train_values, sets=extra_sets + list(sets or []))
                run = PlannedRun(cfg, f"{ds} {model} {label}")
                digest = config_digest(cfg)
                if digest in seen:
                    raise UsageError(f"{prof.origin} plans the same run twice ({seen[digest]}; {run.label}): "
                                     "make its sizes or budgets differ")
                seen[digest] = run.label
                runs.append(run)
    return runs


def plan(
    suite: SuiteFile,
    profile: str,
    only: list[str] | None = None,
    datasets: list[str] | None = None,
    axes: dict[str, dict[str, list[Any]]] | None = None,
    train_values: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> list[PlannedRun]:
    """Every run of a profile, in order: dataset, model, ablation value or size, FLOP budget.

    Args:
        suite: the suite file (load_suite_file).
        profile: quick | full | isoflop | scaling | any profile of the file.
        only: restrict to these models.
        datasets: restrict to (or, for datasets outside the profile, add) these datasets.
        axes: ablation values per model that replace the file's (e.g. {"linear": {"context_length": [16, 32]}}).
        train_values: command-line training values (e.g. {"epochs": 1}).
        sets: `--set` overrides applied to every run.
    """
    prof = suite.profile(profile)
    by_dataset = dict(prof.datasets)
    if datasets:
        wanted = [d if d in suite.data else canonical_name(d) for d in datasets]
        by_dataset = {d: by_dataset.get(d, builtin_names()) for d in wanted}
    ablate = prof.ablated(list(by_dataset))
    plugins = {m: MODELS[m] for models in by_dataset.values() for m in models if MODELS[m].sweep_values}
    ablations = {**{m: {spec.sweep_field: list(spec.sweep_values)} for m, spec in plugins.items()}, **suite.ablations}
    for model, axis in (axes or {}).items():
        ablations[model] = axis
        ablate = set(by_dataset)
    if only:
        by_dataset = {ds: [m for m in models if m in only] for ds, models in by_dataset.items()}
    return _planned(suite, prof, by_dataset, ablate, ablations, train_values, sets)


ADHOC = "adhoc"


def profile_index(suite: SuiteFile) -> dict[str, list[str]]:
    """{config digest: the profiles whose suite plans exactly that run} for every profile of the suite file."""
    index: dict[str, list[str]] = {}
    for name in suite.profiles:
        try:
            runs = plan(suite, name)
        except TinyLMError:
            continue  # a profile that cannot plan its runs claims none
        for run in runs:
            index.setdefault(config_digest(run.config), []).append(name)
    return index


class ProfileLabels:
    """The profile each run belongs to: one whose unchanged suite would train exactly its config (the claimed one
    first), else "adhoc" — so a run started with other settings never enters a profile's figures or headline.

    Each profile is planned only for the model and dataset of a run asked about, once per pair: labelling one run
    resolves a few configs instead of every run of every profile.
    """

    def __init__(self, suite: SuiteFile) -> None:
        self.suite = suite
        self._digests: dict[tuple[str, str, str], set[str]] = {}

    def planned(self, profile: str, model: str, dataset: str) -> set[str]:
        """The config digests of a profile's unchanged runs of `model` on the dataset labelled `dataset`."""
        key = (profile, model, dataset)
        if key not in self._digests:
            prof = self.suite.profiles[profile]
            by_dataset = {ds: [model] for ds, models in prof.datasets.items()
                          if model in models and data_config(self.suite, ds).label == dataset}
            try:
                runs = _planned(self.suite, prof, by_dataset, prof.ablated(list(prof.datasets)),
                                self.suite.ablations, None, None)
            except TinyLMError:
                runs = []  # runs it cannot plan are none of its runs
            self._digests[key] = {config_digest(run.config) for run in runs}
        return self._digests[key]

    def label(self, cfg: RunConfig, claimed: str | None = None) -> str:
        """The profile of a run's config ("adhoc" if none plans it), the `claimed` one if it does."""
        digest = config_digest(cfg)
        names = list(self.suite.profiles)
        for name in ([claimed] if claimed in names else []) + [n for n in names if n != claimed]:
            if digest in self.planned(name, cfg.model_name, cfg.data.label):
                return name
        return ADHOC


def profile_label(suite: SuiteFile, cfg: RunConfig, claimed: str | None = None) -> str:
    """The profile one run belongs to (see ProfileLabels); to label many runs, keep one ProfileLabels."""
    return ProfileLabels(suite).label(cfg, claimed)
