"""The one list of models: name -> config class, model class, figure colour and ablation flag.

Everything that names models (the CLI's choices and ablation flags, the report's rows and colours, the chat's
`model` command) reads this registry, so adding a model is one file plus one entry here. Models from outside the
package (`file.py:Class`, `package.module:Class`, the `tinylm.models` entry points: models/plugins.py) join it when
first named, and every command then treats them as the built-in ones.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from tinylm.errors import TinyLMWarning, UsageError
from tinylm.fields import from_dict, suggest
from tinylm.models.attention import AttentionConfig, AttentionLM
from tinylm.models.base import LanguageModel, LMConfig
from tinylm.models.linear import LinearConfig, LinearLM
from tinylm.models.llama import LlamaConfig, LlamaLM
from tinylm.models.lstm import LSTMLM, LSTMConfig
from tinylm.models.mamba import MambaConfig, MambaLM
from tinylm.models.mlp import MLPLM, MLPConfig
from tinylm.models.plugins import ModelSource, Plugin, entry_points, is_spec, load_entry_point, load_saved, load_spec
from tinylm.models.transformer import TransformerConfig, TransformerLM


@dataclass(frozen=True)
class ModelSpec:
    """A registered model."""

    config: type[LMConfig]
    model: type[LanguageModel]
    color: str
    """Its colour in every figure."""
    sweep_flag: str | None = None
    """The suite's command-line flag that sweeps one config field, e.g. `--layers` ..."""
    sweep_field: str | None = None
    """... and that field, e.g. `n_layers`."""
    rung: bool = True
    """A rung of the bench's ladder of complexity (linear < mlp < attention < transformer, in registry order), which
    the report compares by that order; False for a reference row beside the ladder (the classical LSTM)."""
    source: ModelSource | None = None
    """Where a plugin came from (None: built into the package)."""
    sweep_values: tuple[Any, ...] = ()
    """A plugin's own values of its ablation axis (the suite file's `ablations:` overrides them)."""


MODELS: dict[str, ModelSpec] = {
    "linear": ModelSpec(LinearConfig, LinearLM, "#1f77b4", "--context-lengths", "context_length"),
    "mlp": ModelSpec(MLPConfig, MLPLM, "#ff7f0e", "--hidden-sizes", "hidden_dim"),
    "attention": ModelSpec(AttentionConfig, AttentionLM, "#2ca02c", "--heads", "n_heads"),
    "transformer": ModelSpec(TransformerConfig, TransformerLM, "#d62728", "--layers", "n_layers"),
    "lstm": ModelSpec(LSTMConfig, LSTMLM, "#8c564b", "--lstm-hidden", "hidden_dim", rung=False),
    "llama": ModelSpec(LlamaConfig, LlamaLM, "#e377c2", "--llama-layers", "n_layers", rung=False),
    "mamba": ModelSpec(MambaConfig, MambaLM, "#17becf", "--mamba-state", "d_state", rung=False),
}
DEFAULT_MODEL = "transformer"


BUILTIN = tuple(MODELS)


def model_names() -> list[str]:
    """Every registered model, in registry order (simplest first, then the plugins named so far)."""
    return list(MODELS)


def builtin_names() -> list[str]:
    """The bench's own models (what `all` means), simplest first."""
    return list(BUILTIN)


def plugin_names() -> list[str]:
    """The installed packages' models (entry points of the group tinylm.models), loaded, that are not yet listed."""
    return [check_name(name) for name in entry_points() if name not in MODELS]


def ladder_names() -> list[str]:
    """The models that are rungs of the ladder of complexity, simplest first."""
    return [name for name, spec in MODELS.items() if spec.rung]


def _register(plugin: Plugin) -> str:
    """Add a plugin to the registry under its name; refuse a name a different model already has."""
    known = MODELS.get(plugin.name)
    same = known is not None and (known.model is plugin.model or (
        known.source is not None and (known.source.file, known.model.__qualname__)
        == (plugin.source.file, plugin.model.__qualname__)))  # one file reached as a path and as a package
    if known is not None and not same:
        had = "a built-in model" if known.source is None else f"the model from {known.source.where()}"
        raise UsageError(f"model '{plugin.source.spec}' is named '{plugin.name}', the name of {had}; set "
                         "`name = \"another-name\"` on the class")
    if known is None:
        MODELS[plugin.name] = ModelSpec(plugin.config, plugin.model, plugin.color, None, plugin.ablation,
                                        rung=False, source=plugin.source, sweep_values=plugin.ablation_values)
    return plugin.name


def check_name(name: str) -> str:
    """The registered name of a model: a built-in or loaded one, an installed package's entry point, or a class
    named by `path/to/file.py:Class` or `package.module:Class` (loaded and registered); else a clear error."""
    if name in MODELS:
        return name
    if is_spec(name):
        return _register(load_spec(name))
    installed = entry_points()
    if name in installed:
        return _register(load_entry_point(installed[name]))
    raise unknown_model(name)


def known_names() -> list[str]:
    """The registered models, then the installed packages' models not yet loaded (none imported)."""
    return [*MODELS, *(n for n in entry_points() if n not in MODELS)]


def unknown_model(name: str) -> UsageError:
    """The error for a model name that is neither registered, installed nor a file or module."""
    known = known_names()
    return UsageError(f"unknown model '{name}'{suggest(name, known)}; choose one of: {', '.join(known)}, or name "
                      "your own as path/to/file.py:ClassName or package.module:ClassName")


def check_saved(name: str, saved: ModelSource, where: str) -> str:
    """Register the plugin a run was trained with (from its config.yaml's `plugin:` section), warning once when its
    source file has changed since."""
    spec = MODELS.get(name)
    if spec is None or spec.source is None:
        if spec is not None:
            raise UsageError(f"{where}: the run's model '{name}' came from {saved.where()}, but '{name}' is now a "
                             "built-in model; rename the plugin")
        _register(load_saved(name, saved, where))
        spec = MODELS[name]
    assert spec.source is not None
    if spec.source.sha256 != saved.sha256 and (name, saved.sha256) not in _WARNED:
        _WARNED.add((name, saved.sha256))
        warnings.warn(f"{where}: model '{name}' has changed since the run was trained ({spec.source.file}: sha256 "
                      f"{saved.sha256[:12]} then, {spec.source.sha256[:12]} now); its weights and scores may not "
                      "match the code", TinyLMWarning, stacklevel=2)
    return name


_WARNED: set[tuple[str, str]] = set()


def source_of(name: str) -> ModelSource | None:
    """Where a registered plugin came from (None for a built-in model)."""
    return MODELS[check_name(name)].source


def config_class(name: str) -> type[LMConfig]:
    """The config dataclass of a model."""
    return MODELS[check_name(name)].config


def color(name: str) -> str:
    """A model's colour in figures (grey for unregistered names found in old result files)."""
    spec = MODELS.get(name)
    return spec.color if spec else "#7f7f7f"


def make_config(name: str, values: dict[str, Any] | None = None) -> LMConfig:
    """A model config from a mapping; unknown keys are rejected with the allowed ones."""
    return from_dict(config_class(name), dict(values or {}), f"model '{name}'")


def build_model(name: str, config: LMConfig | dict[str, Any] | None = None) -> LanguageModel:
    """Build model `name` from its config (a dataclass instance or a mapping); the vocabulary must be known."""
    if not isinstance(config, LMConfig):
        config = make_config(name, config)
    if config.vocab_size is None:
        raise UsageError(f"model '{name}' needs model.vocab_size (it is set from the dataset's tokenizer)")
    return MODELS[check_name(name)].model(config)
