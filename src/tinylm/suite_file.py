"""Resolve one run's config from the suite file (configs/default.yaml) and the command line, strictly.

Layering (later wins): dataclass defaults < `training:` < `models.<name>:` < `models.<name>.by_dataset.<ds>:`
< the profile's `training:` / `models.<name>:` < command-line flags < `--set` overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tinylm.config import DataConfig, RunConfig, TrainConfig, model_keys
from tinylm.data.sources import DATASETS, canonical_name
from tinylm.errors import UsageError
from tinylm.fields import field_names, from_dict, to_dict, unknown_key_error, unknown_name_error
from tinylm.models.registry import MODELS, check_name


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
        data = yaml.safe_load(text)
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
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[section][name] = value
    return out


TOP_KEYS = ["training", "models", "data", "ablations", "profiles", "targets"]
DATA_KEYS = ["type", "path", "max_vocab", "source"]
PROFILE_KEYS = ["description", "extends", "datasets", "ablations", "training", "models", "flop_budgets", "sizes",
                "sizes_per_budget"]
PROFILES_DIR = "profiles"
"""The folder beside the suite file that holds one profile per file: <name>.yaml."""


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`: mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _extended(name: str, profiles: dict[str, Any], where: dict[str, str], chain: tuple[str, ...] = ()) -> Any:
    """A profile with the profile it `extends` (if any) laid under it, recursively."""
    prof = profiles[name]
    if not isinstance(prof, dict) or prof.get("extends") is None:
        return prof
    base = prof["extends"]
    if base not in profiles:
        raise UsageError(f"{where[name]}: extends: unknown profile '{base}'; choose one of: {', '.join(profiles)}")
    if base in (*chain, name):
        raise UsageError(f"{where[name]}: extends makes a cycle ({' -> '.join((*chain, name, base))}); break it")
    own = {k: v for k, v in prof.items() if k != "extends"}
    return merged(_extended(base, profiles, where, (*chain, name)), own)


def load_suite_file(path: str | Path | None = None) -> dict[str, Any]:
    """Read a suite YAML (default: configs/default.yaml) and its profiles: those under its `profiles:` key and one
    per file in the `profiles/` folder beside it (the file's name is the profile's), each with the profile it
    `extends` laid under it. Top-level keys are checked."""
    path = Path(path) if path else default_config_path()
    raw = read_yaml(path)
    for key in raw:
        if key not in TOP_KEYS:
            raise unknown_key_error(str(key), TOP_KEYS, f"{path}")
    profiles = dict(_section(raw, "profiles", str(path)))
    where = {name: f"{path} profiles.{name}" for name in profiles}
    folder = path.parent / PROFILES_DIR
    for file in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        if file.stem in profiles:
            raise UsageError(f"profile '{file.stem}' is defined twice, in {where[file.stem]} and in {file}; keep one")
        profiles[file.stem], where[file.stem] = read_yaml(file), str(file)
    raw["profiles"] = {name: _extended(name, profiles, where) for name in profiles}
    raw["_path"] = str(path)
    return raw


def profile_datasets(raw: dict[str, Any], profile: str) -> dict[str, list[str]]:
    """{dataset: [models]} of a profile."""
    prof = (raw.get("profiles") or {}).get(profile)
    if prof is None:
        raise unknown_name_error("profile", profile, list(raw.get("profiles") or {}))
    if not isinstance(prof, dict):
        raise UsageError(f"profiles.{profile} must be a mapping (datasets, ablations, training, models, ...)")
    datasets = prof.get("datasets") or {"tinyshakespeare": list(MODELS)}
    if isinstance(datasets, list):
        datasets = {d: list(MODELS) for d in datasets}
    out = {}
    for ds, models in datasets.items():
        models = list(MODELS) if models in (None, "all") else list(models)
        for m in models:
            check_name(m)
        out[ds] = models
    return out


def _section(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise UsageError(f"{where}.{key} must be a mapping")
    return value


def _split_model_train(
    name: str, values: dict[str, Any], where: str, model_out: dict[str, Any], train_out: dict[str, Any]
) -> dict[str, Any]:
    """Sort `models.<name>` keys into model fields and train fields; returns `by_dataset` (if any)."""
    settable = model_keys(name)
    train_keys = field_names(TrainConfig)
    by_dataset = {}
    for key, value in values.items():
        if key in settable:
            model_out[key] = value
        elif key in train_keys:
            train_out[key] = value
        elif key == "by_dataset":
            by_dataset = value or {}
            if not isinstance(by_dataset, dict) or not all(isinstance(v, dict) for v in by_dataset.values()):
                raise UsageError(f"{where}.by_dataset must map dataset names to mappings of keys to values")
        else:
            raise unknown_key_error(str(key), settable + train_keys + ["by_dataset"], where)
    return by_dataset


def data_config(raw: dict[str, Any], dataset: str) -> DataConfig:
    """The DataConfig for a dataset name from the suite file's `data:` section (or the registry)."""
    where = f"{raw.get('_path', 'config')} data"
    entries = _section(raw, "data", raw.get("_path", "config"))
    entry = entries.get(dataset)
    if entry is None:
        entry = entries.get(canonical_name(dataset), {})
    if not isinstance(entry, dict):
        raise UsageError(f"{where}.{dataset} must be a mapping")
    for key in entry:
        if key not in DATA_KEYS:
            raise unknown_key_error(str(key), DATA_KEYS, f"{where}.{dataset}")
    source = entry.get("source")
    name = canonical_name(source or dataset) if (source or entry.get("path") is None) else dataset
    if entry.get("path") is None and name not in DATASETS:
        raise UsageError(f"dataset '{dataset}' in {where} needs a path or a registered source")
    values = {"name": name, "level": entry.get("type"), "path": entry.get("path"), "max_vocab": entry.get("max_vocab")}
    return from_dict(DataConfig, values, f"{where}.{dataset}")


