"""Typed configuration: dataclasses filled from YAML and `--set a.b=value` overrides, strict keys.

Layering (later wins): dataclass defaults < `training:` < `models.<name>:` < `models.<name>.by_dataset.<ds>:`
< the profile's `training:` / `models.<name>:` < command-line flags < `--set` overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from tinylm.errors import UsageError


@dataclass
class TrainConfig:
    """How a model is trained; shared by every architecture."""

    epochs: float | None = None
    """Budget in passes over the training tokens (fractions allowed)."""
    max_steps: int | None = None
    """Budget in optimizer steps."""
    max_tokens: int | None = None
    """Budget in training tokens."""
    max_flops: float | None = None
    """Budget in training FLOPs (analytic, 3x forward)."""
    max_time: float | None = None
    """Budget in seconds of training (evaluation excluded)."""
    batch_size: int = 32
    """Sequences per optimizer step."""
    seq_len: int | None = None
    """Scored positions per training sequence; default: the model's context length (256 for window models)."""
    learning_rate: float = 1e-3
    """Peak learning rate of AdamW."""
    min_lr_ratio: float = 0.1
    """The cosine schedule decays to learning_rate * min_lr_ratio."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    scheduler: Literal["cosine", "constant", "linear"] = "cosine"
    """Decay after warm-up."""
    weight_decay: float = 0.1
    """AdamW decay, applied to the weight matrices of linear layers only (not biases, norms, embeddings)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.99
    """AdamW beta2."""
    gradient_clip: float = 1.0
    """Clip the global gradient norm to this (0 disables)."""
    eval_interval: int = 200
    """Evaluate on the valid subset every this many steps."""
    eval_tokens: int = 32768
    """Valid tokens scored at each periodic evaluation (the whole split at the end)."""
    early_stopping_patience: int = 0
    """Stop after this many evaluations without improvement (0 disables)."""
    seed: int = 1337
    """Seed of weights, dropout and batch sampling."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """bf16 autocast where it is faster (CUDA); auto keeps fp32 on CPU."""
    compile: bool = False
    """Wrap the model in torch.compile."""

    def __post_init__(self) -> None:
        problems = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"train.{f.name} must be a finite number (got {value})")
        if not 0 <= self.seed < 2**63:
            problems.append(f"train.seed must be in [0, 2^63) (got {self.seed})")
        if problems:
            raise UsageError("; ".join(problems))
        for name in ("epochs", "max_steps", "max_tokens", "max_flops", "max_time"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                problems.append(f"train.{name} must be positive (got {value})")
        if self.batch_size < 1:
            problems.append(f"train.batch_size must be at least 1 (got {self.batch_size})")
        if self.seq_len is not None and self.seq_len < 1:
            problems.append(f"train.seq_len must be at least 1 (got {self.seq_len})")
        if not self.learning_rate > 0:
            problems.append(f"train.learning_rate must be positive (got {self.learning_rate})")
        if not 0 <= self.min_lr_ratio <= 1:
            problems.append(f"train.min_lr_ratio must be in [0, 1] (got {self.min_lr_ratio})")
        for name in ("warmup_steps", "early_stopping_patience"):
            if getattr(self, name) < 0:
                problems.append(f"train.{name} must be >= 0 (got {getattr(self, name)})")
        if self.weight_decay < 0 or self.gradient_clip < 0:
            problems.append("train.weight_decay and train.gradient_clip must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            problems.append("train.beta1 and train.beta2 must be in [0, 1)")
        if self.eval_interval < 1 or self.eval_tokens < 2:
            problems.append("train.eval_interval must be >= 1 and train.eval_tokens >= 2")
        if problems:
            raise UsageError("; ".join(problems))

    def has_budget(self) -> bool:
        """True if at least one budget is set."""
        return any(
            getattr(self, n) is not None for n in ("epochs", "max_steps", "max_tokens", "max_flops", "max_time")
        )


@dataclass
class DataConfig:
    """Which text a model learns from."""

    name: str = "tinyshakespeare"
    """A registered dataset (tinyshakespeare, ptb, wikitext2) or a label for a user file."""
    level: Literal["char", "word"] | None = None
    """Tokenization level; required for a user file, fixed for registered datasets."""
    path: str | None = None
    """A user text file (split 80/10/10) or a folder with train.txt, valid.txt and test.txt."""
    max_vocab: int | None = None
    """Cap the word vocabulary (the rest maps to <unk>); None keeps the standard full vocabulary."""

    def __post_init__(self) -> None:
        if self.max_vocab is not None and self.max_vocab < 2:
            raise UsageError(f"data.max_vocab must be at least 2 (got {self.max_vocab})")

    @property
    def label(self) -> str:
        """The name runs and reports use: the dataset, marked with its vocabulary cap (wikitext2-10k) if capped."""
        if self.max_vocab is None or self.path is not None:
            return self.name
        cap = f"{self.max_vocab // 1000}k" if self.max_vocab % 1000 == 0 else f"v{self.max_vocab}"
        return f"{self.name}-{cap}"


# ---------------------------------------------------------------------------------------------------------------
# Strict construction of dataclasses from plain mappings


def field_names(cls: type) -> list[str]:
    """The public field names of a dataclass."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


