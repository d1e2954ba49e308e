"""Plan and run the experiment suite of a profile: which model, dataset and ablation value to train."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tinylm.config import RunConfig
from tinylm.data.sources import canonical_name
from tinylm.errors import TinyLMError, UsageError
from tinylm.models.registry import MODELS
from tinylm.run_folders import config_digest
from tinylm.suite_file import profile_datasets, resolve_run


@dataclass
class SuiteRun:
    """One planned run and what it varies."""

    config: RunConfig
    label: str


def _ablated_datasets(setting: Any, profile: str, datasets: list[str]) -> set[str]:
    """The datasets on which a profile sweeps the ablations: `ablations: true` (all), false, or a list of them."""
    if setting in (None, False):
        return set()
    if setting is True:
        return set(datasets)
    if isinstance(setting, list) and all(isinstance(d, str) for d in setting):
        return set(setting)
    raise UsageError(f"profiles.{profile}.ablations must be true, false or a list of datasets (got {setting!r})")


def _per_model(spec: Any, model: str, ds: str) -> Any:
    """A profile value given for every run (a list), or per model (`{default: ..., <model>: ...}`), each of which
    may again be per dataset (`{<dataset>: ...}`, falling back to its own `default`, then the top `default`); None
    where nothing applies."""
    if not isinstance(spec, dict):
        return spec
    fallback = spec.get("default")
    spec = spec.get(model, fallback)
    if isinstance(spec, dict):
        spec = spec.get(ds, spec.get("default", fallback))
    return spec


def _budgets(prof: dict[str, Any] | None, profile: str, model: str, ds: str) -> list[float]:
    """The training-FLOP budgets of a model on a dataset (`flop_budgets`: a list, or per model and dataset)."""
    budgets = _per_model(prof.get("flop_budgets") if prof else None, model, ds)
    if budgets is None:
        return []
    if not (isinstance(budgets, list) and budgets
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) and b > 0 for b in budgets)):
        raise UsageError(f"profiles.{profile}.flop_budgets must be a list of positive numbers (or such lists per "
                         "model and dataset, with a `default`), e.g. [1.0e+12, 3.0e+12]")
    return [float(b) for b in budgets]


def _sizes(prof: dict[str, Any] | None, profile: str, model: str, ds: str) -> list[dict[str, Any]]:
    """The model sizes of a model on a dataset (`sizes`: per model, optionally per dataset, a list of override
    sets such as {embed_dim: 64, n_layers: 2}); [] where the profile has none."""
    sizes = _per_model((prof.get("sizes") if prof else None) or {}, model, ds)
    if sizes is None:
        return []
    if not (isinstance(sizes, list) and sizes and all(isinstance(v, dict) and v for v in sizes)):
        raise UsageError(f"profiles.{profile}.sizes.{model} must be a list of model settings (or such lists per "
                         "dataset), e.g. [{hidden_dim: 128}, {hidden_dim: 256}]")
    return sizes


Variant = tuple[dict[str, Any], list[str], str]


def _variants(ds: str, model: str, prof: dict[str, Any] | None, profile: str, ablate: set[str],
              ablations: dict[str, Any]) -> list[Variant]:
    """(model values, --set overrides, label) of every run of a model on a dataset: its ablation values or sizes,
    each crossed with the FLOP budgets."""
    variants: list[Variant] = [({}, [], "default")]
    sizes = _sizes(prof, profile, model, ds)
    if sizes:
        variants = [(dict(size), [], ", ".join(f"{k}={v}" for k, v in size.items())) for size in sizes]
    elif ds in ablate and ablations.get(model):
        axis = ablations[model]
        if not (isinstance(axis, dict) and len(axis) == 1 and isinstance(next(iter(axis.values())), list)):
            raise UsageError(f"ablations.{model} must be one key with a list of values, e.g. n_layers: [2, 4]")
        (name, values), = axis.items()
        variants = [({name: v}, [], f"{name}={v}") for v in values]
    budgets = sorted(_budgets(prof, profile, model, ds))
    if budgets:
        windows = _size_windows(prof, profile, model, ds, len(variants), budgets) if sizes else None
        variants = [(mv, s + ["train.epochs=null", "train.max_tokens=null", f"train.max_flops={b}"],
                     f"{label} flops={b:.0e}")
                    for i, b in enumerate(budgets)
                    for mv, s, label in (variants[windows[i]] if windows else variants)]
    return variants


def _size_windows(prof: dict[str, Any] | None, profile: str, model: str, ds: str, n_sizes: int,
                  budgets: list[float]) -> list[slice] | None:
    """Which sizes each budget trains (budgets ascending): all of them, or with `sizes_per_budget: w` a window of
    w consecutive sizes of the ladder that slides from the smallest (lowest budget) to the largest (highest) in
    proportion to log C, so every budget samples sizes around its own compute-optimal one instead of the whole
    ladder (budgets spaced evenly in log C move it by the same number of rungs each)."""
    width = (prof or {}).get("sizes_per_budget")
    if width is None:
        return None
    if not (isinstance(width, int) and not isinstance(width, bool) and 3 <= width <= n_sizes):
        raise UsageError(f"profiles.{profile}.sizes_per_budget must be a whole number from 3 (a parabola needs "
                         f"three sizes) to the number of sizes of {model} on {ds} ({n_sizes}); got {width!r}")
    slack = n_sizes - width
    span = math.log(budgets[-1] / budgets[0])
    starts = [round(slack * math.log(b / budgets[0]) / span) if span > 0 else slack // 2 for b in budgets]
    return [slice(s, s + width) for s in starts]


def plan(
    raw: dict[str, Any],
    profile: str,
    only: list[str] | None = None,
    datasets: list[str] | None = None,
    axes: dict[str, list[Any]] | None = None,
    train_values: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> list[SuiteRun]:
    """Every run of a profile, in order: dataset, model, ablation value or size, FLOP budget.

    Args:
        raw: the suite file (load_suite_file).
        profile: quick | full | isoflop | scaling | any profile of the file.
        only: restrict to these models.
        datasets: restrict to (or, for datasets outside the profile, add) these datasets.
        axes: ablation values per model that replace the file's (e.g. {"linear": {"context_length": [16, 32]}}).
        train_values: command-line training values (e.g. {"epochs": 1}).
        sets: `--set` overrides applied to every run.
    """
    prof = raw["profiles"][profile] if profile in (raw.get("profiles") or {}) else None
    by_dataset = profile_datasets(raw, profile)
    if datasets:
        entries = raw.get("data") or {}
        wanted = [d if d in entries else canonical_name(d) for d in datasets]
        by_dataset = {d: by_dataset.get(d, list(MODELS)) for d in wanted}
    ablate = _ablated_datasets(prof.get("ablations") if prof else None, profile, list(by_dataset))
    ablations = dict(raw.get("ablations") or {})
    for model, axis in (axes or {}).items():
        ablations[model] = axis
        ablate = set(by_dataset)
    runs: list[SuiteRun] = []
    seen: dict[str, str] = {}
    for ds, models in by_dataset.items():
        for model in models:
            if only and model not in only:
                continue
            for model_values, extra_sets, label in _variants(ds, model, prof, profile, ablate, ablations):
                cfg = resolve_run(model, ds, raw=raw, profile=profile if prof else None, model_values=model_values,
                                  train_values=train_values, sets=extra_sets + list(sets or []))
                run = SuiteRun(cfg, f"{ds} {model} {label}")
                digest = config_digest(cfg)
                if digest in seen:
                    raise UsageError(f"profiles.{profile} plans the same run twice ({seen[digest]}; {run.label}): "
                                     "make its sizes or budgets differ")
                seen[digest] = run.label
                runs.append(run)
    return runs


ADHOC = "adhoc"


def profile_index(raw: dict[str, Any]) -> dict[str, list[str]]:
    """{config digest: the profiles whose suite plans exactly that run} for every profile of the suite file."""
    index: dict[str, list[str]] = {}
    for name in raw.get("profiles") or {}:
        try:
            runs = plan(raw, name)
        except TinyLMError:
            continue  # a broken profile claims no run
        for run in runs:
            index.setdefault(config_digest(run.config), []).append(name)
    return index


def profile_label(index: dict[str, list[str]], cfg: RunConfig, claimed: str | None = None) -> str:
    """The profile a run belongs to: one whose unchanged suite would train exactly this config (the claimed one
    first), else "adhoc" — so a run started with other settings never enters a profile's figures or headline."""
    names = index.get(config_digest(cfg), [])
    if claimed in names:
        return str(claimed)
    return names[0] if names else ADHOC