def resolve_run(
    model: str,
    dataset: str = "tinyshakespeare",
    *,
    raw: dict[str, Any] | None = None,
    profile: str | None = None,
    model_values: dict[str, Any] | None = None,
    train_values: dict[str, Any] | None = None,
    data: DataConfig | None = None,
    sets: list[str] | None = None,
) -> RunConfig:
    """Resolve one run's config by the layering in the module docstring."""
    check_name(model)
    raw = raw if raw is not None else load_suite_file()
    where = raw.get("_path", "config")
    m: dict[str, Any] = {}
    t: dict[str, Any] = dict(_section(raw, "training", where))
    for key in t:
        if key not in field_names(TrainConfig):
            raise unknown_key_error(str(key), field_names(TrainConfig), f"{where} training")
    data_cfg = data or data_config(raw, dataset)
    layers = [(_section(raw, "models", where).get(model) or {}, f"{where} models.{model}")]
    if profile is not None:
        profiles = _section(raw, "profiles", where)
        if profile not in profiles:
            raise unknown_name_error("profile", profile, list(profiles))
        prof = profiles[profile] or {}
        if not isinstance(prof, dict):
            raise UsageError(f"{where} profiles.{profile} must be a mapping")
        for key in prof:
            if key not in PROFILE_KEYS:
                raise unknown_key_error(str(key), PROFILE_KEYS, f"{where} profiles.{profile}")
        layers.append((dict(_section(prof, "training", where)), f"{where} profiles.{profile}.training"))
        layers.append((_section(prof, "models", where).get(model) or {}, f"{where} profiles.{profile}.models.{model}"))
    for values, label in layers:
        if not isinstance(values, dict):
            raise UsageError(f"{label} must be a mapping")
        by_dataset = _split_model_train(model, values, label, m, t)
        for ds_key, ds_values in (by_dataset or {}).items():
            if ds_key in (dataset, data_cfg.name):
                _split_model_train(model, ds_values or {}, f"{label}.by_dataset.{ds_key}", m, t)
    m.update(model_values or {})
    t.update({k: v for k, v in (train_values or {}).items() if v is not None})
    over = parse_overrides(sets)
    m.update(over["model"])
    t.update(over["train"])
    if over["data"]:
        data_values = {**to_dict(data_cfg), **over["data"]}
        data_cfg = from_dict(DataConfig, data_values, "--set data")
    return RunConfig.build(model, m, t, data_cfg)
