"""The suite file (configs/default.yaml and the profiles beside it) read and checked once, and one run's config
resolved from it and the command line, strictly.

`load_suite_file` returns a `SuiteFile`: every key and the shape of every value checked, each error naming the file
and the key path (`configs/profiles/scaling.yaml flop_budgets.linear.ptb must be ...`). Layering of one run (later
wins): dataclass defaults < `training:` < `models.<name>:` < `models.<name>.by_dataset.<ds>:` < the profile's
`training:` / `models.<name>:` < command-line flags < `--set` overrides.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tinylm.config import DataConfig, RunConfig, TrainConfig, model_keys
from tinylm.data.corpus import load_corpus
from tinylm.data.sources import DATASETS, canonical_name, vocab_size
from tinylm.errors import UsageError
from tinylm.fields import coerce, field_names, from_dict, to_dict, unknown_key_error, unknown_name_error
from tinylm.models.registry import (
    build_model,
    builtin_names,
    check_name,
    config_class,
    model_names,
    plugin_names,
    source_of,
)


def parse_yaml(text: str) -> Any:
    """`yaml.safe_load`, by libyaml's safe loader where PyYAML has it (the suite file parses ten times faster)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping with safe_load; a parse error names the line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist; pass an existing file with --config") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read config file {path}: {e}") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise UsageError(f"config file {path} is not valid YAML{at}: {problem}; fix the syntax there") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping at the top level")
    return data