def suggest(key: str, allowed: list[str]) -> str:
    """' (did you mean X?)' for the closest allowed key, or ''."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_key_error(key: str, allowed: list[str], where: str) -> UsageError:
    """The error for a key that is not a field."""
    return UsageError(f"unknown key '{key}' in {where}{suggest(key, allowed)}; allowed: {', '.join(sorted(allowed))}")


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a type hint, converting the lossless cases (int -> float, '1e-3' -> float)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, where)
            except UsageError as e:
                errors.append(str(e))
        raise UsageError(errors[0] if errors else f"{where} cannot be null")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise UsageError(f"{where} must be one of {', '.join(map(str, choices))} (got {value!r})")
        return value
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(hint) or (Any,)
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"{where} must be true or false (got {value!r})")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UsageError(f"{where} must be an integer (got {value!r})")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UsageError(f"{where} must be a number (got {value!r})")
    if hint is str:
        if isinstance(value, str):
            return value
        raise UsageError(f"{where} must be a string (got {value!r})")
    if hint is Any:
        return value
    raise TypeError(f"unsupported config type {hint!r}")


def from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from `values`, rejecting unknown keys and values of the wrong type."""
    if not isinstance(values, dict):
        raise UsageError(f"{where} must be a mapping of keys to values (got {values!r})")
    hints = typing.get_type_hints(cls)
    allowed = field_names(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in allowed:
            raise unknown_key_error(str(key), allowed, where)
        kwargs[key] = coerce(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a plain dict (for YAML/JSON)."""
    return dataclasses.asdict(obj)


# ---------------------------------------------------------------------------------------------------------------
# YAML files


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


@dataclass
class RunConfig:
    """Everything that defines one training run; saved resolved as the run's config.yaml.

    `model` holds the model's field values (validated for names and types); the model config itself is built
    once the dataset's vocabulary size is known (`model_config`).
    """

    model_name: str
    model: dict[str, Any]
    train: TrainConfig
    data: DataConfig

    def model_config(self, vocab_size: int) -> Any:
        """The model's config dataclass for a vocabulary of `vocab_size` (validated)."""
        from tinylm.models.registry import make_config

        return make_config(self.model_name, {**self.model, "vocab_size": vocab_size})

    def to_dict(self) -> dict[str, Any]:
        """The config as saved in config.yaml."""
        return {
            "model": {"name": self.model_name, **self.model},
            "train": to_dict(self.train),
            "data": to_dict(self.data),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config.yaml") -> RunConfig:
        """Inverse of `to_dict` (as read back from a run's config.yaml)."""
        from tinylm.models.registry import check_name, config_class

        if not isinstance(values, dict) or set(values) != {"model", "train", "data"}:
            raise UsageError(f"{where} must have exactly the sections model, train and data")
        if not isinstance(values["model"] or {}, dict):
            raise UsageError(f"{where} model must be a mapping")
        model = dict(values["model"] or {})
        name = check_name(str(model.pop("name", "")))
        allowed = field_names(config_class(name))
        for key in model:
            if key not in allowed:
                raise unknown_key_error(key, allowed, f"{where} model")
        return cls(name, model, from_dict(TrainConfig, values["train"], f"{where} train"),
                   from_dict(DataConfig, values["data"], f"{where} data"))


TOP_KEYS = ["training", "models", "data", "ablations", "profiles", "targets"]
DATA_KEYS = ["type", "path", "max_vocab", "source"]
PROFILE_KEYS = ["description", "datasets", "ablations", "training", "models", "flop_budgets"]


def load_suite_file(path: str | Path | None = None) -> dict[str, Any]:
    """Read a suite YAML (default: configs/default.yaml) and check its top-level keys."""
    path = Path(path) if path else default_config_path()
    raw = read_yaml(path)
    for key in raw:
        if key not in TOP_KEYS:
            raise unknown_key_error(str(key), TOP_KEYS, f"{path}")
    raw["_path"] = str(path)
    return raw


def _section(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise UsageError(f"{where}.{key} must be a mapping")
    return value


def _split_model_train(
    name: str, values: dict[str, Any], where: str, model_out: dict[str, Any], train_out: dict[str, Any]
) -> dict[str, Any]:
    """Sort `models.<name>` keys into model fields and train fields; returns `by_dataset` (if any)."""
    from tinylm.models.registry import config_class

    model_keys = [k for k in field_names(config_class(name)) if k != "vocab_size"]
    train_keys = field_names(TrainConfig)
    by_dataset = {}
    for key, value in values.items():
        if key in model_keys:
            model_out[key] = value
        elif key in train_keys:
            train_out[key] = value
        elif key == "by_dataset":
            by_dataset = value or {}
            if not isinstance(by_dataset, dict) or not all(isinstance(v, dict) for v in by_dataset.values()):
                raise UsageError(f"{where}.by_dataset must map dataset names to mappings of keys to values")
        else:
            raise unknown_key_error(str(key), model_keys + train_keys + ["by_dataset"], where)
    return by_dataset


def data_config(raw: dict[str, Any], dataset: str) -> DataConfig:
    """The DataConfig for a dataset name from the suite file's `data:` section (or the registry)."""
    from tinylm.data.sources import DATASETS, canonical_name

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
    from tinylm.models.registry import check_name, config_class

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
            raise UsageError(f"unknown profile '{profile}'{suggest(profile, list(profiles))}; "
                             f"choose one of: {', '.join(profiles)}")
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
    allowed = [k for k in field_names(config_class(model)) if k != "vocab_size"]
    for key in m:
        if key not in allowed:
            raise unknown_key_error(key, allowed, f"model '{model}'")
    # Types and ranges of the model fields are checked now (the vocabulary is filled in once the data is loaded).
    full = to_dict(from_dict(config_class(model), {**m, "vocab_size": 2}, f"model '{model}'"))
    full.pop("vocab_size")
    return RunConfig(model, full, from_dict(TrainConfig, t, "training config"), data_cfg)