def default_config_path() -> Path:
    """configs/default.yaml of the current directory, else the one beside the package source."""
    local = Path("configs/default.yaml")
    if local.is_file():
        return local
    return Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def parse_overrides(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """`['model.n_layers=6', 'train.learning_rate=3e-4']` -> {'model': {'n_layers': 6}, 'train': {...}}."""
    out: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "data": {}}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--set expects SECTION.KEY=VALUE (got '{item}'), e.g. --set model.n_layers=6")
        key, raw = item.split("=", 1)
        section, _, name = key.strip().partition(".")
        if section not in out or not name:
            raise UsageError(f"--set key '{key}' must start with model., train. or data. (e.g. train.learning_rate)")
        try:
            value = parse_yaml(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[section][name] = value
    return out


BUDGETS = ("epochs", "max_steps", "max_tokens", "max_flops", "max_time")


def budget_resets(train_values: dict[str, Any]) -> list[str]:
    """`--set` resets of the budgets not given: a budget given on the command line replaces the file's budgets."""
    if not any(train_values.get(k) is not None for k in BUDGETS):
        return []
    return [f"train.{k}=null" for k in BUDGETS if train_values.get(k) is None]


TOP_KEYS = ["training", "models", "data", "ablations", "profiles", "targets"]
DATA_KEYS = ["type", "path", "max_vocab", "source", "split"]
PROFILE_KEYS = ["description", "extends", "datasets", "ablations", "training", "models", "flop_budgets", "sizes",
                "sizes_per_budget"]
PROFILES_DIR = "profiles"
"""The folder beside the suite file that holds one profile per file: <name>.yaml."""


@dataclass(frozen=True)
class Origin:
    """Where a value was written: a file and the key path in it, shown as `configs/default.yaml data.ptb`."""

    file: str
    keys: str = ""

    def at(self, *keys: Any) -> Origin:
        """The origin of a value under this one."""
        path = ".".join(str(k) for k in keys)
        return Origin(self.file, f"{self.keys}.{path}" if self.keys else path)

    def __str__(self) -> str:
        return f"{self.file} {self.keys}" if self.keys else self.file


@dataclass
class Profile:
    """A recipe of runs: which models on which datasets, with which settings, budgets and sizes."""

    name: str
    description: str = ""
    datasets: dict[str, list[str]] = field(default_factory=lambda: {"tinyshakespeare": builtin_names()})
    """{dataset: [models]} (the datasets' names as the suite file's `data:` or the registry has them)."""
    ablations: bool | list[str] = False
    """Sweep each model's ablation axis: on every dataset (true), on none (false), or on these."""
    training: dict[str, Any] = field(default_factory=dict)
    """Training (and model) values for every run, with `by_dataset:` per dataset."""
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Values per model, each with `by_dataset:` per dataset."""
    flop_budgets: Any = None
    """Training-FLOP budgets: a list, or per model (`default:` for the rest), each maybe per dataset."""
    sizes: Any = None
    """Model sizes (lists of model settings) per model, each maybe per dataset."""
    sizes_per_budget: int | None = None
    """How many consecutive sizes of a ladder each budget trains (all of them if None)."""
    origin: Origin = Origin("suite file")
    """Where the profile was defined: its file, or the suite file's `profiles.<name>`."""

    def budgets(self, model: str, dataset: str) -> list[float]:
        """The FLOP budgets of a model on a dataset, ascending ([] where none apply)."""
        return sorted(float(b) for b in per_model(self.flop_budgets, model, dataset) or [])

    def sizes_of(self, model: str, dataset: str) -> list[dict[str, Any]]:
        """The size ladder of a model on a dataset ([] where none applies)."""
        return list(per_model(self.sizes, model, dataset) or [])

    def ablated(self, datasets: list[str]) -> set[str]:
        """The datasets on which the ablation axes are swept, `datasets` being the planned ones."""
        if isinstance(self.ablations, list):
            return set(self.ablations)
        return set(datasets) if self.ablations else set()


@dataclass
class SuiteFile:
    """The suite file, checked: defaults, models, datasets, ablations, targets and profiles."""

    path: Path | None = None
    """The file it was read from (None: built in memory)."""
    training: dict[str, Any] = field(default_factory=dict)
    """TrainConfig values for every run."""
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Values per model (model and training fields), each with `by_dataset:` per dataset."""
    data: dict[str, DataConfig] = field(default_factory=dict)
    """The datasets named in the file (a registered one needs no entry)."""
    ablations: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    """{model: {config key: [values]}}: the one swept axis of each model."""
    targets: dict[str, dict[str, float]] = field(default_factory=dict)
    """{dataset: {model: test log-likelihood goal}}."""
    profiles: dict[str, Profile] = field(default_factory=dict)
    """Those under its `profiles:` key and one per file of the `profiles/` folder beside it."""

    @property
    def origin(self) -> Origin:
        """The file, for messages."""
        return Origin(str(self.path) if self.path else "suite file")

    def profile(self, name: str) -> Profile:
        """A profile by name; an unknown one is an error listing the profiles."""
        if name not in self.profiles:
            raise unknown_name_error("profile", name, list(self.profiles))
        return self.profiles[name]


def per_model(spec: Any, model: str, dataset: str) -> Any:
    """A profile value given for every run (a list), or per model (`{default: ..., <model>: ...}`), each of which
    may again be per dataset (`{<dataset>: ...}`, falling back to its own `default`, then the top `default`); None
    where nothing applies."""
    if not isinstance(spec, dict):
        return spec
    fallback = spec.get("default")
    spec = spec.get(model, fallback)
    if isinstance(spec, dict):
        spec = spec.get(dataset, spec.get("default", fallback))
    return spec


# ---------------------------------------------------------------------------------------------------------------
# reading and checking


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`: mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _extended(name: str, profiles: dict[str, dict[str, Any]], where: dict[str, Origin],
              chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """A profile with the profile it `extends` (if any) laid under it, recursively."""
    prof = profiles[name]
    if prof.get("extends") is None:
        return prof
    base = prof["extends"]
    if base not in profiles:
        raise UsageError(f"{where[name]}: extends: unknown profile '{base}'; choose one of: {', '.join(profiles)}")
    if base in (*chain, name):
        raise UsageError(f"{where[name]}: extends makes a cycle ({' -> '.join((*chain, name, base))}); break it")
    own = {k: v for k, v in prof.items() if k != "extends"}
    return merged(_extended(base, profiles, where, (*chain, name)), own)


def _mapping(value: Any, where: Origin, what: str = "a mapping") -> dict[Any, Any]:
    """`value` if it is a mapping ({} for null)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be {what} (got {value!r})")
    return value


def _check_keys(values: dict[Any, Any], allowed: list[str], where: Origin) -> None:
    """Refuse a key that is not `allowed`, naming the closest allowed one."""
    for key in values:
        if key not in allowed:
            raise unknown_key_error(str(key), allowed, str(where))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The type hints of a config dataclass (once each: the suite file checks every value against them)."""
    return typing.get_type_hints(cls)


def _model_name(name: Any, where: Origin) -> str:
    """`name` if it is a registered model; else the registry's error, naming where it was written."""
    try:
        return check_name(str(name))
    except UsageError as e:
        raise UsageError(f"{where}: {e}") from None


def _check_values(values: Any, models: list[str], where: Origin, by_dataset: bool = True) -> dict[str, Any]:
    """A block of training and model values (`training:`, `models.<name>:`): keys known and values of the right
    type for the training config or for one of `models`' configs; `by_dataset:` blocks likewise."""
    values = _mapping(values, where)
    train = _hints(TrainConfig)
    settable = {m: {k: _hints(config_class(m))[k] for k in model_keys(m)} for m in models}
    allowed = set(train) | {k for keys in settable.values() for k in keys}
    _check_keys(values, sorted(allowed | {"by_dataset"} if by_dataset else allowed), where)
    for key, value in values.items():
        if key == "by_dataset":
            for ds, block in _mapping(value, where.at(key), "a mapping of datasets to mappings").items():
                _check_values(block, models, where.at(key, ds), by_dataset=False)
            continue
        hints = [train[key]] if key in train else [keys[key] for keys in settable.values() if key in keys]
        errors = []
        for hint in hints:
            try:
                coerce(value, hint, str(where.at(key)))
                break
            except UsageError as e:
                errors.append(e)
        else:
            raise errors[0]
    return values


def _data_entry(name: str, entry: Any, where: Origin) -> DataConfig:
    """A `data:` entry as the DataConfig it names (type -> level; source: the registered dataset it caps)."""
    entry = _mapping(entry, where)
    _check_keys(entry, DATA_KEYS, where)
    hints = {"type": _hints(DataConfig)["level"], "path": str | None, "max_vocab": int | None, "source": str | None,
             "split": _hints(DataConfig)["split"] | None}
    values = {key: coerce(entry.get(key), hint, str(where.at(key))) for key, hint in hints.items()}
    source, path = values["source"], values["path"]
    try:
        dataset = canonical_name(source or name) if (source or path is None) else name
    except UsageError:
        raise UsageError(f"{where} needs a path or a registered source ({', '.join(DATASETS)})") from None
    try:
        return DataConfig(name=dataset, level=values["type"], path=path, max_vocab=values["max_vocab"],
                          split=values["split"] or "standard")
    except UsageError as e:
        raise UsageError(f"{where}: {e}") from None


def _ablations(value: Any, where: Origin) -> dict[str, dict[str, list[Any]]]:
    """`ablations:`: one axis (a model key and its values) per model."""
    out = {}
    for model, axis in _mapping(value, where).items():
        model = _model_name(model, where)
        if not (isinstance(axis, dict) and len(axis) == 1 and isinstance(next(iter(axis.values())), list)):
            raise UsageError(f"{where.at(model)} must be one key with a list of values, e.g. n_layers: [2, 4]")
        _check_keys(axis, model_keys(model), where.at(model))
        out[model] = dict(axis)
    return out


def _targets(value: Any, where: Origin) -> dict[str, dict[str, float]]:
    """`targets:`: {dataset: {model: test log-likelihood}}."""
    out: dict[str, dict[str, float]] = {}
    for ds, by_model in _mapping(value, where).items():
        for model, goal in _mapping(by_model, where.at(ds)).items():
            model = _model_name(model, where.at(ds))
            out.setdefault(str(ds), {})[model] = coerce(goal, float, str(where.at(ds, model)))
    return out


def _models(value: Any, where: Origin) -> dict[str, dict[str, Any]]:
    """`models:` of the suite file or a profile: values per registered model."""
    out = {}
    for model, values in _mapping(value, where).items():
        model = _model_name(model, where)
        out[model] = dict(_check_values(values, [model], where.at(model)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# profiles


def _leaves(spec: Any, where: Origin) -> list[tuple[Any, Origin, str | None]]:
    """(value, origin, model or None) of every list a per-model, per-dataset spec gives."""
    if not isinstance(spec, dict):
        return [(spec, where, None)]
    out = []
    for key, value in spec.items():
        model = None if key == "default" else _model_name(key, where)
        inner = value.items() if isinstance(value, dict) else [(None, value)]
        out += [(leaf, where.at(key, ds) if ds is not None else where.at(key), model) for ds, leaf in inner]
    return out


def _budgets(spec: Any, where: Origin) -> Any:
    """`flop_budgets`, its every list checked."""
    for budgets, at, _ in _leaves(spec, where):
        if budgets is not None and not (
                isinstance(budgets, list) and budgets
                and all(isinstance(b, (int, float)) and not isinstance(b, bool) and b > 0 for b in budgets)):
            raise UsageError(f"{at} must be a list of positive numbers (or such lists per model and dataset, with a "
                             "`default`), e.g. [1.0e+12, 3.0e+12]")
    return spec


def _sizes(spec: Any, where: Origin) -> list[tuple[int, Origin]]:
    """Check every size ladder; returns (length, origin) of each."""
    ladders = []
    for sizes, at, model in _leaves(spec, where):
        if sizes is None:
            continue
        if not (isinstance(sizes, list) and sizes and all(isinstance(v, dict) and v for v in sizes)):
            raise UsageError(f"{at} must be a list of model settings (or such lists per dataset), e.g. "
                             "[{hidden_dim: 128}, {hidden_dim: 256}]")
        for size in sizes if model else []:
            _check_keys(size, model_keys(model), at)
        ladders.append((len(sizes), at))
    return ladders


def _sizes_per_budget(width: Any, ladders: list[tuple[int, Origin]], where: Origin) -> int | None:
    """`sizes_per_budget`: at least 3 and at most the length of the shortest ladder."""
    if width is None:
        return None
    shortest = min(ladders, key=lambda la: la[0]) if ladders else None
    if not (isinstance(width, int) and not isinstance(width, bool) and 3 <= width
            and (shortest is None or width <= shortest[0])):
        ladder = f" ({shortest[1]} has {shortest[0]})" if shortest else ""
        raise UsageError(f"{where} must be a whole number from 3 (a parabola needs three sizes) to the number of "
                         f"sizes of each ladder{ladder}; got {width!r}")
    return width


def _datasets(value: Any, data: dict[str, DataConfig], where: Origin) -> dict[str, list[str]]:
    """{dataset: [models]} from a mapping (models: a list, `all` or null) or a list of datasets (every model)."""
    if value is None:
        return {"tinyshakespeare": builtin_names()}
    if isinstance(value, list):
        value = {d: None for d in value}
    out = {}
    for ds, models in _mapping(value, where, "a mapping of datasets to models, or a list of datasets").items():
        models = builtin_names() if models in (None, "all") else models
        try:
            if not isinstance(models, list):
                raise UsageError(f"the models of {ds} must be a list, `all` or null (got {models!r})")
            models = [check_name(str(m)) for m in models]  # a plugin's path or entry point -> its name
        except UsageError as e:
            raise UsageError(f"{where}: {e}") from None
        try:
            data_config(SuiteFile(data=data), str(ds))
        except UsageError:
            known = ", ".join([*data, *(d for d in DATASETS if d not in data)])
            raise UsageError(f"{where}: unknown dataset '{ds}'; name an entry of the suite file's `data:` or a "
                             f"registered dataset ({known})") from None
        out[str(ds)] = [str(m) for m in models]
    return out


def _ablation_setting(value: Any, where: Origin) -> bool | list[str]:
    """A profile's `ablations`: true, false (or null) or a list of datasets."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, list) and all(isinstance(d, str) for d in value):
        return list(value)
    raise UsageError(f"{where} must be true, false or a list of datasets (got {value!r})")


def parse_profile(name: str, values: Any, origin: Origin, data: dict[str, DataConfig] | None = None) -> Profile:
    """A profile from its mapping, every key and value checked (`data`: the suite file's datasets)."""
    values = _mapping(values, origin, "a mapping (description, datasets, ablations, training, models, ...)")
    _check_keys(values, PROFILE_KEYS, origin)
    description = values.get("description") or ""
    if not isinstance(description, str):
        raise UsageError(f"{origin.at('description')} must be one line of text (got {description!r})")
    if not isinstance(values.get("extends") or "", str):
        raise UsageError(f"{origin.at('extends')} must be the name of another profile")
    ladders = _sizes(values.get("sizes"), origin.at("sizes"))
    return Profile(
        name=name, description=description, origin=origin,
        datasets=_datasets(values.get("datasets"), data or {}, origin.at("datasets")),
        ablations=_ablation_setting(values.get("ablations"), origin.at("ablations")),
        training=dict(_check_values(values.get("training"), model_names(), origin.at("training"))),
        models=_models(values.get("models"), origin.at("models")),
        flop_budgets=_budgets(values.get("flop_budgets"), origin.at("flop_budgets")),
        sizes=values.get("sizes"),
        sizes_per_budget=_sizes_per_budget(values.get("sizes_per_budget"), ladders, origin.at("sizes_per_budget")),
    )


def _profiles(found: dict[str, Any], where: dict[str, Origin], data: dict[str, DataConfig]) -> dict[str, Profile]:
    """Every profile checked as written, then with the profile it extends laid under it."""
    own = {}
    for name, values in found.items():
        parse_profile(name, values, where[name], data)  # an error names the file that holds it
        own[name] = _mapping(values, where[name])
    return {name: parse_profile(name, _extended(name, own, where), where[name], data) for name in own}


def parse_suite(values: dict[str, Any], path: str | Path | None = None,
                profile_origins: dict[str, Origin] | None = None) -> SuiteFile:
    """A SuiteFile from the mapping a suite file holds (its `profiles:` with any found beside it), checked."""
    where = Origin(str(path) if path else "suite file")
    _check_keys(values, TOP_KEYS, where)
    training = _check_values(values.get("training"), [], where.at("training"), by_dataset=False)
    data = {str(name): _data_entry(str(name), entry, where.at("data", name))
            for name, entry in _mapping(values.get("data"), where.at("data")).items()}
    found = _mapping(values.get("profiles"), where.at("profiles"))
    origins = {name: (profile_origins or {}).get(name) or where.at("profiles", name) for name in found}
    return SuiteFile(
        path=Path(path) if path else None, training=dict(training), data=data,
        models=_models(values.get("models"), where.at("models")),
        ablations=_ablations(values.get("ablations"), where.at("ablations")),
        targets=_targets(values.get("targets"), where.at("targets")),
        profiles=_profiles(found, origins, data),
    )


def load_suite_file(path: str | Path | None = None) -> SuiteFile:
    """Read a suite YAML (default: configs/default.yaml) and its profiles: those under its `profiles:` key and one
    per file in the `profiles/` folder beside it (the file's name is the profile's), each with the profile it
    `extends` laid under it. Everything is checked here, once."""
    path = Path(path) if path else default_config_path()
    raw = read_yaml(path)
    profiles = dict(_mapping(raw.get("profiles"), Origin(str(path), "profiles")))
    origins = {name: Origin(str(path), f"profiles.{name}") for name in profiles}
    folder = path.parent / PROFILES_DIR
    for file in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        if file.stem in profiles:
            raise UsageError(f"profile '{file.stem}' is defined twice, in {origins[file.stem]} and in {file}; keep one")
        profiles[file.stem], origins[file.stem] = read_yaml(file), Origin(str(file))
    return parse_suite({**raw, "profiles": profiles}, path, origins)


# ---------------------------------------------------------------------------------------------------------------
# one run


def profile_datasets(suite: SuiteFile, profile: str) -> dict[str, list[str]]:
    """{dataset: [models]} of a profile."""
    return {ds: list(models) for ds, models in suite.profile(profile).datasets.items()}


def data_config(suite: SuiteFile, dataset: str) -> DataConfig:
    """The DataConfig for a dataset name from the suite file's `data:` section (or the registry)."""
    entry = suite.data.get(dataset)
    if entry is None:
        entry = suite.data.get(canonical_name(dataset)) or DataConfig(name=canonical_name(dataset))
    return dataclasses.replace(entry)


def _split_model_train(
    name: str, values: dict[str, Any], where: Origin, model_out: dict[str, Any], train_out: dict[str, Any]
) -> dict[str, Any]:
    """Sort a block's keys into model fields and train fields; returns its `by_dataset` (if any)."""
    settable = model_keys(name)
    train_keys = field_names(TrainConfig)
    for key, value in values.items():
        if key in settable:
            model_out[key] = value
        elif key in train_keys:
            train_out[key] = value
        elif key != "by_dataset":  # only other models have it: a profile's `training:` is for every model
            raise unknown_key_error(str(key), settable + train_keys + ["by_dataset"], str(where))
    return values.get("by_dataset") or {}


def resolve_run(
    model: str,
    dataset: str = "tinyshakespeare",
    *,
    suite: SuiteFile | None = None,
    profile: str | None = None,
    model_values: dict[str, Any] | None = None,
    train_values: dict[str, Any] | None = None,
    data: DataConfig | None = None,
    sets: list[str] | None = None,
) -> RunConfig:
    """Resolve one run's config by the layering in the module docstring (`suite`: default configs/default.yaml)."""
    model = check_name(model)
    suite = suite if suite is not None else load_suite_file()
    m: dict[str, Any] = {}
    t: dict[str, Any] = dict(suite.training)
    data_cfg = data or data_config(suite, dataset)
    layers = [(suite.models.get(model) or {}, suite.origin.at("models", model))]
    if profile is not None:
        prof = suite.profile(profile)
        layers.append((prof.training, prof.origin.at("training")))
        layers.append((prof.models.get(model) or {}, prof.origin.at("models", model)))
    for values, where in layers:
        by_dataset = _split_model_train(model, values, where, m, t)
        for ds_key, ds_values in by_dataset.items():
            if ds_key in (dataset, data_cfg.name):
                _split_model_train(model, ds_values or {}, where.at("by_dataset", ds_key), m, t)
    m.update(model_values or {})
    t.update({k: v for k, v in (train_values or {}).items() if v is not None})
    over = parse_overrides(sets)
    m.update(over["model"])
    t.update(over["train"])
    if over["data"]:
        data_values = {**to_dict(data_cfg), **over["data"]}
        data_cfg = from_dict(DataConfig, data_values, "--set data")
    return RunConfig.build(model, m, t, data_cfg)


# ---------------------------------------------------------------------------------------------------------------
# `tinylm models`


@dataclass
class ModelRow:
    """One model at the suite file's settings for a dataset: what `tinylm models` lists."""

    name: str
    params: int
    flops_per_token: float
    """Forward FLOPs per token."""
    train_flops_per_token: float
    settings: dict[str, Any]
    """The model's config as resolved (but its name, max_params and bias)."""
    breakdown: dict[str, int]
    """Parameters per module."""
    source: str = "built in"
    """Where the model came from: built in, or a plugin's file, module or package."""
    problem: str = ""
    """Why an installed plugin, listed with the others, cannot be built with these settings."""


def _model_sets(sets: list[str], name: str, one_model: bool) -> list[str]:
    """The `--set` overrides that apply to model `name`: for every model, a `model.KEY` only where it has KEY."""
    return [s for s in sets if one_model or not s.startswith("model.")
            or s.split("=", 1)[0][len("model."):].strip() in model_keys(name)]


def model_rows(suite: SuiteFile, dataset: str, model: str | None = None,
               sets: list[str] | None = None) -> tuple[DataConfig, int, list[ModelRow]]:
    """Every model (or `model`) as configured for `dataset`, with `--set` overrides: the dataset's config, its
    vocabulary size and one row per model. A `model.KEY` override no model has is an error."""
    data = data_config(suite, dataset)
    vocab = vocab_size(data.name, data.max_vocab) if data.path is None else \
        load_corpus(data, quiet=True).tokenizer.vocab_size
    names = [check_name(model)] if model else [*model_names(), *plugin_names()]
    every_key = sorted({k for name in names for k in model_keys(name)})
    for item in sets or []:
        key = item.split("=", 1)[0].strip()
        if key.startswith("model.") and key[len("model."):] not in every_key:
            raise unknown_key_error(key[len("model."):], every_key, "--set model")
    rows, counts = [], None
    for name in names:
        source = source_of(name)
        try:
            cfg = resolve_run(name, data.label, suite=suite, sets=_model_sets(sets or [], name, model is not None))
        except UsageError as e:
            if model is not None or source is None:
                raise
            # one plugin that these settings do not fit does not hide the rest
            rows.append(ModelRow(name, 0, 0.0, 0.0, {}, {}, source.where(), str(e)))
            continue
        if cfg.model.head == "adaptive" and counts is None:  # its cutoffs and FLOPs follow the training counts
            counts = load_corpus(data, quiet=True).train_counts()
        built = build_model(name, cfg.model_config(vocab, counts if cfg.model.head == "adaptive" else None))
        shown = {k: v for k, v in cfg.to_dict()["model"].items() if k not in ("name", "max_params", "bias")}
        rows.append(ModelRow(name, built.num_params(), built.flops_per_token(),
                             built.flops_per_token(training=True), shown, built.param_breakdown(),
                             source.where() if source else "built in"))
    return data, vocab, rows

